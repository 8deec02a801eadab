"""Match: a pure function from (articles, contacts, history, now) to picks with reasons.

Cost grows with the number of distinct interests and neighbourhoods, not with
contacts x articles: each distinct interest is scored against the articles once, and every
contact then walks the ready, ranked lists of their own interests, stopping as soon as
each section is full.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pipeline.addresses import email_key
from pipeline.matching import taxonomy
from pipeline.matching.interests import Understood, understand
from pipeline.matching.stories import stories
from pipeline.matching.text import (
    DEFAULT_SYNONYMS,
    MAX_NGRAM,
    fixed_compound,
    ngram_counts,
    ngrams,
    phrase,
    place_key,
    proper_ngrams,
    subject_stems,
)
from pipeline.models import Article, Contact, Pick, SourceKind, Tip, TopicProfile

MARKET_KINDS = ("market", "economy")
# How much each kind of evidence counts. A story its source tagged with the interest knows
# its subject best; a feed devoted to that one topic vouches for all its stories; a word
# in the headline or the text only counts when something else backs it up, because a
# single word is often another sense of it ("run the numbers", a "party wall").
WEIGHT_TAG = 3.0
WEIGHT_SOURCE = 1.5  # from a feed devoted to this one topic, with no other evidence
SOURCE_BONUS = 1.0  # other evidence, and the feed is devoted to this topic
LISTED_BONUS = 0.5  # other evidence, and the feed lists this topic among several
# A multi-topic feed backs up more than one strong word in the text or weak words alone
# (taxonomy.STRONG_TEXT, taxonomy.WEAK_ONLY_CAP).
LISTED_NEEDS = 1.25
# A story for an interest its feed does not declare needs this much evidence, or counts
# OTHER_FEED_FACTOR as much.
OTHER_FEED_NEEDS, OTHER_FEED_FACTOR = 1.6, 0.6
# A feed that declares nothing but mostly writes about one subject (a travel column whose
# stories are also about wine, skiing or history): its stories that touch the subject
# count HABIT_BONUS more. "Mostly": at least HABIT_SHARE of its stories, and HABIT_COUNT,
# are clearly about it.
HABIT_SHARE, HABIT_COUNT, HABIT_NEEDS, HABIT_BONUS = 0.4, 2, 0.5, 1.0
WEIGHT_TITLE = 1.0
WEIGHT_MENTION = 0.5  # per mention in the story's text, up to MAX_MENTIONS
MAX_MENTIONS = 3
MIN_INTEREST_SCORE = 1.5  # e.g. headline + one mention, three mentions, a tag, a feed
WEIGHT_BROADER = 1.8  # tagged with a broader subject of the interest ("music" for "live music")
FIGURATIVE_DISCOUNT = 0.5  # for interest evidence in market and economy stories
TOPIC_MARKET_DISCOUNT = 0.85  # the same for taxonomy evidence, lighter: its "not" phrases
# mask the figures of speech, so a story naming the hobby twice gets through
WEIGHT_OWN_HOOD = 3.0
WEIGHT_HOOD_TITLE = 2.0
WEIGHT_HOOD_MENTION = 1.0
HALF_LIFE_DAYS = 21.0
# With nothing matched to a person's interests, at most this many general market items
# stand in, so the email stays short rather than padded.
GENERAL_FILL = 2
NEAR_MISSES_KEPT = 5  # per interest, for `plan --explain`


@dataclass(frozen=True)
class Analysed:
    """An article with its text reduced to stem n-grams, computed once per run."""

    article: Article
    title: frozenset[tuple[str, ...]]
    text: Counter[tuple[str, ...]]
    topics: frozenset[tuple[str, ...]]
    places_title: Counter[tuple[str, ...]]
    places_text: Counter[tuple[str, ...]]
    freshness: float  # 1.0 today, halving every HALF_LIFE_DAYS
    age_days: float | None
    words: tuple[tuple[str, ...], ...] = ()  # title and text stems, in order
    topics_of: Mapping[str, tuple[float, str]] | None = None  # taxonomy topic -> (score, how)
    business: bool = False  # reads as company or stock-market news


@dataclass(frozen=True)
class Candidate:
    """An article that fits one interest or place, with its score, reason and ready Pick."""

    score: float
    article: Article
    reason: str
    story: str  # the same story told by several sources shares this key
    pick: Pick


def _age_days(article: Article, now: dt.datetime) -> float | None:
    if article.published is None:
        return None
    return max(0.0, (now - article.published).total_seconds() / 86400)


def topic_profile(a: Article, tax: taxonomy.Taxonomy) -> TopicProfile:
    """The article's stored topic profile, or a fresh one when it was computed by another
    taxonomy version (or never: articles made outside ingest)."""
    if a.profile is not None and a.profile.version == tax.version:
        return a.profile
    return taxonomy.profile(a, tax)


def analyse(articles: Iterable[Article], now: dt.datetime) -> list[Analysed]:
    """Tokenise articles once: subject stems for interests, proper nouns for places."""
    out = []
    tax = taxonomy.load()
    for a in articles:
        if not a.url:
            continue  # its only link was unsafe or missing: nothing for a reader to open
        age = _age_days(a, now)
        title, text = tuple(subject_stems(a.title)), tuple(subject_stems(a.summary_text))
        prof = topic_profile(a, tax)
        out.append(Analysed(
            a, ngrams(list(title)), ngram_counts(list(text)),
            frozenset(phrase(t) for t in a.topics), proper_ngrams(a.title),
            proper_ngrams(a.summary_text),
            0.5 if age is None else 0.5 ** (age / HALF_LIFE_DAYS), age, (title, text),
            {t: (score, how) for t, score, how in prof.topics}, prof.business))
    return out


def is_stale(x: Analysed, max_age_days: int | None) -> bool:
    """True when the article is older than the campaign keeps (undated ones are kept)."""
    return max_age_days is not None and x.age_days is not None and x.age_days > max_age_days


def _merge_synonyms(user: Mapping[str, tuple[str, ...]]
                    ) -> dict[tuple[str, ...], tuple[str, ...]]:
    """Built-in synonyms extended by the user's, keyed by the interest's stems."""
    merged: dict[tuple[str, ...], list[str]] = {}
    for source in (DEFAULT_SYNONYMS, user):
        for key, words in source.items():
            bucket = merged.setdefault(phrase(key), [])
            bucket.extend(w for w in words if w not in bucket)
    return {k: tuple(v) for k, v in merged.items()}


class Matcher:
    """Ranks articles for contacts; per-interest and per-place lists are built once."""

    def __init__(self, articles: list[Article], now: dt.datetime, max_age_days: int | None,
                 synonyms: Mapping[str, tuple[str, ...]],
                 source_topics: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self.now = now
        self.max_age_days = max_age_days
        everything = analyse(articles, now)
        self.analysed = [x for x in everything if not is_stale(x, max_age_days)]
        self.stale = [x for x in everything if is_stale(x, max_age_days)]
        # Stories span stale articles too: an old story someone received blocks its
        # fresh retelling.
        self.story_of = stories(articles)
        self.synonyms = _merge_synonyms(synonyms)
        # synonym -> the interests it stands for, as written in the synonym maps
        self._broader: dict[tuple[str, ...], list[str]] = {}
        for source in (DEFAULT_SYNONYMS, synonyms):
            for key, words in source.items():
                for w in words:
                    self._broader.setdefault(phrase(w), []).append(key)
        topics = source_topics or {}
        # Only a feed devoted to one topic vouches for its stories on that topic; a feed
        # about several says nothing about which one a given story is about.
        self.source_topic = {name: phrase(ts[0]) for name, ts in topics.items()
                             if len(ts) == 1}
        self.source_lists = {name: frozenset(phrase(t) for t in ts)
                             for name, ts in topics.items()}
        self.tax = taxonomy.load()
        self._understood: dict[str, Understood] = {}
        self._article_words: frozenset[str] | None = None
        self.user_synonyms = {phrase(k): tuple(v) for k, v in synonyms.items()}
        # The same, read through the taxonomy: a feed declared "craft beer" vouches for
        # stories for people who typed "beer nerd".
        self.source_topic_t = {name: frozenset(self.understood(ts[0]).topics)
                               for name, ts in topics.items() if len(ts) == 1}
        self.source_lists_t = {name: frozenset(t for x in ts for t in self.understood(x).topics)
                               for name, ts in topics.items()}
        # topic -> the fresh articles whose profile names it: planning is a lookup.
        self.by_topic: dict[str, list[Analysed]] = {}
        self.by_source: dict[str, list[Analysed]] = {}
        for x in self.analysed:
            for t in x.topics_of or ():
                self.by_topic.setdefault(t, []).append(x)
            self.by_source.setdefault(x.article.source, []).append(x)
        self.habits = _habits(everything, topics, self.tax)
        self._named_things: dict[str, frozenset[str]] = {}
        self._interest: dict[str, list[Candidate]] = {}
        self._terms: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
        self._broader_of: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
        self._scored: dict[tuple[str, ...], list[tuple[float, Analysed, str]]] = {}
        self.near_misses: dict[tuple[str, ...], list[tuple[float, Analysed, str]]] = {}
        self._hood: dict[str, list[Candidate]] = {}
        self._tips: dict[str, Pick] = {}
        # (neighbourhood, interests) -> the email of the first person with no history to
        # walk them (walk.pick_for_contact): shared by everyone with the same two
        self.walks: dict[tuple[str, tuple[str, ...]], tuple[Pick, ...]] = {}
        self.with_tip: dict[tuple[tuple[str, tuple[str, ...]], str], tuple[Pick, ...]] = {}
        self.market, self.market_general, self.market_general_plain = self._market()

    def _candidate(self, score: float, a: Article, section: str, reason: str,
                   general: bool = False) -> Candidate:
        return Candidate(score, a, reason, self.story_of[a.id],
                         Pick(section=section, reason=reason, score=round(score, 4),
                              article=a, general=general))

    def _market(self) -> tuple[list[Candidate], list[Candidate], list[Candidate]]:
        """Market and economy news, freshest first, alternating the two kinds: as the
        market section, as filler for people whose interests found nothing, and as
        filler for people who listed none."""
        by_kind: dict[str, list[Analysed]] = {k: [] for k in MARKET_KINDS}
        for x in self.analysed:
            if x.article.kind in by_kind:
                by_kind[x.article.kind].append(x)
        for xs in by_kind.values():
            xs.sort(key=lambda x: (-x.freshness, x.article.id))
        ordered = [x for pair in _zip_longest(*by_kind.values()) for x in pair if x]
        labels = {"market": "housing market update", "economy": "economy news for homeowners"}
        regular = [self._candidate(x.freshness, x.article, "market", labels[x.article.kind])
                   for x in ordered]
        general = [self._candidate(x.freshness, x.article, "market",
                                   f"general {labels[x.article.kind]}: nothing new matched "
                                   "your interests this time", general=True)
                   for x in ordered]
        plain = [self._candidate(x.freshness, x.article, "market",
                                 f"general {labels[x.article.kind]}", general=True)
                 for x in ordered]
        return regular, general, plain

    def understood(self, interest: str) -> Understood:
        """How a typed interest reads: taxonomy topics, or words to look for."""
        u = self._understood.get(interest)
        if u is None:
            tax = self.tax
            if all(w in tax.vocabulary or w in tax.filler or len(w) < 5
                   for w in taxonomy.words(interest)):
                u = understand(interest, tax)
            else:
                if self._article_words is None:
                    self._article_words = frozenset(
                        w for x in self.analysed + self.stale
                        for w in taxonomy.words(x.article.title + " " + x.article.summary_text))
                known = self._article_words
                u = understand(interest, tax, known.__contains__, known)
            self._understood[interest] = u
        return u

    def key(self, interest: str) -> tuple[str, ...]:
        """The cache key of an interest's ranked list: spellings that read the same share
        it ("gardens", "Gardening", "loves gardening")."""
        u = self.understood(interest)
        return ("topic:", *u.topics) if u.topics else phrase(u.words)

    def terms(self, interest: str) -> list[tuple[str, tuple[str, ...]]]:
        """The interest and its synonyms, as (word as written, stems) pairs; for an
        interest the taxonomy knows, only the user's own synonyms (the taxonomy has the
        rest)."""
        if interest not in self._terms:
            u = self.understood(interest)
            if u.topics:
                words = [(s, phrase(s)) for t in (*u.topics, u.words)
                         for s in self.user_synonyms.get(phrase(t), ())]
            else:
                own = phrase(u.words or interest)
                words = [(u.words or interest, own)] + \
                    [(s, phrase(s)) for s in self.synonyms.get(own, ())]
            self._terms[interest] = _distinct(words)
        return self._terms[interest]

    def broader(self, interest: str) -> list[tuple[str, tuple[str, ...]]]:
        """Broader subjects an interest belongs to: the interest whose synonym it is
        ("marathons" -> running) and the head of a multi-word interest ("live music" ->
        music). They count only through a source's own tags, which are curated."""
        if interest not in self._broader_of:
            own = phrase(interest)
            words = [(key, phrase(key)) for key in self._broader.get(own, ())]
            if len(own) > 1:
                words.append((own[-1], own[-1:]))
            direct = {p for _, p in self.terms(interest)}
            self._broader_of[interest] = [(w, p) for w, p in _distinct(words)
                                          if p not in direct]
        return self._broader_of[interest]

    def evidence(self, x: Analysed, interest: str,
                 terms: list[tuple[str, tuple[str, ...]]] | None = None) -> tuple[float, str]:
        """How strongly one article is about an interest, and how we know."""
        terms = self.terms(interest) if terms is None else terms
        tag = title = ""
        mentions = 0
        phrases = set()
        for word, p in terms:
            phrases.add(p)
            if not tag and p in x.topics:
                tag = word
            if not title and p in x.title:
                title = word
            mentions += x.text.get(p, 0)

        def via(word: str) -> str:
            return "" if word == interest else f" ('{word}')"

        score, parts = 0.0, []
        if tag:
            score += WEIGHT_TAG
            parts.append("tagged by its source" + via(tag))
        if title:
            score += WEIGHT_TITLE
            parts.append("in the headline" + via(title))
        if mentions:
            score += WEIGHT_MENTION * min(mentions, MAX_MENTIONS)
            parts.append("mentioned in the story" if mentions == 1
                         else f"mentioned {mentions} times in the story")
        source = x.article.source
        devoted = self.source_topic.get(source) in phrases
        if not tag and not devoted and score and score < WEIGHT_TAG:
            # Only words to go on: if every mention modifies the same noun, the story is
            # about that thing ("running water", "cooking oil"), not the hobby.
            glued = fixed_compound(x.words, {p for p in phrases
                                             if p in x.title or p in x.text})
            if glued:
                score, parts = WEIGHT_MENTION, ["only as part of a longer name"]
        if devoted:
            score += SOURCE_BONUS if score else WEIGHT_SOURCE
            parts.append("from a feed about it")
        elif score and phrases & self.source_lists.get(source, frozenset()) and \
                (tag or not x.topics):
            # A feed about several subjects backs up the evidence, unless the entry's own
            # tags say which of them this story is about, and it is another one.
            score += LISTED_BONUS
            parts.append("from a feed that covers it")
        if x.article.kind in MARKET_KINDS:
            # Money and market writing borrows hobby words as figures of speech ("run the
            # numbers", "a paper trail", "the art of"): it needs twice the evidence.
            score *= FIGURATIVE_DISCOUNT
        if score < WEIGHT_BROADER and not tag:
            for word, p in self.broader(interest):
                if p in x.topics:
                    return WEIGHT_BROADER, f"tagged '{word}' by its source"
        # Two reasons read as a reason; five read as a log.
        return score, ", ".join(parts[:2])

    def topic_evidence(self, x: Analysed, interest: str) -> tuple[float, str]:
        """How strongly one article is about an interest the taxonomy knows: its stored
        profile, the feed it came from, and the user's own synonyms."""
        u = self.understood(interest)
        prof = x.topics_of or {}
        score, how, via = 0.0, "", ""
        leans = self.leans(u.topics)
        for t in u.topics:
            got = prof.get(t)
            if got and got[0] * leans.get(t, 1.0) > score:
                score, how = got[0] * leans.get(t, 1.0), got[1]
                via = t
        parts = [how] if how else []
        source = x.article.source
        if u.topics and set(u.topics) & self.source_topic_t.get(source, frozenset()):
            if not x.business and not _about_something_else(x, u.topics):
                # A feed devoted to the hobby vouches for a story that is about no other
                # subject; never for its business news (a chain's share price).
                score = max(score + SOURCE_BONUS, WEIGHT_SOURCE)
                parts.append("from a feed about it")
        elif score >= LISTED_NEEDS and \
                set(u.topics) & self.source_lists_t.get(source, frozenset()):
            # A feed about several subjects backs up good evidence, never a lone mention.
            score += LISTED_BONUS
            parts.append("from a feed that covers it")
        elif HABIT_NEEDS <= score < MIN_INTEREST_SCORE and not x.business and \
                set(u.topics) & self.habits.get(source, frozenset()):
            # It lifts a lighter story to the threshold, never above a clear one.
            score = min(score + HABIT_BONUS, MIN_INTEREST_SCORE)
            parts.append("from a feed that mostly writes about it")
        elif self.source_lists_t.get(source):
            # A feed that declares what it covers, and not this: the main-subject guess
            # is for feeds that say nothing, and a passing subject needs more than one
            # word (northern lights in a travel feed, a pet food bank for charity work).
            if how.endswith(taxonomy.MAIN_SUBJECT):
                score -= taxonomy.HOBBY_FEED_TOP
            if score < OTHER_FEED_NEEDS:
                score *= OTHER_FEED_FACTOR
                parts.append("but its feed covers other subjects")
        if x.article.kind in MARKET_KINDS and not set(u.topics) & self.named_things(x):
            # Money and market writing borrows hobby words as figures of speech; the
            # taxonomy masks the known ones ("teed up"), so less is discounted than for
            # bare words: homes by a golf course, cheaper airfares still get through. A
            # named thing of two words or more ("golf club", "boat slip") is no figure
            # of speech and is not discounted.
            score *= TOPIC_MARKET_DISCOUNT
        if self.terms(interest):
            own, words_how = self.evidence(x, interest, self.terms(interest))
            if own > score:
                return own, words_how
        if via and via != u.topics[0]:
            parts[0] = f"{via}: {parts[0]}"
        return score, "; ".join(parts[:2])

    def named_things(self, x: Analysed) -> frozenset[str]:
        """Topics a market story names by a strong phrase of two words or more, found
        once per story (only market stories that reach an interest are looked at)."""
        got = self._named_things.get(x.article.id)
        if got is None:
            got = self._named_things[x.article.id] = taxonomy.named_phrases(
                x.article, self.tax)
        return got

    def leans(self, topics: tuple[str, ...]) -> dict[str, float]:
        """topic -> the share it counts for, for the topics an interest only leans to
        ("hockey dad" -> hockey): those its own topics lean to and do not name outright."""
        leaned = {t for own in topics for t in self.tax.topics[own].leans}
        named = {t for own in topics if own not in leaned
                 for t in (own, *self.tax.topics[own].also)}
        return dict.fromkeys(leaned - named, taxonomy.LEAN)

    def score(self, x: Analysed, interest: str) -> tuple[float, str]:
        """An article's evidence for an interest, whichever way the interest reads."""
        if self.understood(interest).topics:
            return self.topic_evidence(x, interest)
        return self.evidence(x, interest, self.terms(interest))

    def scored(self, interest: str) -> list[tuple[float, Analysed, str]]:
        """(score, article, how) for every fresh article matching an interest, best first;
        shared by every spelling that reads the same ("gardens", "loves gardening")."""
        key = self.key(interest)
        if key in self._scored:
            return self._scored[key]
        u = self.understood(interest)
        if u.topics and not self.terms(interest):
            # Only articles whose profile names a topic, or from a feed devoted to one,
            # can match: look them up instead of scoring every article.
            pool: dict[str, Analysed] = {}
            for t in u.topics:
                pool.update((x.article.id, x) for x in self.by_topic.get(t, ()))
            for source, ts in self.source_topic_t.items():
                if ts & set(u.topics):
                    pool.update((x.article.id, x) for x in self.by_source.get(source, ()))
            candidates: Iterable[Analysed] = pool.values()
        else:
            candidates = self.analysed
        found, near = [], []
        for x in candidates:
            score, how = self.score(x, interest)
            if score >= MIN_INTEREST_SCORE:
                found.append((score * (0.5 + 0.5 * x.freshness), x, how))
            elif score:
                near.append((score, x, how))  # raw, to compare with the threshold
        found.sort(key=lambda t: (-t[0], t[1].article.id))
        near.sort(key=lambda t: (-t[0], t[1].article.id))
        self._scored[key] = found
        self.near_misses[key] = near[:NEAR_MISSES_KEPT]
        return found

    def for_interest(self, interest: str) -> list[Candidate]:
        """Articles matching one interest (or its synonyms), best first."""
        if interest in self._interest:
            return self._interest[interest]
        u = self.understood(interest)
        read = f" ({', '.join(u.topics[:2])})" if u.topics and \
            u.topics[0] != interest.strip().lower() else ""
        found = [self._candidate(score, x.article, "interests",
                                 f"matches your interest '{interest}'{read}: {how}")
                 for score, x, how in self.scored(interest)]
        self._interest[interest] = found
        return found

    def tip_pick(self, tip: Tip) -> Pick:
        """The Pick for a tip, made once and shared by everyone who gets that tip."""
        pick = self._tips.get(tip.id)
        if pick is None or pick.tip != tip:
            pick = self._tips[tip.id] = tip_pick(tip)
        return pick

    def hood_evidence(self, x: Analysed, hood: str) -> tuple[float, str]:
        """How strongly one article concerns a neighbourhood, and how we know."""
        a = x.article
        if a.kind == SourceKind.NEIGHBOURHOOD and a.neighbourhood.lower() == hood.lower():
            return WEIGHT_OWN_HOOD, f"from your neighbourhood, {hood}"
        name = place_key(hood)
        if not name or len(name) > MAX_NGRAM:
            return 0.0, ""
        if x.places_title.get(name):
            return WEIGHT_HOOD_TITLE, f"mentions your neighbourhood, {hood}, in the headline"
        if x.places_text.get(name):
            return WEIGHT_HOOD_MENTION, f"mentions your neighbourhood, {hood}"
        return 0.0, ""

    def for_neighbourhood(self, hood: str) -> list[Candidate]:
        """Articles from the neighbourhood's own feeds, or that name it, best first."""
        if hood in self._hood:
            return self._hood[hood]
        found = []
        for x in self.analysed:
            score, why = self.hood_evidence(x, hood)
            if score:
                found.append(self._candidate(score * (0.5 + 0.5 * x.freshness), x.article,
                                             "neighbourhood", why))
        found.sort(key=lambda c: (-c.score, c.article.id))
        self._hood[hood] = found
        return found


