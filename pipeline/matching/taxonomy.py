"""The hobby taxonomy (pipeline/matching/data/taxonomy.yaml) and the article topic profile.

`profile(article)` is a pure function: which hobbies a story is about, how strongly and
by which words, with the senses the taxonomy rules out left out ("rate hike" is not
hiking, a traffic camera is not photography, a chain's share price is not golf). Ingest
calls it once per article and stores the result, so planning only looks topics up.

No sentence-embedding model (issue 16, point 3), because it did not pay when measured.
wordllama 0.4 ships a static embedding inside its wheel (16 MB of weights, 165 MB
installed with numpy and tokenizers; loads offline with `disable_download=True`), so it
fits the rules; bench/semantic_probe.py gates it behind the taxonomy (a near miss lifted
when close in meaning). On held-out tests/eval5 the gate tuned on eval3/eval2 changed
nothing (precision@3 0.928, recall 0.865 with and without); a looser gate bought recall
0.887 with precision 0.906. A static model is lexical: it rates "dog days" close to dogs
and a first wetsuit far from surfing, the opposite of what the taxonomy cannot already
do. The issue's own figures agree (a "keywords or embedding above 0.45" hybrid:
precision@3 0.870). Shipping it would add a vector per article at ingest (a migration)
and a 165 MB extra for no held-out gain.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

from pipeline.models import Article, TopicProfile

_TOKEN_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)
MAX_TERM = 5  # the longest taxonomy phrase, in words
# Bump when the scoring below changes: stored profiles with another version are recomputed.
ALGORITHM = "p5"

# What each kind of evidence is worth. A strong word (a name, a named thing: "wetsuit",
# "fairway", "beagle") says on its own what a story is about; a weak one ("trail",
# "court") only backs other evidence up.
STRONG_TITLE, STRONG_TEXT = 1.5, 1.0
WEAK_TITLE, WEAK_TEXT = 0.5, 0.35
REPEAT = 0.2  # per further mention of a word already counted, up to MAX_REPEAT
MAX_REPEAT = 0.6
WEAK_ONLY_CAP = 1.2  # weak words alone stay below the interest threshold ...
WEAK_ONLY_ENOUGH = 4  # ... unless this many different ones agree
TAG_NAME, TAG_TERM = 3.0, 1.5  # the entry's own category names the topic / a strong word
AGAINST_FACTOR = 0.4  # another subject's context words present (a cinema for theatre)
BUSINESS_FACTOR = 0.25  # a company or stock-market story about the hobby's trade
BUSINESS_WORDS = 2  # distinct business words that make a story business news
RELATED = 0.4  # a story about a narrower topic (youth hockey) counts this much for the
# broader one (hockey): a peewee tournament is not NHL news
COVERED = 1.0  # a story about a triathlon is as much about swimming, cycling and running
MINOR_SHARE, MINOR_FACTOR = 0.5, 0.7  # a topic far behind the story's main one is a
# passing mention (a brewery as the venue of an open mic): it counts this much less
HOBBY_FEED_TOP = 0.5  # a hobby feed's untagged story: its clear main subject counts this
# much more (what a hobby feed's story is mainly about is what it is about)
MAIN_SUBJECT = "; the main subject of a hobby feed's story"
LEAN = 0.6  # a story on a topic the interest leans to ("hockey dad": the pro game) counts
# this much: it reaches the section when strong, below the stories on the topic itself
KEEP = 0.3  # smallest score stored (near misses are shown by `plan --explain`)
KEEP_TOPICS = 12


@lru_cache(maxsize=100_000)
def fold(word: str) -> str:
    """Lower-case, drop a possessive and fold a plural: "Golfers" -> "golfer", "Lee's" ->
    "lee", "puppies" -> "puppy"; never strips -ing or -er (skates != skating)."""
    w = word.lower().removesuffix("'s").rstrip("'")
    if len(w) <= 3:
        return w
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith("sses"):
        return w[:-2]
    if w.endswith(("ches", "shes", "xes", "zes")):
        return w[:-2]
    if w.endswith("s") and not w.endswith(("ss", "us", "is", "ous")):
        return w[:-1]
    return w


def words(text: str) -> tuple[str, ...]:
    """The folded words of a text, in order."""
    return tuple(fold(t) for t in _TOKEN_RE.findall(text))


@dataclass(frozen=True)
class Topic:
    """One hobby of the taxonomy."""

    name: str
    names: frozenset[tuple[str, ...]]
    phrases: frozenset[tuple[str, ...]]
    strong: frozenset[tuple[str, ...]]
    terms: frozenset[tuple[str, ...]]
    not_: frozenset[tuple[str, ...]]
    against: frozenset[tuple[str, ...]]
    also: tuple[str, ...]
    parent: str
    own: tuple[str, ...] = ()  # the topic's name as words
    covers: tuple[str, ...] = ()
    leans: tuple[str, ...] = ()  # topics the interest stands for less (LEAN as much)


@dataclass(frozen=True)
class Taxonomy:
    """The loaded taxonomy with the indexes profiling and interest parsing use."""

    version: str
    topics: dict[str, Topic]
    filler: frozenset[str]
    business: frozenset[tuple[str, ...]]
    evidence: dict[tuple[str, ...], tuple[tuple[str, bool], ...]]  # phrase -> (topic, strong)
    masks: dict[tuple[str, ...], tuple[str, ...]]  # "not" phrase -> topics it masks
    called: dict[tuple[str, ...], tuple[str, ...]]  # typed name or phrase -> topics
    named: dict[tuple[str, ...], tuple[str, ...]]  # strong word -> topics ("beagle": dogs)
    vocabulary: frozenset[str]  # every word the taxonomy knows
    # first word -> the longest phrase starting with it, per index, so a scan tries only
    # the lengths that can match
    starts: dict[str, dict[str, int]]
    context: dict[tuple[str, ...], tuple]  # every "against" and business phrase
    name_words: frozenset[str]  # the words of the topics' names and typed phrases
    place: frozenset[str] = frozenset()  # words that end a place name ("Loon Lake")
    broad: frozenset[str] = frozenset()  # umbrella topics ("sports"): never a rival subject
    company: frozenset[str] = frozenset()  # who an interest is shared with ("kids"): filler,
    # except inside a typed phrase ("kid hockey")


def _phrases(items: Iterable[str]) -> frozenset[tuple[str, ...]]:
    return frozenset(p for p in (words(str(i)) for i in items) if p)


def build(doc: dict, version: str) -> Taxonomy:
    """A Taxonomy from the parsed YAML document."""
    topics: dict[str, Topic] = {}
    evidence: dict[tuple[str, ...], list[tuple[str, bool]]] = {}
    masks: dict[tuple[str, ...], list[str]] = {}
    called: dict[tuple[str, ...], list[str]] = {}
    for name, spec in doc["topics"].items():
        t = Topic(name, _phrases([name, *spec.get("names", ())]),
                  _phrases(spec.get("phrases", ())), _phrases(spec.get("strong", ())),
                  _phrases(spec.get("terms", ())), _phrases(spec.get("not", ())),
                  _phrases(spec.get("against", ())), tuple(spec.get("also", ())),
                  str(spec.get("parent", "") or ""), words(name),
                  tuple(spec.get("covers", ())), tuple(spec.get("leans", ())))
        topics[name] = t
        for p in t.strong:
            evidence.setdefault(p, []).append((name, True))
        for p in (t.terms | t.names) - t.strong:
            evidence.setdefault(p, []).append((name, False))
        for p in t.not_:
            masks.setdefault(p, []).append(name)
        for p in t.names | t.phrases:
            called.setdefault(p, []).append(name)
    vocab = {w for d in (evidence, masks, called) for p in d for w in p}
    business = _phrases(doc.get("business", ()))
    context: dict[tuple[str, ...], tuple] = dict.fromkeys(business, ())
    context.update((p, ()) for t in topics.values() for p in t.against)
    return Taxonomy(version, topics, frozenset(fold(w) for w in doc.get("filler", ())),
                    business,
                    {k: tuple(v) for k, v in evidence.items()},
                    {k: tuple(v) for k, v in masks.items()},
                    {k: tuple(dict.fromkeys(v)) for k, v in called.items()},
                    {p: tuple(dict.fromkeys(t for t, strong in ts if strong))
                     for p, ts in evidence.items() if any(strong for _, strong in ts)},
                    frozenset(vocab), _starts(evidence=evidence, masks=masks, context=context),
                    context, frozenset(w for p in called for w in p),
                    frozenset(fold(str(w)) for w in doc.get("place", ())),
                    frozenset(doc.get("broad", ())),
                    frozenset(fold(str(w)) for w in doc.get("company", ())))


@lru_cache(maxsize=1)
def load() -> Taxonomy:
    """The taxonomy shipped in the package, parsed once per process."""
    raw = resources.files("pipeline.matching").joinpath("data/taxonomy.yaml").read_bytes()
    version = ALGORITHM + ":" + hashlib.sha256(raw).hexdigest()[:12]
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # 10x faster where built
    return build(yaml.load(raw, Loader=loader), version)


def _starts(**indexes: Mapping[tuple[str, ...], object]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for name, index in indexes.items():
        starts: dict[str, int] = {}
        for p in index:
            starts[p[0]] = max(starts.get(p[0], 0), len(p))
        out[name] = starts
    return out


def _spans(tokens: tuple[str, ...], index: dict[tuple[str, ...], tuple],
           starts: dict[str, int]) -> Iterable[tuple[int, int, tuple[str, ...]]]:
    """(start, end, phrase) for every indexed phrase in tokens, longest first per start."""
    n = len(tokens)
    for i in range(n):
        longest = starts.get(tokens[i], 0)
        for size in range(min(longest, n - i), 0, -1):
            g = tokens[i:i + size]
            if g in index:
                yield i, i + size, g


@dataclass
class _Hits:
    """Evidence gathered for one topic in one article."""

    strong: dict[tuple[str, ...], int]  # phrase -> mentions
    weak: dict[tuple[str, ...], int]
    title: set[tuple[str, ...]]


def _place_names(text: str, tax: Taxonomy) -> set[int]:
    """Positions of capitalised words that name a place with the word after them ("Loon
    Lake", "Eagle Bluff"): the bird or the fish is not there. A run that is itself
    evidence ("Dog Park", "Ski Hill" in a title-case headline) is left alone."""
    raw = _TOKEN_RE.findall(text)
    out: set[int] = set()
    for i in range(1, len(raw)):
        if fold(raw[i]) not in tax.place or not raw[i][:1].isupper():
            continue
        j = i
        while j > 0 and i - j < 2 and raw[j - 1][:1].isupper():
            j -= 1
        run = tuple(fold(w) for w in raw[j:i + 1])
        if j < i and not any(run[k:] in tax.evidence for k in range(len(run) - 1)):
            out.update(range(j, i))
    return out | _team_names(raw, tax)


def _team_names(raw: list[str], tax: Taxonomy) -> set[int]:
    """Positions of a capitalised plural after another capitalised word in sentence-case
    text ("the Hillcrest Hawks", "Calder Kings"): a team's name, not the bird or the
    animal. Title-case headlines say nothing about names and are left alone."""
    caps = [w[:1].isupper() for w in raw]
    if len(raw) < 3 or sum(caps) * 2 > len(raw):
        return set()
    out: set[int] = set()
    for i in range(1, len(raw)):
        w = raw[i]
        if caps[i] and caps[i - 1] and w.endswith("s") and fold(w) != w.lower() and \
                (raw[i - 1].lower(), fold(w)) not in tax.evidence:
            out.add(i)
    return out


def _gather(tax: Taxonomy, fields: tuple[tuple[str, ...], ...],
            places: tuple[set[int], ...] = ()) -> dict[str, _Hits]:
    """Every topic's evidence words in the title (fields[0]) and the text, with the words
    inside a ruled-out phrase left out, and a longer phrase hiding the words inside it."""
    hits: dict[str, _Hits] = {}
    for field_no, tokens in enumerate(fields):
        masked: dict[str, set[int]] = {}
        for start, end, g in _spans(tokens, tax.masks, tax.starts["masks"]):
            for topic in tax.masks[g]:
                masked.setdefault(topic, set()).update(range(start, end))
        covered: dict[str, set[int]] = {}
        named = places[field_no] if places else set()
        for start, end, g in _spans(tokens, tax.evidence, tax.starts["evidence"]):
            span = range(start, end)
            if any(i in named for i in span):
                continue
            for topic, strong in tax.evidence[g]:
                taken = covered.setdefault(topic, set())
                mask = masked.get(topic, ())
                if any(i in mask or i in taken for i in span):
                    continue
                taken.update(span)
                h = hits.setdefault(topic, _Hits({}, {}, set()))
                # The hobby's own name in the headline is strong ("Snow closes schools").
                strong = strong or (field_no == 0 and g == tax.topics[topic].own)
                bucket = h.strong if strong else h.weak
                bucket[g] = bucket.get(g, 0) + 1
                if field_no == 0:
                    h.title.add(g)
    return hits


def _context(tax: Taxonomy, fields: tuple[tuple[str, ...], ...]) -> set[tuple[str, ...]]:
    """The "against" and business phrases present in any field."""
    return {g for tokens in fields
            for _, _, g in _spans(tokens, tax.context, tax.starts["context"])}


def _score(tax: Taxonomy, topic: str, h: _Hits, tagged: float, context: set,
           business: bool) -> tuple[float, str]:
    """One topic's score from its evidence, and the words that earned it."""
    score = 0.0
    repeats = 0
    for g, count in h.strong.items():
        score += STRONG_TITLE if g in h.title else STRONG_TEXT
        repeats += count - 1
    for g, count in h.weak.items():
        score += WEAK_TITLE if g in h.title else WEAK_TEXT
        repeats += count - 1
    score += min(MAX_REPEAT, REPEAT * repeats)
    if not h.strong and len(h.weak) < WEAK_ONLY_ENOUGH:
        score = min(score, WEAK_ONLY_CAP)
    shown = sorted(h.strong, key=lambda g: (g not in h.title, -h.strong[g], g))
    shown += sorted(h.weak, key=lambda g: (g not in h.title, -h.weak[g], g))
    how = ", ".join(f"'{' '.join(g)}'" for g in shown[:3])
    notes = []
    if not tagged:
        against = tax.topics[topic].against & context
        if against and len(h.strong) < 2:
            score *= AGAINST_FACTOR
            notes.append(f"but '{' '.join(min(against))}' suggests another subject")
        if business:
            score *= BUSINESS_FACTOR
            notes.append("but it reads as business news")
    if tagged:
        score += tagged
        how = ("tagged by its source" + (f"; {how}" if how else ""))
    return score, "; ".join([how, *notes]) if notes else how


def profile(article: Article, tax: Taxonomy | None = None) -> TopicProfile:
    """What one article is about, by the taxonomy: (topic, score, evidence), best first."""
    tax = tax or load()
    title, text = words(article.title), words(article.summary_text)
    hits = _gather(tax, (title, text), (_place_names(article.title, tax),
                                        _place_names(article.summary_text, tax)))
    tags = [words(t) for t in article.topics]
    tag_score: dict[str, float] = {}
    for tag in tags:
        for topic in tax.called.get(tag, ()):
            tag_score[topic] = TAG_NAME
        for topic, strong in tax.evidence.get(tag, ()):
            if strong:
                tag_score[topic] = max(tag_score.get(topic, 0.0), TAG_TERM)
    context = _context(tax, (title, text))
    business = len(context & tax.business) >= BUSINESS_WORDS
    found: dict[str, tuple[float, str]] = {}
    for topic in set(hits) | set(tag_score):
        h = hits.get(topic) or _Hits({}, {}, set())
        found[topic] = _score(tax, topic, h, tag_score.get(topic, 0.0), context, business)
    for topic, (score, how) in list(found.items()):
        t = tax.topics[topic]
        # A story about one leg of a triathlon (the club's pool sessions) is not about
        # the other two: with evidence for some of the covered topics, only those.
        covers = [c for c in t.covers if c in hits] or t.covers
        for other, share in [(t.parent, RELATED)] * bool(t.parent) + \
                [(c, COVERED) for c in covers]:
            related = score * share
            if related > found.get(other, (0.0, ""))[0]:
                found[other] = (related, f"about {topic}: {how}")
    top = max((score for score, _ in found.values()), default=0.0)
    if article.kind == "hobby" and not tags and not business:
        found = _main_subject(tax, found, hits, top)
    scored = []
    for topic, (score, how) in found.items():
        # A subject the headline names with a strong word is not a passing mention
        # ("Dude ranch vacations", "Open mic night moves to the brewery").
        headline = topic in hits and any(g in hits[topic].title and _headline_subject(title, g)
                                         for g in hits[topic].strong)
        if score < MINOR_SHARE * top and topic not in tag_score and not headline:
            score *= MINOR_FACTOR
        if score >= KEEP:
            scored.append((topic, round(score, 3), how))
    scored.sort(key=lambda t: (-t[1], t[0]))
    return TopicProfile(tax.version, tuple(scored[:KEEP_TOPICS]), business)


def named_phrases(article: Article, tax: Taxonomy) -> frozenset[str]:
    """Topics the article names by a strong phrase of two words or more ("golf club",
    "boat slip"), outside the phrases that rule a sense out: no figure of speech."""
    hits = _gather(tax, (words(article.title), words(article.summary_text)))
    return frozenset(t for t, h in hits.items() if any(len(g) > 1 for g in h.strong))


VENUE = frozenset({"at", "in", "inside", "into", "to", "near", "beside", "behind"})


def _headline_subject(title: tuple[str, ...], g: tuple[str, ...]) -> bool:
    """True unless the phrase names where the story happens ("opens inside the bookshop",
    "moves to the brewery"): a place after a preposition is a venue, not a subject."""
    n = len(g)
    for i in range(len(title) - n + 1):
        if title[i:i + n] == g:
            before = title[max(0, i - 3):i]
            if not any(w in VENUE for w in before):
                return True
    return False


def _main_subject(tax: Taxonomy, found: dict[str, tuple[float, str]],
                  hits: dict[str, _Hits], top: float) -> dict[str, tuple[float, str]]:
    """A hobby feed's untagged story is about its one clear main subject: that topic, if a
    strong word backs it and no other topic comes close, counts HOBBY_FEED_TOP more.
    Umbrella topics ("sports") neither rival it nor take the bonus."""
    narrow = {t: v for t, v in found.items() if t not in tax.broad}
    top = max((score for score, _ in narrow.values()), default=0.0)
    best = [t for t, (score, _) in narrow.items() if score >= top - 1e-9]
    if len(best) != 1 or top < STRONG_TEXT:
        return found
    main = best[0]
    rivals = [s for t, (s, _) in narrow.items() if t != main and not _related(t, main, found)]
    h = hits.get(main)
    if h is None or not h.strong or any(s > MINOR_SHARE * top for s in rivals):
        return found
    score, how = found[main]
    return {**found, main: (score + HOBBY_FEED_TOP, how + MAIN_SUBJECT)}


def _related(topic: str, main: str, found: dict[str, tuple[float, str]]) -> bool:
    """True when topic's score was derived from main (a parent or a covered topic)."""
    return found[topic][1].startswith(f"about {main}:")
