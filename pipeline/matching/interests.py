"""Interests as people type them into a CRM, understood (pure functions).

"loves golf" -> golf; "big hockey fan" -> hockey; "has a beagle" -> dogs (a named thing);
"hockey dad" -> youth hockey (a phrase); "does triathlons" -> triathlon, running, cycling,
swimming; "quiltng" -> quilting (a typo, against the taxonomy's words and the articles').
What the taxonomy does not know stays words to look for ("dinner parties").
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pipeline.matching.taxonomy import MAX_TERM, Taxonomy, fold, words

MIN_TYPO_LEN = 5  # shorter words are too easily another word one letter away


@dataclass(frozen=True)
class Understood:
    """How one typed interest was read."""

    typed: str
    topics: tuple[str, ...]  # taxonomy topics, the main one first; () when unknown
    words: str  # the interest without filler, typos fixed: what free-text matching seeks
    fixes: tuple[tuple[str, str], ...] = ()  # (as typed, as read) spelling fixes

    @property
    def label(self) -> str:
        """"'loves golf' -> golf", for `plan --explain`."""
        read = ", ".join(self.topics) if self.topics else f"the words '{self.words}'"
        fixed = "; ".join(f"'{a}' read as '{b}'" for a, b in self.fixes)
        return f"'{self.typed}' -> {read}" + (f" (spelling: {fixed})" if fixed else "")


def _distance(a: str, b: str, limit: int) -> int:
    """Edit distance with transpositions (optimal string alignment), or limit + 1."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


def correct(word: str, vocabularies: Iterable[frozenset[str]]) -> str:
    """The known word a typo most likely meant, or the word itself: the nearest within one
    edit (two for words of eight letters or more), the taxonomy's words tried first."""
    if len(word) < MIN_TYPO_LEN or not word.isalpha():
        return word
    limit = 1 if len(word) < 8 else 2
    vocabularies = list(vocabularies)
    if any(word in vocab for vocab in vocabularies):
        return word
    for vocab in vocabularies:
        best: tuple[int, str] | None = None
        for known in vocab:
            if abs(len(known) - len(word)) > limit or (known[:1] != word[:1] and \
                    known[-1:] != word[-1:]):
                continue
            d = _distance(word, known, limit)
            if d > 1 and known[:2] != word[:2]:
                continue  # two edits away and another start: another word ("restoring"
                # is not "mentoring")
            if d <= limit and (best is None or (d, known) < best):
                best = (d, known)
        if best:
            return best[1]
    return word


def _lookup(tokens: tuple[str, ...], *indexes: dict[tuple[str, ...], tuple[str, ...]]
            ) -> tuple[str, ...]:
    """Topics named by the longest phrase in tokens found in an index (the earlier index
    first for phrases of one length, the earliest phrase first)."""
    for size in range(min(MAX_TERM, len(tokens)), 0, -1):
        for index in indexes:
            found: list[str] = []
            for i in range(len(tokens) - size + 1):
                found.extend(index.get(tokens[i:i + size], ()))
            if found:
                return tuple(dict.fromkeys(found))
    return ()


def _expand(tax: Taxonomy, topics: tuple[str, ...]) -> tuple[str, ...]:
    """The topics plus what they stand for ("triathlon" -> running, cycling, swimming)."""
    out = list(topics)
    for t in topics:
        out.extend(tax.topics[t].also)
    for t in topics:
        out.extend(tax.topics[t].leans)
    return tuple(dict.fromkeys(out))


def understand(typed: str, tax: Taxonomy, known: Callable[[str], bool] | None = None,
               article_words: frozenset[str] = frozenset()) -> Understood:
    """Read one interest as typed: its taxonomy topics, or the words to look for."""
    raw = words(typed)
    fixes = []
    tokens = []
    for w in raw:
        if w in tax.vocabulary or w in tax.filler or (known and known(w)):
            tokens.append(w)
            continue
        fixed = correct(w, (tax.name_words, tax.vocabulary, article_words))
        if fixed != w:
            fixes.append((w, fixed))
        tokens.append(fixed)
    toks = tuple(tokens)
    core = tuple(w for w in toks if w not in tax.filler and w not in tax.company) or toks
    # Who the hobby is shared with counts inside a typed phrase ("kid plays hockey" reads
    # as "kid hockey") and is dropped otherwise ("camping w/ kids" is camping).
    with_company = tuple(w for w in toks if w not in tax.filler)
    # The whole phrase, then the longest name, typed phrase or named thing in it
    # ("volunteers at food bank": "food bank" before "food").
    topics = tax.called.get(toks) or tax.called.get(with_company) or tax.called.get(core) or \
        _lookup(toks, tax.called, {} if core != toks and len(core) < 2 else tax.named) or \
        _lookup(core, tax.named)
    return Understood(typed, _expand(tax, tuple(topics)), " ".join(core), tuple(fixes))


def fold_phrase(text: str) -> str:
    """A phrase with its words folded, for comparing interests typed differently."""
    return " ".join(fold(w) for w in words(text))
