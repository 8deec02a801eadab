"""The studio's locks: a session cookie (signed, HttpOnly, SameSite=Strict) started by
the login token printed at start (solo mode, SQLite) or by a login and password (team
mode, PostgreSQL: the accounts of `sphere user add`), and a CSRF token on every POST.

Every path but the login, /health and the recipients' endpoints (SendGrid's signed events,
one-click unsubscribes, which carry their own proof) needs the session; a POST also needs
the session's CSRF token, in the form (`csrf`) or the X-CSRF-Token header (HTMX). In team
mode each request reads the session's account again: a removed account is logged out at
once, and a changed role counts at the next click."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from pipeline.models import Role
from pipeline.web.app import MAX_BODY, PRIVATE_HEADERS, read_body

COOKIE = "sphere_studio"
TOKEN_ENV = "SPHERE_STUDIO_TOKEN"
FORM_LIMIT = 256 * 1024  # a note or a contact's fields; an upload has its own limit
UPLOAD_LIMIT = MAX_BODY


@dataclass(frozen=True)
class Visitor:
    """Who a session belongs to: an account (team mode), or the holder of the printed
    token (solo mode: the agent, login "")."""

    login: str
    role: Role


TOKEN_HOLDER = Visitor("", Role.AGENT)


@dataclass(frozen=True)
class Session:
    """One logged-in browser: its CSRF token and who it is."""

    csrf: str
    visitor: Visitor


class Sessions:
    """Logged-in browsers: session id -> Session (in memory: a restart logs every browser
    out). The cookie holds the id and an HMAC of it under a key of this process."""

    def __init__(self, login_token: str, team: bool = False) -> None:
        self.login_token = login_token
        self.team = team  # log in by account and password, never by the token
        self._key = secrets.token_bytes(32)
        self._sessions: dict[str, Session] = {}

    def _sign(self, session_id: str) -> str:
        mac = hmac.new(self._key, session_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def login(self, token: str) -> str | None:
        """A new session (its cookie value) for the right token, else None; never in
        team mode."""
        if self.team or not token or \
                not hmac.compare_digest(token.encode(), self.login_token.encode()):
            return None
        return self.start(TOKEN_HOLDER)

    def start(self, visitor: Visitor) -> str:
        """A new session for `visitor`; returns the cookie's value."""
        session_id = secrets.token_urlsafe(32)
        self._sessions[session_id] = Session(secrets.token_urlsafe(32), visitor)
        return f"{session_id}.{self._sign(session_id)}"

    def _id(self, cookie: str | None) -> str:
        session_id, _, mac = (cookie or "").partition(".")
        if not session_id or not hmac.compare_digest(mac.encode(),
                                                     self._sign(session_id).encode()):
            return ""
        return session_id

    def get(self, cookie: str | None) -> Session | None:
        """The live session of a cookie's value, None if forged, ended or unknown."""
        return self._sessions.get(self._id(cookie))

    def csrf(self, cookie: str | None) -> str | None:
        """The CSRF token of a live session, None if there is no such session."""
        session = self.get(cookie)
        return session.csrf if session else None

    def end(self, cookie: str | None) -> None:
        """Log this session out."""
        self._sessions.pop(self._id(cookie), None)

    def renew(self, cookie: str | None, visitor: Visitor) -> None:
        """Keep the session, with its account as read again (a changed role)."""
        session_id = self._id(cookie)
        if session_id in self._sessions:
            self._sessions[session_id] = Session(self._sessions[session_id].csrf, visitor)


