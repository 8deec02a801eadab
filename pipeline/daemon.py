"""The scheduler daemon (`sphere run`): APScheduler glue around the pure calendar.

Every tick computes what fell due since the last tick with schedule.calendar (the same
function `sphere schedule` prints) and delivers it through the runner; the ledger makes a
repeated or overlapping tick harmless. The checkpoint lives in the project's SQLite, and so
does APScheduler's job store, so a restart resumes where the last run left off.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .audience import load_audience
from .config import Config
from .deliver import Transport
from .errors import LockedError
from .models import Contact, RunSummary
from .runner import approved_items, run_due, run_ingest
from .schedule import Calendar, Due, Referral, calendar, split_missed
from .store import Store

log = logging.getLogger("sphere.daemon")
CHECKPOINT = "scheduler.last_tick"
TICK_SECONDS = 60
_daemons: dict[str, Daemon] = {}  # project path -> the running daemon (for the job)


@dataclass(frozen=True)
class TickReport:
    """What one tick did."""

    window: tuple[dt.datetime, dt.datetime]
    summaries: tuple[RunSummary, ...]
    missed: tuple[Due, ...]  # due during downtime but older than the catch-up window
    capped: tuple[Due, ...]


def all_contacts(config: Config) -> tuple[Contact, ...]:
    """Every contact of every audience file, one entry per (audience, person)."""
    out: list[Contact] = []
    for path in config.audience_files:
        out.extend(load_audience(path, config.project).contacts)
    return tuple(out)


def referrals(store: Store) -> tuple[Referral, ...]:
    """The stored referrals, as the calendar wants them."""
    return tuple(Referral(id=r[0], by_email=r[1], name=r[2],
                          received=dt.date.fromisoformat(r[3]), status=r[4],
                          updated=dt.datetime.fromisoformat(r[5]))
                 for r in store.referrals())


def project_calendar(config: Config, store: Store, start: dt.datetime, end: dt.datetime
                     ) -> Calendar:
    """The calendar of one project between two instants, counting recent sends for the
    frequency cap."""
    rules = config.scheduling
    recent = store.recent_sends(start - dt.timedelta(days=rules.cap_days)) \
        if rules.cap_max else {}
    return calendar(config, all_contacts(config), referrals(store), start, end, recent)


def tick(config: Config, store: Store, transport: Transport, now: dt.datetime,
         dry_run: bool = False, should_stop: Callable[[], bool] = lambda: False
         ) -> TickReport:
    """Deliver what fell due since the last checkpoint; send late items only within the
    catch-up window, report older ones as missed; then move the checkpoint."""
    grace = dt.timedelta(hours=config.scheduling.catch_up_hours)
    saved = store.meta(CHECKPOINT)
    # A first start looks back one catch-up window, so a daemon started at 09:05 on the
    # 1st still sends the 09:00 newsletter.
    start = dt.datetime.fromisoformat(saved) if saved else now - grace
    if start >= now:
        return TickReport((start, now), tuple(_send_approved(config, store, transport, now,
                                                             dry_run, should_stop)), (), ())
    cal = project_calendar(config, store, start, now)
    catch_up, missed = split_missed(cal.due, now, grace)
    for d in missed:
        log.warning("missed while stopped (older than %s h): %s to %s at %s",
                    config.scheduling.catch_up_hours, d.send_id, d.email, d.local)
    summaries: list[RunSummary] = []
    if catch_up and not should_stop():
        if any(d.kind == "campaign" for d in catch_up):
            # A digest is only as fresh as its feeds: ingest once before the sends.
            report = run_ingest(config, store, now)
            if report.failed:
                log.warning("ingest before sending: %s", report.line())
        summaries = run_due(config, store, transport, catch_up, lambda: now, dry_run,
                            should_stop=should_stop)
    summaries += _send_approved(config, store, transport, now, dry_run, should_stop)
    if not dry_run and not should_stop():
        store.set_meta(CHECKPOINT, now.isoformat())
    return TickReport((start, now), tuple(summaries), tuple(missed), cal.capped)


def _send_approved(config: Config, store: Store, transport: Transport, now: dt.datetime,
                   dry_run: bool, should_stop: Callable[[], bool]) -> list[RunSummary]:
    """Drafts approved since they fell due go out now: their time has come already."""
    approved = approved_items(config, store, now)
    if not approved or should_stop():
        return []
    return run_due(config, store, transport, approved, lambda: now, dry_run,
                   should_stop=should_stop)


class ProjectLock:
    """One daemon per project: an exclusive flock on var/daemon.lock, released by the
    kernel if the process dies, so a crash never leaves a stale lock behind."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "daemon.lock"
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock or raise LockedError naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise LockedError(f"another `sphere run` is already running for this project "
                              f"(pid {holder}, lock {self.path})",
                              "stop it first (kill -TERM that pid); one daemon per project "
                              "keeps every send exactly once") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        """Drop the lock."""
        if self._fh:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


