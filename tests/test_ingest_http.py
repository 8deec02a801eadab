"""Fetching against a real HTTP server on 127.0.0.1: conditional GET, timeouts and the
overall deadline, HTTP errors, redirects, gzip, size caps, malformed and hostile feeds,
and a whole send whose emails must carry nothing active."""
from __future__ import annotations

import datetime as dt
import email
import gzip
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from pipeline.feeds.fetch import USER_AGENT, FetchSettings
from pipeline.feeds.ingest import ingest
from pipeline.models import Source
from pipeline.state.store import Store
from tests.conftest import NOW
from tests.test_ingest import FEEDS, unsafe_parts

# Short limits keep the suite fast; production defaults are in pipeline/feeds/fetch.py.
FAST = FetchSettings(connect_timeout=1.0, read_timeout=0.6, deadline=1.2,
                     max_bytes=200_000, max_connections=8, per_host=4)


def rss(items: list[tuple[str, str]], guid: bool = True) -> bytes:
    """A small RSS 2.0 document with one item per (title, link)."""
    body = "".join(f"<item><title>{t}</title><link>{ln}</link>"
                   + (f"<guid isPermaLink='false'>{ln}#g</guid>" if guid else "")
                   + "<pubDate>Fri, 20 Nov 2026 10:00:00 GMT</pubDate>"
                   + f"<description>About {t}.</description></item>" for t, ln in items)
    return (f"<?xml version='1.0'?><rss version='2.0'><channel><title>Feed</title>"
            f"<link>http://127.0.0.1/</link>{body}</channel></rss>").encode()


Handler = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class FeedServer:
    """A loopback HTTP server whose routes the test decides; it logs every request."""

    routes: dict[str, Handler] = field(default_factory=dict)
    log: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    base: str = ""
    httpd: ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        """Absolute URL of a route."""
        return self.base + path

    def hits(self, path: str) -> list[dict[str, str]]:
        """Headers of every request made to one path."""
        return [h for p, h in self.log if p == path]


def _reply(h: BaseHTTPRequestHandler, code: int, body: bytes = b"",
           headers: dict[str, str] | None = None) -> None:
    h.send_response(code)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


@contextmanager
def feed_server_on(host: str = "127.0.0.1") -> Iterator[FeedServer]:
    """A ThreadingHTTPServer on `host` (a loopback address), stopped on exit."""
    state = FeedServer()

    class Handle(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            with state.lock:
                state.log.append((path, {k.lower(): v for k, v in self.headers.items()}))
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                route = state.routes.get(path)
                if route is None:
                    _reply(self, 404, b"not found")
                else:
                    route(self)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout under test)
            finally:
                with state.lock:
                    state.in_flight -= 1

    httpd = ThreadingHTTPServer((host, 0), Handle)
    httpd.daemon_threads = True
    state.base = f"http://{host}:{httpd.server_address[1]}"
    state.httpd = httpd
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server() -> Iterator[FeedServer]:
    """Start a ThreadingHTTPServer on 127.0.0.1 for one test."""
    with feed_server_on() as state:
        yield state


def static(body: bytes, content_type: str = "application/rss+xml", etag: str | None = None,
           last_modified: str | None = None) -> Handler:
    """Serve `body`, answering 304 to matching validators when the server has them."""
    def handle(h: BaseHTTPRequestHandler) -> None:
        headers = {"Content-Type": content_type}
        if etag:
            headers["ETag"] = etag
        if last_modified:
            headers["Last-Modified"] = last_modified
        if (etag and h.headers.get("If-None-Match") == etag) or (
                last_modified and h.headers.get("If-Modified-Since") == last_modified):
            h.send_response(304)
            h.send_header("ETag", etag or "")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        _reply(h, 200, body, headers)
    return handle


def src(server: FeedServer, name: str, path: str) -> Source:
    """A market source fetched from the test server (on loopback: allow_private)."""
    return Source(name=name, url=server.url(path), kind="market", allow_private=True)


