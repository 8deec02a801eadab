"""`sphere status`, `resolve`, `suppressions sync` and `webhook serve`: the state of a
project and the services around it (part of the CLI; main.py registers it)."""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import click

from pipeline.cli.app import (
    CONTEXT,
    err,
    escape,
    main,
    opened,
    out,
    project_option,
    when,
)
from pipeline.cli.schedule import print_unsent

if TYPE_CHECKING:
    from pathlib import Path

    from pipeline.config import Config
    from pipeline.outcomes import StatusView

COLD_SHOWN = 20  # addresses listed by `status`; the report lists them all


def _feeds_table(config: Config, view: StatusView) -> None:
    """The Feeds table of `status`, then what to do about failing or moved feeds."""
    from rich.table import Table

    from pipeline.errors import redact, redact_url
    feeds = Table(title="Feeds (times UTC)", title_justify="left")
    for col in ("source", "last run", "last success"):
        feeds.add_column(col, no_wrap=True)
    for col in ("fails in a row", "articles", "new", "last error"):
        feeds.add_column(col, overflow="fold")
    for h in view.health:
        src, s = h.source, h.state
        if s is None:
            feeds.add_row(escape(src.name), "never fetched", "", "0", "0", "", "")
            continue
        outcome = {"ok": "ok", "not_modified": "not modified",
                   "failed": "[red]failed[/]"}.get(s.last_outcome or "", "")
        # An old error is history, not health: show it dimmed once the feed recovered.
        error = escape(f"{redact(s.last_error or '')[:90]} ({when(s.last_error_at)})"
                       if s.last_error else "")
        if error and not s.consecutive_failures:
            error = f"[dim]{error}, since recovered[/]"
        if h.retry is not None:
            # ingest leaves it until then (fetch.backing_off); a url edit retries at once
            error += f"; next try {when(h.retry.isoformat())}"
        name = escape(src.name) + (" [red](failing)[/]" if h.failing else "")
        feeds.add_row(name, outcome, when(s.last_success) or "never",
                      str(s.consecutive_failures), str(s.articles_seen),
                      str(s.last_new) if s.last_outcome == "ok" else "", error)
    out.print(feeds)
    where = config.project / "content_sources.yaml"
    for h in view.health:
        if not h.failing or h.state is None:
            continue
        src, s = h.source, h.state
        later = f"; not fetched again before {when(h.retry.isoformat())}" if h.retry else ""
        out.print(f"[red]{escape(src.name)} failed {s.consecutive_failures} times in a row[/]"
                  f" (last: {escape(redact(s.last_error or ''))}){later}; check its url at "
                  f"{escape(str(where))}:{src.line} in a browser, or remove the source")
    for h in view.health:
        if h.moved_to:
            out.print(f"[yellow]{escape(h.source.name)} has moved permanently[/] to "
                      f"{escape(redact_url(h.moved_to))}; "
                      f"update its url at {escape(str(where))}:{h.source.line} (the old "
                      "address may stop redirecting)")


def _sends_table(view: StatusView) -> None:
    """Recent sends, then the messages whose outcome is unknown."""
    from rich.table import Table
    sends = Table(title="Sends", title_justify="left")
    for col in ("send", "started", "outcome", "sent", "failed", "unknown"):
        sends.add_column(col)
    for s in view.sends:
        sends.add_row(s.send_id, (s.started or "")[:19], s.outcome or "running or interrupted",
                      str(s.sent), str(s.failed), str(s.pending))
    out.print(sends)
    pending = view.pending
    if pending:
        out.print(f"[yellow]{len(pending)} message(s) with unknown outcome[/] (the process "
                  "stopped mid-send); they are not re-sent automatically. Check the "
                  "provider, then resolve each:")
        for row in pending[:20]:
            out.print(f"  sphere resolve {row.send_id} {row.email} --sent|--not-sent",
                      markup=False)
        if len(pending) > 20:
            out.print(f"  ... and {len(pending) - 20} more (resolve these, then run "
                      "`sphere status` again)", markup=False)


def _next_runs(view: StatusView) -> None:
    """What fell due and has not gone out, then the next send of each campaign and drip
    (only the next firing: no calendar per person)."""
    from rich.table import Table
    print_unsent(list(view.late))
    table = Table(title="Next runs", title_justify="left")
    for col in ("campaign or drip", "next send", "first local time"):
        table.add_column(col, overflow="fold")
    for d in view.nexts:
        table.add_row(d.name, d.send_id, f"{d.local:%Y-%m-%d %H:%M %Z}")
    out.print(table)
    out.print(f"Daemon's last tick: {view.last_tick or 'never (start it with `sphere run`)'}",
              markup=False)


