"""Text analysis for matching: tokens, a light English stemmer and phrase n-grams."""
from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

_TOKEN_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)
_VOWELS = set("aeiouy")
MAX_NGRAM = 3  # interests and neighbourhood names are at most three words


def _vowel_groups(word: str) -> int:
    """Porter's measure, roughly: how many runs of vowels the stem has."""
    groups, prev = 0, False
    for ch in word:
        now = ch in _VOWELS
        groups += now and not prev
        prev = now
    return groups


def _cvc(word: str) -> bool:
    """Consonant-vowel-consonant ending, last not w/x/y (hop, hik, bak)."""
    if len(word) < 3:
        return False
    a, b, c = word[-3], word[-2], word[-1]
    return a not in _VOWELS and b in _VOWELS and c not in _VOWELS and c not in "wxy"


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """Fold plurals and -ing/-ed/-er forms onto one stem: gardens, gardening, gardener ->
    garden; golfers -> golf; hiking, hikes -> hike; running -> run; but art != start."""
    w = word.lower().replace("'s", "")
    if len(w) <= 3:
        return w
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith(("sses", "xes", "ches", "shes", "zes")):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    for suffix in ("ing", "er", "ed"):
        rest = w[: -len(suffix)]
        if w.endswith(suffix) and len(rest) >= 3 and _VOWELS & set(rest):
            w = rest
            if w[-1] == w[-2] and w[-1] not in _VOWELS and w[-1] not in "sz":
                w = w[:-1]  # running -> run, travelling -> travel
            elif _vowel_groups(w) == 1 and (_cvc(w) or (w[-1] == "l" and w[-2] not in _VOWELS)):
                # Only short stems lost an 'e': hiking -> hike, cycling -> cycle, but
                # gardening -> garden, not gardene.
                w += "e"
            break
    return w


def stems(text: str) -> list[str]:
    """The stems of every word in `text`, in order."""
    return [stem(t) for t in _TOKEN_RE.findall(text.lower())]


def phrase(text: str) -> tuple[str, ...]:
    """An interest or place name as a tuple of stems, for n-gram lookup."""
    return tuple(stems(text))


def ngrams(tokens: list[str], n: int = MAX_NGRAM) -> frozenset[tuple[str, ...]]:
    """Every run of 1..n consecutive stems."""
    out: set[tuple[str, ...]] = set()
    for size in range(1, n + 1):
        for i in range(len(tokens) - size + 1):
            out.add(tuple(tokens[i:i + size]))
    return frozenset(out)


def ngram_counts(tokens: list[str], n: int = MAX_NGRAM) -> Counter[tuple[str, ...]]:
    """How often each run of 1..n consecutive stems occurs."""
    return Counter(tuple(tokens[i:i + size]) for size in range(1, n + 1)
                   for i in range(len(tokens) - size + 1))


# Words that carry no subject, left out of headline signatures so "The library adds hours"
# and "Library adds Sunday hours" compare on what they say.
STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in", "into",
     "is", "it", "its", "of", "on", "or", "our", "over", "the", "their", "this", "to", "up", "was",
     "were", "will", "with", "your", "you", "new", "now", "after", "before", "more"])
# A bare word followed by one of these is being used as a verb ("run the numbers",
# "garden your way out", "art" is never one): that use says nothing about the hobby.
_OBJECT_WORDS = frozenset(["the", "a", "an", "your", "our", "their", "his", "her", "its", "some",
                           "this", "these", "those", "out"])
VERB_MARK = "~v"


def subject_stems(text: str) -> list[str]:
    """Stems for matching interests: like stems(), but a bare word used as a verb with an
    object ("run the numbers", "cook up a plan") is marked so it matches no interest."""
    words = _TOKEN_RE.findall(text.lower())
    out = []
    for i, w in enumerate(words):
        s = stem(w)
        nxt = words[i + 1] if i + 1 < len(words) else ""
        # Only the bare form counts as a verb here: "running the trail" and "runners the"
        # are rare, while "run the numbers" and "cook a plan" are common.
        if nxt in _OBJECT_WORDS and w in (s, s + "s"):
            s += VERB_MARK
        out.append(s)
    return out


