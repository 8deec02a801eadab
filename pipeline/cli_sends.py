"""`sphere approve`: the professional's review of interest alerts before they go (part of
the CLI, registered on the `sphere` group by cli.py)."""
from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from .cli import CONTEXT, clock, err, fail, handled, load, main, open_store, out, \
    project_option
from .runner import reconcile_alerts


@main.command("approve", context_settings=CONTEXT)
@click.argument("alert_ids", nargs=-1, type=int)
@click.option("--all", "approve_all", is_flag=True, help="Approve every pending alert.")
@click.option("--drop", is_flag=True, help="Drop the given alerts instead of approving.")
@click.option("--note", help="Your note for the alert (replaces the default opening).")
@project_option
def approve(alert_ids: tuple[int, ...], approve_all: bool, drop: bool, note: str | None,
            project: Path) -> None:
    """List pending interest alerts, or approve (with an edited note) or drop them; approved
    alerts go out with the next `sphere send` of their campaign (or the daemon's)."""
    with handled():
        config = load(project)
        store = open_store(config)
        now = clock()()
        campaigns = [c.name for c in config.campaigns if c.kind == "interest_alert"]
        for name in campaigns:
            for notice in reconcile_alerts(store, name, now):
                err.print(notice, markup=False)
        rows = [r for r in store.alerts() if r[1] in campaigns]
        pending = {r[0]: r for r in rows if r[7] == "pending"}
        if note is not None and (drop or len(alert_ids) != 1):
            fail("--note edits one alert: give exactly one id, without --drop")
        targets = list(pending) if approve_all else list(alert_ids)
        if not targets:
            _list(store, rows)
            return
        unknown = [i for i in targets if i not in pending]
        if unknown:
            fail(f"not pending: {', '.join(map(str, unknown))} (`sphere approve` lists the "
                 "pending ones)")
        status = "dropped" if drop else "approved"
        for alert_id in targets:
            store.decide_alert(alert_id, status, now, note)
        verb = "Dropped" if drop else "Approved"
        follow = "" if drop else "; they go out with the next `sphere send " + \
            f"{pending[targets[0]][1]}` (or the daemon's next look)"
        out.print(f"{verb} {len(targets)} alert(s){follow}.", markup=False)


def _list(store, rows: list[tuple]) -> None:
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
