"""`sphere approve` and `sphere note`: the professional's review of what goes out, before
it goes: interest alerts, drafts of sends held with `approval: true`, and one-off notes
(part of the CLI, registered on the `sphere` group by cli.py)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from typing import TYPE_CHECKING

import click

from pipeline.cli.main import CONTEXT, _when, clock, err, escape, fail, handled, load, main, open_store, \
    out, project_option
from pipeline.cli.main import note as note_group

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.approval.drafts import Draft
    from pipeline.state.store import Store
# Each command imports what it uses (see cli.py): `sphere --help` stays light.


def _ids(tokens: tuple[str, ...]) -> tuple[list[int], list[int]]:
    """Split `7 d3 D4` into alert ids [7] and draft ids [3, 4]."""
    alerts, held = [], []
    for token in tokens:
        text = token.strip().lower()
        if text.isdigit():
            alerts.append(int(text))
        elif text.startswith("d") and text[1:].isdigit():
            held.append(int(text[1:]))
        else:
            fail(f"{token!r} is neither an alert id (a number) nor a draft id (d and a "
                 "number); `sphere approve` lists them")
    return alerts, held


@main.command("approve", context_settings=CONTEXT)
@click.argument("ids", nargs=-1)
@click.option("--all", "approve_all", is_flag=True,
              help="Approve every pending alert and every pending draft.")
@click.option("--drop", is_flag=True, help="Drop the given alerts or drafts (with "
              "--contact: that person from the draft's send) instead of approving.")
@click.option("--note", help="Your note: an alert's opening, or with --contact a personal "
              "note for that person in the draft's send.")
@click.option("--contact", "contact_email", help="Decide for this one person of the given "
              "draft only.")
@click.option("--show", is_flag=True, help="List who is in the given drafts, with their "
              "stories and where each stands; decides nothing.")
@project_option
def approve(ids: tuple[str, ...], approve_all: bool, drop: bool, note: str | None,
            contact_email: str | None, show: bool, project: Path) -> None:
    """List interest alerts and drafts (sends held by `approval: true`) waiting for you,
    or approve or drop them: alert IDs are numbers, draft IDs d1, d2 ...; approved ones go
    out with the next `sphere send` of their campaign or the daemon's next tick."""
    from pipeline.approval import drafts
    from pipeline.runner import reconcile_alerts
    with handled():
        config = load(project)
        store = open_store(config)
        now = clock()()
        alert_ids, draft_ids = _ids(ids)
        if show:
            for draft_id in draft_ids:
                _show(config, store, _draft(store, draft_id), now)
            return
        campaigns = {c.name: c for c in config.campaigns if c.kind == "interest_alert"}
        for name, campaign in campaigns.items():
            for notice in reconcile_alerts(store, name, now,
                                           dt.timedelta(days=campaign.approval_expires_days)):
                err.print(notice, markup=False)
        rows = [r for r in store.alerts() if r[1] in campaigns]
        pending = {r[0]: r for r in rows if r[7] == "pending"}
        if approve_all:
            alert_ids = list(pending)
            draft_ids = [d.id for d in drafts.load(store)
                         if d.status == "pending" and not d.expired(now)]
        if not alert_ids and not draft_ids:
            if approve_all:
                out.print("Nothing is waiting for approval.", markup=False)
                return
            _list(store, rows)
            _list_drafts(store, now)
            return
        if contact_email and (alert_ids or len(draft_ids) != 1):
            fail("--contact decides for one person of one draft: give exactly one draft id")
        if note is not None and not contact_email and (drop or draft_ids or
                                                        len(alert_ids) != 1):
            fail("--note edits one alert (one id, without --drop) or, with --contact, one "
                 "person's email in a draft")
        for draft_id in draft_ids:
            _decide_draft(config, store, _draft(store, draft_id), now, drop, contact_email,
                          note)
        if alert_ids:
            _decide_alerts(store, alert_ids, pending, drop, note, now)


def _decide_alerts(store: Store, alert_ids: list[int], pending: dict[int, tuple],
                   drop: bool, note: str | None, now: dt.datetime) -> None:
    unknown = [i for i in alert_ids if i not in pending]
    if unknown:
        fail(f"not pending: {', '.join(map(str, unknown))} (`sphere approve` lists the "
             "pending ones)")
    status = "dropped" if drop else "approved"
    for alert_id in alert_ids:
        store.decide_alert(alert_id, status, now, note)
    verb = "Dropped" if drop else "Approved"
    follow = "" if drop else "; they go out with the next `sphere send " + \
        f"{pending[alert_ids[0]][1]}` (or the daemon's next look)"
    out.print(f"{verb} {len(alert_ids)} alert(s){follow}.", markup=False)


def _draft(store: Store, draft_id: int) -> Draft:
    from pipeline.approval import drafts
    found = drafts.load(store, draft_id=draft_id)
    if not found:
        fail(f"no draft d{draft_id} (`sphere approve` lists the drafts)")
    return found[0]


