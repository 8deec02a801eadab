"""Fetching feeds: httpx with conditional GET, timeouts, an overall deadline, a size cap,
bounded concurrency overall and per host, redirects (permanent ones remembered), gzip,
and a guard on every connection: a feed reaches public addresses only (see `_Guard`).

Only bytes and headers come out of here; parsing and storing are ingest.py's business."""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import os
import socket
import ssl
import stat
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import anyio
import httpcore
import httpx

from pipeline import __version__
from pipeline.models import FetchStatus, Source
from pipeline.state.records import FeedState

# A descriptive User-Agent: feed publishers block anonymous scrapers, and a URL lets
# them reach us rather than guess.
USER_AGENT = (f"Sphere/{__version__} (+https://github.com/sphere-mailer/sphere; "
              "feed reader for a professional's newsletter)")


@dataclass(frozen=True)
class FetchSettings:
    """How politely and how patiently to fetch. The defaults suit real feeds on the web;
    tests and the benchmark pass shorter ones."""

    # Connecting is quick when a host is up; 10 s covers a slow DNS answer and a TLS
    # handshake across the world.
    connect_timeout: float = 10.0
    # Longest silence between two chunks of a response.
    read_timeout: float = 20.0
    # Whole-request budget: a server that trickles one byte every few seconds never
    # trips the read timeout, so every request also gets a deadline.
    deadline: float = 45.0
    # No real feed needs more than a few MB (the largest we know are ~2 MB); a bigger
    # body, before or after gzip, is refused rather than held in memory.
    max_bytes: int = 5 * 1024 * 1024
    # Requests in flight overall: enough to fetch hundreds of feeds in seconds, few
    # enough not to exhaust file descriptors on a small machine.
    max_connections: int = 32
    # Requests in flight to one host: a newspaper hosting 40 of our feeds must not see
    # 32 parallel requests from one reader.
    per_host: int = 4
    # Redirect hops before giving up: chains longer than this are loops in practice.
    max_redirects: int = 5
    user_agent: str = USER_AGENT


DEFAULT_SETTINGS = FetchSettings()

# A remote feed that failed is not fetched again until a retry time that doubles with
# each failure in a row: 2 h, 4 h, 8 h ... at most a day (feed readers back off
# likewise). A dead or silent feed otherwise costs every run its whole deadline, and its
# server a request that will fail again. Ingests run before sends (daily at most, as a
# rule), so the first wait costs a digest nothing; it spares the re-runs around a send.
BACKOFF_FIRST = dt.timedelta(hours=2)
BACKOFF_MAX = dt.timedelta(hours=24)


def retry_after(state: FeedState) -> dt.datetime | None:
    """When a failing feed may be fetched again; None when it is not failing."""
    if state.consecutive_failures < 1 or not state.last_error_at:
        return None
    wait = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(state.consecutive_failures - 1, 12))
    return dt.datetime.fromisoformat(state.last_error_at) + wait


def backing_off(source: Source, state: FeedState, now: dt.datetime) -> dt.datetime | None:
    """The retry time when `source` is not to be fetched at `now`, else None. Local
    files are always read (it costs nothing), and a feed whose url the user has changed
    since it failed is tried at once."""
    if not source.is_remote or state.url != source.url:
        return None
    at = retry_after(state)
    return at if at is not None and now < at else None


@dataclass(frozen=True)
class FetchResult:
    """What fetching one source gave."""

    source: Source
    status: FetchStatus
    body: bytes = field(default=b"", repr=False)
    headers: tuple[tuple[str, str], ...] = ()
    etag: str | None = None
    last_modified: str | None = None
    final_url: str = ""  # where the body came from, after redirects
    permanent_url: str | None = None  # where a 301/308 chain says the feed now lives
    error: str = ""
    bytes_read: int = 0  # bytes on the wire (compressed), for the benchmark
    http_status: int = 0
    # False when no server was asked (the address guard refused the url): trying again
    # costs nothing, so such a failure starts no backoff (see backing_off).
    asked: bool = True

    @property
    def content_hash(self) -> str:
        """SHA-256 of the body: spots an unchanged feed whose server ignores validators."""
        return hashlib.sha256(self.body).hexdigest() if self.body else ""


