"""`sphere init`, `check`, `ingest`, `plan`, `preview` and `send`: the pipeline's own
commands. Each opens the Project, calls one of its methods and prints the result."""
from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import click

from pipeline.cli.app import (
    CONTEXT,
    TRANSPORTS,
    PathArg,
    err,
    fail,
    handled,
    main,
    opened,
    out,
    progress_bar,
    project_option,
    quiet_option,
    summary_parts,
)

if TYPE_CHECKING:
    from pathlib import Path


@main.command(context_settings=CONTEXT)
@click.argument("directory", type=PathArg(file_okay=False))
def init(directory: Path) -> None:
    """Create a working starter project in DIRECTORY (the bundled sample)."""
    from pipeline.resources import create_project
    with handled():
        create_project(directory)
    out.print(f"Created a starter project in {directory}. Next: cd {directory} && "
              "sphere check && sphere send monthly-sphere --dry-run")


@main.command(context_settings=CONTEXT)
@project_option
def check(project: Path) -> None:
    """Validate every file; exit 1 with file:line: key: problem (fix) lines."""
    with opened(project) as p:
        result = p.check()
        for problem in result.problems:
            (err if problem.severity == "error" else out).print(
                f"{'warning: ' if problem.severity != 'error' else ''}{problem}",
                markup=False)
        for line in result.address_warnings:
            out.print(f"warning: {line}", markup=False)
        for line in result.template_errors:
            err.print(line, markup=False)
        if result.errors:
            fail(f"{result.errors} problem(s) in audience files and templates")
        out.print(f"OK: {result.sources} sources, {result.campaigns} campaigns, "
                  f"{result.contacts} contacts in {result.audiences} audience(s), "
                  f"{result.tips} tips")


@main.command("ingest", context_settings=CONTEXT)
@project_option
@quiet_option
@click.option("--retry-failed", is_flag=True,
              help="Fetch failing feeds now instead of waiting for their retry time.")
def ingest_cmd(project: Path, quiet: bool, retry_failed: bool) -> None:
    """Fetch every feed in content_sources.yaml and store new articles."""
    with opened(project) as p:
        p.store  # noqa: B018 -- open it now: a damaged database fails before the fetch
        bar = progress_bar(quiet, "Fetching feeds")
        if bar:
            with bar:
                task = bar.add_task("fetch", total=len(p.config.sources))
                summary = p.ingest(lambda r: bar.advance(task), retry_failed)
        else:
            summary = p.ingest(retry_failed=retry_failed)
        out.print(f"Done: {summary.line()} in {summary.seconds:.1f} s", markup=False)
        if summary.moved:
            err.print(f"{len(summary.moved)} feed(s) moved permanently: "
                      f"{', '.join(n for n, _ in summary.moved)}; `sphere status` says where "
                      "(update content_sources.yaml)", markup=False)
        if summary.failed and not summary.fetched and not summary.not_modified:
            sys.exit(1)


@main.command(context_settings=CONTEXT)
@click.argument("campaign")
@project_option
@click.option("--dry-run", is_flag=True, help="Change nothing (no files, no ledger); say "
              "what would be sent.")
@click.option("--transport", "transport_name", type=click.Choice(TRANSPORTS),
              help="Override campaigns.yaml's transport.")
@click.option("--no-ingest", is_flag=True, help="Use stored articles; do not fetch feeds first.")
@click.option("--new-ledger", is_flag=True, help="Start a new, empty ledger even though "
              "earlier sends left traces (outbox files, a backup): everyone is sent again.")
@quiet_option
@click.option("--local-time", is_flag=True,
              help="SendGrid only: send ahead of the campaign's next scheduled time and "
                   "have SendGrid hold each email until that time in the contact's own "
                   "time zone (send_at, at most 72 hours ahead).")
def send(campaign: str, project: Path, dry_run: bool, transport_name: str | None,
         no_ingest: bool, new_ledger: bool, quiet: bool, local_time: bool) -> None:
    """Send CAMPAIGN now: one email per subscribed contact, exactly once per period."""
    from pipeline.errors import redact
    with opened(project, dry_run=dry_run, new_ledger=new_ledger, verify=True) as p:
        bar = progress_bar(quiet, f"Sending {campaign}")
        task = bar.add_task("send", total=None) if bar else None

        def tick(done: int, total: int, email: str) -> None:
            if bar is not None and task is not None:
                bar.update(task, completed=done, total=total)

        if bar:
            bar.start()
        started = time.monotonic()
        try:
            result = p.send(campaign, transport_name, ingest=not no_ingest,
                            local_time=local_time, progress=tick)
        finally:
            if bar:
                bar.stop()
        summary = result.summary
        for problem in summary.problems:
            err.print(f"warning: {problem}", markup=False)
        if result.ingested:
            err.print(f"ingest: {result.ingested.line()}", markup=False)
        for failure in summary.failures[:10]:
            err.print(f"failed: {redact(failure)}", markup=False)
        parts = summary_parts(summary, "Would send" if dry_run else "Sent")
        if summary.problems:
            parts.append(f"{len(summary.problems)} contact row(s) reported above")
        where = f" to {result.outbox}" if result.outbox else ""
        out.print(f"Done: {', '.join(parts)} ({summary.send_id}{where}) in "
                  f"{time.monotonic() - started:.2f} s", markup=False)
        if summary.paused:
            fail(summary.paused)
        if summary.failed:
            sys.exit(1)


@main.command(context_settings=CONTEXT)
@click.argument("campaign")
@project_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--explain", is_flag=True, help="Also show how each interest was understood "
              "('loves golf' -> golf) and list each contact's best rejected candidates and "
              "why they lost (already sent, same story, source cap, stale, below threshold, "
              "section full).")
@click.option("--no-ingest", is_flag=True, help="Use stored articles; do not fetch feeds "
              "first (send fetches them, so the plan may then differ from the send).")
def plan(campaign: str, project: Path, as_json: bool, explain: bool, no_ingest: bool
         ) -> None:
    """Show who would get what in CAMPAIGN, with the reason for every pick."""
    with opened(project, dry_run=True) as p:
        result = p.plan(campaign, explain, ingest=not no_ingest, on_ingest=lambda i: err.print(
            f"ingest: {i.line()}", markup=False))
        from pipeline.planning.output import plan_json, plan_text
        if as_json:
            click.echo(plan_json(result.prepared, set(result.done), explain))
        else:
            click.echo(plan_text(result.prepared.plan, set(result.done), sys.stdout.isatty()),
                       nl=False)


@main.command(context_settings=CONTEXT)
@click.argument("campaign")
@project_option
@click.option("--contact", "contact_email", help="Only this contact.")
@click.option("--out", "out_dir", type=PathArg(file_okay=False),
              help="Folder for the HTML files [default: var/preview/CAMPAIGN].")
@click.option("--step", type=int, help="For a drip: only this step (1 is the first).")
def preview(campaign: str, project: Path, contact_email: str | None, out_dir: Path | None,
            step: int | None) -> None:
    """Write each email of CAMPAIGN (or of a drip's steps) as HTML plus an index.html
    gallery; sends nothing."""
    with opened(project, dry_run=True) as p:
        for written in p.preview(campaign, contact_email, out_dir, step):
            if written.step is None:
                out.print(f"Done: wrote {written.count} email(s) and {written.path}",
                          markup=False)
            else:
                out.print(f"Step {written.step} ({written.template}): wrote {written.count} "
                          f"email(s) and {written.path}", markup=False)
