"""Ingest: fetch feeds (httpx, conditional GET, timeouts, bounded concurrency), parse them
with feedparser, sanitise, give each entry a stable identity, and store."""
from __future__ import annotations

import asyncio
import calendar
import datetime as dt
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import feedparser
import httpx

from . import __version__
from .models import Article, Source
from .sanitise import TITLE_MAX, SUMMARY_TEXT_MAX, clean_html, safe_url, to_text, trim
from .store import FeedState, Store

USER_AGENT = (f"Sphere/{__version__} (+https://github.com/sphere-mailer/sphere; "
              "feed reader for a professional's newsletter)")
# Polite defaults: a slow or huge feed must not hold up the others.
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 20.0
MAX_BYTES = 5 * 1024 * 1024  # no real feed needs more; a bigger body is refused
MAX_CONNECTIONS = 32
PER_HOST = 4  # at most this many requests in flight to one host
_TRACKING_PARAMS = re.compile(r"^(utm_[a-z]+|fbclid|gclid|mc_cid|mc_eid|ref|ref_src)$", re.I)
_WORD_RE = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class FetchResult:
    """What fetching one source gave."""

    source: Source
    status: str  # "ok" | "not_modified" | "failed"
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    etag: str | None = None
    last_modified: str | None = None
    permanent_url: str | None = None
    error: str = ""
    bytes_read: int = 0


@dataclass(frozen=True)
class IngestSummary:
    """Counts for the one-line summary, and the failures by name."""

    fetched: int
    not_modified: int
    failed: tuple[tuple[str, str], ...]
    new: int
    updated: int
    articles: tuple[Article, ...] = ()  # what was parsed this run (used by dry runs)

    def line(self) -> str:
        """`fetched 48, not modified 30, failed 2: a (HTTP 500), b (timeout)`."""
        text = (f"fetched {self.fetched}, not modified {self.not_modified}, "
                f"failed {len(self.failed)}")
        if self.failed:
            text += ": " + ", ".join(f"{n} ({e})" for n, e in self.failed)
        return text + f"; {self.new} new, {self.updated} updated articles"


def canonical_url(url: str) -> str:
    """Lower-case scheme and host, drop fragments, default ports and tracking params."""
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.netloc:
        return url.strip()
    host = (parts.hostname or "").lower()
    if parts.port and not ((parts.scheme == "http" and parts.port == 80)
                           or (parts.scheme == "https" and parts.port == 443)):
        host = f"{host}:{parts.port}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                       if not _TRACKING_PARAMS.match(k)])
    path = parts.path or "/"
    return urlunsplit((parts.scheme.lower(), host, path, query, ""))


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]


def _published(entry: feedparser.FeedParserDict) -> dt.datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = entry.get(key)
        if parsed:
            try:
                return dt.datetime.fromtimestamp(calendar.timegm(parsed), dt.timezone.utc)
            except (OverflowError, ValueError, TypeError):
                continue
    return None


def _lead_image(entry: feedparser.FeedParserDict, base: str) -> str:
    candidates: list[str] = []
    for enc in entry.get("enclosures", []) or []:
        if str(enc.get("type", "")).startswith("image/"):
            candidates.append(enc.get("href") or enc.get("url") or "")
    for media in entry.get("media_content", []) or []:
        if media.get("medium") == "image" or str(media.get("type", "")).startswith("image/"):
            candidates.append(media.get("url", ""))
    for thumb in entry.get("media_thumbnail", []) or []:
        candidates.append(thumb.get("url", ""))
    for c in candidates:
        url = safe_url(c, base)
        if url:
            return url
    return ""


