"""Match: a pure function from (articles, contacts, history, now) to picks with reasons.

Cost grows with the number of distinct interests and neighbourhoods, not with
contacts x articles: each distinct interest is scored against the articles once, and every
contact then walks the ready, ranked lists of their own interests.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .models import Article, Campaign, Contact, Pick, Tip
from .textmatch import MAX_NGRAM, ngram_counts, ngrams, phrase, stems

MARKET_KINDS = ("market", "economy")
# How much each kind of evidence counts: a story tagged with the interest knows its
# subject better than a headline, and a headline better than a word in passing.
WEIGHT_TAG = 3.0
WEIGHT_TITLE = 2.0
WEIGHT_TEXT_REPEATED = 1.5  # the interest is named twice or more in the story
WEIGHT_TEXT_ONCE = 0.5  # once in passing ("clinics run on Saturdays" is not running)
WEIGHT_SOURCE = 0.9  # from a feed devoted to this one topic, with no other evidence
SOURCE_BONUS = 1.0  # other evidence, and the feed is about this topic too
MIN_INTEREST_SCORE = 0.8  # below this a story does not count as matching an interest
WEIGHT_OWN_HOOD = 3.0
WEIGHT_MENTIONS_HOOD = 2.0
HALF_LIFE_DAYS = 21.0


@dataclass(frozen=True)
class Analysed:
    """An article with its text reduced to stem n-grams, computed once per run."""

    article: Article
    title: frozenset[tuple[str, ...]]
    text: Counter[tuple[str, ...]]
    topics: frozenset[tuple[str, ...]]
    freshness: float  # 1.0 today, halving every HALF_LIFE_DAYS


@dataclass(frozen=True)
class Candidate:
    """An article that fits one interest or place, with its score and reason."""

    score: float
    article: Article
    reason: str


def _freshness(article: Article, now: dt.datetime) -> float:
    if article.published is None:
        return 0.5
    age = max(0.0, (now - article.published).total_seconds() / 86400)
    return 0.5 ** (age / HALF_LIFE_DAYS)


def analyse(articles: Iterable[Article], now: dt.datetime, max_age_days: int | None
            ) -> list[Analysed]:
    """Tokenise fresh articles once; stale ones (older than max_age_days) are left out."""
    out = []
    for a in articles:
        if max_age_days is not None and a.published is not None and \
                (now - a.published).days > max_age_days:
            continue
        out.append(Analysed(a, ngrams(stems(a.title)), ngram_counts(stems(a.summary_text)),
                            frozenset(phrase(t) for t in a.topics),
                            _freshness(a, now)))
    return out


class Matcher:
    """Ranks articles for contacts; per-interest and per-place lists are built once."""

    def __init__(self, analysed: list[Analysed], synonyms: Mapping[str, tuple[str, ...]],
                 source_topics: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self.analysed = analysed
        self.synonyms = {k.lower(): v for k, v in synonyms.items()}
        # Only a feed devoted to one topic vouches for its stories on that topic.
        self.source_topic = {name: phrase(topics[0]) for name, topics in
                             (source_topics or {}).items() if len(topics) == 1}
        self._interest: dict[str, list[Candidate]] = {}
        self._hood: dict[str, list[Candidate]] = {}
        self.market = sorted(
            (Candidate(WEIGHT_TEXT_REPEATED * x.freshness, x.article,
                       "housing market update" if x.article.kind == "market"
                       else "economy news for homeowners")
             for x in analysed if x.article.kind in MARKET_KINDS),
            key=lambda c: (-c.score, c.article.id))

    def evidence(self, x: Analysed, interest: str,
                 terms: list[tuple[str, tuple[str, ...]]]) -> tuple[float, str]:
        """How strongly one article is about an interest, and how we know."""
        best, how = 0.0, ""
        from_feed = False
        for word, p in terms:
            via = "" if word == interest else f" ('{word}')"
            if p in x.topics:
                score, why = WEIGHT_TAG, f"tagged by its source{via}"
            elif p in x.title:
                score, why = WEIGHT_TITLE, f"in the headline{via}"
            elif x.text.get(p, 0) >= 2:
                score, why = WEIGHT_TEXT_REPEATED, f"in the story{via}"
            elif p in x.text:
                score, why = WEIGHT_TEXT_ONCE, f"mentioned in the story{via}"
            else:
                score, why = 0.0, ""
            if score > best:
                best, how = score, why
            from_feed = from_feed or self.source_topic.get(x.article.source) == p
        if from_feed:
            if best:
                return best + SOURCE_BONUS, how + ", from a feed about it"
            return WEIGHT_SOURCE, "from a feed about it"
        return best, how

    def for_interest(self, interest: str) -> list[Candidate]:
        """Articles matching one interest (or its synonyms), best first."""
        key = interest.lower()
        if key in self._interest:
            return self._interest[key]
        terms = [(interest, phrase(interest))] + [(s, phrase(s)) for s in
                                                  self.synonyms.get(key, ())]
        terms = [(word, p) for word, p in terms if p and len(p) <= MAX_NGRAM]
        found = []
        for x in self.analysed:
            score, how = self.evidence(x, interest, terms)
            if score >= MIN_INTEREST_SCORE:
                found.append(Candidate(score * (0.5 + 0.5 * x.freshness), x.article,
                                       f"matches your interest '{interest}': {how}"))
        found.sort(key=lambda c: (-c.score, c.article.id))
        self._interest[key] = found
        return found

    def for_neighbourhood(self, hood: str) -> list[Candidate]:
        """Articles from the neighbourhood's own feeds, or that name it, best first."""
        key = hood.lower()
        if key in self._hood:
            return self._hood[key]
        name = phrase(hood)
        found = []
        for x in self.analysed:
            a = x.article
            if a.kind == "neighbourhood" and a.neighbourhood.lower() == key:
                found.append(Candidate(WEIGHT_OWN_HOOD * (0.5 + 0.5 * x.freshness), a,
                                       f"from your neighbourhood, {hood}"))
            elif name and (name in x.title or name in x.text):
                found.append(Candidate(WEIGHT_MENTIONS_HOOD * (0.5 + 0.5 * x.freshness), a,
                                       f"mentions your neighbourhood, {hood}"))
        found.sort(key=lambda c: (-c.score, c.article.id))
        self._hood[key] = found
        return found