def test_etag_and_last_modified_make_the_second_run_cost_nothing(server: FeedServer,
                                                                  tmp_path: Path) -> None:
    server.routes["/etag.xml"] = static(rss([("Rates fall", "http://a.test/1")]), etag='"v1"')
    server.routes["/lm.xml"] = static(rss([("Prices rise", "http://b.test/1")]),
                                      last_modified="Fri, 20 Nov 2026 10:00:00 GMT")
    sources = (src(server, "etag", "/etag.xml"), src(server, "lm", "/lm.xml"))
    store = Store.open(tmp_path / "sphere.db")
    first = ingest(sources, store, NOW, settings=FAST)
    assert (first.fetched, first.not_modified, first.new) == (2, 0, 2)
    assert server.hits("/etag.xml")[0]["user-agent"] == USER_AGENT
    assert "gzip" in server.hits("/etag.xml")[0]["accept-encoding"]
    second = ingest(sources, store, NOW + dt.timedelta(hours=1), settings=FAST)
    assert (second.fetched, second.not_modified, second.new, second.updated) == (0, 2, 0, 0)
    assert server.hits("/etag.xml")[1]["if-none-match"] == '"v1"'
    assert server.hits("/lm.xml")[1]["if-modified-since"] == "Fri, 20 Nov 2026 10:00:00 GMT"
    assert second.line() == "fetched 0, not modified 2, failed 0; 0 new, 0 updated articles"
    assert store.feed_state("etag").last_outcome == "not_modified"
    assert store.feed_state("etag").articles_seen == 1


def test_a_server_ignoring_validators_is_still_deduplicated(server: FeedServer,
                                                             tmp_path: Path) -> None:
    items = [("Library hours", "http://c.test/1?utm_source=feed"), ("Park opens", "")]
    body = {"value": rss(items, guid=False)}
    server.routes["/plain.xml"] = lambda h: _reply(h, 200, body["value"],
                                                   {"Content-Type": "text/xml"})
    sources = (src(server, "plain", "/plain.xml"),)
    store = Store.open(tmp_path / "sphere.db")
    assert ingest(sources, store, NOW, settings=FAST).new == 2
    # Same bytes again: nothing parsed, nothing new.
    again = ingest(sources, store, NOW + dt.timedelta(hours=1), settings=FAST)
    assert (again.not_modified, again.new, again.updated) == (1, 0, 0)
    # Different tracking parameters and an edited title: still the same two articles.
    body["value"] = rss([("Library hours extended", "http://c.test/1?utm_source=other"),
                         ("Park opens", "")], guid=False)
    edited = ingest(sources, store, NOW + dt.timedelta(hours=2), settings=FAST)
    assert (edited.fetched, edited.new, edited.updated) == (1, 0, 1)
    assert store.article_count() == 2


def test_slow_trickling_and_silent_servers_time_out_without_stopping_others(
        server: FeedServer, tmp_path: Path) -> None:
    def trickle(h: BaseHTTPRequestHandler) -> None:
        # One byte every 0.2 s never trips a 0.6 s read timeout; only the deadline stops it.
        h.send_response(200)
        h.send_header("Content-Type", "application/rss+xml")
        h.end_headers()
        for byte in rss([("Slow", "http://s.test/1")])[:30]:
            h.wfile.write(bytes([byte]))
            h.wfile.flush()
            time.sleep(0.2)

    def silent(h: BaseHTTPRequestHandler) -> None:
        time.sleep(2.0)

    server.routes["/trickle.xml"] = trickle
    server.routes["/silent.xml"] = silent
    server.routes["/good.xml"] = static(rss([("Good news", "http://g.test/1")]))
    sources = (src(server, "trickle", "/trickle.xml"), src(server, "silent", "/silent.xml"),
               src(server, "good", "/good.xml"))
    store = Store.open(tmp_path / "sphere.db")
    started = time.monotonic()
    summary = ingest(sources, store, NOW, settings=FAST)
    assert time.monotonic() - started < FAST.deadline + 1.0
    errors = dict(summary.failed)
    assert errors["trickle"] == "timeout: no answer within the 1.2 s deadline"
    assert errors["silent"].startswith("timeout:")
    assert summary.fetched == 1 and summary.new == 1
    assert summary.line().startswith("fetched 1, not modified 0, failed 2: trickle (timeout")