# ---- where a feed may connect -------------------------------------------------------
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Cloud metadata services: they hand out credentials to whoever asks from the machine.
# AWS's IPv6 one is a unique-local address, so it is named here to be refused always.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in
                               ("169.254.169.254", "fd00:ec2::254"))
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # "this host": reaches the local machine
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # an IPv4 address inside an IPv6 one


class AddressRefused(Exception):
    """A feed URL or a redirect hop leads only to addresses a feed may not reach."""


def address_problem(ip: IPAddress, allow_private: bool = False) -> str:
    """Why a feed may not connect to `ip` ('' when it may). Loopback and private
    addresses are allowed with `allow_private`; link-local (cloud metadata), multicast,
    unspecified and reserved ones never are."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (
            ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        if inner is not None:  # ::ffff:127.0.0.1 is 127.0.0.1
            return address_problem(inner, allow_private)
    if ip in METADATA_ADDRESSES or ip.is_link_local:
        return "a link-local address (where cloud metadata lives), never fetched"
    if ip.is_multicast:
        return "a multicast address, never fetched"
    if ip.is_unspecified or ip in _THIS_NETWORK:
        return "an unspecified address, never fetched"
    if ip.is_loopback:
        kind = "a loopback address"
    elif ip.is_reserved:
        return "a reserved address, never fetched"
    elif not ip.is_global:
        kind = "a private address"
    else:
        return ""
    return "" if allow_private else (
        f"{kind}; feeds may reach only public addresses (for a feed on your own network, "
        "add `allow_private: true` to its source in content_sources.yaml)")


def _ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone ("fe80::1%eth0")


def _literal(host: str) -> IPAddress | None:
    try:
        return _ip(host)
    except ValueError:
        return None


class _Guard(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, refusing addresses a feed may not reach.

    The check is made on the address connected to, not on the URL: the host is resolved
    once, each address checked, and the socket opened to a checked address (never to the
    name again, so a DNS answer that changes between check and connect, "DNS rebinding",
    cannot slip past); the connected socket's peer is checked once more. Every request
    goes through here, so every redirect hop is checked too. TLS still verifies the
    certificate against the host name, which httpcore passes to start_tls itself."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None
                          ) -> httpcore.AsyncNetworkStream:
        """A stream to the first reachable allowed address of `host`."""
        refused, failure = "", None
        for ip in await _resolve(host, port, timeout):
            problem = address_problem(ip, self.allow_private)
            if problem:
                refused = refused or (f"{host} is {problem}" if _literal(host) == ip
                                      else f"{host} resolves to {ip}, {problem}")
                continue
            try:
                stream = await self._inner.connect_tcp(str(ip), port, timeout, local_address,
                                                       socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc  # another address of the host may answer
                continue
            peer = stream.get_extra_info("server_addr")
            problem = address_problem(_ip(peer[0]), self.allow_private) if peer else \
                "an address that cannot be checked"
            if problem:
                await stream.aclose()
                raise AddressRefused(f"{host} connected to {peer[0] if peer else '?'}, "
                                     f"{problem}")
            return stream
        if failure is not None:
            raise failure
        raise AddressRefused(refused or f"{host} has no address")

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        """Never: a feed is fetched over TCP."""
        raise AddressRefused("a feed cannot be fetched from a Unix socket")

    async def sleep(self, seconds: float) -> None:
        """Wait (httpcore's retry delay)."""
        await self._inner.sleep(seconds)


async def _resolve(host: str, port: int, timeout: float | None) -> list[IPAddress]:
    """The addresses of `host` in the resolver's order, each once."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    try:
        with anyio.fail_after(timeout):
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise httpcore.ConnectTimeout(f"no DNS answer for {host}") from None
    except OSError as exc:  # socket.gaierror: no such host
        raise httpcore.ConnectError(f"{host}: {exc.strerror or exc}") from None
    return list(dict.fromkeys(_ip(str(info[4][0])) for info in infos))


def guarded_transport(allow_private: bool, limits: httpx.Limits,
                      ssl_context: ssl.SSLContext) -> httpx.AsyncHTTPTransport:
    """httpx's transport over `_Guard`: every connection it opens is checked."""
    transport = httpx.AsyncHTTPTransport(verify=ssl_context, limits=limits, trust_env=False)
    # httpx takes no network backend (encode/httpx#3749, open), so the connection pool
    # it built is replaced by the same pool over the guard.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context, max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry, network_backend=_Guard(allow_private))
    return transport



def _status_error(code: int) -> str:
    """A short reason for an HTTP error status that says what to do about it."""
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = ""
    label = f"HTTP {code} {phrase}".rstrip()
    if code in (401, 403):
        return f"{label}: the server refuses us (check the url, or ask the publisher)"
    if code == 404:
        return f"{label}: check the url in content_sources.yaml"
    if code == 410:
        return f"{label}: the feed was removed; delete it from content_sources.yaml"
    if code == 429 or code >= 500:
        return f"{label}: the server is struggling; retried on the next run"
    return label


def permanent_target(history: list[httpx.Response], final_url: str) -> str | None:
    """Where the feed lives now, if the redirect chain starts with permanent hops.

    Only an unbroken run of 301/308 from the configured URL moves the feed: after
    `A -301-> B -302-> C` the user should switch to B (C is temporary), and after
    `A -302-> B -301-> C` the configured A is still the right address."""
    moved = None
    for i, hop in enumerate(history):
        if hop.status_code not in (301, 308):
            break
        moved = str(history[i + 1].url) if i + 1 < len(history) else final_url
    return moved


def conditional_headers(source: Source, state: FeedState) -> dict[str, str]:
    """If-None-Match / If-Modified-Since from the last success, when it was this URL."""
    # Validators belong to a URL: after the user edits the url in content_sources.yaml,
    # an old ETag sent to the new server could wrongly earn a 304.
    if state.url and state.url != source.url:
        return {}
    headers = {}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    return headers


def local_path(source: Source) -> Path:
    """The file a local source names, checked to lie inside its project once symlinks
    are resolved; OSError (with the reason) otherwise. config checks this at load, and it
    is checked again here: a link can be changed between `check` and a run."""
    if not source.root:
        raise PermissionError(f"{source.url} belongs to no project; local feeds are read "
                              "only from inside one")
    path = Path(source.url).resolve()
    if not path.is_relative_to(Path(source.root).resolve()):
        raise PermissionError(f"{source.url} is outside the project folder {source.root}; "
                              "a local feed must be a file inside it")
    return path


def _read_file(path: Path, max_bytes: int) -> bytes:
    # O_NOFOLLOW: the resolved path has no link left in it, so one appearing now is a
    # swap under our feet. O_NONBLOCK: a FIFO must not hang the run (it is then refused
    # as not a regular file).
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IsADirectoryError(f"{path} is not a regular file")
        body = f.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise ValueError(f"file {path} is larger than {max_bytes} bytes; is it really a feed?")
    return body


def read_local(source: Source, state: FeedState, settings: FetchSettings = DEFAULT_SETTINGS
               ) -> FetchResult:
    """Read a feed file from the project; its mtime plays the part of Last-Modified."""
    try:
        path = local_path(source)
        info = path.stat()
        mtime = formatdate(info.st_mtime, usegmt=True)
        # Size and nanosecond mtime act as the file's ETag (Last-Modified has one-second
        # resolution, too coarse for a file rewritten twice in a second). An unchanged
        # sample feed costs no parsing, like a 304 would.
        tag = f'"{info.st_mtime_ns:x}-{info.st_size:x}"'
        if state.etag == tag and state.last_success and state.url == source.url:
            return FetchResult(source, FetchStatus.NOT_MODIFIED, etag=tag, last_modified=mtime,
                               final_url=source.url)
        body = _read_file(path, settings.max_bytes)
    except ValueError as exc:
        return FetchResult(source, FetchStatus.FAILED, error=str(exc))
    except OSError as exc:
        reason = str(exc) if isinstance(exc, PermissionError) and not exc.strerror else \
            f"cannot read {source.url}: {exc.strerror or exc}"
        return FetchResult(source, FetchStatus.FAILED,
                           error=f"{reason} (check its url in content_sources.yaml)")
    return FetchResult(source, FetchStatus.OK, body=body, etag=tag, last_modified=mtime,
                       final_url=source.url, bytes_read=len(body))


async def _get(client: httpx.AsyncClient, source: Source, state: FeedState,
               settings: FetchSettings) -> FetchResult:
    async with client.stream("GET", source.url,
                             headers=conditional_headers(source, state)) as resp:
        final = str(resp.url)
        permanent = permanent_target(list(resp.history), final)
        if resp.status_code == 304:
            # A 304 may carry fresher validators; keep ours when it does not.
            return FetchResult(source, FetchStatus.NOT_MODIFIED,
                               etag=resp.headers.get("etag") or state.etag,
                               last_modified=resp.headers.get("last-modified")
                               or state.last_modified, final_url=final,
                               permanent_url=permanent, http_status=304)
        if resp.status_code >= 400:
            return FetchResult(source, FetchStatus.FAILED, error=_status_error(resp.status_code),
                               final_url=final, permanent_url=permanent,
                               http_status=resp.status_code)
        declared = resp.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > settings.max_bytes:
            return FetchResult(source, FetchStatus.FAILED, http_status=resp.status_code,
                               error=f"body of {declared} bytes is over the "
                                     f"{settings.max_bytes}-byte cap")
        chunks, size = [], 0
        # aiter_bytes yields decoded bytes, so the cap also stops a gzip bomb.
        async for chunk in resp.aiter_bytes():
            size += len(chunk)
            if size > settings.max_bytes:
                return FetchResult(source, FetchStatus.FAILED, http_status=resp.status_code,
                                   error=f"body over the {settings.max_bytes}-byte cap")
            chunks.append(chunk)
        # The body is decoded already: passing Content-Encoding or Content-Length on to
        # the parser would describe bytes it never sees.
        headers = {k.lower(): v for k, v in resp.headers.items()
                   if k.lower() not in ("content-encoding", "content-length")}
        # feedparser resolves relative links against Content-Location; it must be the
        # URL the body really came from (after redirects), or one the server names.
        location = urljoin(final, headers.get("content-location", ""))
        headers["content-location"] = location if urlsplit(location).scheme in (
            "http", "https") else final
        return FetchResult(source, FetchStatus.OK, body=b"".join(chunks),
                           headers=tuple(headers.items()),
                           etag=resp.headers.get("etag"),
                           last_modified=resp.headers.get("last-modified"),
                           final_url=final, permanent_url=permanent,
                           bytes_read=resp.num_bytes_downloaded,
                           http_status=resp.status_code)


async def fetch_remote(client: httpx.AsyncClient, source: Source, state: FeedState,
                       settings: FetchSettings) -> FetchResult:
    """One conditional GET under the overall deadline; every failure becomes a result."""
    try:
        async with asyncio.timeout(settings.deadline):
            return await _get(client, source, state, settings)
    except (TimeoutError, httpx.TimeoutException) as exc:
        what = ("no answer within the " + f"{settings.deadline:g} s deadline"
                if isinstance(exc, TimeoutError) else _timeout_text(exc, settings))
        return FetchResult(source, FetchStatus.FAILED, error=f"timeout: {what}")
    except AddressRefused as exc:
        return FetchResult(source, FetchStatus.FAILED, error=f"refused: {exc}", asked=False)
    except httpx.TooManyRedirects:
        return FetchResult(source, FetchStatus.FAILED, error=f"more than {settings.max_redirects} "
                           "redirects (a loop? open the url in a browser)")
    except httpx.ConnectError as exc:
        return FetchResult(source, FetchStatus.FAILED,
                           error=f"cannot connect: {str(exc)[:120] or 'refused'}")
    except httpx.HTTPError as exc:
        return FetchResult(source, FetchStatus.FAILED,
                           error=f"{type(exc).__name__}: {str(exc)[:160]}")
    except ValueError as exc:  # e.g. a header httpx cannot encode
        return FetchResult(source, FetchStatus.FAILED, error=f"bad request: {str(exc)[:160]}")


def _timeout_text(exc: httpx.TimeoutException, settings: FetchSettings) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return f"could not connect within {settings.connect_timeout:g} s"
    if isinstance(exc, httpx.ReadTimeout):
        return f"server silent for {settings.read_timeout:g} s"
    return type(exc).__name__


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{(parts.hostname or '').lower()}:{parts.port or ''}"


def _client(settings: FetchSettings, limits: httpx.Limits, ssl_context: ssl.SSLContext,
            allow_private: bool) -> httpx.AsyncClient:
    timeout = httpx.Timeout(connect=settings.connect_timeout, read=settings.read_timeout,
                            write=settings.read_timeout, pool=None)
    return httpx.AsyncClient(transport=guarded_transport(allow_private, limits, ssl_context),
                             timeout=timeout, follow_redirects=True,
                             max_redirects=settings.max_redirects, trust_env=False,
                             headers={"User-Agent": settings.user_agent,
                                      "Accept-Encoding": "gzip, deflate",
                                      "Accept": "application/rss+xml, application/atom+xml, "
                                                "application/rdf+xml, application/xml;q=0.9, "
                                                "text/xml;q=0.9, */*;q=0.5"})


async def fetch_all(sources: tuple[Source, ...], states: dict[str, FeedState],
                    on_done: Callable[[FetchResult], Awaitable[object]] | None = None,
                    settings: FetchSettings = DEFAULT_SETTINGS) -> list[FetchResult]:
    """Fetch every source concurrently, bounded overall and per host; results in the
    order of `sources`. `on_done` is awaited as each fetch finishes (to parse early)."""
    # Our semaphores decide who may start; httpx's pool then never makes a request wait
    # (a pool timeout would fail feeds that merely queued behind slow ones).
    overall = asyncio.Semaphore(settings.max_connections)
    per_host: dict[str, asyncio.Semaphore] = {}
    limits = httpx.Limits(max_connections=settings.max_connections,
                          max_keepalive_connections=settings.max_connections)
    # One client per policy: sources with `allow_private` get their own connection
    # pool, so a connection opened for one is never reused for a source without it.
    ssl_context = httpx.create_ssl_context(trust_env=False)  # loading CAs takes ~50 ms
    async with _client(settings, limits, ssl_context, False) as public, \
            _client(settings, limits, ssl_context, True) as private:
        async def one(source: Source) -> FetchResult:
            state = states.get(source.name) or FeedState(source.name)
            if source.is_remote:
                host = per_host.setdefault(_host(source.url),
                                           asyncio.Semaphore(settings.per_host))
                async with host, overall:
                    result = await fetch_remote(private if source.allow_private else public,
                                                source, state, settings)
            else:
                result = await asyncio.to_thread(read_local, source, state, settings)
            if on_done:
                await on_done(result)
            return result
        return list(await asyncio.gather(*(one(s) for s in sources)))
