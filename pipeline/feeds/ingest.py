"""Ingest: fetch feeds (fetch.py), parse them with feedparser, sanitise, give each entry a
stable identity, cluster the same story from several sources, and store."""
from __future__ import annotations

import asyncio
import calendar
import datetime as dt
import hashlib
import io
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from xml.sax import SAXParseException

import feedparser
from feedparser.exceptions import ThingsNobodyCaresAboutButMe

from pipeline.errors import redact
from pipeline.feeds.fetch import (
    DEFAULT_SETTINGS,
    FetchResult,
    FetchSettings,
    backing_off,
    fetch_all,
)
from pipeline.feeds.sanitise import (
    SUMMARY_TEXT_MAX,
    TITLE_MAX,
    clean_html,
    content_images,
    is_tracking_image,
    plain_to_html,
    safe_url,
    to_text,
    trim,
)
from pipeline.matching.taxonomy import profile
from pipeline.models import Article, FetchStatus, Source
from pipeline.state.interface import Ledger
from pipeline.state.records import FeedState
from pipeline.workers import context, cores, exit_with

# Query parameters that say who shared a link, not what it points to.
_TRACKING_PARAMS = re.compile(
    r"^(utm_[a-z_]+|fbclid|gclid|dclid|yclid|msclkid|mc_cid|mc_eid|_hsenc|_hsmi|igshid|"
    r"mkt_tok|ref|ref_src|ref_url|cmpid|ncid|sr_share|at_medium|at_campaign|rss|feed|"
    r"__twitter_impression|oly_enc_id|oly_anon_id|vero_id|wt\.mc_id|s_kwcid)$", re.I)
_WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)
# A feed with more entries than this is an archive dump; the newest are enough.
MAX_ENTRIES = 200
# Guids longer than this are content pasted into the wrong field, not identifiers.
MAX_GUID = 500
# How far back a new story is compared with stored ones to find the same story told by
# another source: syndication happens within days, and a small window keeps it fast.
CLUSTER_DAYS = 14
# Titles whose word sets overlap this much (Jaccard) tell the same story. 0.6 joins
# "Riverton listings climb to three-year high" and "Riverton listings reach a three-year
# high" but not two different stories about Riverton listings.
CLUSTER_JACCARD = 0.6
CLUSTER_MIN_SHARED = 3  # short titles share a word or two by chance
# How many of a feed's latest stored articles a re-identified entry is looked up among.
IDENTITY_LOOKBACK = 500
# A word in more stored titles than this says nothing about which story it is (the town's
# name in a local feed); it is still counted in the overlap, but not used to find
# candidates, which keeps matching fast with thousands of articles.
_COMMON_WORD_POSTINGS = 200
_STOPWORDS = frozenset(
    ["a", "an", "the", "and", "or", "but", "of", "to", "in", "on", "at", "for", "from", "by",
     "with", "as", "is", "are", "was", "were", "be", "been", "this", "that", "these", "those",
     "it", "its", "into", "over", "under", "after", "before", "about", "than", "then", "so", "not",
     "no", "new", "how", "why", "what", "when", "where", "who", "your", "our", "you", "we", "they",
     "their", "his", "her", "he", "she", "will", "can", "may", "de", "la", "le", "les", "et",
     "des", "du", "el", "en", "y"])
Progress = Callable[[FetchResult], None]
# With at least this many feeds to parse, parsing runs in worker processes (feedparser
# and sanitising are pure Python: on threads they shared one core). Fewer are parsed on
# threads, where starting workers would cost more than it saves.
PARSE_POOL_FROM = 40