class Throttle:
    """Failed logins per key (a login name): after `limit` failures
    within `window` seconds the key is refused until the oldest of them ages out."""

    def __init__(self, limit: int = 5, window: float = 15 * 60,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and times[0] <= self.clock() - self.window:
            times.popleft()
        return times

    def wait(self, *keys: str) -> float:
        """Seconds until these keys may try again (0: now)."""
        waits = [times[0] + self.window - self.clock() for times in map(self._recent, keys)
                 if len(times) >= self.limit]
        return max(waits, default=0.0)

    def failed(self, *keys: str) -> None:
        """Count a failure against each key."""
        if len(self._failures) > 10_000:  # many addresses: forget those gone quiet
            self._failures = {k: v for k, v in self._failures.items() if self._recent(k)}
        for key in keys:
            times = self._recent(key)
            times.append(self.clock())
            self._failures[key] = times

    def cleared(self, *keys: str) -> None:
        """Forget the failures of these keys (after a success)."""
        for key in keys:
            self._failures.pop(key, None)


def session_of(scope: Scope) -> str | None:
    """The session id from the request's cookie header."""
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # noqa: BLE001 - a malformed cookie is no session
                return None
            if COOKIE in jar:
                return jar[COOKIE].value
    return None


Recheck = Callable[[str], Awaitable[Visitor | None]]


def _answer(status: int, body: bytes, extra: list[tuple[bytes, bytes]]) -> list[dict]:
    headers = [(k.lower().encode(), v.encode()) for k, v in PRIVATE_HEADERS.items()]
    return [{"type": "http.response.start", "status": status, "headers": [
        *headers, *extra, (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode())]},
        {"type": "http.response.body", "body": body}]


class Guard:
    """ASGI middleware: refuses (401) every request without a session, except `public`
    paths (team mode sends a browser's GET to the login page instead); hands the
    session's CSRF token and visitor to the handlers as scope state. In team mode,
    `recheck` reads the session's account anew (None: it is gone)."""

    def __init__(self, app: ASGIApp, sessions: Sessions, public: Iterable[str],
                 recheck: Recheck | None = None, public_under: tuple[str, ...] = ()
                 ) -> None:
        self.app = app
        self.sessions = sessions
        self.public = frozenset(public)
        self.public_under = public_under  # path prefixes open to all (the login's styles)
        self.recheck = recheck

    async def _visitor(self, cookie: str | None) -> Session | None:
        session = self.sessions.get(cookie)
        if session is None or self.recheck is None:
            return session
        visitor = await self.recheck(session.visitor.login)
        if visitor is None:
            self.sessions.end(cookie)
            return None
        if visitor != session.visitor:
            self.sessions.renew(cookie, visitor)
        return Session(session.csrf, visitor)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.public or \
                scope["path"].startswith(self.public_under):
            await self.app(scope, receive, send)
            return
        session = await self._visitor(session_of(scope))
        if session is None:
            if self.sessions.team and scope["method"] in ("GET", "HEAD"):
                messages = _answer(303, b"Log in first: /login\n", [(b"location", b"/login")])
            elif self.sessions.team:
                messages = _answer(401, b"Not logged in: log in at /login.\n", [])
            else:
                messages = _answer(401, b"Not logged in. Open the address `sphere studio` "
                                   b"printed (Studio: http://.../login?token=...).\n", [])
            for message in messages:
                await send(message)
            return
        state = scope.setdefault("state", {})
        state["csrf"], state["visitor"] = session.csrf, session.visitor
        await self.app(scope, receive, send)


def visitor_of(request: Request) -> Visitor:
    """Who is logged in on this request's session."""
    return request.state.visitor  # type: ignore[no-any-return]


class Forbidden(Exception):
    """What this visitor's role may not do (the studio answers 403 with a page)."""


def require_agent(request: Request, what: str) -> None:
    """Refuse (Forbidden, 403) unless the visitor's role may approve and send."""
    visitor = visitor_of(request)
    if not visitor.role.may_approve:
        raise Forbidden(f"{visitor.login} is an {visitor.role}: only an agent may {what}")


def csrf_token(request: Request) -> str:
    """This session's CSRF token (for forms and HTMX's header)."""
    return str(request.state.csrf)


def _check(request: Request, sent: str) -> None:
    expected = csrf_token(request)
    sent = sent or request.headers.get("x-csrf-token", "")
    if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise HTTPException(403, "Forbidden: missing or wrong CSRF token; reload the page")
    origin = request.headers.get("origin")
    if origin and origin != "null" and origin.rstrip("/") != \
            f"{request.url.scheme}://{request.url.netloc}":
        raise HTTPException(403, "Forbidden: the form came from another site")


async def posted(request: Request) -> dict[str, str]:
    """The fields of a form POST (urlencoded), refused (403) without the CSRF token."""
    body = await read_body(request, FORM_LIMIT)
    fields = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace"),
                                            keep_blank_values=True).items()}
    _check(request, fields.get("csrf", ""))
    return fields


async def uploaded(request: Request) -> tuple[dict[str, str], tuple[str, bytes] | None]:
    """The fields and the one file of a multipart POST, refused (403) without the CSRF
    token."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > UPLOAD_LIMIT:
        raise HTTPException(413, f"the file is over {UPLOAD_LIMIT // (1024 * 1024)} MB")
    form = await request.form(max_files=1, max_fields=20, max_part_size=UPLOAD_LIMIT)
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    _check(request, fields.get("csrf", ""))
    for value in form.values():
        if not isinstance(value, str):
            return fields, (value.filename or "upload", await value.read())
    return fields, None


Handler = Callable[[Request], Awaitable[object]]