def test_http_errors_are_counted_and_status_flags_a_feed_failing_in_a_row(
        server: FeedServer, project: Path, cli, monkeypatch) -> None:
    server.routes["/500.xml"] = lambda h: _reply(h, 500, b"oops")
    server.routes["/ok.xml"] = static(rss([("Fine", "http://f.test/1")]), etag='"e"')
    config = yaml.safe_load((project / "content_sources.yaml").read_text())
    config["sources"] = [
        {"name": "gone", "url": server.url("/missing.xml"), "kind": "economy", "allow_private": True},
        {"name": "broken", "url": server.url("/500.xml"), "kind": "economy", "allow_private": True},
        {"name": "fine", "url": server.url("/ok.xml"), "kind": "economy", "allow_private": True}]
    (project / "content_sources.yaml").write_text(yaml.safe_dump(config))
    for run in range(3):
        # A day apart: a failing feed is retried once its backoff (at most a day) is over.
        monkeypatch.setenv("SPHERE_NOW", (NOW + dt.timedelta(days=run)).isoformat())
        result = cli("ingest", project=project)
        assert result.exit_code == 0, result.output
    assert ("failed 2: gone (HTTP 404 Not Found: check the url in content_sources.yaml), "
            "broken (HTTP 500 Internal Server Error") in result.stdout
    status = cli("status", project=project)
    assert status.exit_code == 0, status.output
    assert "gone (failing)" in status.stdout and "broken (failing)" in status.stdout
    assert "fine (failing)" not in status.stdout
    assert "gone failed 3 times in a row" in status.stdout
    assert re.search(r"fine\s+│ not modified", status.stdout)
    # The studio's Feeds page reads the same health from the library.
    from pipeline.project import Project
    with Project.open(project, clock=lambda: NOW + dt.timedelta(days=2)) as p:
        health = {h.source.name: h for h in p.feed_health()}
    assert health["gone"].failing and health["broken"].failing
    assert health["gone"].retry is not None and health["gone"].moved_to == ""
    assert not health["fine"].failing and health["fine"].retry is None


def test_redirects_followed_and_permanent_ones_reported(server: FeedServer, project: Path,
                                                        cli) -> None:
    server.routes["/new.xml"] = static(rss([("Moved story", "http://m.test/1")]))
    server.routes["/old.xml"] = lambda h: _reply(h, 301, b"", {"Location": "/new.xml"})
    server.routes["/temp.xml"] = lambda h: _reply(h, 302, b"", {"Location": "/new2.xml"})
    server.routes["/new2.xml"] = static(rss([("Temp story", "http://t.test/1")]))
    server.routes["/loop.xml"] = lambda h: _reply(h, 302, b"", {"Location": "/loop.xml"})
    config = yaml.safe_load((project / "content_sources.yaml").read_text())
    config["sources"] = [
        {"name": "moved", "url": server.url("/old.xml"), "kind": "economy", "allow_private": True},
        {"name": "temporary", "url": server.url("/temp.xml"), "kind": "economy", "allow_private": True},
        {"name": "loop", "url": server.url("/loop.xml"), "kind": "economy", "allow_private": True}]
    (project / "content_sources.yaml").write_text(yaml.safe_dump(config))
    result = cli("ingest", project=project)
    assert "fetched 2, not modified 0, failed 1: loop (more than 5 redirects" in result.stdout
    assert "1 feed(s) moved permanently: moved" in result.stderr
    status = cli("status", project=project).stdout
    assert f"moved has moved permanently to {server.url('/new.xml')}" in status
    assert "update its url at" in status and "content_sources.yaml:" in status
    assert "temporary has moved" not in status
    from pipeline.project import Project
    with Project.open(project) as p:
        health = {h.source.name: h for h in p.feed_health()}
    assert health["moved"].moved_to == server.url("/new.xml")
    assert health["temporary"].moved_to == "" and not health["moved"].failing
    store = Store.open(project / "var" / "sphere.db")
    assert store.feed_state("moved").permanent_url == server.url("/new.xml")
    assert store.feed_state("temporary").permanent_url is None