def _habits(analysed: list[Analysed], declared: Mapping[str, tuple[str, ...]],
            tax: taxonomy.Taxonomy) -> dict[str, frozenset[str]]:
    """source -> the subjects an undeclared hobby feed mostly writes about: those that
    at least HABIT_SHARE (and HABIT_COUNT) of its stories are clearly about."""
    counts: dict[str, Counter[str]] = {}
    sizes: Counter[str] = Counter()
    for x in analysed:
        source = x.article.source
        if x.article.kind != "hobby" or declared.get(source):
            continue
        sizes[source] += 1
        counts.setdefault(source, Counter()).update(
            t for t, (score, _) in (x.topics_of or {}).items()
            if score >= MIN_INTEREST_SCORE and t not in tax.broad)
    return {source: frozenset(t for t, n in c.items()
                              if n >= HABIT_COUNT and n >= HABIT_SHARE * sizes[source])
            for source, c in counts.items()}


def _about_something_else(x: Analysed, topics: tuple[str, ...]) -> bool:
    """True when the article's profile is clearly about another hobby and not these."""
    prof = x.topics_of or {}
    if any(prof.get(t, (0.0, ""))[0] >= taxonomy.KEEP for t in topics):
        return False
    return any(score >= MIN_INTEREST_SCORE for score, _ in prof.values())