class _Email:
    """Picks for one email under construction: no repeats, no twin stories, source caps."""

    def __init__(self, seen: frozenset[str], max_per_source: int) -> None:
        self.seen = seen
        self.max_per_source = max_per_source
        self.picks: list[Pick] = []
        self.used: set[str] = set()
        self.per_source: dict[str, int] = {}

    def fits(self, a: Article) -> bool:
        return (a.id not in self.seen and a.cluster not in self.seen
                and a.id not in self.used and a.cluster not in self.used
                and self.per_source.get(a.source, 0) < self.max_per_source)

    def add(self, section: str, c: Candidate, general: bool = False) -> None:
        self.picks.append(Pick(section=section, reason=c.reason, score=round(c.score, 4),
                               article=c.article, general=general))
        self.used.update((c.article.id, c.article.cluster))
        self.per_source[c.article.source] = self.per_source.get(c.article.source, 0) + 1


def _choose_tip(contact: Contact, tips: tuple[Tip, ...], seen: frozenset[str]) -> Tip | None:
    if not tips:
        return None
    # A per-person rotation order, so two neighbours do not get the same tip the same month.
    def order(t: Tip) -> str:
        return hashlib.sha1(f"{contact.email.lower()}|{t.id}".encode()).hexdigest()
    ranked = sorted(tips, key=order)
    fresh = [t for t in ranked if f"tip:{t.id}" not in seen]
    return (fresh or ranked)[0]


def pick_for_contact(matcher: Matcher, contact: Contact, campaign: Campaign,
                     tips: tuple[Tip, ...], seen: frozenset[str]) -> tuple[Pick, ...]:
    """Choose this contact's items, section by section, each with a reason."""
    sizes = campaign.sections
    email = _Email(seen, campaign.max_per_source)
    if contact.neighbourhood and sizes.neighbourhood:
        taken = 0
        for c in matcher.for_neighbourhood(contact.neighbourhood):
            if taken < sizes.neighbourhood and email.fits(c.article):
                email.add("neighbourhood", c)
                taken += 1
    if sizes.interests and contact.interests:
        lists = [matcher.for_interest(i) for i in contact.interests]
        taken = 0
        # First the best item of each interest, so a person with three hobbies hears
        # about more than one of them; then the best of what is left.
        for lst in lists:
            for c in lst:
                if email.fits(c.article):
                    if taken < sizes.interests:
                        email.add("interests", c)
                        taken += 1
                    break
        rest = sorted((c for lst in lists for c in lst), key=lambda c: (-c.score, c.article.id))
        for c in rest:
            if taken >= sizes.interests:
                break
            if email.fits(c.article):
                email.add("interests", c)
                taken += 1
    matched = len(email.picks)
    if sizes.market:
        # With nothing personal to say, offer more general market news instead of a
        # hobby story that does not fit; the reason says it is general.
        want = sizes.market + (0 if matched else min(2, sizes.interests))
        taken = 0
        for c in matcher.market:
            if taken >= want:
                break
            if email.fits(c.article):
                email.add("market", c, general=matched == 0 and taken >= sizes.market)
                taken += 1
    if not email.picks:
        return ()
    if sizes.tip:
        tip = _choose_tip(contact, tips, seen)
        if tip:
            email.picks.append(Pick(section="tip", reason=f"advice tip on {tip.topic}",
                                    score=0.0, tip=tip, general=True))
    return tuple(email.picks)