def proper_ngrams(text: str, n: int = MAX_NGRAM) -> Counter[tuple[str, ...]]:
    """Runs of 1..n capitalised words, lower-cased, with counts: place names are proper
    nouns, so "a cedar grove of old trees" does not name Cedar Grove."""
    words = _TOKEN_RE.findall(text)
    out: Counter[tuple[str, ...]] = Counter()
    for i in range(len(words)):
        for size in range(1, n + 1):
            run = words[i:i + size]
            if len(run) < size or not run[-1][:1].isupper():
                break
            if not run[0][:1].isupper():
                break
            out[tuple(w.lower() for w in run)] += 1
    return out


def title_signature(title: str) -> frozenset[str]:
    """The content stems of a headline, for spotting the same story told twice."""
    return frozenset(s for s in stems(title) if s not in STOPWORDS)


def story_words(title: str, summary: str, limit: int = 80) -> frozenset[str]:
    """The content stems of a headline and the start of its summary, for spotting one
    story retold in other words."""
    words = stems(title) + stems(summary)[:limit]
    return frozenset(s for s in words if s not in STOPWORDS and len(s) > 1)


def similar_titles(a: frozenset[str], b: frozenset[str], threshold: float = 0.6) -> bool:
    """True when two headline signatures share most of their words (Jaccard)."""
    if len(a) < 3 or len(b) < 3:
        return a == b and bool(a)
    if min(len(a), len(b)) < threshold * max(len(a), len(b)):
        return False  # even full overlap could not reach the threshold
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter) >= threshold


# Built-in synonyms: words that say a story is about an interest without naming it. The
# `synonyms:` map in campaigns.yaml adds to these (it never removes one). Keys and words
# are matched by stem, so "gardens" finds gardening's list and "trails" finds "trail".
# Deliberately left out: words with a common second meaning in a homeowner's inbox
# ("painting" a house, "bulbs" for lights, "band" of tax, "court" of law).
DEFAULT_SYNONYMS: dict[str, tuple[str, ...]] = {
    "gardening": ("gardener", "raised bed", "compost", "seedling", "perennial", "pruning",
                  "seed swap"),
    "golf": ("golfer", "fairway", "putting green", "tee time", "driving range"),
    "hiking": ("hiker", "trailhead", "hiking trail"),
    "running": ("runner", "jogging", "marathon", "half marathon", "5k"),
    "cycling": ("cyclist", "bicycle", "bike", "bike lane"),
    "cooking": ("recipe", "chef", "cooking class"),
    "craft beer": ("brewery", "taproom", "brewer", "ipa"),
    "wine": ("winery", "vineyard", "sommelier", "winemaker"),
    "art": ("gallery", "artist", "mural", "sculpture", "exhibit", "exhibition"),
    "music": ("concert", "orchestra", "choir", "jazz", "musician"),
    "schools": ("student", "classroom", "teacher", "kindergarten", "school board"),
    "dogs": ("dog park", "puppy", "off-leash"),
    "kayaking": ("kayak", "paddler", "paddling", "canoe"),
    "birdwatching": ("birding", "birder", "bird count", "songbird"),
    "photography": ("photographer", "camera"),
    "reading": ("book club", "novel", "author"),
    "theater": ("theatre", "playhouse", "stage production"),
    "volunteering": ("volunteer", "food bank", "food drive"),
    "history": ("historic", "historical society", "heritage"),
    "pickleball": ("pickleball court",),
}


def place_key(name: str) -> tuple[str, ...]:
    """A place name as the lower-cased word tuple proper_ngrams() produces."""
    return tuple(w.lower() for w in _TOKEN_RE.findall(name))


def fixed_compound(texts: tuple[tuple[str, ...], ...], terms: set[tuple[str, ...]]
                   ) -> str:
    """The noun that every occurrence of `terms` modifies, if any. English compounds put
    their head last, so "running water" and "cooking oil", said again and again, are about
    water and oil. Returns "" for a single occurrence, or when the following word varies.

    (A modifier in front, as in "half marathon" or "community garden", leaves the
    interest as the head, so it is not checked.)
    """
    following: set[str] = set()
    count = 0
    own = {w for p in terms for w in p}
    for tokens in texts:
        for p in terms:
            n = len(p)
            for i in range(len(tokens) - n + 1):
                if tokens[i:i + n] == p:
                    count += 1
                    following.add(tokens[i + n] if i + n < len(tokens) else "")
    if count < 2 or len(following) != 1:
        return ""
    word = next(iter(following))
    return word if word and word not in STOPWORDS and word not in own else ""
