"""The scheduler daemon (`sphere run`): APScheduler glue around the pure calendar.

Every tick computes what fell due since the last tick with schedule.calendar (the same
function `sphere schedule` prints) and delivers it through the runner; the ledger makes a
repeated or overlapping tick harmless. The checkpoint lives in the project's SQLite, and so
does APScheduler's job store, so a restart resumes where the last run left off.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import threading
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import names
from pipeline.addresses import email_key
from pipeline.approval import drafts
from pipeline.config import Config
from pipeline.contacts import cache as audience_cache
from pipeline.errors import LockedError
from pipeline.models import Contact, DueKind, LedgerStatus, RunSummary
from pipeline.scheduling.calendar import (
    Calendar,
    Due,
    Firing,
    Referral,
    calendar,
    campaign_firings,
    campaign_zones,
    drip_horizon,
    drips_due,
    next_drips,
    split_missed,
)
from pipeline.state.interface import Ledger

if TYPE_CHECKING:
    from filelock import BaseFileLock

    from pipeline.delivery.deliver import Transport

log = logging.getLogger("sphere.daemon")
CHECKPOINT = "scheduler.last_tick"
INPUTS = "scheduler.inputs"  # the audience files and referrals the last tick saw
TICK_SECONDS = names.TICK_SECONDS
_daemons: dict[str, Daemon] = {}  # project path -> the running daemon (for the job)
# `status` lists drip steps that never went out this far back (older ones are history).
MISSED_LOOKBACK = dt.timedelta(days=14)
NEAR = dt.timedelta(days=7)  # `status` looks this far for each drip's next step first


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
        # Parsed once per change of the file, not on every tick or command.
        out.extend(audience_cache.contacts(path, config.project, config.state_dir / "cache"))
    return tuple(out)


def referrals(store: Ledger) -> tuple[Referral, ...]:
    """The stored referrals, as the calendar wants them."""
    return tuple(store.referrals())


def recent(config: Config, store: Ledger, start: dt.datetime) -> dict[str, list[dt.datetime]]:
    """Sends that count against the frequency cap from `start` on."""
    rules = config.scheduling
    return store.recent_sends(start - dt.timedelta(days=rules.cap_days)) \
        if rules.cap_max else {}


def project_calendar(config: Config, store: Ledger, start: dt.datetime, end: dt.datetime,
                     contacts: tuple[Contact, ...] | None = None) -> Calendar:
    """The calendar of one project between two instants, one item per person, counting
    recent sends for the frequency cap."""
    if contacts is None:
        contacts = all_contacts(config)
    return calendar(config, contacts, referrals(store), start, end,
                    recent(config, store, start))


def _not_sent(store: Ledger, items: list[Due], failed_too: bool = False
              ) -> list[tuple[Due, str]]:
    """(item, '' or 'failed') for the items never attempted, and with `failed_too` those
    whose delivery failed (the next attempt sends them), whose person is not suppressed."""
    suppressed = store.suppressed()
    ledger: dict[str, dict[str, str]] = {}
    out = []
    for d in items:
        if d.send_id not in ledger:
            ledger[d.send_id] = {email_key(e): s for e, s in store.ledger_status(d.send_id).items()}
            # Held for approval is accounted for: `sphere approve` and status list drafts.
            for draft in drafts.load(store, send_id=d.send_id):
                for r in draft.recipients:
                    ledger[d.send_id].setdefault(email_key(r.email), "held")
        status = ledger[d.send_id].get(email_key(d.email), "")
        if (not status or (failed_too and status == LedgerStatus.FAILED)) and \
                email_key(d.email) not in suppressed:
            out.append((d, status))
    return out


def late_drips(config: Config, store: Ledger, start: dt.datetime, end: dt.datetime,
               contacts: tuple[Contact, ...], failed_too: bool = False) -> list[Due]:
    """Drip steps due in (start, end] that never went out: a contact or referral entered
    after its time had passed a tick (the ledger makes looking again harmless)."""
    if start >= end:
        return []
    # Not the failed ones: a tick would retry a bad address every minute; `run --once
    # --since` does, and `status` lists them.
    return [d for d, _ in _not_sent(store, drips_due(config, contacts, referrals(store),
                                                     start, end), failed_too)]


def _inputs(config: Config, store: Ledger) -> str:
    """What a drip's due times depend on besides the clock: the audience files (as the
    file system describes them) and the referrals. While it stays the same, a tick has
    no late drip to look for: the tick before already looked."""
    parts = []
    for path in config.audience_files:
        st = path.stat()
        parts.append(f"{path.name}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}")
    refs = referrals(store)
    parts.append(f"referrals:{len(refs)}:{max((r.id for r in refs), default=0)}")
    return "|".join(parts)


def tick(config: Config, store: Ledger, transport: Transport, now: dt.datetime,
         dry_run: bool = False, should_stop: Callable[[], bool] = lambda: False,
         since: dt.datetime | None = None) -> TickReport:
    """Deliver what fell due since the last checkpoint, and drip steps within the catch-up
    window (or since `since`) that never went out; send late items only within the
    catch-up window, report older ones as missed; then move the checkpoint."""
    window = dt.timedelta(hours=config.scheduling.catch_up_hours)
    # `since` reaches further back for drips only: an old campaign period is not resent.
    grace = max(window, now - since) if since is not None else window
    saved = store.meta(CHECKPOINT)
    # A first start looks back one catch-up window, so a daemon started at 09:05 on the
    # 1st still sends the 09:00 newsletter.
    start = dt.datetime.fromisoformat(saved) if saved else now - window
    if start >= now and since is None:
        return TickReport((start, now), tuple(_send_approved(config, store, transport, now,
                                                             dry_run, should_stop)), (), ())
    contacts = all_contacts(config)
    cal = project_calendar(config, store, start, now, contacts) if start < now \
        else Calendar(())
    catch_up, missed = split_missed(cal.due, now, window)
    if since is not None:  # the drips the user asked for go out; campaigns stay missed
        catch_up += [d for d in missed if d.kind == DueKind.DRIP and d.at >= now - grace]
        missed = [d for d in missed if not (d.kind == DueKind.DRIP and d.at >= now - grace)]
    inputs = _inputs(config, store)
    if since is not None or store.meta(INPUTS) != inputs:
        catch_up += late_drips(config, store, now - grace, min(start, now), contacts,
                               failed_too=since is not None)
    for d in missed:
        log.warning("missed while stopped (older than %s h): %s to %s at %s",
                    config.scheduling.catch_up_hours, d.send_id, d.email, d.local)
    summaries: list[RunSummary] = []
    if catch_up and not should_stop():
        # Only a tick with something to send needs the pipeline (feeds, templates).
        from pipeline.runner import run_due, run_ingest

        if any(d.kind == DueKind.CAMPAIGN for d in catch_up):
            # A digest is only as fresh as its feeds: ingest once before the sends.
            report = run_ingest(config, store, now)
            if report.failed:
                log.warning("ingest before sending: %s", report.line())
        summaries = run_due(config, store, transport, catch_up, lambda: now, dry_run,
                            should_stop=should_stop)
    summaries += _send_approved(config, store, transport, now, dry_run, should_stop)
    if not dry_run and not should_stop():
        store.set_meta(CHECKPOINT, now.isoformat())
        store.set_meta(INPUTS, inputs)
    return TickReport((start, now), tuple(summaries), tuple(missed), cal.capped)


def _send_approved(config: Config, store: Ledger, transport: Transport, now: dt.datetime,
                   dry_run: bool, should_stop: Callable[[], bool]) -> list[RunSummary]:
    """Drafts approved since they fell due go out now: their time has come already."""
    from pipeline.runner import (  # the pipeline, only when a tick runs
        approved_items,
        run_due,
    )

    approved = approved_items(config, store, now)
    if not approved or should_stop():
        return []
    return run_due(config, store, transport, approved, lambda: now, dry_run,
                   should_stop=should_stop)


@dataclass(frozen=True)
class Unsent:
    """A send that fell due and has not gone out: whether the daemon's next tick sends it
    or it was missed, why, and the command that sends it now."""

    send_id: str
    name: str
    local: dt.datetime  # when it was due, the first recipient's local time
    kind: DueKind
    email: str  # the one person's address (a drip step), or '' for a campaign's people
    count: int  # how many people it did not reach
    missed: bool
    reason: str
    command: str

    @property
    def who(self) -> str:
        """The address, or "N people"."""
        return self.email or f"{self.count} {'person' if self.count == 1 else 'people'}"


def unsent(config: Config, store: Ledger, now: dt.datetime,
           contacts: tuple[Contact, ...] | None = None, upcoming: bool = True
           ) -> tuple[list[Unsent], list[Due]]:
    """What fell due and has not gone out (for `status` and `schedule`): the daemon's next
    tick sends it, or it is listed as missed with the command that sends it now. With
    `upcoming`, also the next send of each campaign and drip (one pass serves both)."""
    grace = dt.timedelta(hours=config.scheduling.catch_up_hours)
    saved = store.meta(CHECKPOINT)
    start = dt.datetime.fromisoformat(saved) if saved else now - grace
    # The checkpoint keeps the clock's own offset (SPHERE_NOW may carry one): say UTC.
    last = start.astimezone(dt.UTC)
    running = f"the daemon's last tick was {last:%Y-%m-%dT%H:%M}Z" if saved else \
        "the daemon has not run (`sphere run`)"
    contacts = all_contacts(config) if contacts is None else contacts
    latest, nexts = campaign_firings(config, campaign_zones(config, contacts),
                                     now - MISSED_LOOKBACK, now)
    out = _unsent_campaigns(store, latest, saved, start, now, grace, running)
    out += _left_out(config, store, contacts, latest, start, now, running)
    lookback = min(start, now - MISSED_LOOKBACK)
    # The next step of a drip over thousands of people is usually days away: look a
    # week ahead first, and further only for drips with nothing in that week.
    refs = referrals(store)
    drips = drips_due(config, contacts, refs, lookback, now + (NEAR if upcoming else
                                                                dt.timedelta(0)))
    if upcoming:
        found = next_drips(drips, now)
        rest = [d.name for d in config.drips if d.name not in found]
        if rest:
            drips += drips_due(config, contacts, refs, now + NEAR, now + drip_horizon(config),
                               rest)
    for d, status in _not_sent(store, [d for d in drips if d.at <= now], failed_too=True):
        old = status == LedgerStatus.FAILED or d.at < now - grace
        why = "its delivery failed (the Sends table above has the count)" \
            if status == LedgerStatus.FAILED else \
            f"{running}; older than the catch-up window " \
            f"({config.scheduling.catch_up_hours} h)" if old else \
            f"due; the next tick of `sphere run` sends it ({running})"
        out.append(Unsent(d.send_id, d.name, d.local, d.kind, d.email, 1, old, why,
                          f"sphere run --once --since {d.at:%Y-%m-%d}" if old
                          else "sphere run --once"))
    following = [Due(at=f.at, local=f.local, period=f.local, kind=f.kind, name=f.name,
                     template="", send_id=f.send_id, email="", check=f.check)
                 for f in nexts.values()] + list(next_drips(drips, now).values())
    return sorted(out, key=lambda u: (u.local, u.send_id)), \
        sorted(following, key=lambda d: d.at) if upcoming else []


def _unsent_campaigns(store: Ledger, latest: dict[str, Firing], saved: str | None,
                      start: dt.datetime, now: dt.datetime, grace: dt.timedelta,
                      running: str) -> list[Unsent]:
    """Each campaign's latest firing if no send of it began, or if some of its deliveries
    failed (older firings are superseded: `sphere send` sends the current period)."""
    out = []
    latest = {name: f for name, f in latest.items() if not f.check}
    begun = store.started(f.send_id for f in latest.values())
    for f in latest.values():
        command = f"sphere send {f.name}"
        if f.send_id not in begun and drafts.load(store, send_id=f.send_id):
            continue  # held for approval: status lists its draft
        if f.send_id in begun:
            failed = sum(1 for s in store.ledger_status(f.send_id).values() if s == "failed")
            if failed:
                out.append(Unsent(f.send_id, f.name, f.local, f.kind, "", failed, True,
                                  "their delivery failed", command))
            continue
        seen = saved is not None and f.at <= start  # a tick saw it and began no send
        old = seen or f.at < now - grace
        why = "no send of it began (the daemon was stopped too long, or the frequency " \
            "cap held everyone back)" if seen else \
            f"{running}; too old for its catch-up window" if old else \
            f"due; the next tick of `sphere run` sends it ({running})"
        out.append(Unsent(f.send_id, f.name, f.local, f.kind, "", f.count, old, why,
                          command))
    return out


def _left_out(config: Config, store: Ledger, contacts: tuple[Contact, ...],
              latest: dict[str, Firing], start: dt.datetime, now: dt.datetime,
              running: str) -> list[Unsent]:
    """People of a begun campaign send whose time has come and of whom no ledger row,
    draft or delivery exists: the tick that began it sent the zones inside the catch-up
    window and left the older ones out, so they are listed (a zone goes out as a whole,
    so a zone with nobody recorded is one that was left out). Due at or before `start`
    (the checkpoint, or one window back) is missed: no tick will look that far back."""
    begun = store.started(f.send_id for f in latest.values() if not f.check)
    out = []
    for f in latest.values():
        if f.send_id not in begun:
            continue
        campaign = next(c for c in config.campaigns if c.name == f.name)
        period = dt.datetime.strptime(f.send_id.split("@", 1)[1], "%Y-%m-%dT%H:%M")
        recorded = {email_key(e) for e in store.ledger_status(f.send_id)}
        for draft in drafts.load(store, send_id=f.send_id):
            recorded |= {email_key(r.email) for r in draft.recipients}
        zones: dict[str, set[str]] = {}
        for c in contacts:
            if c.subscribed and c.audience in campaign.audiences:
                zones.setdefault(c.timezone or config.sender.timezone, set()).add(
                    email_key(c.email))
        # Unsubscribed by link or bounced: skipped on purpose, not left out.
        recorded |= {email_key(e) for e in store.suppressed_among(
            [e for emails in zones.values() for e in emails])}
        old = recent = 0
        for zone, emails in zones.items():
            due = period.replace(tzinfo=zoneinfo.ZoneInfo(zone))
            if due <= now and not emails & recorded:
                if due <= start:
                    old += len(emails)
                else:
                    recent += len(emails)
        for n, missed in ((old, True), (recent, False)):
            if n:
                why = f"{running}; older than the catch-up window when its send began " \
                    f"({config.scheduling.catch_up_hours} h)" if missed else \
                    f"due; the next tick of `sphere run` sends it ({running})"
                out.append(Unsent(f.send_id, f.name, f.local, f.kind, "", n, missed, why,
                                  f"sphere send {f.name}"))
    return out


class ProjectLock:
    """One daemon per project: an OS lock on var/daemon.lock through `filelock` (flock on
    Unix, msvcrt on Windows), released by the kernel if the process dies, so a crash never
    leaves a stale lock behind. The holder's pid is in var/daemon.pid, for the message."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "daemon.lock"
        self.pid_path = state_dir / "daemon.pid"
        self._lock: BaseFileLock | None = None

    def acquire(self) -> None:
        """Take the lock or raise LockedError naming the holder."""
        from filelock import FileLock, Timeout  # only `run` needs it

        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.path, timeout=0, thread_local=False)
        try:
            lock.acquire()
        except Timeout:
            try:
                holder = self.pid_path.read_text(encoding="utf-8").strip()
            except OSError:
                holder = ""
            raise LockedError(f"another `sphere run` is already running for this project "
                              f"(pid {holder or 'unknown'}, lock {self.path})",
                              "stop it first (kill -TERM that pid); one daemon per project "
                              "keeps every send exactly once") from None
        self.pid_path.write_text(str(os.getpid()), encoding="utf-8")
        self._lock = lock

    def release(self) -> None:
        """Drop the lock."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

class Daemon:
    """`sphere run`: a BlockingScheduler whose one persistent job is the tick."""

    def __init__(self, config: Config, open_store: Callable[[], Ledger],
                 transport: Transport, clock: Callable[[], dt.datetime],
                 tick_seconds: int = TICK_SECONDS,
                 on_tick: Callable[[TickReport], None] | None = None) -> None:
        # The store is opened per tick, in the thread that runs it: an SQLite connection
        # belongs to one thread.
        self.config, self.open_store, self.transport = config, open_store, transport
        self.clock, self.tick_seconds, self.on_tick = clock, tick_seconds, on_tick
        self.lock = ProjectLock(config.state_dir)
        self.stopping = threading.Event()
        self.scheduler: Any = None  # an APScheduler BlockingScheduler once run() starts

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
        from apscheduler.jobstores.memory import MemoryJobStore
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.blocking import BlockingScheduler

        self.lock.acquire()
        key = str(self.config.project)
        _daemons[key] = self
        try:
            # Our schema and WAL mode first: once APScheduler's connection holds the file,
            # SQLite refuses to change its journal mode.
            store = self.open_store()
            on_file = store.path is not None
            store.close()
            # On PostgreSQL (team mode) there is no file to share, and APScheduler's
            # store is not safe between processes: the one tick job, added again at
            # every start, lives in memory (catch-up goes by Sphere's own checkpoints).
            jobstore = SQLAlchemyJobStore(url=f"sqlite:///{self.config.db_path}",
                                          tablename="apscheduler_jobs") if on_file \
                else MemoryJobStore()
            # One worker: ticks never overlap, so SQLite has one writer at a time.
            self.scheduler = BlockingScheduler(
                jobstores={"default": jobstore},
                executors={"default": ThreadPoolExecutor(1)},
                job_defaults={"coalesce": True, "max_instances": 1,
                              "misfire_grace_time": None})
            self.scheduler.add_job(_scheduled_tick, "interval", args=[key],
                                   seconds=self.tick_seconds, id="sphere-tick",
                                   replace_existing=True,
                                   next_run_time=names.utc_now())
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
    except Exception:
        log.exception("tick failed; the next tick will retry (the ledger prevents repeats)")
