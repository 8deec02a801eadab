"""Rendering ahead, in worker processes: the dispatcher's one thread spent half its time
rendering (Jinja, MIME), so a large send renders on every core while that thread keeps
the ledger. Only the rendering moves: the dispatcher still begins each message's ledger
row before a transport sees it, so the exactly-once rules do not change. Workers
start as workers.py says.
"""
from __future__ import annotations

import datetime as dt
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace
from functools import partial
from typing import Self

from pipeline.delivery.dispatch import Job
from pipeline.models import Plan, PlannedEmail, RenderedEmail
from pipeline.rendering.render import Renderer
from pipeline.workers import context, cores, exit_with

# A transport's picklable step turning a rendered email into the one it sends (with
# `wire` set, and the parts it no longer reads emptied).
Prepare = Callable[[RenderedEmail], RenderedEmail]

# Below this many emails, starting worker processes costs more than it saves.
POOL_FROM = 300
CHUNK = 32  # emails per task: big enough to amortise a round trip, small enough to stream
AHEAD = 6  # tasks queued per worker, so a worker never waits for the dispatcher

_renderer: Renderer | None = None  # one per worker process


_raw_only = False  # the transport reads only `raw`: do not ship html and text back
# The transport's own finishing step (SendGrid's JSON body), run here beside rendering
# so the dispatcher's thread, which the transport's threads share, does not build it.
_prepare: Prepare | None = None


def _start(renderer: Renderer, parent: int, raw_only: bool, prepare: Prepare | None
           ) -> None:
    global _renderer, _raw_only, _prepare
    _renderer, _raw_only, _prepare = renderer, raw_only, prepare
    exit_with(parent)


def _render_chunk(plan: Plan, chunk: Sequence[PlannedEmail], now: dt.datetime
                  ) -> list[RenderedEmail | None]:
    """Render a chunk in a worker; None where rendering failed (the dispatcher renders
    that one again itself, so the user sees the real error, hint and all)."""
    assert _renderer is not None
    out: list[RenderedEmail | None] = []
    for planned in chunk:
        try:
            rendered = _renderer.render(plan, planned, now)
            if _prepare is not None:
                out.append(_prepare(rendered))
                continue
            # Unpickling the HTML and text twice over costs the dispatcher's thread
            # 0.2 ms a message when the transport sends `raw` alone.
            out.append(replace(rendered, html="", text="") if _raw_only else rendered)
        except Exception:  # noqa: BLE001 - reported by the dispatcher's own render
            out.append(None)
    return out


def pool_size(emails: int) -> int:
    """Worker processes for a send of `emails`: none for a small one, else one per core."""
    if emails < POOL_FROM:
        return 0
    return min(cores(), 8)


class RenderAhead:
    """Jobs for dispatch() whose messages are rendered ahead in `workers` processes (in
    this process when `workers` is 0); with `raw_only` (the transport sends the MIME
    bytes alone), their `html` and `text` are left empty; with `prepare`, each is passed
    through it in the worker. Use as a context manager: leaving it stops the workers,
    rendered or not."""

    def __init__(self, renderer: Renderer, workers: int, raw_only: bool = False,
                 prepare: Prepare | None = None) -> None:
        self.renderer = renderer
        self.workers = workers
        self._pool = ProcessPoolExecutor(
            workers, mp_context=context("pipeline.rendering.pool"), initializer=_start,
            initargs=(renderer, os.getpid(), raw_only, prepare)) if workers else None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def jobs(self, plan: Plan, now: Callable[[], dt.datetime],
             skip: Callable[[str], bool] = lambda email: False) -> Iterator[Job]:
        """One Job per planned email, in plan order; emails for which `skip` is true
        (already sent) are not rendered ahead, only if the dispatcher asks."""
        if self._pool is None:
            for planned in plan.emails:
                yield Job(planned.contact.email, partial(self._here, plan, planned, now))
            return
        head = Plan(plan.campaign, plan.send_id, plan.period, (), ())  # each task's copy
        todo = [i for i, p in enumerate(plan.emails) if not skip(p.contact.email)]
        chunks = deque(todo[k:k + CHUNK] for k in range(0, len(todo), CHUNK))
        queued: deque[tuple[list[int], Future[list[RenderedEmail | None]]]] = deque()
        ready: dict[int, RenderedEmail | None] = {}
        order: deque[int] = deque()  # ready's keys, ascending (chunks come in plan order)
        pool = self._pool

        def top_up() -> None:
            while chunks and len(queued) < AHEAD * self.workers:
                idx = chunks.popleft()
                try:
                    future = pool.submit(_render_chunk, head, [plan.emails[i] for i in idx],
                                         now())
                except RuntimeError:  # the pool broke (a worker was killed): render here
                    chunks.clear()
                    return
                queued.append((idx, future))

        def collect(future: Future[list[RenderedEmail | None]], size: int
                    ) -> list[RenderedEmail | None]:
            try:
                return future.result()
            except Exception:  # noqa: BLE001 - a lost worker: those are rendered here
                return [None] * size

        def take(i: int) -> RenderedEmail:
            planned = plan.emails[i]
            while i not in ready and queued and queued[0][0][0] <= i:
                idx, future = queued.popleft()
                ready.update(zip(idx, collect(future, len(idx)), strict=True))
                order.extend(idx)
                top_up()
            rendered = ready.pop(i, None)
            while order and order[0] <= i:  # i, and any the dispatcher skipped before it
                ready.pop(order.popleft(), None)
            # Not rendered ahead (skipped, or it failed there): render it here.
            return rendered or self._here(plan, planned, now)

        top_up()
        for i, planned in enumerate(plan.emails):
            yield Job(planned.contact.email, partial(take, i))

    def _here(self, plan: Plan, planned: PlannedEmail, now: Callable[[], dt.datetime]
              ) -> RenderedEmail:
        return self.renderer.render(plan, planned, now())