def test_gzip_is_decoded_and_counted_compressed(server: FeedServer, tmp_path: Path) -> None:
    body = rss([(f"Story number {i} about the housing market", f"http://z.test/{i}")
                for i in range(40)])
    packed = gzip.compress(body)
    server.routes["/gz.xml"] = lambda h: _reply(h, 200, packed, {
        "Content-Type": "application/rss+xml", "Content-Encoding": "gzip"})
    store = Store.open(tmp_path / "sphere.db")
    summary = ingest((src(server, "gz", "/gz.xml"),), store, NOW, settings=FAST)
    assert summary.new == 40
    assert summary.bytes_read == len(packed) < len(body) // 3


def test_huge_bodies_and_gzip_bombs_are_refused(server: FeedServer, tmp_path: Path) -> None:
    big = b"<rss>" + b" " * (FAST.max_bytes + 10) + b"</rss>"
    server.routes["/declared.xml"] = lambda h: _reply(h, 200, big)

    def chunked(h: BaseHTTPRequestHandler) -> None:  # no Content-Length: counted as read
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for _ in range(30):
            piece = b"x" * 10_000
            h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        h.wfile.write(b"0\r\n\r\n")

    bomb = gzip.compress(b" " * (FAST.max_bytes * 5))
    server.routes["/chunked.xml"] = chunked
    server.routes["/bomb.xml"] = lambda h: _reply(h, 200, bomb, {"Content-Encoding": "gzip"})
    sources = tuple(src(server, n, f"/{n}.xml") for n in ("declared", "chunked", "bomb"))
    summary = ingest(sources, Store.open(tmp_path / "sphere.db"), NOW, settings=FAST)
    errors = dict(summary.failed)
    assert errors["declared"] == f"body of {len(big)} bytes is over the 200000-byte cap"
    assert errors["chunked"] == errors["bomb"] == "body over the 200000-byte cap"


def test_malformed_xml_and_web_pages(server: FeedServer, tmp_path: Path) -> None:
    server.routes["/sloppy.xml"] = static((FEEDS / "illformed.xml").read_bytes())
    server.routes["/page.html"] = static((FEEDS / "notafeed.html").read_bytes(), "text/html")
    server.routes["/empty.xml"] = static(b"")
    server.routes["/garbage.xml"] = static(bytes(range(256)) * 10)
    sources = tuple(src(server, n, p) for n, p in (
        ("sloppy", "/sloppy.xml"), ("page", "/page.html"), ("empty", "/empty.xml"),
        ("garbage", "/garbage.xml")))
    store = Store.open(tmp_path / "sphere.db")
    summary = ingest(sources, store, NOW, settings=FAST)
    errors = dict(summary.failed)
    assert set(errors) == {"page", "empty", "garbage"}
    assert errors["page"].startswith("not a feed (") and "not a web page" in errors["page"]
    assert summary.new == 2
    assert store.feed_state("page").consecutive_failures == 1
    assert store.feed_state("sloppy").consecutive_failures == 0


