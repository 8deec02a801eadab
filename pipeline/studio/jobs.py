"""The studio's one worker thread: approved sends started from the browser and the
daemon's ticks run there, one at a time, so two of them never deliver at once."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from pipeline.config import Config
from pipeline.errors import SphereError
from pipeline.outcomes import summary_line
from pipeline.project import Project
from pipeline.scheduling import daemon

log = logging.getLogger("sphere.studio")


@dataclass(frozen=True)
class SendProgress:
    """Where a send started from the studio stands."""

    send_id: str
    done: int = 0
    total: int = 0
    state: str = "waiting"  # waiting | sending | done | failed
    line: str = ""


class Worker:
    """Runs sends and ticks in one thread; keeps each send's progress for the pages."""

    @classmethod
    def for_project(cls, project: Project) -> Worker:
        """A worker for `project`: its files read anew for each job (edits made meanwhile
        count), a store of its own per job, campaigns.yaml's transport."""
        root, clock = project.config.project, project.clock
        return cls(lambda: Project.open(root, clock))

    def __init__(self, open_project: Callable[[], Project]) -> None:
        self.open_project = open_project
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
        try:
            with self.open_project() as project:
                self._set(send_id, state="sending")

                def tick(done: int, total: int, _email: str) -> None:
                    self._set(send_id, done=done, total=total)

                summaries = project.send_draft(draft_id, progress=tick)
            self._set(send_id, state="done", line=summary_line(summaries))
        except SphereError as exc:
            self._set(send_id, state="failed", line=str(exc))
        except Exception as exc:
            log.exception("send of %s failed", send_id)
            self._set(send_id, state="failed", line=f"{type(exc).__name__}: {exc}")

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
        try:
            with self.open_project() as project:
                # start_daemon holds the project's lock for as long as the studio runs.
                report = project.tick(should_stop=self._stopping.is_set, locked=True)
                at = project.now()
            line = summary_line(list(report.summaries)) if report.summaries else "nothing due"
            self.last_tick = f"{at:%Y-%m-%d %H:%M} UTC: {line}"
        except Exception as exc:
            log.exception("daemon tick failed")
            self.last_tick = f"failed: {exc}"

    def stop(self) -> None:
        """Finish the running job, run no more, release the daemon's lock."""
        self._stopping.set()
        self._executor.shutdown(wait=True)
        if self._daemon_lock is not None:
            self._daemon_lock.release()
