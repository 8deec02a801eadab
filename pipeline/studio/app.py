"""The studio's ASGI app: the pages and actions (pages.py, actions.py) behind the login
guard, plus the recipients' endpoints of `sphere webhook serve`, in one Starlette app."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import jinja2
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pipeline.delivery.webhook import EVENTS_PATH, webhook_routes
from pipeline.errors import SphereError
from pipeline.state.interface import Ledger
from pipeline.studio import actions, pages
from pipeline.studio.base import HERE, Studio, problem_page, studio_of
from pipeline.studio.jobs import Worker
from pipeline.studio.security import COOKIE, Guard, Sessions
from pipeline.web.app import PRIVATE_HEADERS, create_app


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


def studio_app(project: Path, open_store: Callable[[], Ledger], worker: Worker,
               login_token: str, public_key: ec.EllipticCurvePublicKey | None,
               unsubscribe_paths: tuple[str, ...], sender_name: str,
               clock: Callable[[], dt.datetime]) -> Starlette:
    """The studio: pages and actions behind the session, and the recipients' endpoints
    (SendGrid events, one-click unsubscribe, /health) open as `webhook serve` has them."""
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
