"""Parsing, sanitising, identity and clustering of feed entries (no network: the bytes
come from tests/fixtures/feeds/, and the store is a real SQLite file)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path

import pytest

from pipeline.feeds.ingest import (
    ClusterIndex,
    ParsedFeed,
    canonical_url,
    identity_key,
    ingest,
    parse_feed,
    title_words,
)
from pipeline.feeds.sanitise import ALLOWED_TAGS, clean_html, is_tracking_image, safe_url, to_text
from pipeline.models import Article, Source
from pipeline.state.store import Store
from tests.conftest import NOW, REPO

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
_TAG_RE = re.compile(r"<\s*(/?)\s*([a-zA-Z][a-zA-Z0-9:-]*)([^>]*)>")
_ATTR_RE = re.compile(r"""([a-zA-Z_:][-a-zA-Z0-9_:.]*)\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)""")
_SCRIPTY = re.compile(r"(?:java|vb)script:|data:text|\bon[a-z]+\s*=", re.I)


def unsafe_parts(article: Article) -> list[str]:
    """Every way the stored article could carry active content; [] when it is safe."""
    problems = []
    for m in _TAG_RE.finditer(article.summary_html):
        _, tag, attrs = m.groups()
        if tag.lower() not in ALLOWED_TAGS:
            problems.append(f"tag <{tag}>")
        for name, value in _ATTR_RE.findall(attrs):
            value = value.strip("\"'")
            if tag.lower() != "a" or name.lower() not in ("href", "title", "rel"):
                problems.append(f"attribute {name} on <{tag}>")
            elif name.lower() == "href" and not re.match(r"(?:https?://|mailto:|#$)", value):
                problems.append(f"href {value!r}")
    if "<" in _TAG_RE.sub("", article.summary_html):
        problems.append("a '<' outside any tag in summary_html")
    if _SCRIPTY.search(article.summary_html):
        problems.append("script-like text inside markup")
    for name in ("title", "summary_text"):
        if re.search(r"<[a-zA-Z/!?]", getattr(article, name)):
            problems.append(f"tag-like text in {name}")
    for name in ("url", "image_url"):
        value = getattr(article, name)
        if value and (not re.match(r"https?://", value) or _SCRIPTY.search(value)
                      or re.search(r"[\s<>\"]", value)):
            problems.append(f"{name} {value!r}")
    return problems


def _parse(name: str, url: str = "https://feeds.test/feed.xml", kind: str = "market",
           headers: dict[str, str] | None = None) -> list[Article]:
    source = Source(name=Path(name).stem, url=url, kind=kind)
    parsed = parse_feed(source, (FEEDS / name).read_bytes(), headers, NOW)
    assert not parsed.error
    return list(parsed.articles)


def test_hostile_feed_is_defused_but_keeps_its_words_and_lead_image() -> None:
    first, second = _parse("hostile.xml")
    for article in (first, second):
        assert unsafe_parts(article) == [], article
    # The words survive, the active parts do not.
    assert first.title == "Scripted market report"
    assert "Prices rose in" in first.summary_text and "Riverton" in first.summary_text
    assert "<b>Riverton</b>" in first.summary_html  # allowed markup kept, style dropped
    assert "alert" not in first.summary_text
    # Relative links resolved against the feed's address; script links neutralised.
    assert 'href="https://feeds.test/relative/story"' in first.summary_html
    assert first.url == "https://feeds.test/2026/11/scripted-report?utm_source=rss"
    assert second.url == ""  # a javascript: link is no link at all
    # The 1x1 thumbnail and the javascript: media are skipped for the real photo.
    assert first.image_url == "https://hostile.test/images/real-photo.jpg"
    assert second.image_url == ""  # only a beacon enclosure and a data: pixel


@pytest.mark.parametrize("fragment", [
    '<a href="javascript:alert(1)">x</a>', '<a href="  JAVASCRIPT:alert(1)">x</a>',
    '<img src=x onerror=alert(1)>', '<svg><script>alert(1)</script></svg>',
    '<iframe src="https://e.test"></iframe>', '<form action="https://e.test"><input></form>',
    '<a href="data:text/html,<script>alert(1)</script>">x</a>',
    '<p style="background:url(javascript:alert(1))">x</p>', '<object data="x.swf"></object>',
    '<scr<script>ipt>alert(1)</script>', '<a href="vbscript:x">x</a>',
    '<img src="https://t.test/p.gif" width="1" height="1">', '<base href="https://e.test/">',
])
def test_clean_html_leaves_nothing_that_runs(fragment: str) -> None:
    html = clean_html(fragment, "https://feeds.test/")
    article = Article("x", "s", "market", "", "t", html, "", None)
    assert unsafe_parts(article) == []
    assert "<img" not in html and "<script" not in html.lower()


def test_text_extraction_never_keeps_tags_even_when_escaped_twice() -> None:
    assert to_text("&amp;lt;script&amp;gt;alert(1)&amp;lt;/script&amp;gt; ok") == "ok"
    assert to_text("<p>one.</p><p>Two &amp; three</p>") == "one. Two & three"
    assert to_text("rates < 6% & rising") == "rates < 6% & rising"


def test_text_plain_is_escaped_and_xhtml_titles_read_as_text() -> None:
    plain, xhtml, bare = _parse("atom-xmlbase.xml")
    assert plain.title == "Rates < 6% & falling: what it means for buyers"
    assert plain.summary_html == ("<p>Plain text with a literal &lt;tag&gt; &amp; an "
                                  "ampersand.</p><p>Second paragraph.</p>")
    assert xhtml.title == "Garden club opens plots"
    # xml:base of the entry wins over the feed's for relative links and images.
    assert xhtml.url == "https://atom.test/blog/plots"
    assert 'href="https://atom.test/blog/signup"' in xhtml.summary_html
    assert xhtml.image_url == "https://atom.test/blog/img/plots.jpg"
    assert bare.url == "" and bare.title == "Entry without link or id"


def test_encodings_rdf_and_ill_formed_feeds_parse() -> None:
    (latin,) = _parse("latin1.xml")
    assert latin.title == "Crème brûlée au café de la gare"
    assert "Délicieux" in latin.summary_text
    assert latin.published == dt.datetime(2026, 11, 19, 8, tzinfo=dt.UTC)
    (rdf,) = _parse("rdf.xml")
    assert rdf.title == "Library extends weekend hours" and rdf.published is not None
    fish, bakery = _parse("illformed.xml")
    assert fish.title == "Fish & chips shop opens on Main"
    # Both items repeat one guid, so identity falls back to their links.
    assert fish.id != bakery.id
    source = Source("x", "https://feeds.test/x.xml", "market")
    assert "not a feed" in parse_feed(source, (FEEDS / "notafeed.html").read_bytes()).error


def test_broken_xml_with_nothing_readable_is_a_failure_not_an_empty_feed() -> None:
    source = Source("x", "https://feeds.test/x.xml", "market")
    broken = parse_feed(source, b"<rss><channel><item><title>Broken & bad")
    assert broken.articles == ()
    assert broken.error == ("malformed feed: not well-formed (invalid token); no entry "
                            "could be read from https://feeds.test/x.xml: open it to check "
                            "the url, or tell the feed's owner")
    # Cut off after its first item: broken, but what it has is read and it stays ok.
    cut = parse_feed(source, b"<rss version='2.0'><channel><title>t</title><item><title>"
                             b"Whole story</title><link>http://a.test/1</link></item>"
                             b"<item><title>Cu")
    assert [a.title for a in cut.articles] == ["Whole story"] and cut.error == ""
    # Well-formed and empty is a quiet week, even served with the wrong content type
    # (feedparser flags that as bozo too, but the document is fine).
    empty = b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title></channel></rss>"
    assert parse_feed(source, empty) == ParsedFeed(())
    assert parse_feed(source, empty, {"content-type": "text/plain"}) == ParsedFeed(())


def test_charset_from_the_http_header_is_used() -> None:
    body = ("<rss version='2.0'><channel><title>t</title><item><title>Caf\xe9 opens"
            "</title><link>http://a.test/1</link></item></channel></rss>").encode("cp1252")
    source = Source("x", "https://feeds.test/x.xml", "market")
    parsed = parse_feed(source, body, {"content-type": "application/rss+xml; charset=windows-1252"})
    assert parsed.articles[0].title == "Café opens"


def test_a_body_naming_a_local_file_is_not_read_from_disk(tmp_path: Path) -> None:
    secret = tmp_path / "secret.xml"
    secret.write_text("<rss version='2.0'><channel><item><title>LEAKED</title></item>"
                      "</channel></rss>")
    source = Source("x", "https://feeds.test/x.xml", "market")
    parsed = parse_feed(source, str(secret).encode())
    assert not any("LEAKED" in a.title for a in parsed.articles)


def test_long_fields_are_trimmed_and_future_dates_clamped() -> None:
    body = (f"<rss version='2.0'><channel><item><title>{'word ' * 100}</title>"
            f"<description>{'lorem ipsum ' * 400}</description><link>http://a.test/1</link>"
            "<pubDate>Tue, 01 Jan 2030 00:00:00 GMT</pubDate></item></channel></rss>").encode()
    (a,) = parse_feed(Source("x", "https://f.test/x", "market"), body, None, NOW).articles
    assert len(a.title) <= 200 and a.title.endswith("…")
    assert len(a.summary_text) <= 420 and len(a.summary_html) <= 4000
    assert a.published == NOW


def test_canonical_url_strips_tracking_and_normalises() -> None:
    assert canonical_url("HTTP://WWW.Example.COM:80/a/b/?utm_source=x&id=3&fbclid=y#frag") == \
        canonical_url("https://example.com/a/b?id=3")
    assert canonical_url("https://e.test/?b=2&a=1") == canonical_url("https://e.test?a=1&b=2")
    assert canonical_url("https://e.test/a") != canonical_url("https://e.test/b")


def test_identity_prefers_unique_guid_then_link_then_title_and_date() -> None:
    when = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    assert identity_key("g1", True, "https://a.test/x", "T", when) == "guid:g1"
    assert identity_key("g1", False, "https://a.test/x?utm_medium=rss", "T", when) == \
        "link:https://a.test/x"
    assert identity_key("", True, "", "T", when).startswith("hash:t|2026-11-01")
    assert identity_key("https://a.test/p?utm_source=z", True, "", "T", None) == \
        "guid:https://a.test/p"


def test_safe_url_and_tracking_images() -> None:
    assert safe_url("/x y", "https://a.test/feed") == "https://a.test/x%20y"
    for bad in ("javascript:alert(1)", "data:image/png;base64,AAAA", "ftp://a.test/x",
                'https://a.test/"onmouseover="x', "https://a.test/#javascript:x"):
        assert safe_url(bad, "https://a.test/") == "", bad
    assert is_tracking_image("https://a.test/photo.jpg", "1", "1")
    assert is_tracking_image("https://feeds.feedburner.com/~r/x/~4/abc")
    assert is_tracking_image("https://a.test/pixel.gif")
    assert not is_tracking_image("https://a.test/images/pixelated-art.jpg", "800", "600")


def test_near_duplicate_titles_from_other_sources_share_a_cluster() -> None:
    index = ClusterIndex()
    index.add("gazette", "https://g.test/1", "Riverton listings climb to a three-year high",
              "url:first")
    assert index.find("herald", "https://h.test/9",
                      "Riverton listings reach a three-year high") == "url:first"
    # The same link with tracking noise is the same story, whatever the title says.
    assert index.find("herald", "https://g.test/1?utm_source=h", "Totally different") == \
        "url:first"
    # Another story about Riverton listings is not the same story; nor is a series
    # title repeated by the same feed.
    assert index.find("herald", "https://h.test/2",
                      "Riverton listings: how to price your home this winter") is None
    assert index.find("gazette", "https://g.test/2",
                      "Riverton listings climb to a three-year high") is None
    assert title_words("The Listings of Riverton") == {"listing", "riverton"}


def test_sample_syndicated_pair_is_one_cluster_and_reingest_adds_nothing(
        project: Path, tmp_path: Path) -> None:
    from pipeline.config import load_config
    config = load_config(project)
    store = Store.open(tmp_path / "sphere.db")
    first = ingest(config.sources, store, NOW)
    assert (first.fetched, first.new, first.failed) == (10, 70, ())
    by_id = {a.id.split(":")[0] + a.url[-40:]: a for a in store.articles()}
    market = [a for a in store.articles() if "listings-three-year-high" in a.url]
    assert {a.source for a in market} == {"riverton-market-watch", "household-economy"}
    assert len({a.cluster for a in market}) == 1
    assert len(by_id) == 70
    again = ingest(config.sources, store, NOW + dt.timedelta(hours=1))
    assert (again.fetched, again.not_modified, again.new, again.updated) == (0, 10, 0, 0)
    assert store.article_count() == 70


def test_parsing_in_worker_processes_gives_the_same_articles(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 18: with many feeds, feedparser and sanitising run in processes (on threads
    # they shared one core). Same articles, same clusters, same counts as on threads.
    from concurrent.futures import ProcessPoolExecutor

    import pipeline.feeds.ingest as ingest_module
    from pipeline.config import load_config
    sources = load_config(project).sources
    threads = Store.open(tmp_path / "threads.db")
    on_threads = ingest(sources, threads, NOW)
    submitted: list[str] = []

    class Counting(ProcessPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
            submitted.append(args[0].name)
            return super().submit(fn, *args, **kwargs)

    monkeypatch.setattr(ingest_module, "PARSE_POOL_FROM", 1)
    monkeypatch.setattr(ingest_module, "ProcessPoolExecutor", Counting)
    procs = Store.open(tmp_path / "procs.db")
    in_processes = ingest(sources, procs, NOW)
    assert sorted(submitted) == sorted(s.name for s in sources)  # every parse went there
    assert (in_processes.fetched, in_processes.new, in_processes.failed) == \
        (on_threads.fetched, on_threads.new, on_threads.failed) == (10, 70, ())
    assert sorted(procs.articles(), key=lambda a: a.id) == \
        sorted(threads.articles(), key=lambda a: a.id)


def test_an_ingest_records_every_feed_in_one_commit(project: Path, tmp_path: Path) -> None:
    # Issue 18: a commit is an fsync; 500 feeds made 500 to 1,000 of them, most of a
    # re-run's time. Counted as SQLite statements, not seconds.
    from pipeline.config import load_config
    sources = load_config(project).sources
    store = Store.open(tmp_path / "sphere.db")
    commits: list[str] = []
    store.conn.set_trace_callback(
        lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None)
    cold = ingest(sources, store, NOW)
    assert (cold.fetched, cold.new) == (10, 70) and len(commits) == 1
    commits.clear()
    again = ingest(sources, store, NOW + dt.timedelta(hours=1))
    assert again.not_modified == 10 and len(commits) == 1
    assert store.article_count() == 70
    assert {s.source for s in store.feed_states()} == {s.name for s in sources}


def test_a_batch_is_all_or_nothing(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "sphere.db")
    with pytest.raises(RuntimeError), store.batch():
        store.record_feed_failure("a", NOW, "boom")
        raise RuntimeError("crash mid-batch")
    assert store.feed_states() == [] or all(s.source != "a" for s in store.feed_states())
    with store.batch():
        store.record_feed_failure("a", NOW, "boom")
    assert [s.source for s in store.feed_states()] == ["a"]


def test_cluster_assignment_compares_few_titles_for_thousands(monkeypatch) -> None:
    """Clustering 5,000 titles compares each with a bounded few candidates, not with
    every earlier title (12.5 million comparisons). Counted, not timed: wall time
    belongs in bench/, where a loaded machine cannot fail the suite."""
    import random

    from pipeline.feeds import ingest as ingest_module

    comparisons = 0

    class Words(frozenset):
        """Title words that count each comparison (an intersection) with another title."""

        def __and__(self, other):
            nonlocal comparisons
            comparisons += 1
            return frozenset.__and__(self, other)

        __rand__ = __and__

        def intersection(self, *others):
            nonlocal comparisons
            comparisons += len(others)
            return frozenset.intersection(self, *others)

    real = ingest_module.title_words
    monkeypatch.setattr(ingest_module, "title_words", lambda title: Words(real(title)))
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(3000)] + ["riverton", "home", "market"] * 50
    index = ClusterIndex()
    n_titles = 5000
    for n in range(n_titles):
        title = " ".join(rng.choice(vocab) for _ in range(8))
        index.add(f"s{n % 300}", f"https://s.test/{n}", title,
                  index.find(f"s{n % 300}", f"https://s.test/{n}", title) or f"c{n}")
    assert 0 < comparisons <= 50 * n_titles  # at most 50 candidates per title


def test_an_edited_entry_updates_the_stored_article(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "sphere.db")
    feed = tmp_path / "feed.xml"
    source = Source("local", str(feed), "market", root=str(tmp_path))
    template = ("<rss version='2.0'><channel><title>t</title><item><title>{}</title>"
                "<link>https://l.test/story?utm_source=rss</link>{}</item></channel></rss>")
    feed.write_text(template.format("Original headline about rates", ""))
    assert ingest((source,), store, NOW).new == 1
    (before,) = store.articles()
    # Edited title, and the feed gained a guid: the same link from the same feed is
    # still the same article, with its cluster unchanged.
    feed.write_text(template.format("Corrected headline about rates",
                                    "<guid isPermaLink='false'>g-1</guid>"))
    summary = ingest((source,), store, NOW + dt.timedelta(hours=1))
    assert (summary.new, summary.updated) == (0, 1)
    (after,) = store.articles()
    assert after.id == before.id and after.cluster == before.cluster
    assert after.title == "Corrected headline about rates"
    assert dataclasses.replace(after, title=before.title,
                               profile=before.profile) == before


def test_sample_feeds_in_the_repository_are_all_safe(project: Path, tmp_path: Path) -> None:
    from pipeline.config import load_config
    store = Store.open(tmp_path / "sphere.db")
    ingest(load_config(project).sources, store, NOW)
    assert all(unsafe_parts(a) == [] for a in store.articles())
    assert (REPO / "samples" / "feeds").is_dir()


def test_ingest_shows_a_progress_bar_on_terminals_and_a_summary_line(
        project: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    import pipeline.cli.app
    screen = io.StringIO()
    monkeypatch.setattr(pipeline.cli.app, "err", Console(file=screen, force_terminal=True,
                                                     width=100))
    result = cli("ingest", project=project)
    assert result.exit_code == 0, result.output
    assert "Fetching feeds" in screen.getvalue() and "10/10" in screen.getvalue()
    assert re.match(r"Done: fetched 10, not modified 0, failed 0; 70 new, 0 updated "
                    r"articles in \d+\.\d s$", result.stdout.strip())
    screen.truncate(0)
    cli("ingest", "--quiet", project=project)
    assert "Fetching feeds" not in screen.getvalue()


BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


def test_bidi_controls_never_leave_a_feed() -> None:
    # A right-to-left override turns "Open house at gnp.exe" into what looks like a
    # harmless title; literal or as an entity, no bidi control survives sanitising.
    body = ("<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
            "<title>t</title><link>https://feeds.test/</link><item>"
            "<title>Open house \u202eexe.gnp&#x202E; &#8238;today\u2066</title>"
            "<link>https://feeds.test/a</link><category>gar\u200fden</category>"
            "<description><![CDATA[<p>Prices \u202erose&#x202d; <a href='/x' "
            "title='a\u202eb'>more</a>\u061c</p>]]></description></item>"
            "<item><title>Plain \u2067one</title><link>https://feeds.test/b</link>"
            "<description type='text/plain'>plain\u202e text</description></item>"
            "<item><title>Bad link</title><link>https://feeds.test/\u202ecod.exe</link>"
            "</item></channel></rss>").encode()
    parsed = parse_feed(Source(name="bidi", url="https://feeds.test/feed.xml",
                               kind="market"), body, None, NOW)
    assert not parsed.error
    first, plain, bad = parsed.articles
    for article in parsed.articles:
        for value in (article.title, article.summary_html, article.summary_text,
                      article.url, *article.topics):
            assert not any(ch in value for ch in BIDI), (value, article)
    assert first.title == "Open house exe.gnp today"
    assert first.summary_text == "Prices rose more"
    assert first.topics == ("garden",)
    assert "plain text" in plain.summary_text
    assert bad.url == ""  # a link with a bidi control hides where it goes
    assert to_text("a\u202eb&#x2067;c") == "abc"
    assert clean_html("<p>a&#8238;b</p>") == "<p>ab</p>"