@dataclass(frozen=True)
class IngestSummary:
    """Counts for the one-line summary, and the failures by name."""

    fetched: int
    not_modified: int
    failed: tuple[tuple[str, str], ...]
    new: int
    updated: int
    articles: tuple[Article, ...] = ()  # what was parsed this run (used by dry runs)
    requests: int = 0  # HTTP requests made (local files are not counted)
    bytes_read: int = 0  # bytes received on the wire
    seconds: float = 0.0
    moved: tuple[tuple[str, str], ...] = ()  # (source, new url) after a 301/308
    # (source, retry time) of failing feeds not fetched this run (fetch.backing_off)
    deferred: tuple[tuple[str, dt.datetime], ...] = ()

    def line(self) -> str:
        """`fetched 48, not modified 30, failed 2: a (HTTP 500), b (timeout)`."""
        text = (f"fetched {self.fetched}, not modified {self.not_modified}, "
                f"failed {len(self.failed)}")
        if self.failed:
            text += ": " + ", ".join(f"{n} ({e})" for n, e in self.failed)
        if self.deferred:
            text += (f"; {len(self.deferred)} failing feed(s) left until their retry time "
                     "(`sphere status`)")
        return text + f"; {self.new} new, {self.updated} updated articles"


@dataclass(frozen=True)
class ParsedFeed:
    """What feedparser made of one body, already sanitised."""

    articles: tuple[Article, ...]
    error: str = ""  # set when the bytes are not a feed, or a broken one with nothing in it


