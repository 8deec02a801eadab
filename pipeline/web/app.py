"""The ASGI app factory: routes in, a Starlette app out, sharing one project store.

Handlers are coroutines on uvicorn's event loop, so nothing they do may block it: the
SQLite store is used from one dedicated thread (`StoreThread`), and request bodies are
read with a size cap (`read_body`). The studio mounts its routes here too."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute

from pipeline.names import utc_now
from pipeline.state.interface import Ledger

T = TypeVar("T")
# SendGrid batches events; a real batch is well under this. The studio's forms are far
# smaller. A bigger body is refused before a byte of it is read.
MAX_BODY = 8 * 1024 * 1024
# Headers every answer carries: nothing here is cacheable (unsubscribe pages name an
# address), and a page's URL (a token) must not leak to another site as a Referer.
PRIVATE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                   "X-Content-Type-Options": "nosniff"}


class StoreThread:
    """The project's Ledger, opened and used in one dedicated thread: a SQLite connection
    belongs to the thread that opened it, and a query waiting on a lock held by a running
    `sphere send` must stall that thread, never the event loop serving everyone else."""

    def __init__(self, open_store: Callable[[], Ledger]) -> None:
        self._open = open_store
        self._store: Ledger | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sphere-store")

    def _call(self, fn: Callable[[Ledger], T]) -> T:
        if self._store is None:
            self._store = self._open()
        return fn(self._store)

    async def run(self, fn: Callable[[Ledger], T]) -> T:
        """fn(store), run in the store's thread; awaits its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    def close(self) -> None:
        """Close the store in its own thread and stop the thread."""
        def shut() -> None:
            if self._store is not None:
                self._store.close()
                self._store = None
        self._executor.submit(shut).result()
        self._executor.shutdown()


@dataclass(frozen=True)
class WebContext:
    """What every handler shares; reach it as `request.app.state.context`."""

    store: StoreThread
    clock: Callable[[], dt.datetime]


class BodyError(Exception):
    """A request body refused before or while reading it; becomes the response."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The whole body, at most `limit` bytes, or BodyError (400, 413, or 408 when the
    client went away or the server's request deadline cut it off)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise BodyError(400, "bad Content-Length")
        if int(declared) > limit:
            raise BodyError(413, f"body over the {limit}-byte limit")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:  # a chunked body declares no length up front
                raise BodyError(413, f"body over the {limit}-byte limit")
            chunks.append(chunk)
    except ClientDisconnect:
        raise BodyError(408, "the request body did not arrive in time") from None
    return b"".join(chunks)


def text_response(status: int, text: str, close: bool = False) -> Response:
    """A short plain-text answer. `close` ends the connection afterwards: said when the
    body was refused unread, so its bytes are never waited for."""
    headers = dict(PRIVATE_HEADERS)
    if close:
        headers["Connection"] = "close"
    return PlainTextResponse(text + "\n", status, headers=headers)


async def _body_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BodyError)
    return text_response(exc.status, exc.text, close=True)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return text_response(exc.status_code, str(exc.detail).lower(),
                         close=exc.status_code == 413)


def create_app(open_store: Callable[[], Ledger], routes: Sequence[BaseRoute],
               clock: Callable[[], dt.datetime] | None = None) -> Starlette:
    """The ASGI app serving `routes`; the store opens on first use and closes when the
    server stops."""
    context = WebContext(StoreThread(open_store),
                         clock or utc_now)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            context.store.close()

    # Handlers read bodies with read_body (capped, and a disconnect becomes a BodyError),
    # never request.body() (uncapped).
    app = Starlette(routes=list(routes), lifespan=lifespan,
                    exception_handlers={BodyError: _body_error, HTTPException: _http_error})
    app.state.context = context
    return app
