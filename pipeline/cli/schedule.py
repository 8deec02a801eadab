"""`sphere run`, `schedule` and `referral`: the scheduler's commands (part of the CLI;
main.py registers it). Each opens the Project, calls one of its methods and prints."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from pipeline import names
from pipeline.cli.app import (
    CONTEXT,
    TRANSPORTS,
    err,
    main,
    opened,
    out,
    project_option,
    summary_parts,
)

if TYPE_CHECKING:
    from pathlib import Path

    from pipeline.scheduling.calendar import Due, Firing
    from pipeline.scheduling.daemon import TickReport, Unsent
# Each command imports what it uses (see app.py): `sphere --help` stays light.

# From pipeline/names.py, cheap enough for --help: the scheduler itself is not loaded.
REFERRAL_STATUSES = names.REFERRAL_UPDATES


def _date(value: str | None, what: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date; write YYYY-MM-DD",
                                 param_hint=what) from None


def _report(report: TickReport) -> None:
    _start, end = report.window
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
@click.option("--tick", "tick_seconds", type=click.IntRange(1, 3600), default=names.TICK_SECONDS,
              show_default=True, help="How often to look for due sends.")
@click.option("--once", is_flag=True, help="One tick now, then exit (for cron or tests).")
@click.option("--since", help="With --once: also send drip steps due since this date "
                              "(YYYY-MM-DD) that never went out (`status` lists them).")
@click.option("--transport", "transport_name",
              type=click.Choice(TRANSPORTS),
              help="Override campaigns.yaml's transport.")
def run_cmd(project: Path, tick_seconds: int, once: bool, since: str | None,
            transport_name: str | None) -> None:
    """The scheduler daemon: campaigns on their cron, drips daily, in local time."""
    import logging
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # Not a line per tick, nor one per HTTP request (100,000 a month with SendGrid).
    for noisy in ("apscheduler", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    since_day = _date(since, "--since")
    if since_day and not once:
        raise click.UsageError("--since goes with --once")
    with opened(project) as p:
        if once:
            _report(p.tick(transport_name, since_day))
            return
        daemon = p.daemon(transport_name, tick_seconds, on_tick=_report)
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
    start_day, end_day = _date(from_, "--from"), _date(until, "--until")
    with opened(project, dry_run=True) as p:
        view = p.schedule(start_day, end_day, detail)
        start, end, late, due, held = view.start, view.end, view.late, view.due, view.held
        if as_json:
            click.echo(json.dumps({"from": start.isoformat(), "until": end.isoformat(),
                                   "due": [_unsent_json(u) for u in late] +
                                   [_item_json(d) for d in due],
                                   "held_back": [_item_json(d) for d in held]},
                                  indent=2, ensure_ascii=False))
            return
        print_unsent(list(late))
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
            "kind": str(u.kind), "name": u.name, "send_id": u.send_id, "to": u.who,
            "email": u.email, "count": u.count, "check": False, "not_sent": True,
            "missed": u.missed,
            "note": u.reason, "command": u.command}


def print_unsent(items: list[Unsent]) -> None:
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
    lines = ["Schedule"] + ["  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True))
                            + "  " + r[3] for r in [head, *rows]]
    out.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


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
    day = _date(when, "--date")
    with opened(project) as p:
        added = p.add_referral(by_email, name, day)
        follow = f"; drip(s) {', '.join(added.drips)} will thank them" if added.drips else \
            "; no drip has `anchor: referral_received`, so no thank-you is scheduled"
        out.print(f"Referral {added.id}: {name}, referred by {by_email}{follow}.",
                  markup=False)


@referral.command("update", context_settings=CONTEXT)
@click.argument("referral_id", type=int)
@click.option("--status", "new_status", type=click.Choice(REFERRAL_STATUSES), required=True,
              help="Where things stand: met, listed or closed.")
@click.option("--dry-run", is_flag=True, help="Change nothing; say what would be sent.")
@click.option("--transport", "transport_name",
              type=click.Choice(TRANSPORTS),
              help="Override campaigns.yaml's transport.")
@project_option
def referral_update(referral_id: int, new_status: str, dry_run: bool,
                    transport_name: str | None, project: Path) -> None:
    """Set a referral's status and send the referrer an update (once per status)."""
    with opened(project, dry_run=dry_run) as p:
        done = p.update_referral(referral_id, new_status, transport_name)
        if done.waits_until is not None and done.their_time is not None:
            out.print(f"Referral {referral_id} is '{new_status}'. It is "
                      f"{done.their_time:%H:%M} for {done.by_email}, inside quiet hours: "
                      f"`sphere run` sends the update at {done.waits_until:%H:%M} their "
                      "time.", markup=False)
        elif done.already_sent:
            out.print(f"Referral {referral_id} is '{new_status}'; {done.by_email} already had "
                      "this update.", markup=False)
        else:
            verb = "Would send" if dry_run else "Sent"
            out.print(f"Referral {referral_id} is '{new_status}'. {verb} {done.by_email} an "
                      "update.", markup=False)