# ---- identity ------------------------------------------------------------------------
def canonical_url(url: str) -> str:
    """The identity of a link: https, lower-case host without www., no default port,
    fragment, trailing slash or tracking parameters; the rest of the query sorted."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url.strip()
    if not parts.scheme or not parts.netloc:
        return url.strip()
    host = (parts.hostname or "").lower().removeprefix("www.")
    if port and port not in (80, 443):
        host = f"{host}:{port}"
    # http and https of one page are one story; sites move to https without changing ids.
    scheme = "https" if parts.scheme.lower() in ("http", "https") else parts.scheme.lower()
    query = urlencode(sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                             if not _TRACKING_PARAMS.match(k)))
    path = parts.path.rstrip("/") or "/"
    return urlunsplit((scheme, host, path, query, ""))


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()[:20]


def identity_key(guid: str, guid_unique: bool, link: str, title: str,
                 published: dt.datetime | None) -> str:
    """Stable identity of an entry: its guid when trustworthy, else its canonical link,
    else a hash of title and date."""
    guid = guid.strip()
    # A guid is trusted when the entry has its own (some feeds repeat one guid on every
    # item, or paste the whole description into it).
    if guid and guid_unique and len(guid) <= MAX_GUID:
        if guid.startswith(("http://", "https://")):
            # Permalink guids carry the same tracking noise as links.
            return "guid:" + canonical_url(guid)
        return "guid:" + guid
    if link:
        return "link:" + canonical_url(link)
    return "hash:" + title.strip().lower() + "|" + (published.isoformat() if published else "")


def title_words(title: str) -> frozenset[str]:
    """The words of a title that identify a story: lower-case, stop words dropped,
    plural -s folded."""
    words = set()
    for w in _WORD_RE.findall(title.lower()):
        if w in _STOPWORDS or (len(w) < 2 and not w.isdigit()):
            continue
        words.add(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return frozenset(words)


# ---- clustering ----------------------------------------------------------------------
class ClusterIndex:
    """Recent stories by canonical link and by title words, to find the cluster a new
    article belongs to. An inverted index keeps lookups cheap with thousands of stories."""

    def __init__(self, recent: Callable[[], Iterable[tuple[str, str, str, str]]] | None = None
                 ) -> None:
        self._by_url: dict[str, str] = {}
        self._postings: dict[str, list[int]] = {}
        self._items: list[tuple[str, frozenset[str], str]] = []  # (source, words, cluster)
        # Stored stories, (source, url, title, cluster), loaded on first use: a run where
        # every feed answered 304 never needs them.
        self._recent = recent

    def _load(self) -> None:
        if self._recent is not None:
            recent, self._recent = self._recent, None
            for row in recent():
                self.add(*row)

    def add(self, source: str, url: str, title: str, cluster: str) -> None:
        """Remember one stored or newly clustered article."""
        self._load()
        if url:
            self._by_url.setdefault(canonical_url(url), cluster)
        words = title_words(title)
        if len(words) < CLUSTER_MIN_SHARED:
            return
        n = len(self._items)
        self._items.append((source, words, cluster))
        for w in words:
            self._postings.setdefault(w, []).append(n)

    def find(self, source: str, url: str, title: str) -> str | None:
        """The cluster of the same story already seen (same link, or a near-identical
        title from another source), or None."""
        self._load()
        if url:
            hit = self._by_url.get(canonical_url(url))
            if hit:
                return hit
        words = title_words(title)
        if len(words) < CLUSTER_MIN_SHARED:
            return None
        shared: Counter[int] = Counter()
        for w in words:
            posting = self._postings.get(w, ())
            if len(posting) <= _COMMON_WORD_POSTINGS:
                shared.update(posting)
        best, best_score = None, CLUSTER_JACCARD
        for n, _ in shared.most_common(50):
            other_source, other, cluster = self._items[n]
            # Within one feed, similar titles are a series ("Weekly market update"), and
            # the same entry twice is caught by identity, not here.
            if other_source == source:
                continue
            common = len(words & other)
            if common < CLUSTER_MIN_SHARED:
                continue
            score = common / len(words | other)
            if score >= best_score:
                best, best_score = cluster, score
        return best


def default_cluster(url: str, title: str) -> str:
    """The cluster key of a story seen for the first time."""
    if url:
        return "url:" + _digest(canonical_url(url))
    return "title:" + _digest(" ".join(sorted(title_words(title))))


# ---- parsing -------------------------------------------------------------------------
def _published(entry: feedparser.FeedParserDict, now: dt.datetime | None
               ) -> dt.datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = entry.get(key)
        if parsed:
            try:
                moment = dt.datetime.fromtimestamp(calendar.timegm(parsed), dt.UTC)
            except (OverflowError, ValueError, TypeError, OSError):
                continue
            # A date in the future (a wrong time zone, a scheduled post) would keep the
            # story at the top of every digest; it cannot be newer than our fetch.
            return min(moment, now) if now else moment
    return None


def _looks_like_image(url: str) -> bool:
    return bool(re.search(r"\.(?:jpe?g|png|gif|webp|avif)(?:[?#]|$)", url, re.I))


def lead_image(entry: feedparser.FeedParserDict, base: str, html_sources: Iterable[str] = ()
               ) -> str:
    """The entry's picture: enclosure, media:content, media:thumbnail, then the first
    real <img> of its content; never a tracking pixel."""
    candidates: list[tuple[str, object, object]] = []
    for enc in entry.get("enclosures", []) or []:
        href = enc.get("href") or enc.get("url") or ""
        kind = str(enc.get("type", ""))
        if kind.startswith("image/") or (not kind and _looks_like_image(href)):
            candidates.append((href, None, None))
    for media in entry.get("media_content", []) or []:
        url, kind = media.get("url", ""), str(media.get("type", ""))
        if media.get("medium") == "image" or kind.startswith("image/") or (
                not kind and not media.get("medium") and _looks_like_image(url)):
            candidates.append((url, media.get("width"), media.get("height")))
    for thumb in entry.get("media_thumbnail", []) or []:
        candidates.append((thumb.get("url", ""), thumb.get("width"), thumb.get("height")))
    for raw, width, height in candidates:
        url = safe_url(str(raw or ""), base)
        if url and not is_tracking_image(url, width, height):
            return url
    for fragment in html_sources:
        found = content_images(fragment, base)
        if found:
            return found[0]
    return ""


def _detail_type(entry: feedparser.FeedParserDict, key: str) -> str:
    detail = entry.get(key) or {}
    return str(detail.get("type", "")) if hasattr(detail, "get") else ""


def _text_of(value: str, kind: str) -> str:
    # text/plain is text, but "<script>" in it would still be tag-like; escaping then
    # extracting text keeps the words and drops nothing that reads as prose.
    return to_text(_escape_plain(value) if kind == "text/plain" else value)


def _escape_plain(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def parse_feed(source: Source, body: bytes, headers: dict[str, str] | None = None,
               now: dt.datetime | None = None) -> ParsedFeed:
    """Parse feed bytes into sanitised articles with stable ids (pure: no I/O)."""
    if not body.strip():
        return ParsedFeed((), "empty response (the server sent no feed); retried next run")
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    if source.is_remote:
        headers.setdefault("content-location", source.url)
    # A file object, never the bytes themselves: feedparser opens a *string or bytes*
    # that names a file, so a server answering "/etc/passwd" would read our disk.
    parsed = feedparser.parse(io.BytesIO(body), response_headers=headers,
                              sanitize_html=True, resolve_relative_uris=True)
    if not parsed.entries and parsed.bozo and not parsed.get("version"):
        reason = str(parsed.get("bozo_exception", "") or "unknown format")[:120]
        return ParsedFeed((), f"not a feed ({reason}); check the url points at the RSS "
                              "or Atom feed, not a web page")
    entries = parsed.entries[:MAX_ENTRIES]
    guid_counts = Counter(str(e.get("id") or "").strip() for e in entries)
    feed_base = headers.get("content-location", "")
    out: dict[str, Article] = {}
    for entry in entries:
        link = safe_url(str(entry.get("link", "") or ""), feed_base)
        base = link or feed_base
        title = trim(_text_of(str(entry.get("title", "") or ""),
                              _detail_type(entry, "title_detail")), TITLE_MAX)
        summary = str(entry.get("summary", "") or "")
        kind = _detail_type(entry, "summary_detail")
        contents = [c for c in entry.get("content", []) or [] if c.get("value")]
        if not summary and contents:
            summary, kind = str(contents[0].get("value", "")), str(contents[0].get("type", ""))
        summary_html = plain_to_html(summary) if kind == "text/plain" else clean_html(summary,
                                                                                      base)
        summary_text = trim(_text_of(summary, kind), SUMMARY_TEXT_MAX)
        if not title and not summary_text:
            continue  # nothing a reader could use
        published = _published(entry, now)
        guid = str(entry.get("id") or "").strip()
        key = identity_key(guid, guid_counts[guid] == 1, link, title, published)
        tags = tuple(to_text(str(t.get("term", "") or "")).strip().lower()[:60]
                     for t in entry.get("tags", []) or [])
        # Entry categories only: the source's declared topics are weighed separately by
        # the matcher, because a feed about several hobbies says nothing about which one
        # a given story is about.
        topics = tuple(t for t in dict.fromkeys(tags) if t)
        article_id = f"{source.name}:{_digest(key)}"
        html_sources = [summary] + [str(c.get("value", "")) for c in contents]
        out[article_id] = Article(
            id=article_id, source=source.name, kind=source.kind, url=link,
            title=title or trim(summary_text, 80), summary_html=summary_html,
            summary_text=summary_text, published=published,
            neighbourhood=source.neighbourhood, topics=topics,
            image_url=lead_image(entry, base, html_sources),
            cluster=default_cluster(link, title))
    if not out and parsed.bozo and not isinstance(parsed.get("bozo_exception"),
                                                   ThingsNobodyCaresAboutButMe):
        # Broken XML with nothing readable in it (a truncated or hand-edited file). It
        # is a failure, not an empty feed, or `status` would call it healthy while it
        # never yields a story. A broken feed that still yields entries stays ok: many
        # real ones have a bare ampersand somewhere.
        return ParsedFeed((), f"malformed feed: {_parse_error(parsed)}; no entry could be "
                              f"read from {source.url}: open it to check the url, or tell "
                              "the feed's owner")
    # Each story's hobby topics, read once here, where parsing runs (in worker processes),
    # and stored: planning only looks them up. taxonomy.profile is pure.
    return ParsedFeed(tuple(replace(a, profile=profile(a)) for a in out.values()))


def _parse_error(parsed: feedparser.FeedParserDict) -> str:
    """feedparser's reason a document is broken. Without the XML parser's line number:
    feedparser rewrites the document (its XML declaration, its doctype) before parsing,
    so the position would not point at the line the feed's owner sees."""
    exc = parsed.get("bozo_exception")
    reason = exc.getMessage() if isinstance(exc, SAXParseException) else str(exc or "")
    return reason[:120] or "unknown error"