def _cold_and_drafts(config: Config, view: StatusView, now: dt.datetime) -> None:
    """Cold contacts, then drafts waiting for approval and drafts that expired."""
    cold, n = view.cold, config.engagement.cold_after_sends
    if cold:
        shown = ", ".join(cold[:COLD_SHOWN]) + (" ..." if len(cold) > COLD_SHOWN else "")
        out.print(f"[yellow]{len(cold)} cold contact(s)[/] (no open or click in the last {n} "
                  f"sends): {escape(shown)}; `sphere report` has details, and a campaign's "
                  "`cold_contacts: quarterly` mails them less often.")
    from pipeline.models import ReviewState
    for state in view.drafts:
        draft, counts = state.draft, state.counts
        if draft.status == "dropped":
            continue
        expired, held = counts.get(ReviewState.EXPIRED), counts.get(ReviewState.HELD)
        if draft.expired(now) and expired:
            out.print(f"[yellow]Draft d{draft.id} ({escape(draft.send_id)}) expired "
                      f"unapproved on {draft.expires:%Y-%m-%d}[/]: {expired} "
                      "email(s) not sent, and not sent late.")
        elif held:
            out.print(f"Draft d{draft.id} ({escape(draft.send_id)}): {held} "
                      f"email(s) waiting for `sphere approve` until "
                      f"{draft.expires:%Y-%m-%d %H:%M} UTC.")


@main.command(context_settings=CONTEXT)
@project_option
def status(project: Path) -> None:
    """Feeds' health, recent sends, and messages whose outcome is unknown."""
    with opened(project) as p:
        view = p.status()
        _feeds_table(p.config, view)
        _sends_table(view)
        _next_runs(view)
        _cold_and_drafts(p.config, view, p.now())
        reasons = ", ".join(f"{n} {r}" for r, n in view.suppression_counts.items())
        out.print(f"{view.articles} articles stored; {view.suppressed} suppressed "
                  f"address(es){f' ({reasons})' if reasons else ''}.", markup=False)


@main.command(context_settings=CONTEXT)
@click.argument("send_id")
@click.argument("email")
@click.option("--sent/--not-sent", required=True,
              help="--sent if it was delivered; --not-sent to send it on the next run.")
@project_option
def resolve(send_id: str, email: str, sent: bool, project: Path) -> None:
    """Settle a message whose outcome is unknown after an interruption."""
    with opened(project) as p:
        p.resolve(send_id, email, sent)
        out.print(f"Recorded {email} in {send_id} as {'sent' if sent else 'not sent'}.")


@main.group(context_settings=CONTEXT)
def suppressions() -> None:
    """Addresses never to mail: unsubscribes, bounces and spam reports."""


@suppressions.command("sync", context_settings=CONTEXT)
@project_option
def suppressions_sync(project: Path) -> None:
    """Fetch SendGrid's unsubscribe, bounce and spam-report lists (and the unsubscribe
    group's) and suppress those addresses for every transport."""
    with opened(project) as p:
        p.store  # noqa: B018 -- open it now: a damaged database fails before the fetch
        synced = p.sync_suppressions()
        out.print(f"Done: {synced.summary.line()}; {synced.total} suppressed in all.",
                  markup=False)


@main.group(context_settings=CONTEXT)
def webhook() -> None:
    """The HTTP service for SendGrid events and one-click unsubscribes."""


@webhook.command("serve", context_settings=CONTEXT)
@project_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (put a TLS proxy in front for the internet).")
@click.option("--port", default=8025, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
def webhook_serve(project: Path, host: str, port: int) -> None:
    """Serve POST /sendgrid/events (signed Event Webhook) and the one-click unsubscribe
    page of sender.unsubscribe_url until interrupted."""
    from pipeline.delivery import webhook as hook
    with opened(project) as p:
        service = p.webhook_server(host, port)
        if not service.signed:
            err.print(f"warning: {hook.PUBLIC_KEY_ENV} is not set: SendGrid events are "
                      "refused (403) until you export it", markup=False)
        out.print(f"Listening on {service.server.url} (events: {hook.EVENTS_PATH}; "
                  f"unsubscribe: {', '.join(service.paths)}); Ctrl-C stops.", markup=False)
        try:
            service.server.run()
        except KeyboardInterrupt:
            pass  # uvicorn re-raises the Ctrl-C it handled, once it has shut down
        finally:
            service.sock.close()