def _distinct(words: list[tuple[str, tuple[str, ...]]]) -> list[tuple[str, tuple[str, ...]]]:
    """Drop empty, over-long and repeated phrases, keeping the first spelling."""
    seen: set[tuple[str, ...]] = set()
    out = []
    for word, p in words:
        if p and len(p) <= MAX_NGRAM and p not in seen:
            seen.add(p)
            out.append((word, p))
    return out


def _zip_longest(*lists: list[Analysed]) -> Iterable[tuple[Analysed | None, ...]]:
    longest = max((len(x) for x in lists), default=0)
    for i in range(longest):
        yield tuple(xs[i] if i < len(xs) else None for xs in lists)


_SEASONS = {12: "winter", 1: "winter", 2: "winter", 3: "spring", 4: "spring", 5: "spring",
            6: "summer", 7: "summer", 8: "summer", 9: "autumn", 10: "autumn", 11: "autumn"}


def tip_pick(tip: Tip) -> Pick:
    """The Pick (section, reason) for one advice tip, whichever send carries it."""
    season = f", for the {tip.season}" if tip.season else ""
    return Pick(section="tip", reason=f"general advice on {tip.topic}{season}", score=0.0,
                tip=tip, general=True)


def choose_tip(contact: Contact, tips: tuple[Tip, ...], seen: frozenset[str],
               now: dt.datetime, last_seen: Mapping[str, str] | None = None) -> Tip | None:
    """The next tip in this person's rotation: unseen ones first (in season or evergreen
    before out of season); once all are seen, the rotation restarts with the least
    recently seen (given `last_seen` dates), else by month so consecutive sends differ."""
    if not tips:
        return None
    # Each person starts the library at their own place, so two neighbours do not get
    # the same tip the same month; one hash per person keeps 100,000 people cheap.
    start = int(hashlib.sha1(email_key(contact.email).encode()).hexdigest()[:8], 16) % len(tips)
    rotation = tips[start:] + tips[:start]
    fresh = [t for t in rotation if "tip:" + t.id not in seen] if seen else rotation
    if fresh:
        season = _SEASONS[now.month]
        for t in fresh:
            if t.season in ("", season):
                return t
        return fresh[0]
    if last_seen:
        return min(rotation, key=lambda t: last_seen.get(t.id, ""))
    return rotation[(now.year * 12 + now.month) % len(rotation)]