# ---- storing -------------------------------------------------------------------------
def _reconcile(articles: tuple[Article, ...], store: Ledger, index: ClusterIndex
               ) -> list[Article]:
    """Keep stored ids and clusters; give new stories the cluster of their twin, if any."""
    clusters = store.article_clusters(a.id for a in articles)
    unknown = [a for a in articles if a.id not in clusters and a.url]
    if unknown:
        # The feed may have changed how it identifies an entry (it gained a guid, or the
        # guid changed): the same link from the same feed is the same article. Entries
        # still in a feed are recent, so only the latest stored ones are candidates,
        # which keeps this cheap however long the feed's history grows.
        by_url: dict[str, list[str]] = {}
        for sid, url in store.latest_urls(unknown[0].source, IDENTITY_LOOKBACK).items():
            by_url.setdefault(canonical_url(url), []).append(sid)
        parsed_urls = Counter(canonical_url(a.url) for a in articles if a.url)
        parsed_ids = {a.id for a in articles}
        moved = {}
        for a in unknown:
            canon = canonical_url(a.url)
            twins = by_url.get(canon, [])
            # Only when the link is unambiguous: feeds that point every item at their
            # home page would otherwise merge distinct stories.
            if (len(twins) == 1 and parsed_urls[canon] == 1 and twins[0] not in parsed_ids
                    and urlsplit(canon).path not in ("", "/")):
                moved[a.id] = twins[0]
        if moved:
            clusters.update(store.article_clusters(moved.values()))
            articles = tuple(replace(a, id=moved[a.id]) if a.id in moved else a
                             for a in articles)
    out = []
    for a in articles:
        if a.id in clusters:
            a = replace(a, cluster=clusters[a.id])  # an edit never moves a story
        else:
            a = replace(a, cluster=index.find(a.source, a.url, a.title) or a.cluster)
            index.add(a.source, a.url, a.title, a.cluster)
        out.append(a)
    return out


