"""The studio's locks: a login token printed at start, a session cookie (HttpOnly,
SameSite=Strict), and a CSRF token on every POST.

Every path but the login, /health and the recipients' endpoints (SendGrid's signed events,
one-click unsubscribes, which carry their own proof) needs the session; a POST also needs
the session's CSRF token, in the form (`csrf`) or the X-CSRF-Token header (HTMX)."""
from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, Iterable
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from pipeline.web.app import MAX_BODY, PRIVATE_HEADERS, read_body

COOKIE = "sphere_studio"
TOKEN_ENV = "SPHERE_STUDIO_TOKEN"
FORM_LIMIT = 256 * 1024  # a note or a contact's fields; an upload has its own limit
UPLOAD_LIMIT = MAX_BODY


class Sessions:
    """Logged-in browsers: session id -> CSRF token (in memory: a restart prints a new
    login address, and every browser logs in again)."""

    def __init__(self, login_token: str) -> None:
        self.login_token = login_token
        self._csrf: dict[str, str] = {}

    def login(self, token: str) -> str | None:
        """A new session id for the right token, else None."""
        if not token or not hmac.compare_digest(token.encode(), self.login_token.encode()):
            return None
        session = secrets.token_urlsafe(32)
        self._csrf[session] = secrets.token_urlsafe(32)
        return session

    def csrf(self, session: str | None) -> str | None:
        """The CSRF token of a live session, None if there is no such session."""
        return self._csrf.get(session or "")


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


class Guard:
    """ASGI middleware: refuses (401) every request without a session, except `public`
    paths; hands the session's CSRF token to the handlers as scope state."""

    def __init__(self, app: ASGIApp, sessions: Sessions, public: Iterable[str]) -> None:
        self.app = app
        self.sessions = sessions
        self.public = frozenset(public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.public:
            await self.app(scope, receive, send)
            return
        csrf = self.sessions.csrf(session_of(scope))
        if csrf is None:
            body = (b"Not logged in. Open the address `sphere studio` printed "
                    b"(Studio: http://.../login?token=...).\n")
            headers = [(k.lower().encode(), v.encode()) for k, v in PRIVATE_HEADERS.items()]
            await send({"type": "http.response.start", "status": 401, "headers": [
                *headers, (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        scope.setdefault("state", {})["csrf"] = csrf
        await self.app(scope, receive, send)


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
