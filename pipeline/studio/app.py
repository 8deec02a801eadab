"""The studio's ASGI app: the pages and actions (pages.py, actions.py) behind the login
guard (security.py, login.py), plus the recipients' endpoints of `sphere webhook serve`,
in one Starlette app."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import jinja2
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from pipeline.delivery.webhook import EVENTS_PATH, webhook_routes
from pipeline.errors import SphereError
from pipeline.state.interface import Ledger
from pipeline.studio import actions, login, pages
from pipeline.studio.base import HERE, Studio, forbidden_page, problem_page
from pipeline.studio.jobs import Worker
from pipeline.studio.security import Forbidden, Guard, Sessions, Throttle, Visitor
from pipeline.web.app import create_app


def studio_app(project: Path, open_store: Callable[[], Ledger], worker: Worker,
               login_token: str, public_key: ec.EllipticCurvePublicKey | None,
               unsubscribe_paths: tuple[str, ...], sender_name: str,
               clock: Callable[[], dt.datetime], team: bool = False) -> Starlette:
    """The studio: pages and actions behind the session, and the recipients' endpoints
    (SendGrid events, one-click unsubscribe, /health) open as `webhook serve` has them.
    With `team`, visitors log in by account and password (the store's users), never by
    `login_token`."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    public = webhook_routes(public_key, unsubscribe_paths, sender_name)
    routes = [*public, *login.ROUTES, *pages.ROUTES,
              *actions.ROUTES, Mount("/static", StaticFiles(directory=HERE / "static"),
                                     name="static")]
    app = create_app(open_store, routes, clock)
    sessions = Sessions(login_token, team)
    studio = Studio(project, app.state.context, worker, env, sessions, Throttle())
    app.state.studio = studio

    async def recheck(name: str) -> Visitor | None:
        """The session's account as the database has it now (None: removed)."""
        account = await studio.web.store.run(lambda store: store.user(name))
        return Visitor(account.login, account.role) if account else None
    app.add_exception_handler(SphereError, problem_page)
    app.add_exception_handler(Forbidden, forbidden_page)
    # In team mode the login page is a page of the studio: its stylesheet and script
    # (public files of the package, no data) are served to the logged-out too.
    app.add_middleware(Guard, sessions=sessions, recheck=recheck if team else None,
                       public={"/login", "/health", EVENTS_PATH, *unsubscribe_paths},
                       public_under=("/static/",) if team else ())
    return app