def _when_sent(config: Config, draft: Draft, now: dt.datetime) -> str:
    """What sends an approved draft: `sphere send` reaches only its campaign's current
    period; the daemon's tick sends any approved draft."""
    from pipeline.planning.plan import period_for, send_id_for
    tick = "the daemon's next tick (`sphere run`, or `sphere run --once` now)"
    campaign = next((c for c in config.campaigns if c.name == draft.name), None)
    if draft.kind == "drip" or campaign is None:
        return tick
    current = send_id_for(campaign, period_for(campaign.schedule, now,
                                               config.sender.timezone))
    if current != draft.send_id:
        return tick
    return f"the next `sphere send {draft.name}` or the daemon's next tick"


def _decide_draft(config: Config, store: Store, draft: Draft, now: dt.datetime, drop: bool,
                  contact_email: str | None, note: str | None) -> None:
    """Approve or drop a whole draft, or one person of it."""
    from pipeline.approval import drafts, review
    if draft.status == "dropped":
        fail(f"draft d{draft.id} ({draft.send_id}) was dropped; nothing of it is sent")
    if not drop and draft.expired(now):
        fail(f"draft d{draft.id} ({draft.send_id}) expired unapproved on "
             f"{draft.expires:%Y-%m-%d %H:%M} UTC; it is not sent late (the next period "
             "makes a new draft)")
    if contact_email:
        if draft.recipient(contact_email) is None:
            fail(f"{contact_email} is not in draft d{draft.id} (`sphere approve --show "
                 f"d{draft.id}` lists who is)")
        # The same operations as the studio's Review page (review.py).
        if note is not None:
            review.save_note(store, draft, contact_email, note, now)
        if drop:
            review.exclude(store, draft, contact_email, now)
        else:
            review.approve(store, draft, now, contact_email)
        if drop:
            out.print(f"Dropped {contact_email} from d{draft.id} ({draft.send_id}).",
                      markup=False)
        else:
            out.print(f"Approved {contact_email} in d{draft.id} ({draft.send_id}); it goes "
                      f"out with {_when_sent(config, draft, now)}.", markup=False)
        return
    if drop:
        drafts.decide(store, draft.id, "dropped", now)
    else:
        review.approve(store, draft, now)
    if drop:
        out.print(f"Dropped d{draft.id} ({draft.send_id}): nothing of it is sent.",
                  markup=False)
        return
    going = sum(1 for r in draft.recipients if not r.excluded)
    out.print(f"Approved d{draft.id} ({draft.send_id}, {going} people); it goes out with "
              f"{_when_sent(config, draft, now)}.", markup=False)


def _counts(store: Store, draft: Draft, now: dt.datetime) -> dict[str, int]:
    """state -> people, with 'sent' from the ledger."""
    from pipeline.approval import drafts
    ledger = drafts.sent_to(store, draft)
    counts: dict[str, int] = {}
    for r in draft.recipients:
        state = "sent" if ledger.get(r.email) == "sent" else draft.state(r, now)
        counts[state] = counts.get(state, 0) + 1
    return counts


def _list_drafts(store: Store, now: dt.datetime) -> None:
    """Drafts waiting, approved but not yet all sent, and expired unapproved."""
    from pipeline.approval import drafts
    shown = 0
    for draft in drafts.load(store):
        counts = _counts(store, draft, now)
        if draft.status == "dropped" or not (counts.get("held") or counts.get("approved")
                                             or counts.get("expired")):
            continue
        if not shown:
            out.print("Drafts (sends held for your approval):", markup=False)
        shown += 1
        if draft.expired(now):
            state = f"EXPIRED unapproved on {draft.expires:%Y-%m-%d}: not sent"
        elif draft.status == "approved":
            state = "approved"
        else:
            state = f"waiting; expires {draft.expires:%Y-%m-%d %H:%M} UTC"
        people = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        out.print(f"  d{draft.id}  {draft.send_id}  {len(draft.recipients)} people "
                  f"({people}); held {draft.created:%Y-%m-%d %H:%M} UTC; {state}",
                  markup=False)
    if shown:
        out.print("See who gets what: sphere approve --show d1 | approve: sphere approve d1 "
                  "| one person: sphere approve d1 --contact EMAIL [--note TEXT] | drop: "
                  "sphere approve --drop d1 [--contact EMAIL]", markup=False)
    else:
        out.print("No drafts waiting for approval.", markup=False)