def _unchanged(result: FetchResult, state: FeedState) -> bool:
    # Same bytes as last time from the same URL: the server ignores validators (or a
    # local file was touched); nothing to parse.
    return bool(result.body and state.url == result.source.url and state.content_hash
                and state.content_hash == result.content_hash)


def ingest(sources: tuple[Source, ...], store: Ledger, now: dt.datetime,
           on_done: Progress | None = None,
           settings: FetchSettings = DEFAULT_SETTINGS,
           retry_failed: bool = False) -> IngestSummary:
    """Fetch, parse, sanitise and store every source; one bad feed never stops the rest.
    Failing feeds wait for their retry time unless `retry_failed` asks for them now."""
    started = time.monotonic()
    states = {s.name: store.feed_state(s.name) for s in sources}
    deferred = () if retry_failed else \
        tuple((s.name, at) for s in sources
              if (at := backing_off(s, states[s.name], now)) is not None)
    if deferred:
        left = {name for name, _ in deferred}
        sources = tuple(s for s in sources if s.name not in left)
    results, parsed = _fetch_and_parse(sources, states, now, on_done, settings)
    stored = _store_results(results, parsed, store, now)
    remote = [r for r in results if r.source.is_remote]
    moved = tuple((r.source.name, r.permanent_url) for r in results
                  if r.permanent_url and r.status != FetchStatus.FAILED)
    return IngestSummary(stored.fetched, stored.not_modified, tuple(stored.failed),
                         stored.new, stored.updated, tuple(stored.articles),
                         requests=len(remote), bytes_read=sum(r.bytes_read for r in remote),
                         seconds=time.monotonic() - started, moved=moved,
                         deferred=deferred)


