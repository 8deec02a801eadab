"""Same-story detection: which articles tell one story, whichever feed, URL or words.

Ingest clusters by canonical URL; `stories` adds near-identical headlines and stories
retold under another headline, so never-repeat and one-telling-per-email hold for them.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

from pipeline.matching.text import similar_titles, story_words, title_signature
from pipeline.models import Article

# Two stories are one when the rare words they share carry this share of the weight of
# all their words (rarity-weighted Jaccard). On both evaluation sets retellings score
# 0.40-0.63 and different stories at most 0.26.
RETOLD_SIMILARITY = 0.35
RETOLD_RARE_MIN, RETOLD_RARE_SHARE = 20, 50  # rare: in at most max(20, 2%) of the stories
RETOLD_COMMON_SHARE = 10  # common: in more than max(20, 10%) of them; never compared
RETOLD_SHARED_WORDS = 3


def stories(articles: list[Article]) -> dict[str, str]:
    """Article id and cluster -> story key; near-identical headlines, or a headline and
    summary that tell the same thing in other words, join one story.

    Ingest clusters by canonical URL, so the same press release run by two feeds under
    two URLs needs the headline comparison as well, and a story retold under another
    headline needs the summaries.
    """
    parent = list(range(len(articles)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    by_cluster: dict[str, int] = {}
    sigs = [title_signature(a.title) for a in articles]
    postings: dict[str, list[int]] = {}
    for i, (a, sig) in enumerate(zip(articles, sigs, strict=True)):
        if a.cluster:
            join(i, by_cluster.setdefault(a.cluster, i))
        for word in sig:
            postings.setdefault(word, []).append(i)
    # Similar headlines share most words, so they share one of each other's rarest ones:
    # comparing only through those keeps this near-linear in the number of articles.
    for i, sig in enumerate(sigs):
        for word in sorted(sig, key=lambda w: (len(postings[w]), w))[:3]:
            for j in postings[word]:
                if j > i and root(i) != root(j) and similar_titles(sig, sigs[j]):
                    join(i, j)
    _join_retold(articles, join, root)
    out: dict[str, str] = {}
    for i, a in enumerate(articles):
        key = "story:" + articles[root(i)].id
        out[a.id] = key
        if a.cluster:
            out[a.cluster] = key
    return out


def _join_retold(articles: list[Article], join: Callable[[int, int], None],
                 root: Callable[[int], int]) -> None:
    """Join stories whose headline and summary share most of their rare words (weighted
    by rarity): "Front Street's old picture house will show movies again" and "Movie
    theater on Front Street to reopen as a cinema" tell one story."""
    words = [story_words(a.title, a.summary_text) for a in articles]
    df = Counter(w for t in words for w in t)
    total = len(articles)
    # A word in many stories ("council", "new") says nothing about which story this is:
    # only the others are compared.
    common = max(RETOLD_RARE_MIN, total // RETOLD_COMMON_SHARE)
    texts = [frozenset(w for w in t if df[w] <= common) for t in words]
    idf = {w: math.log(total / n) for w, n in df.items() if n <= common}
    # Candidates share one of their rarest words: near-linear in the number of stories.
    rare_cap = max(RETOLD_RARE_MIN, total // RETOLD_RARE_SHARE)
    postings: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        for w in t:
            if 1 < df[w] <= rare_cap:
                postings.setdefault(w, []).append(i)
    for i, t in enumerate(texts):
        rare = sorted((w for w in t if w in postings), key=lambda w: (df[w], w))[:4]
        for j in {j for w in rare for j in postings[w] if j > i}:
            if root(i) == root(j):
                continue
            both = t & texts[j]
            # Several shared words, not one place name two different stories mention.
            if len(both) >= RETOLD_SHARED_WORDS and sum(idf[w] for w in both) >= \
                    RETOLD_SIMILARITY * sum(idf[w] for w in t | texts[j]):
                join(i, j)
