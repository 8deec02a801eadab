"""Logging in and out of the studio: by the printed token (solo mode, SQLite: GET
/login?token=...), or by login and password (team mode, PostgreSQL: the accounts of
`sphere user add`, checked against their argon2 hashes).

The password form is protected like every POST: a CSRF token (here a random value in a
cookie of its own, echoed by the form, since there is no session yet) and the Origin
check. Repeated failures lock the login out for a while (Throttle): a guessed password
costs an attacker a quarter of an hour per few tries."""
from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from pipeline.studio.base import CSP, studio_of
from pipeline.studio.security import COOKIE, Visitor, posted, session_of
from pipeline.web.app import PRIVATE_HEADERS, read_body

LOGIN_COOKIE = "sphere_studio_login"  # the login form's CSRF value, before any session
LOGIN_FORM_LIMIT = 8 * 1024


def _form_page(request: Request, status: int = 200, problem: str = "",
               login: str = "") -> Response:
    """The login form, its CSRF value in a short-lived cookie of its own (the one the
    browser has, if any: a second tab's form must not void the first's)."""
    token = request.cookies.get(LOGIN_COOKIE, "")
    if len(token) < 32 or not token.replace("-", "").replace("_", "").isalnum():
        token = secrets.token_urlsafe(32)
    html = studio_of(request).env.get_template("login.html").render(
        request=request, csrf=token, nav=(), flash="", visitor=None, problem=problem,
        login=login)
    response = HTMLResponse(html, status, headers={**PRIVATE_HEADERS,
                                                   "Content-Security-Policy": CSP})
    response.set_cookie(LOGIN_COOKIE, token, max_age=3600, httponly=True,
                        samesite="strict", path="/login",
                        secure=request.url.scheme == "https")
    return response


def _start(request: Request, cookie: str) -> Response:
    """303 to Home with the session's cookie (so the token or the form leaves the
    address bar, and a browser or script waiting for the page lands on Home)."""
    response = RedirectResponse("/", 303, headers=PRIVATE_HEADERS)
    response.set_cookie(COOKIE, cookie, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")
    return response


async def login(request: Request) -> Response:
    """GET /login: team mode shows the login form; solo mode, /login?token=...,
    starts a session from the printed token."""
    studio = studio_of(request)
    if studio.sessions.team:
        return _form_page(request)
    session = studio.sessions.login(request.query_params.get("token", ""))
    if session is None:
        return Response("Wrong or missing token: use the address `sphere studio` printed.\n",
                        403, media_type="text/plain", headers=PRIVATE_HEADERS)
    return _start(request, session)


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    return not origin or origin == "null" or \
        origin.rstrip("/") == f"{request.url.scheme}://{request.url.netloc}"


async def login_post(request: Request) -> Response:
    """POST /login (team mode): check the login and password, start a session."""
    studio = studio_of(request)
    if not studio.sessions.team:
        return Response("Log in with the address `sphere studio` printed.\n", 405,
                        media_type="text/plain", headers=PRIVATE_HEADERS)
    body = await read_body(request, LOGIN_FORM_LIMIT)
    form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace"),
                                          keep_blank_values=True).items()}
    expected = request.cookies.get(LOGIN_COOKIE, "")
    sent = form.get("csrf", "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()) or \
            not _same_origin(request):
        return _form_page(request, 403, "The form expired or came from another site: "
                                        "log in again.")
    name = form.get("login", "").strip().lower()
    # Counted per login, not per address: behind a proxy every visitor has its address,
    # and a team has few accounts, each held to a few guesses per window.
    keys = (f"login:{name}",)
    wait = studio.throttle.wait(*keys)
    if wait > 0:
        return _form_page(request, 429, f"Too many failed logins: wait {int(wait) // 60 + 1}"
                                        " minute(s), then try again.", name)
    password = form.get("password", "")
    account = await studio.call(lambda p: p.check_login(name, password))
    if account is None:
        studio.throttle.failed(*keys)
        return _form_page(request, 401, "Wrong login or password.", name)
    studio.throttle.cleared(*keys)
    response = _start(request, studio.sessions.start(Visitor(account.login, account.role)))
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


async def logout(request: Request) -> Response:
    """POST /logout: end this session (CSRF-checked like every POST)."""
    studio = studio_of(request)
    await posted(request)
    studio.sessions.end(session_of(request.scope))
    if studio.sessions.team:
        response: Response = RedirectResponse("/login", 303, headers=PRIVATE_HEADERS)
    else:
        response = Response("Logged out. Open the address `sphere studio` printed to log "
                            "in again.\n", media_type="text/plain", headers=PRIVATE_HEADERS)
    response.delete_cookie(COOKIE, path="/")
    return response


ROUTES = [Route("/login", login, methods=["GET"]),
          Route("/login", login_post, methods=["POST"]),
          Route("/logout", logout, methods=["POST"])]
