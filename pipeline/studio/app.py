"""The studio's ASGI app: the pages and actions (pages.py, actions.py) behind the login
guard, plus the recipients' endpoints of `sphere webhook serve`, in one Starlette app."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import jinja2
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pipeline.config import Config, load_config
from pipeline.errors import ConfigError, SphereError
from pipeline.state.store import Store
from pipeline.web.app import PRIVATE_HEADERS, WebContext, create_app
from pipeline.delivery.webhook import EVENTS_PATH, webhook_routes
from pipeline.studio.jobs import Worker
from pipeline.studio.security import COOKIE, Guard, Sessions, csrf_token

HERE = Path(__file__).parent
T = TypeVar("T")
# Pages load only our own script and styles; forms post only here; no other site may
# frame the studio. The email previews have their own, stricter policy (pages.py).
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
       "script-src 'self'; frame-src 'self'; frame-ancestors 'self'; form-action 'self'; "
       "base-uri 'none'; object-src 'none'")
NAV = ("Review", "Contacts", "Calendar", "Report", "Approvals", "Feeds")


@dataclass(frozen=True)
class Studio:
    """What the pages share: the project, its store thread, the worker, the templates."""

    project: Path
    web: WebContext
    worker: Worker
    env: jinja2.Environment
    sessions: Sessions

    def now(self) -> dt.datetime:
        """The studio's clock (SPHERE_NOW pins it)."""
        return self.web.clock()

    async def run(self, fn: Callable[[Config, Store], T]) -> T:
        """fn(config, store) in the store's thread, with the project's files read anew
        (the studio shows edits made elsewhere at the next page)."""
        return await self.web.store.run(lambda store: fn(load_config(self.project), store))


def studio_of(request: Request) -> Studio:
    """The Studio of the app serving this request."""
    return request.app.state.studio  # type: ignore[no-any-return]


def link(path: str, **query: str) -> str:
    """A URL path with its query string, every part quoted."""
    return quote(path) + (f"?{urlencode(query)}" if query else "")


def page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    """A whole page (or, for HTMX, the same page: it swaps the part it asked for)."""
    studio = studio_of(request)
    html = studio.env.get_template(template).render(
        request=request, csrf=csrf_token(request), nav=NAV, link=link,
        flash=request.query_params.get("done", ""), **context)
    return HTMLResponse(html, status, headers={**PRIVATE_HEADERS,
                                               "Content-Security-Policy": CSP})


def back(path: str, done: str = "", **query: str) -> Response:
    """After a POST: see the page again (303), with what was done."""
    if done:
        query["done"] = done
    return RedirectResponse(link(path, **query), 303, headers=PRIVATE_HEADERS)


async def problem_page(request: Request, exc: Exception) -> Response:
    """A user's error (bad files, a refused edit) as a page, never a traceback."""
    lines = [str(p) for p in exc.problems] if isinstance(exc, ConfigError) else [str(exc)]
    return page(request, "problem.html", 400, lines=lines)


async def login(request: Request) -> Response:
    """GET /login?token=...: start a session and go to Home (303, so the token leaves the
    address bar and a browser or script waiting for the page lands on Home)."""
    studio = studio_of(request)
    session = studio.sessions.login(request.query_params.get("token", ""))
    if session is None:
        return Response("Wrong or missing token: use the address `sphere studio` printed.\n",
                        403, media_type="text/plain", headers=PRIVATE_HEADERS)
    response = RedirectResponse("/", 303, headers=PRIVATE_HEADERS)
    response.set_cookie(COOKIE, session, httponly=True, samesite="strict", path="/")
    return response


def studio_app(project: Path, open_store: Callable[[], Store], worker: Worker,
               login_token: str, public_key: ec.EllipticCurvePublicKey | None,
               unsubscribe_paths: tuple[str, ...], sender_name: str,
               clock: Callable[[], dt.datetime]) -> Starlette:
    """The studio: pages and actions behind the session, and the recipients' endpoints
    (SendGrid events, one-click unsubscribe, /health) open as `webhook serve` has them."""
    from pipeline.studio import actions, pages  # the routes need Studio, defined above

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    public = webhook_routes(public_key, unsubscribe_paths, sender_name)
    routes = [*public, Route("/login", login, methods=["GET"]), *pages.ROUTES,
              *actions.ROUTES, Mount("/static", StaticFiles(directory=HERE / "static"),
                                     name="static")]
    app = create_app(open_store, routes, clock)
    sessions = Sessions(login_token)
    app.state.studio = Studio(project, app.state.context, worker, env, sessions)
    app.add_exception_handler(SphereError, problem_page)
    app.add_middleware(Guard, sessions=sessions,
                       public={"/login", "/health", EVENTS_PATH, *unsubscribe_paths})
    return app