def test_a_truncated_feed_is_reported_failing_not_healthy(server: FeedServer, project: Path,
                                                           cli, monkeypatch) -> None:
    server.routes["/truncated.xml"] = static(b"<rss><channel><item><title>Broken & bad")
    server.routes["/cut.xml"] = static(rss([("Whole story", "http://c.test/1")])[:-40])
    server.routes["/ok.xml"] = static(rss([("Fine", "http://f.test/1")]))
    config = yaml.safe_load((project / "content_sources.yaml").read_text())
    config["sources"] = [
        {"name": "truncated", "url": server.url("/truncated.xml"), "kind": "economy", "allow_private": True},
        {"name": "cut", "url": server.url("/cut.xml"), "kind": "economy", "allow_private": True},
        {"name": "fine", "url": server.url("/ok.xml"), "kind": "economy", "allow_private": True}]
    (project / "content_sources.yaml").write_text(yaml.safe_dump(config))
    for run in range(3):
        # A day apart: a failing feed is retried once its backoff (at most a day) is over.
        monkeypatch.setenv("SPHERE_NOW", (NOW + dt.timedelta(days=run)).isoformat())
        result = cli("ingest", project=project)
        assert result.exit_code == 0, result.output
    reason = (f"malformed feed: not well-formed (invalid token); no entry could be read "
              f"from {server.url('/truncated.xml')}: open it to check the url, or tell the "
              "feed's owner")
    assert f"failed 1: truncated ({reason})" in result.stdout
    store = Store.open(project / "var" / "sphere.db")
    truncated = store.feed_state("truncated")
    assert (truncated.last_outcome, truncated.consecutive_failures) == ("failed", 3)
    assert truncated.last_error == reason
    # Broken too, but the story before the cut is read: many real feeds are a bit broken.
    assert store.feed_state("cut").consecutive_failures == 0
    assert store.feed_state("cut").articles_seen == 1
    status = cli("status", project=project).stdout
    assert "truncated (failing)" in status and "truncated failed 3 times in a row" in status
    assert re.search(r"truncated \(failing\)\s+│ failed", status)
    # Not fetched again until 8 h after the third failure in a row (fetch.backing_off).
    assert "not fetched again before 2026-11-25 02:00" in re.sub(r"\s+", " ", status)
    assert "cut (failing)" not in status and "fine (failing)" not in status


def test_at_most_per_host_requests_in_flight(server: FeedServer, tmp_path: Path) -> None:
    def slow(h: BaseHTTPRequestHandler) -> None:
        time.sleep(0.15)
        _reply(h, 200, rss([("Slowish", h.path)]))
    sources = []
    for i in range(8):
        server.routes[f"/f{i}.xml"] = slow
        sources.append(src(server, f"f{i}", f"/f{i}.xml"))
    settings = FetchSettings(connect_timeout=1, read_timeout=1, deadline=3, per_host=2)
    summary = ingest(tuple(sources), Store.open(tmp_path / "sphere.db"), NOW,
                     settings=settings)
    assert summary.fetched == 8
    assert server.max_in_flight == 2


def test_hostile_feed_reaches_neither_store_nor_email(server: FeedServer, project: Path,
                                                     cli) -> None:
    server.routes["/hostile.xml"] = static((FEEDS / "hostile.xml").read_bytes())
    config = yaml.safe_load((project / "content_sources.yaml").read_text())
    # The hostile feed is the only market and economy source, so every digest shows it.
    config["sources"] = [s for s in config["sources"] if s["kind"] not in ("market", "economy")]
    config["sources"].append({"name": "hostile", "url": server.url("/hostile.xml"),
                              "kind": "market", "allow_private": True})
    (project / "content_sources.yaml").write_text(yaml.safe_dump(config))
    result = cli("send", "monthly-sphere", project=project)
    assert result.exit_code == 0, result.output
    store = Store.open(project / "var" / "sphere.db")
    hostile = [a for a in store.articles() if a.source == "hostile"]
    assert len(hostile) == 2
    assert all(unsafe_parts(a) == [] for a in store.articles())
    messages = sorted((project / "var" / "outbox").glob("*.eml"))
    assert messages
    shown = 0
    for path in messages:
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        html = msg.get_body(("html",)).get_content()
        text = msg.get_body(("plain",)).get_content()
        shown += "Scripted market report" in html or "Second story about inventory" in html
        # The template's own <head> has <meta> tags; only a refresh would be the feed's.
        assert not re.search(r"<\s*(script|iframe|form|object|embed|svg|math|base)\b",
                             html, re.I)
        assert not re.search(r"http-equiv=.?refresh", html, re.I)
        assert not re.search(r"\son[a-z]+\s*=", html, re.I)
        assert not re.search(r"(java|vb)script:|data:text/html", html + text, re.I)
        assert "evil.test" not in html and "tracker.test" not in html
    assert shown  # the hostile stories really were in the emails checked above


