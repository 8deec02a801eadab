"""The whole ingester over feedparser's test corpus (RSS, Atom, RDF, CDF, ill-formed
documents, odd encodings): no crash, nothing unsafe stored.

The corpus is not part of Sphere; it lives beside the clone at
../shared/reference/feedparser-corpus, and this test skips when it is absent. Run this
file directly for counts: `python tests/test_ingest_corpus.py`."""
from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.feeds.ingest import ingest  # noqa: E402
from pipeline.models import Source  # noqa: E402
from pipeline.state.store import Store  # noqa: E402
from tests.test_ingest import unsafe_parts  # noqa: E402

CORPUS = REPO / ".." / "shared" / "reference" / "feedparser-corpus"
NOW = dt.datetime(2026, 11, 22, 18, 0, tzinfo=dt.UTC)


def run_corpus(db: Path) -> dict[str, object]:
    """Ingest every corpus file as a local source; counts and the problems found."""
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "LICENSE")
    sources = tuple(Source(name=f"c{i}", url=str(p), kind="economy", root=str(CORPUS))
                    for i, p in enumerate(files))
    store = Store.open(db)
    summary = ingest(sources, store, NOW)
    by_name = {s.name: s for s in sources}
    crashes = [f"{by_name[n].url}: {e}" for n, e in summary.failed if "crashed" in e]
    unsafe = [f"{by_name[a.source].url}: {a.id}: {unsafe_parts(a)}"
              for a in store.articles() if unsafe_parts(a)]
    return {"files": len(files), "fetched": summary.fetched, "failed": len(summary.failed),
            "articles": store.article_count(), "crashes": crashes, "unsafe": unsafe}


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"feedparser corpus not found at {CORPUS}")
def test_every_corpus_file_ingests_without_crash_or_unsafe_html(tmp_path: Path) -> None:
    result = run_corpus(tmp_path / "corpus.db")
    assert result["files"] > 500  # the corpus really was read
    assert result["articles"] > 150
    assert result["crashes"] == []
    assert result["unsafe"] == []


if __name__ == "__main__":
    import tempfile
    if not CORPUS.is_dir():
        sys.exit(f"no corpus at {CORPUS}")
    with tempfile.TemporaryDirectory() as tmp:
        r = run_corpus(Path(tmp) / "corpus.db")
    print(f"files {r['files']}, fed {r['fetched']}, refused as not a feed or empty "
          f"{r['failed']}, articles stored {r['articles']}, crashes {len(r['crashes'])}, "
          f"unsafe {len(r['unsafe'])}")
    for line in [*r["crashes"], *r["unsafe"]][:40]:
        print("  " + line)
