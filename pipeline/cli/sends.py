"""`sphere approve` and `sphere note`: the professional's review of what goes out, before
it goes: interest alerts, drafts of sends held with `approval: true`, and one-off notes
(part of the CLI; main.py registers it)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import click

from pipeline.cli.app import (
    CONTEXT,
    err,
    escape,
    fail,
    main,
    opened,
    out,
    project_option,
    when,
)

if TYPE_CHECKING:
    from pathlib import Path

    from pipeline.approval.drafts import Draft
    from pipeline.outcomes import DraftDecided, DraftState
    from pipeline.project import Project
    from pipeline.state.records import QueuedAlert
# Each command imports what it uses (see app.py): `sphere --help` stays light.


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
    with opened(project) as p:
        alert_ids, draft_ids = _ids(ids)
        if show:
            for draft_id in draft_ids:
                _show(p, p.draft(draft_id))
            return
        queue = p.approval_queue()
        for notice in queue.notices:
            err.print(notice, markup=False)
        done = p.approve(alert_ids, draft_ids, approve_all, drop, note, contact_email, queue)
        if done.nothing_waiting:
            out.print("Nothing is waiting for approval.", markup=False)
            return
        if done.listed:
            _list(p, list(done.queue.alerts))
            _list_drafts(p, done.queue.drafts)
            return
        for decided in done.drafts:
            _said(decided, drop, contact_email)
        if done.alerts:
            verb = "Dropped" if drop else "Approved"
            follow = "" if drop else "; they go out with the next `sphere send " + \
                f"{done.alerts[0].campaign}` (or the daemon's next look)"
            out.print(f"{verb} {len(done.alerts)} alert(s){follow}.", markup=False)


def _said(decided: DraftDecided, drop: bool, contact_email: str | None) -> None:
    """What was decided for one draft, and what happens next."""
    draft = decided.draft
    if contact_email and drop:
        out.print(f"Dropped {contact_email} from d{draft.id} ({draft.send_id}).",
                  markup=False)
    elif contact_email:
        out.print(f"Approved {contact_email} in d{draft.id} ({draft.send_id}); it goes "
                  f"out with {decided.when_sent}.", markup=False)
    elif drop:
        out.print(f"Dropped d{draft.id} ({draft.send_id}): nothing of it is sent.",
                  markup=False)
    else:
        going = sum(1 for r in draft.recipients if not r.excluded)
        out.print(f"Approved d{draft.id} ({draft.send_id}, {going} people); it goes out "
                  f"with {decided.when_sent}.", markup=False)


def _list_drafts(p: Project, states: tuple[DraftState, ...]) -> None:
    """Drafts waiting, approved but not yet all sent, and expired unapproved."""
    from pipeline.models import ReviewState
    now = p.now()
    shown = 0
    for s in states:
        draft, counts = s.draft, s.counts
        if draft.status == "dropped" or not (counts.get(ReviewState.HELD)
                                             or counts.get(ReviewState.APPROVED)
                                             or counts.get(ReviewState.EXPIRED)):
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


def _show(p: Project, draft: Draft) -> None:
    """Every person of one draft: where they stand, their stories, their note."""
    titles = p.titles()
    out.print(f"d{draft.id}  {draft.send_id}: {draft.status}; expires "
              f"{draft.expires:%Y-%m-%d %H:%M} UTC", markup=False)
    for rs in p.recipient_states(draft):
        r = rs.recipient
        out.print(f"  {r.email}: {rs.state}" + (f" (note: {r.note})" if r.note else ""),
                  markup=False)
        for pick in r.picks:
            gone = " [dropped]" if pick.key in r.dropped_items else ""
            out.print(f"    {pick.section:<13} {titles.get(pick.key, pick.key)}{gone}",
                      markup=False)
        if r.template:
            out.print(f"    {'message':<13} {r.template}", markup=False)


def _list(p: Project, rows: list[QueuedAlert]) -> None:
    from rich.table import Table
    pending = [r for r in rows if r.status == "pending"]
    if not pending:
        approved = sum(1 for r in rows if r.status == "approved")
        out.print(f"No alerts waiting for approval ({approved} approved, not yet sent).",
                  markup=False)
        return
    titles = p.titles()
    table = Table(title="Alerts waiting for your approval", title_justify="left")
    for col in ("id", "to", "story", "why", "your note"):
        table.add_column(col, overflow="fold")
    for r in pending:
        table.add_row(str(r.id), escape(r.email), escape(titles.get(r.article_id, r.article_id)),
                      escape(r.reason),
                      escape(r.note or "(default) I saw this and thought of you."))
    out.print(table)
    out.print("Approve: sphere approve ID [--note TEXT] | all: sphere approve --all | "
              "drop: sphere approve --drop ID", markup=False)


@main.group(context_settings=CONTEXT)
def note() -> None:
    """One-off personal notes for the next email to a contact."""


@note.command("add", context_settings=CONTEXT)
@click.argument("email")
@click.argument("text")
@project_option
def note_add(email: str, text: str, project: Path) -> None:
    """Add TEXT (Markdown) to the next email EMAIL receives."""
    with opened(project) as p:
        note_id = p.add_note(email, text)
        out.print(f"Note {note_id} queued for the next email to {email}.")


@note.command("list", context_settings=CONTEXT)
@click.argument("email", required=False)
@project_option
def note_list(email: str | None, project: Path) -> None:
    """List one-off notes (of EMAIL, or everyone's): waiting, or used and by which send."""
    with opened(project, dry_run=True) as p:
        rows = p.notes(email)
        if not rows:
            out.print(f"No notes{f' for {email}' if email else ''}.", markup=False)
            return
        # A line per note, not a table: a note is prose and must not be cut or folded.
        for n in rows:
            state = f"used in {n.used_send_id}" if n.used else "waiting for the next email"
            text = " ".join(n.text.split())
            out.print(f"{n.id}  {n.email}  (added {when(n.created)}, {state}): {text}",
                      markup=False)
        out.print("Edit a waiting note: sphere note edit ID TEXT | remove: sphere note "
                  "remove ID (used notes are history and stay as sent)", markup=False)


@note.command("edit", context_settings=CONTEXT)
@click.argument("note_id", type=int)
@click.argument("text")
@project_option
def note_edit(note_id: int, text: str, project: Path) -> None:
    """Replace the text of waiting note NOTE_ID with TEXT (Markdown)."""
    with opened(project) as p:
        p.edit_note(note_id, text)
        out.print(f"Note {note_id} updated.", markup=False)


@note.command("remove", context_settings=CONTEXT)
@click.argument("note_id", type=int)
@project_option
def note_remove(note_id: int, project: Path) -> None:
    """Delete waiting note NOTE_ID so no email carries it."""
    with opened(project) as p:
        p.remove_note(note_id)
        out.print(f"Note {note_id} removed.", markup=False)
