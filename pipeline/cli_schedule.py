"""`sphere run`, `schedule` and `referral`: the scheduler's commands (part of the CLI,
registered on the `sphere` group by cli.py)."""
from __future__ import annotations

import datetime as dt
import json
import logging
import zoneinfo
from pathlib import Path

import click
from rich.table import Table

from .audience import email_key
from .cli import CONTEXT, clock, err, fail, handled, load, main, open_store, out, \
    project_option, summary_parts
from .cli import _transport as choose_transport
from .config import Config
from .daemon import Daemon, TickReport, all_contacts, project_calendar, tick
from .runner import run_due
from .schedule import REFERRAL_UPDATES, Due, Referral, referral_update_due
from .store import Store

REFERRAL_STATUSES = REFERRAL_UPDATES


def _date(value: str | None, what: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date; write YYYY-MM-DD", param_hint=what)


def _report(report: TickReport) -> None:
    start, end = report.window
    for s in report.summaries:
        out.print(f"{end:%Y-%m-%d %H:%M}Z {s.send_id}: {', '.join(summary_parts(s, 'sent'))}",
                  markup=False)
    for d in report.missed:
        err.print(f"missed (daemon was stopped too long): {d.send_id} to {d.email}, due "
                  f"{d.local:%Y-%m-%d %H:%M %Z}", markup=False)
    for d in report.capped:
        err.print(f"held back: {d.send_id} to {d.email}: {d.note}", markup=False)


@main.command("run", context_settings=CONTEXT)
@project_option
@click.option("--tick", "tick_seconds", type=click.IntRange(1, 3600), default=60,
              show_default=True, help="How often to look for due sends.")
@click.option("--once", is_flag=True, help="One tick now, then exit (for cron or tests).")
@click.option("--transport", "transport_name",
              type=click.Choice(["outbox", "smtp", "sendgrid"]),
              help="Override campaigns.yaml's transport.")
def run_cmd(project: Path, tick_seconds: int, once: bool, transport_name: str | None) -> None:
    """The scheduler daemon: campaigns on their cron, drips daily, in local time."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # Not a line per tick, nor one per HTTP request (100,000 a month with SendGrid).
    for noisy in ("apscheduler", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    with handled():
        config = load(project)
        transport = choose_transport(config, transport_name, False)
        if once:
            from .daemon import ProjectLock
            lock = ProjectLock(config.state_dir)
            lock.acquire()
            try:
                _report(tick(config, open_store(config), transport, clock()()))
            finally:
                lock.release()
            return
        daemon = Daemon(config, lambda: Store.open(config.db_path), transport, clock(),
                        tick_seconds, on_tick=_report)
        err.print(f"sphere run: checking every {tick_seconds} s; stop with Ctrl-C or "
                  "SIGTERM (the current send is finished first)", markup=False)
        daemon.run()
        err.print("sphere run: stopped cleanly", markup=False)


@main.command("schedule", context_settings=CONTEXT)
@project_option
@click.option("--from", "from_", help="Start date (YYYY-MM-DD) [default: now].")
@click.option("--until", help="End date (YYYY-MM-DD) [default: 31 days from the start].")
@click.option("--detail", is_flag=True, help="One line per contact, not per send.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def schedule_cmd(project: Path, from_: str | None, until: str | None, detail: bool,
                 as_json: bool) -> None:
    """The calendar of what is due for whom and when (the daemon's own computation)."""
    with handled():
        config = load(project)
        store = open_store(config, dry_run=True)
        now = clock()()
        start_day, end_day = _date(from_, "--from"), _date(until, "--until")
        start = dt.datetime.combine(start_day, dt.time(), dt.timezone.utc) if start_day \
            else now
        end = dt.datetime.combine(end_day, dt.time(23, 59), dt.timezone.utc) if end_day \
            else start + dt.timedelta(days=31)
        if end <= start:
            fail("--until must be after the start")
        cal = project_calendar(config, store, start, end)
        if as_json:
            click.echo(json.dumps({"from": start.isoformat(), "until": end.isoformat(),
                                   "due": [_due_json(d) for d in cal.due],
                                   "held_back": [_due_json(d) for d in cal.capped]},
                                  indent=2, ensure_ascii=False))
            return
        _print_calendar(cal.due, detail)
        for d in cal.capped:
            out.print(f"held back: {d.send_id} to {d.email}: {d.note}", markup=False)
        mails = [d for d in cal.due if not d.check]
        looks = len({d.send_id for d in cal.due if d.check})
        out.print(f"{len(mails)} emails in {len({d.send_id for d in mails})} sends from "
                  f"{start:%Y-%m-%d} to {end:%Y-%m-%d}; {looks} looks for interest alerts "
                  f"(each mails only people with a strong new story); {len(cal.capped)} "
                  "held back by the frequency cap", markup=False)


def _due_json(d: Due) -> dict:
    return {"at": d.at.isoformat(), "local": d.local.isoformat(), "kind": d.kind,
            "name": d.name, "template": d.template, "send_id": d.send_id, "email": d.email,
            "note": d.note}


def _print_calendar(items: tuple[Due, ...], detail: bool) -> None:
    table = Table(title="Schedule", title_justify="left")
    for col in ("when (UTC)", "local time", "send", "to"):
        table.add_column(col, overflow="fold")
    if detail:
        for d in items:
            table.add_row(f"{d.at:%Y-%m-%d %H:%M}", f"{d.local:%Y-%m-%d %H:%M %Z}", d.send_id,
                          d.email + (f" ({d.note})" if d.note else ""))
    else:
        groups: dict[tuple[str, str], list[Due]] = {}
        for d in items:
            groups.setdefault((d.send_id, str(d.local.tzinfo)), []).append(d)
        for (send_id, _zone), group in groups.items():
            first = group[0]
            who = first.email if len(group) == 1 else f"{len(group)} contacts"
            table.add_row(f"{first.at:%Y-%m-%d %H:%M}", f"{first.local:%Y-%m-%d %H:%M %Z}",
                          send_id, who)
    out.print(table)


def print_next_runs(config: Config, store: Store) -> None:
    """For `sphere status`: the next send of each campaign and drip in the coming month."""
    now = clock()()
    cal = project_calendar(config, store, now, now + dt.timedelta(days=40))
    nxt: dict[str, Due] = {}
    for d in cal.due:
        nxt.setdefault(d.name, d)
    table = Table(title="Next runs", title_justify="left")
    for col in ("campaign or drip", "next send", "first local time"):
        table.add_column(col)
    for name, d in nxt.items():
        table.add_row(name, d.send_id, f"{d.local:%Y-%m-%d %H:%M %Z}")
    last = store.meta("scheduler.last_tick")
    out.print(table)
    out.print(f"Daemon's last tick: {last or 'never (start it with `sphere run`)'}",
              markup=False)


@main.group(context_settings=CONTEXT)
def referral() -> None:
    """Referrals: thank the person who sent them and keep them posted."""


@referral.command("add", context_settings=CONTEXT)
@click.option("--by", "by_email", required=True, help="Email of the contact who referred.")
@click.option("--name", required=True, help="Name of the person referred.")
@click.option("--date", "when", help="When the referral came in [default: today].")
@project_option
def referral_add(by_email: str, name: str, when: str | None, project: Path) -> None:
    """Record a referral; the referral drips thank the referrer on their schedule."""
    with handled():
        config = load(project)
        known = {email_key(c.email) for c in all_contacts(config)}
        if email_key(by_email) not in known:
            fail(f"{by_email} is in no audience file; add them first (or check the spelling)")
        store = open_store(config)
        now = clock()()
        day = _date(when, "--date") or now.astimezone(
            zoneinfo.ZoneInfo(config.sender.timezone)).date()
        ref_id = store.add_referral(by_email, name, day, now)
        drips = [d.name for d in config.drips if d.anchor == "referral_received"]
        follow = f"; drip(s) {', '.join(drips)} will thank them" if drips else \
            "; no drip has `anchor: referral_received`, so no thank-you is scheduled"
        out.print(f"Referral {ref_id}: {name}, referred by {by_email}{follow}.", markup=False)


@referral.command("update", context_settings=CONTEXT)
@click.argument("referral_id", type=int)
@click.option("--status", "new_status", type=click.Choice(REFERRAL_STATUSES), required=True,
              help="Where things stand: met, listed or closed.")
@click.option("--dry-run", is_flag=True, help="Change nothing; say what would be sent.")
@click.option("--transport", "transport_name",
              type=click.Choice(["outbox", "smtp", "sendgrid"]),
              help="Override campaigns.yaml's transport.")
@project_option
def referral_update(referral_id: int, new_status: str, dry_run: bool,
                    transport_name: str | None, project: Path) -> None:
    """Set a referral's status and send the referrer an update (once per status)."""
    with handled():
        config = load(project)
        store = open_store(config, dry_run=dry_run)
        now = clock()()
        rows = {r[0]: r for r in store.referrals()}
        if referral_id not in rows:
            fail(f"no referral {referral_id}; `sphere referral add` records one")
        _id, by_email, name, received, _old, _updated = rows[referral_id]
        store.update_referral(referral_id, new_status, now)
        contact = next((c for c in all_contacts(config)
                        if email_key(c.email) == email_key(by_email)), None)
        if contact is None:
            fail(f"{by_email} is no longer in an audience file; status saved, no email sent")
        referral = Referral(referral_id, by_email, name, dt.date.fromisoformat(received),
                            new_status, now)
        item = referral_update_due(referral, contact, config.sender.timezone,
                                   config.scheduling)
        if item.at > now:
            out.print(f"Referral {referral_id} is '{new_status}'. It is {item.period:%H:%M} "
                      f"for {by_email}, inside quiet hours: `sphere run` sends the update at "
                      f"{item.local:%H:%M} their time.", markup=False)
            return
        transport = choose_transport(config, transport_name, dry_run)
        try:
            (summary,) = run_due(config, store, transport, [item], lambda: now, dry_run)
        finally:
            transport.close()
        verb = "Would send" if dry_run else "Sent"
        if summary.already_sent:
            out.print(f"Referral {referral_id} is '{new_status}'; {by_email} already had "
                      "this update.", markup=False)
        else:
            out.print(f"Referral {referral_id} is '{new_status}'. {verb} {by_email} an update.",
                      markup=False)
