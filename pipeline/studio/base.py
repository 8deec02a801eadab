"""What the studio's app, pages and actions share (app.py builds the app; pages.py and
actions.py hold the routes): the Studio each request reaches, and the page helpers."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from pipeline.config import Config
from pipeline.errors import ConfigError
from pipeline.project import Project
from pipeline.state.interface import Ledger
from pipeline.studio.security import Sessions, Throttle, csrf_token, visitor_of
from pipeline.web.app import PRIVATE_HEADERS, WebContext

if TYPE_CHECKING:
    from pipeline.studio.jobs import Worker

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
    throttle: Throttle  # failed logins (team mode)

    def now(self) -> dt.datetime:
        """The studio's clock (SPHERE_NOW pins it)."""
        return self.web.clock()

    def on(self, store: Ledger) -> Project:
        """The project over the store's thread's connection, its files read anew (the
        studio shows edits made elsewhere at the next page); the same operations as the
        CLI's. Only a call in the store's thread may use it."""
        return Project.on_store(self.project, store, self.web.clock)

    async def run(self, fn: Callable[[Config, Ledger], T]) -> T:
        """fn(config, store) in the store's thread, with the project's files read anew."""
        return await self.web.store.run(lambda store: fn(self.on(store).config, store))

    async def call(self, fn: Callable[[Project], T]) -> T:
        """fn(project) in the store's thread: one of the Project's operations."""
        return await self.web.store.run(lambda store: fn(self.on(store)))


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
        visitor=visitor_of(request),
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


async def forbidden_page(request: Request, exc: Exception) -> Response:
    """What the visitor's role may not do (an assistant approving a send), as a 403 page."""
    return page(request, "forbidden.html", 403, line=str(exc))