class Daemon:
    """`sphere run`: a BlockingScheduler whose one persistent job is the tick."""

    def __init__(self, config: Config, open_store: Callable[[], Store],
                 transport: Transport, clock: Callable[[], dt.datetime],
                 tick_seconds: int = TICK_SECONDS,
                 on_tick: Callable[[TickReport], None] | None = None) -> None:
        # The store is opened per tick, in the thread that runs it: an SQLite connection
        # belongs to one thread.
        self.config, self.open_store, self.transport = config, open_store, transport
        self.clock, self.tick_seconds, self.on_tick = clock, tick_seconds, on_tick
        self.lock = ProjectLock(config.state_dir)
        self.stopping = threading.Event()
        self.scheduler = None

    def run_tick(self) -> None:
        """One tick (also what the scheduled job calls)."""
        store = self.open_store()
        try:
            report = tick(self.config, store, self.transport, self.clock(),
                          should_stop=self.stopping.is_set)
        finally:
            store.close()
        if self.on_tick:
            self.on_tick(report)

    def run(self) -> None:
        """Block until SIGTERM or SIGINT; an in-flight tick finishes and settles first."""
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.blocking import BlockingScheduler

        self.lock.acquire()
        key = str(self.config.project)
        _daemons[key] = self
        try:
            # Our schema and WAL mode first: once APScheduler's connection holds the file,
            # SQLite refuses to change its journal mode.
            self.open_store().close()
            jobstore = SQLAlchemyJobStore(url=f"sqlite:///{self.config.db_path}",
                                          tablename="apscheduler_jobs")
            # One worker: ticks never overlap, so SQLite has one writer at a time.
            self.scheduler = BlockingScheduler(
                jobstores={"default": jobstore},
                executors={"default": ThreadPoolExecutor(1)},
                job_defaults={"coalesce": True, "max_instances": 1,
                              "misfire_grace_time": None})
            self.scheduler.add_job(_scheduled_tick, "interval", args=[key],
                                   seconds=self.tick_seconds, id="sphere-tick",
                                   replace_existing=True,
                                   next_run_time=dt.datetime.now(dt.timezone.utc))
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
            self.scheduler.start()
        finally:
            _daemons.pop(key, None)
            self.lock.release()

    def _on_signal(self, signum: int, _frame: object) -> None:
        log.info("signal %s: finishing the current tick, then stopping", signum)
        self.stopping.set()
        if self.scheduler is not None:
            # wait=True: the running tick's messages are settled in the ledger first.
            threading.Thread(target=self.scheduler.shutdown, kwargs={"wait": True},
                             daemon=True).start()


def _scheduled_tick(project: str) -> None:
    """The persistent job's entry point (a module-level function, so the job store can
    name it); finds the running daemon of the project."""
    daemon = _daemons.get(project)
    if daemon is None:
        log.error("no running daemon for %s; tick skipped", project)
        return
    try:
        daemon.run_tick()
    except Exception:  # noqa: BLE001 - one bad tick must not stop the daemon
        log.exception("tick failed; the next tick will retry (the ledger prevents repeats)")
