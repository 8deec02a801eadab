"""The studio's one worker thread: approved sends started from the browser and the
daemon's ticks run there, one at a time, so two of them never deliver at once."""
from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from pipeline.approval import drafts, review
from pipeline.config import Config
from pipeline.delivery.deliver import Transport
from pipeline.errors import SphereError
from pipeline.models import RunSummary
from pipeline.project import Project
from pipeline.scheduling import daemon
from pipeline.state.interface import Ledger

log = logging.getLogger("sphere.studio")


@dataclass(frozen=True)
class SendProgress:
    """Where a send started from the studio stands."""

    send_id: str
    done: int = 0
    total: int = 0
    state: str = "waiting"  # waiting | sending | done | failed
    line: str = ""


def summary_line(summaries: list[RunSummary]) -> str:
    """'Sent 28, 2 skipped, 0 failed' over a list of run summaries."""
    sent = sum(s.sent for s in summaries)
    skipped = sum(len(s.skipped) for s in summaries)
    failed = sum(s.failed for s in summaries)
    unknown = sum(s.unknown for s in summaries)
    line = f"Sent {sent}, {skipped} skipped, {failed} failed"
    return line + (f", {unknown} unknown (see sphere status)" if unknown else "")


class Worker:
    """Runs sends and ticks in one thread; keeps each send's progress for the pages."""

    @classmethod
    def for_project(cls, project: Project) -> Worker:
        """A worker for `project`: its files read anew for each job (edits made meanwhile
        count), a store of its own per job, campaigns.yaml's transport."""
        from pipeline.delivery.transports import choose_transport
        root, clock = project.config.project, project.clock
        return cls(lambda: Project.open(root, clock).config, project.open_store,
                   lambda config: choose_transport(config, clock=clock), clock)

    def __init__(self, load_config: Callable[[], Config], open_store: Callable[[], Ledger],
                 make_transport: Callable[[Config], Transport],
                 clock: Callable[[], dt.datetime]) -> None:
        self.load_config, self.open_store = load_config, open_store
        self.make_transport, self.clock = make_transport, clock
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sphere-studio-send")
        self._lock = threading.Lock()
        self._progress: dict[str, SendProgress] = {}
        self._stopping = threading.Event()
        self._ticker: threading.Thread | None = None
        self._daemon_lock: daemon.ProjectLock | None = None
        self.last_tick: str = ""  # what the last tick said, for Home

    # ---- sends from the Review page ---------------------------------------------------
    def progress(self, send_id: str) -> SendProgress | None:
        """The progress of a send started here, if any."""
        with self._lock:
            return self._progress.get(send_id)

    def _set(self, send_id: str, **changes: Any) -> None:
        with self._lock:
            self._progress[send_id] = replace(self._progress.get(send_id) or
                                              SendProgress(send_id), **changes)

    def send_draft(self, draft_id: int, send_id: str) -> Future[None]:
        """Send the approved people of a draft whose time has come, in the worker."""
        self._set(send_id, state="waiting", done=0, total=0, line="")
        return self._executor.submit(self._send, draft_id, send_id)

    def _send(self, draft_id: int, send_id: str) -> None:
        store = self.open_store()
        try:
            config = self.load_config()
            draft = drafts.load(store, draft_id=draft_id)[0]
            self._set(send_id, state="sending")

            def tick(done: int, total: int, _email: str) -> None:
                self._set(send_id, done=done, total=total)

            summaries = review.send_now(config, store, self.make_transport(config), draft,
                                        self.clock, progress=tick)
            self._set(send_id, state="done", line=summary_line(summaries))
        except SphereError as exc:
            self._set(send_id, state="failed", line=str(exc))
        except Exception as exc:
            log.exception("send of %s failed", send_id)
            self._set(send_id, state="failed", line=f"{type(exc).__name__}: {exc}")
        finally:
            store.close()

    # ---- the daemon -------------------------------------------------------------------
    def start_daemon(self, config: Config, tick_seconds: int = daemon.TICK_SECONDS) -> None:
        """Run the daemon's tick every `tick_seconds` (the first at once); LockedError if
        a `sphere run` already serves this project."""
        lock = daemon.ProjectLock(config.state_dir)
        lock.acquire()
        self._daemon_lock = lock

        def loop() -> None:
            while not self._stopping.is_set():
                self._executor.submit(self._tick).result()
                self._stopping.wait(tick_seconds)
        self._ticker = threading.Thread(target=loop, name="sphere-studio-daemon",
                                        daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        store = self.open_store()
        try:
            config = self.load_config()
            transport = self.make_transport(config)
            try:
                report = daemon.tick(config, store, transport, self.clock(),
                                     should_stop=self._stopping.is_set)
            finally:
                transport.close()
            line = summary_line(list(report.summaries)) if report.summaries else "nothing due"
            self.last_tick = f"{self.clock():%Y-%m-%d %H:%M} UTC: {line}"
        except Exception as exc:
            log.exception("daemon tick failed")
            self.last_tick = f"failed: {exc}"
        finally:
            store.close()

    def stop(self) -> None:
        """Finish the running job, run no more, release the daemon's lock."""
        self._stopping.set()
        self._executor.shutdown(wait=True)
        if self._daemon_lock is not None:
            self._daemon_lock.release()