def parse_feed(source: Source, body: bytes, headers: dict[str, str] | None = None
               ) -> list[Article]:
    """Parse feed bytes into sanitised articles with stable ids."""
    headers = dict(headers or {})
    headers.setdefault("content-location", source.url if source.is_remote else "")
    parsed = feedparser.parse(body, response_headers=headers, sanitize_html=True,
                              resolve_relative_uris=True)
    guids = [e.get("id") or "" for e in parsed.entries]
    # A guid is trusted only when every entry has its own: some feeds repeat one guid
    # or leave it empty, and identity must then come from the link.
    guids_ok = all(guids) and len(set(guids)) == len(guids)
    out: dict[str, Article] = {}
    for entry in parsed.entries:
        base = entry.get("link") or headers.get("content-location") or ""
        link = safe_url(entry.get("link", ""), headers.get("content-location", ""))
        title = trim(to_text(entry.get("title", "")), TITLE_MAX)
        summary_src = entry.get("summary", "")
        if not summary_src and entry.get("content"):
            summary_src = entry["content"][0].get("value", "")
        if entry.get("summary_detail", {}).get("type") == "text/plain":
            summary_src = entry.get("summary", "").replace("&", "&amp;").replace("<", "&lt;")
        summary_html = clean_html(summary_src, base)
        summary_text = trim(to_text(summary_src), SUMMARY_TEXT_MAX)
        published = _published(entry)
        if not title and not summary_text:
            continue
        if guids_ok:
            key = "guid:" + entry["id"]
        elif link:
            key = "link:" + canonical_url(link)
        else:
            key = "hash:" + title + "|" + (published.isoformat() if published else "")
        tags = tuple(str(t.get("term", "")).strip().lower() for t in entry.get("tags", []) or []
                     if str(t.get("term", "")).strip())
        # Entry categories only: the source's declared topics are weighed separately by
        # the matcher, because a feed about several hobbies says nothing about which one
        # a given story is about.
        topics = tuple(dict.fromkeys(tags))
        article_id = f"{source.name}:{_digest(key)}"
        cluster = ("url:" + _digest(canonical_url(link))) if link else \
            ("title:" + _digest(" ".join(_WORD_RE.findall(title.lower()))))
        out[article_id] = Article(
            id=article_id, source=source.name, kind=source.kind, url=link,
            title=title or trim(summary_text, 80), summary_html=summary_html,
            summary_text=summary_text, published=published,
            neighbourhood=source.neighbourhood, topics=topics,
            image_url=_lead_image(entry, base), cluster=cluster)
    return list(out.values())


def _read_local(source: Source, state: FeedState) -> FetchResult:
    path = Path(source.url)
    try:
        stat = path.stat()
        mtime = formatdate(stat.st_mtime, usegmt=True)
        # The file's mtime plays the part of Last-Modified, so an unchanged sample feed
        # costs no parsing, like a 304 would.
        if state.last_modified == mtime and state.last_success:
            return FetchResult(source, "not_modified", last_modified=mtime)
        if stat.st_size > MAX_BYTES:
            return FetchResult(source, "failed", error=f"file larger than {MAX_BYTES} bytes")
        body = path.read_bytes()
    except OSError as exc:
        return FetchResult(source, "failed", error=f"cannot read {path}: {exc.strerror}")
    return FetchResult(source, "ok", body=body, last_modified=mtime, bytes_read=len(body))