def test_a_failing_feed_is_left_until_its_retry_time_which_doubles(
        server: FeedServer, tmp_path: Path) -> None:
    # A dead feed costs each run a request (a silent one its whole deadline): after a
    # failure it is not fetched again until a retry time, BACKOFF_FIRST doubling per
    # failure in a row; a url edit retries at once; a success ends the backoff.
    from pipeline.feeds.fetch import BACKOFF_FIRST as first
    from pipeline.feeds.fetch import retry_after
    state = {"up": False}
    good = static(rss([("Back", "http://b.test/1")]))
    server.routes["/flaky.xml"] = lambda h: good(h) if state["up"] else _reply(h, 503)
    server.routes["/other.xml"] = lambda h: _reply(h, 503)
    flaky = Source("flaky", server.url("/flaky.xml"), "economy", allow_private=True)
    store = Store.open(tmp_path / "s.db")
    second = dt.timedelta(seconds=1)

    def run(at: dt.datetime, source: Source = flaky):
        return ingest((source,), store, at, settings=FAST)

    assert run(NOW).failed and len(server.hits("/flaky.xml")) == 1
    later = run(NOW + first - second)  # before the retry time: not fetched
    assert later.deferred == (("flaky", NOW + first),) and not later.failed
    assert len(server.hits("/flaky.xml")) == 1 and "1 failing feed(s) left" in later.line()
    assert run(NOW + first).failed and len(server.hits("/flaky.xml")) == 2
    # Two failures in a row: twice as long from the second.
    assert retry_after(store.feed_state("flaky")) == NOW + 3 * first
    assert run(NOW + 3 * first - second).deferred and len(server.hits("/flaky.xml")) == 2
    # The user points the source elsewhere: tried at once, whatever the backoff.
    moved = Source("flaky", server.url("/other.xml"), "economy", allow_private=True)
    assert run(NOW + first, moved).failed and len(server.hits("/other.xml")) == 1
    assert run(NOW + first + second, moved).deferred  # that url fails too: backing off
    state["up"] = True
    back = run(NOW + 10 * first)
    assert back.fetched == 1 and not back.failed and not back.deferred
    assert retry_after(store.feed_state("flaky")) is None
    assert not run(NOW + 10 * first + second).deferred
    assert len(server.hits("/flaky.xml")) == 4


def test_retry_failed_fetches_a_backing_off_feed_now(server: FeedServer,
                                                     tmp_path: Path) -> None:
    # The user fixed the feed's server and wants its news in the next send: `sphere
    # ingest --retry-failed` fetches it now instead of waiting for the retry time.
    state = {"up": False}
    good = static(rss([("Back", "http://b.test/1")]))
    server.routes["/flaky.xml"] = lambda h: good(h) if state["up"] else _reply(h, 503)
    flaky = Source("flaky", server.url("/flaky.xml"), "economy", allow_private=True)
    store = Store.open(tmp_path / "s.db")
    assert ingest((flaky,), store, NOW, settings=FAST).failed
    state["up"] = True
    soon = NOW + dt.timedelta(minutes=5)
    assert ingest((flaky,), store, soon, settings=FAST).deferred
    assert len(server.hits("/flaky.xml")) == 1
    now_please = ingest((flaky,), store, soon, settings=FAST, retry_failed=True)
    assert now_please.fetched == 1 and not now_please.deferred
    assert len(server.hits("/flaky.xml")) == 2
