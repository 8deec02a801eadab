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