async def _fetch_remote(client: httpx.AsyncClient, source: Source, state: FeedState,
                        host_limits: dict[str, asyncio.Semaphore]) -> FetchResult:
    headers = {}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    host = urlsplit(source.url).netloc.lower()
    limit = host_limits.setdefault(host, asyncio.Semaphore(PER_HOST))
    async with limit:
        try:
            async with client.stream("GET", source.url, headers=headers) as resp:
                permanent = None
                for hop in resp.history:
                    if hop.status_code in (301, 308):
                        permanent = str(resp.url)
                if resp.status_code == 304:
                    return FetchResult(source, "not_modified", etag=state.etag,
                                       last_modified=state.last_modified,
                                       permanent_url=permanent)
                if resp.status_code >= 400:
                    return FetchResult(source, "failed", error=f"HTTP {resp.status_code}")
                declared = resp.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > MAX_BYTES:
                    return FetchResult(source, "failed",
                                       error=f"body of {declared} bytes is over the cap")
                chunks, size = [], 0
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_BYTES:
                        return FetchResult(source, "failed",
                                           error=f"body over the {MAX_BYTES}-byte cap")
                    chunks.append(chunk)
                return FetchResult(
                    source, "ok", body=b"".join(chunks),
                    headers=tuple((k.lower(), v) for k, v in resp.headers.items()
                                  if k.lower() != "content-encoding"),
                    etag=resp.headers.get("etag"),
                    last_modified=resp.headers.get("last-modified"),
                    permanent_url=permanent, bytes_read=resp.num_bytes_downloaded)
        except httpx.TimeoutException:
            return FetchResult(source, "failed", error="timeout")
        except httpx.TooManyRedirects:
            return FetchResult(source, "failed", error="too many redirects")
        except httpx.HTTPError as exc:
            return FetchResult(source, "failed", error=f"{type(exc).__name__}: {exc}"[:200])


async def fetch_all(sources: tuple[Source, ...], states: dict[str, FeedState],
                    on_done: Callable[[FetchResult], None] | None = None,
                    timeout: httpx.Timeout | None = None) -> list[FetchResult]:
    """Fetch every source concurrently (bounded overall and per host)."""
    limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS)
    timeout = timeout or httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)
    host_limits: dict[str, asyncio.Semaphore] = {}
    results: list[FetchResult] = []
    async with httpx.AsyncClient(limits=limits, timeout=timeout, follow_redirects=True,
                                 max_redirects=5, trust_env=False,
                                 headers={"User-Agent": USER_AGENT,
                                          "Accept-Encoding": "gzip, deflate"}) as client:
        async def one(source: Source) -> FetchResult:
            state = states.get(source.name, FeedState(source.name))
            if source.is_remote:
                result = await _fetch_remote(client, source, state, host_limits)
            else:
                result = await asyncio.to_thread(_read_local, source, state)
            if on_done:
                on_done(result)
            return result
        results = list(await asyncio.gather(*(one(s) for s in sources)))
    return results


def ingest(sources: tuple[Source, ...], store: Store, now: dt.datetime,
           on_done: Callable[[FetchResult], None] | None = None,
           timeout: httpx.Timeout | None = None) -> IngestSummary:
    """Fetch, parse, sanitise and store every source; one bad feed never stops the rest."""
    states = {s.name: store.feed_state(s.name) for s in sources}
    results = asyncio.run(fetch_all(sources, states, on_done, timeout))
    fetched = not_modified = new = updated = 0
    failed: list[tuple[str, str]] = []
    parsed_all: list[Article] = []
    for r in results:
        name = r.source.name
        if r.status == "failed":
            store.record_feed_failure(name, now, r.error)
            failed.append((name, r.error))
            continue
        if r.status == "not_modified":
            not_modified += 1
            store.record_feed_success(name, now, r.etag, r.last_modified, 0, r.permanent_url)
            continue
        try:
            articles = parse_feed(r.source, r.body, dict(r.headers))
        except Exception as exc:  # noqa: BLE001 - a parser crash is one feed's failure
            store.record_feed_failure(name, now, f"parse error: {exc}")
            failed.append((name, f"parse error: {type(exc).__name__}"))
            continue
        if not articles and r.body.strip():
            parsed = feedparser.parse(r.body)
            if parsed.bozo and not parsed.entries:
                reason = f"not a feed: {str(parsed.bozo_exception)[:120]}"
                store.record_feed_failure(name, now, reason)
                failed.append((name, reason))
                continue
        n, u = store.upsert_articles(articles, now)
        new, updated = new + n, updated + u
        fetched += 1
        parsed_all.extend(articles)
        store.record_feed_success(name, now, r.etag, r.last_modified, len(articles),
                                  r.permanent_url)
    return IngestSummary(fetched, not_modified, tuple(failed), new, updated, tuple(parsed_all))

