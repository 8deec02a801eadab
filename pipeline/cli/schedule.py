"""`sphere run`, `schedule` and `referral`: the scheduler's commands (part of the CLI,
registered on the `sphere` group by cli.py)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.cli.main import CONTEXT, clock, err, fail, handled, load, main, open_store, out, \
    project_option, summary_parts
from pipeline.cli.main import _transport as choose_transport

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.scheduling.daemon import TickReport, Unsent
    from pipeline.scheduling.calendar import Due, Firing
    from pipeline.state.store import Store
# Each command imports what it uses (see cli.py): `sphere --help` stays light.

# schedule.REFERRAL_UPDATES, spelled out so that --help need not import the scheduler
# (tests/test_cli.py checks they agree).
REFERRAL_STATUSES = ("met", "listed", "closed")


def _date(value: str | None, what: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date; write YYYY-MM-DD", param_hint=what)


def _report(report: TickReport) -> None:
    start, end = report.window
    end = end.astimezone(dt.UTC)  # the clock may carry an offset; the line says Z
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
@click.option("--since", help="With --once: also send drip steps due since this date "
                              "(YYYY-MM-DD) that never went out (`status` lists them).")
@click.option("--transport", "transport_name",
              type=click.Choice(["outbox", "smtp", "sendgrid"]),
              help="Override campaigns.yaml's transport.")
def run_cmd(project: Path, tick_seconds: int, once: bool, since: str | None,
            transport_name: str | None) -> None:
    """The scheduler daemon: campaigns on their cron, drips daily, in local time."""
    import logging
    import zoneinfo

    from pipeline.scheduling.daemon import Daemon, tick
    from pipeline.state.store import Store
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # Not a line per tick, nor one per HTTP request (100,000 a month with SendGrid).
    for noisy in ("apscheduler", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    since_day = _date(since, "--since")
    if since_day and not once:
        raise click.UsageError("--since goes with --once")
    with handled():
        config = load(project)
        transport = choose_transport(config, transport_name, False)
        if once:
            from pipeline.scheduling.daemon import ProjectLock
            lock = ProjectLock(config.state_dir)
            lock.acquire()
            try:
                start = dt.datetime.combine(since_day, dt.time(), zoneinfo.ZoneInfo(
                    config.sender.timezone)) if since_day else None
                _report(tick(config, open_store(config), transport, clock()(), since=start))
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
    import json

    from pipeline.scheduling.daemon import all_contacts, project_calendar, recent, referrals, unsent
    from pipeline.scheduling.calendar import summary
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
        contacts = all_contacts(config)
        late = [] if start_day else unsent(config, store, now, contacts, upcoming=False)[0]
        due: Sequence[Due | Firing]
        held: Sequence[Due | Firing]
        if detail:
            cal = project_calendar(config, store, start, end, contacts)
            due, held = cal.due, cal.capped
        else:
            compact = summary(config, contacts, referrals(store), start, end,
                              recent(config, store, start))
            due, held = compact.firings, compact.held_back
        if as_json:
            click.echo(json.dumps({"from": start.isoformat(), "until": end.isoformat(),
                                   "due": [_unsent_json(u) for u in late] +
                                   [_item_json(d) for d in due],
                                   "held_back": [_item_json(d) for d in held]},
                                  indent=2, ensure_ascii=False))
            return
        _print_unsent(late)
        _print_calendar(due)
        for h in held:
            out.print(f"held back: {h.send_id} to {_who(h)}: {_note(h)}", markup=False)
        mails = [d for d in due if not d.check]
        looks = len({d.send_id for d in due if d.check})
        out.print(f"{sum(_count(d) for d in mails)} emails in "
                  f"{len({d.send_id for d in mails})} sends from {start:%Y-%m-%d} to "
                  f"{end:%Y-%m-%d}; {looks} looks for interest alerts (each mails only "
                  f"people with a strong new story); {sum(_count(h) for h in held)} held "
                  "back by the frequency cap", markup=False)


def _count(d: Due | Firing) -> int:
    from pipeline.scheduling.calendar import Firing
    return d.count if isinstance(d, Firing) else 1


def _who(d: Due | Firing) -> str:
    from pipeline.scheduling.calendar import Due
    if isinstance(d, Due):
        return d.email
    return f"{d.count} {'person' if d.count == 1 else 'people'}"


def _note(d: Due | Firing) -> str:
    from pipeline.scheduling.calendar import Due
    if isinstance(d, Due):
        return d.note
    return "; ".join(f"{n}: {why}" for why, n in d.notes)


def _item_json(d: Due | Firing) -> dict:
    from pipeline.scheduling.calendar import Due
    return _due_json(d) if isinstance(d, Due) else _firing_json(d)


def _due_json(d: Due) -> dict:
    return {"at": d.at.isoformat(), "local": d.local.isoformat(), "kind": d.kind,
            "name": d.name, "template": d.template, "send_id": d.send_id, "email": d.email,
            "count": 1, "note": d.note, "check": d.check}


def _firing_json(f: Firing) -> dict:
    """One send with how many people it reaches, per zone, and why some moved."""
    return {"at": f.at.isoformat(), "local": f.local.isoformat(), "kind": f.kind,
            "name": f.name, "template": f.template, "send_id": f.send_id, "count": f.count,
            "zones": dict(f.zones), "note": "; ".join(f"{n}: {why}" for why, n in f.notes),
            "check": f.check}


def _unsent_json(u: Unsent) -> dict:
    return {"at": u.local.astimezone(dt.UTC).isoformat(), "local": u.local.isoformat(),
            "kind": "drip" if "/" in u.send_id else "campaign", "name": u.name,
            "send_id": u.send_id, "to": u.who, "email": u.who if "@" in u.who else "",
            "count": 1 if "@" in u.who else
            int(u.who.split()[0]), "check": False, "not_sent": True, "missed": u.missed,
            "note": u.reason, "command": u.command}


def _print_unsent(items: list[Unsent]) -> None:
    """Sends that fell due and have not gone out: what happens to each, and the command
    that sends it now (one line each, unwrapped, so the command can be copied)."""
    if not items:
        return
    out.print(f"Due and not sent ({len(items)}):", markup=False)
    for u in items:
        out.print(f"  {'MISSED ' if u.missed else ''}{u.send_id} to {u.who}, due "
                  f"{u.local:%Y-%m-%d %H:%M %Z}: {u.reason}. Send it now: {u.command}",
                  markup=False, soft_wrap=True)


def _print_calendar(items: Sequence[Due | Firing]) -> None:
    """One line per item, columns aligned: a year is hundreds of lines, which a table
    widget renders a hundred times slower, and a send id is never wrapped."""
    from pipeline.scheduling.calendar import Firing
    rows = []
    for d in items:
        local = f"{d.local:%Y-%m-%d %H:%M %Z}"
        if isinstance(d, Firing) and len(d.zones) > 1:
            # The same wall-clock time in each zone: the first instant is shown.
            local += f" (+{len(d.zones) - 1} zone{'s' if len(d.zones) > 2 else ''})"
        who = f"look for new stories for {_who(d)}" if d.check else _who(d)
        note = _note(d)
        rows.append((f"{d.at:%Y-%m-%d %H:%M}", local, d.send_id,
                     who + (f" ({note})" if note else "")))
    head = ("when (UTC)", "local time", "send", "to")
    widths = [max([len(head[i])] + [len(r[i]) for r in rows]) for i in range(3)]
    lines = ["Schedule"] + ["  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3]
                            for r in [head, *rows]]
    out.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


def print_next_runs(config: Config, store: Store) -> None:
    """For `sphere status`: what fell due and has not gone out, then the next send of
    each campaign and drip (only the next firing: no calendar per person)."""
    from rich.table import Table

    from pipeline.scheduling.daemon import unsent
    late, nexts = unsent(config, store, clock()())
    _print_unsent(late)
    table = Table(title="Next runs", title_justify="left")
    for col in ("campaign or drip", "next send", "first local time"):
        table.add_column(col, overflow="fold")
    for d in nexts:
        table.add_row(d.name, d.send_id, f"{d.local:%Y-%m-%d %H:%M %Z}")
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
    import zoneinfo

    from pipeline.contacts.audience import email_key
    from pipeline.scheduling.daemon import all_contacts
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
    from pipeline.contacts.audience import email_key
    from pipeline.scheduling.daemon import all_contacts
    from pipeline.scheduling.calendar import Referral, referral_update_due, summary
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
            from pipeline.runner import run_due  # the pipeline, only when something is sent
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