def _fetch_and_parse(sources: tuple[Source, ...], states: dict[str, FeedState],
                     now: dt.datetime, on_done: Progress | None, settings: FetchSettings
                     ) -> tuple[list[FetchResult], dict[str, ParsedFeed]]:
    """Fetch every source at once, parsing each as it arrives (in worker processes when
    there are many); the fetch results in source order, and the parsed feeds by name."""
    parsed: dict[str, ParsedFeed] = {}
    pool = ProcessPoolExecutor(min(cores(), 8), mp_context=context("pipeline.feeds.ingest"),
                               initializer=exit_with, initargs=(os.getpid(),)) \
        if len(sources) >= PARSE_POOL_FROM else None

    async def parse_when_fetched(result: FetchResult) -> None:
        # Parse while other feeds are still downloading; storing stays on this thread
        # (SQLite connections belong to one) and happens in source order afterwards, so
        # clustering is deterministic.
        state = states.get(result.source.name) or FeedState(result.source.name)
        if result.status == FetchStatus.OK and not _unchanged(result, state):
            try:
                # The network I/O stays on this event loop; only the parse moves.
                parsed[result.source.name] = await asyncio.get_running_loop(
                    ).run_in_executor(pool, parse_feed, result.source, result.body,
                                      dict(result.headers), now)
            except Exception as exc:  # noqa: BLE001 - a parser crash is one feed's failure
                parsed[result.source.name] = ParsedFeed(
                    (), f"parser crashed ({type(exc).__name__}: {str(exc)[:80]}); "
                        "please report this feed")
        if on_done:
            on_done(result)

    try:
        results = asyncio.run(fetch_all(sources, states, parse_when_fetched, settings))
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return results, parsed


@dataclass
class _Stored:
    """What storing one run's feeds did (ingest's summary is built from it)."""

    fetched: int = 0
    not_modified: int = 0
    new: int = 0
    updated: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    articles: list[Article] = field(default_factory=list)


def _store_results(results: list[FetchResult], parsed: dict[str, ParsedFeed], store: Ledger,
                   now: dt.datetime) -> _Stored:
    """Record each feed's outcome and upsert its articles, in source order."""
    index = ClusterIndex(lambda: ((a.source, a.url, a.title, a.cluster)
                                  for a in store.recent_articles(
                                      now - dt.timedelta(days=CLUSTER_DAYS))))
    out = _Stored()
    # One transaction for every feed's records: a commit is an fsync, and 500 feeds
    # made 500 to 1,000 of them (most of a re-run's time). A crash loses this run's
    # records only, and the next run fetches again.
    with store.batch():
        for r in results:
            name = r.source.name
            feed = parsed.get(name)
            if r.status == FetchStatus.FAILED or (feed and feed.error):
                # A feed url may carry credentials (user:pass@, ?key=): never stored or
                # shown.
                error = redact(r.error or (feed.error if feed else ""))
                # The url it failed at starts the backoff (fetch.backing_off); none when
                # no server was asked, so a config fix (allow_private) is tried at once.
                store.record_feed_failure(name, now, error,
                                          url=r.source.url if r.asked else "")
                out.failed.append((name, error))
                continue
            if r.status == FetchStatus.NOT_MODIFIED or feed is None:
                out.not_modified += 1
                store.record_feed_success(name, now, url=r.source.url, etag=r.etag,
                                          last_modified=r.last_modified,
                                          permanent_url=r.permanent_url,
                                          outcome=FetchStatus.NOT_MODIFIED)
                continue
            articles = _reconcile(feed.articles, store, index)
            n, u = store.upsert_articles(articles, now)
            out.new, out.updated = out.new + n, out.updated + u
            out.fetched += 1
            out.articles.extend(articles)
            store.record_feed_success(name, now, url=r.source.url, etag=r.etag,
                                      last_modified=r.last_modified, new=n,
                                      permanent_url=r.permanent_url,
                                      content_hash=r.content_hash, outcome=FetchStatus.OK)
    return out