def _show(config: Config, store: Store, draft: Draft, now: dt.datetime) -> None:
    """Every person of one draft: where they stand, their stories, their note."""
    from pipeline.approval import drafts
    titles = {a.id: a.title for a in store.articles()}
    titles.update({f"tip:{t.id}": f"tip: {t.title}" for t in config.tips})
    ledger = drafts.sent_to(store, draft)
    out.print(f"d{draft.id}  {draft.send_id}: {draft.status}; expires "
              f"{draft.expires:%Y-%m-%d %H:%M} UTC", markup=False)
    for r in draft.recipients:
        state = "sent" if ledger.get(r.email) == "sent" else draft.state(r, now)
        out.print(f"  {r.email}: {state}" + (f" (note: {r.note})" if r.note else ""),
                  markup=False)
        for p in r.picks:
            gone = " [dropped]" if p.key in r.dropped_items else ""
            out.print(f"    {p.section:<13} {titles.get(p.key, p.key)}{gone}", markup=False)
        if r.template:
            out.print(f"    {'message':<13} {r.template}", markup=False)


def _list(store: Store, rows: list[tuple]) -> None:
    from rich.table import Table
    titles = {a.id: a.title for a in store.articles()}
    pending = [r for r in rows if r[7] == "pending"]
    if not pending:
        approved = sum(1 for r in rows if r[7] == "approved")
        out.print(f"No alerts waiting for approval ({approved} approved, not yet sent).",
                  markup=False)
        return
    table = Table(title="Alerts waiting for your approval", title_justify="left")
    for col in ("id", "to", "story", "why", "your note"):
        table.add_column(col, overflow="fold")
    for alert_id, _campaign, email, article_id, _score, reason, note, _s, _c in pending:
        table.add_row(str(alert_id), escape(email), escape(titles.get(article_id, article_id)),
                      escape(reason), escape(note or "(default) I saw this and thought of you."))
    out.print(table)
    out.print("Approve: sphere approve ID [--note TEXT] | all: sphere approve --all | "
              "drop: sphere approve --drop ID", markup=False)


def print_drafts(store: Store) -> None:
    """For `sphere status`: drafts waiting for approval, and drafts that expired."""
    from pipeline.approval import drafts
    now = clock()()
    for draft in drafts.load(store):
        counts = _counts(store, draft, now)
        if draft.status == "dropped":
            continue
        if draft.expired(now) and counts.get("expired"):
            out.print(f"[yellow]Draft d{draft.id} ({escape(draft.send_id)}) expired "
                      f"unapproved on {draft.expires:%Y-%m-%d}[/]: {counts['expired']} "
                      "email(s) not sent, and not sent late.")
        elif counts.get("held"):
            out.print(f"Draft d{draft.id} ({escape(draft.send_id)}): {counts['held']} "
                      f"email(s) waiting for `sphere approve` until "
                      f"{draft.expires:%Y-%m-%d %H:%M} UTC.")


@note_group.command("list", context_settings=CONTEXT)
@click.argument("email", required=False)
@project_option
def note_list(email: str | None, project: Path) -> None:
    """List one-off notes (of EMAIL, or everyone's): waiting, or used and by which send."""
    from pipeline.approval import notes
    with handled():
        config = load(project)
        store = open_store(config, dry_run=True)
        rows = notes.notes(store, email)
        if not rows:
            out.print(f"No notes{f' for {email}' if email else ''}.", markup=False)
            return
        # A line per note, not a table: a note is prose and must not be cut or folded.
        for n in rows:
            state = f"used in {n.used_send_id}" if n.used else "waiting for the next email"
            text = " ".join(n.text.split())
            out.print(f"{n.id}  {n.email}  (added {_when(n.created)}, {state}): {text}",
                      markup=False)
        out.print("Edit a waiting note: sphere note edit ID TEXT | remove: sphere note "
                  "remove ID (used notes are history and stay as sent)", markup=False)


def _unused_note(store: Store, note_id: int) -> None:
    """Fail with the reason when note `note_id` is missing or already used."""
    from pipeline.approval import notes
    found = next((n for n in notes.notes(store) if n.id == note_id), None)
    if found is None:
        fail(f"no note {note_id} (`sphere note list` shows them)")
    elif found.used:
        fail(f"note {note_id} was already sent in {found.used_send_id}; a sent note cannot "
             "be changed (add a new one with `sphere note add`)")


@note_group.command("edit", context_settings=CONTEXT)
@click.argument("note_id", type=int)
@click.argument("text")
@project_option
def note_edit(note_id: int, text: str, project: Path) -> None:
    """Replace the text of waiting note NOTE_ID with TEXT (Markdown)."""
    from pipeline.approval import notes
    with handled():
        store = open_store(load(project))
        _unused_note(store, note_id)
        if not notes.edit_note(store, note_id, text):
            fail(f"note {note_id} was used meanwhile; it can no longer be changed")
        out.print(f"Note {note_id} updated.", markup=False)


@note_group.command("remove", context_settings=CONTEXT)
@click.argument("note_id", type=int)
@project_option
def note_remove(note_id: int, project: Path) -> None:
    """Delete waiting note NOTE_ID so no email carries it."""
    from pipeline.approval import notes
    with handled():
        store = open_store(load(project))
        _unused_note(store, note_id)
        if not notes.remove_note(store, note_id):
            fail(f"note {note_id} was used meanwhile; it can no longer be removed")
        out.print(f"Note {note_id} removed.", markup=False)


