"""`sphere contacts import` and `sphere report` (issue #9): part of the CLI; main.py
registers it."""
from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import click

from pipeline import names
from pipeline.cli.app import (
    CONTEXT,
    LazyConsole,
    PathArg,
    err,
    main,
    opened,
    out,
    project_option,
    quiet_option,
)

if TYPE_CHECKING:
    from pathlib import Path

# Each command imports what it uses (see app.py): `sphere --help` stays light.

# From pipeline/names.py, cheap enough for --help: the importer itself is not loaded.
TARGETS = names.IMPORT_TARGETS
AUDIENCES_DIR = names.AUDIENCES_DIR
DEFAULT_NEIGHBOURHOODS = names.DEFAULT_NEIGHBOURHOODS


def _overrides(pairs: tuple[str, ...]) -> dict[str, str]:
    """--map 'Column Name=field' pairs -> {column: field}."""
    from pipeline.errors import ConfigError, Problem
    found: dict[str, str] = {}
    for pair in pairs:
        column, eq, target = pair.rpartition("=")
        if not eq or not column.strip():
            raise ConfigError([Problem("--map", 0, pair, "expected COLUMN=FIELD",
                                       f"e.g. --map 'Primary Email=email'; fields: "
                                       f"{', '.join(TARGETS)}")])
        found[column.strip()] = target.strip().lower()
    return found


class _ImportBar:
    """A terminal progress bar for an import: megabytes of the export read, then rows of
    the audience written (the library reports both through its `progress` callback)."""

    def __init__(self, label: str) -> None:
        # Here, not at the top: only an import on a terminal needs rich's progress.
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                            TextColumn("{task.fields[amount]}"), TimeElapsedColumn(),
                            console=err.real() if isinstance(err, LazyConsole) else err,
                            transient=True)
        self.label = label
        self.tasks: dict[str, Any] = {}  # stage -> rich TaskID

    def __call__(self, stage: str, done: int, total: int) -> None:
        amount = (f"{done / 1e6:,.1f}/{total / 1e6:,.1f} MB" if stage == "read"
                  else f"{done:,}/{total:,} rows")
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(
                f"Reading {self.label}" if stage == "read" else "Writing the audience",
                total=total, amount=amount)
        self.bar.update(self.tasks[stage], completed=done, total=total, amount=amount)


@main.group(context_settings=CONTEXT)
def contacts() -> None:
    """Bring contacts in from a CRM or address book."""


@contacts.command("import", context_settings=CONTEXT)
@click.argument("file", type=PathArg(dir_okay=False))
@click.option("--audience", required=True, help="Merge into audiences/NAME.csv (created if "
              "missing).")
@click.option("--map", "maps", multiple=True, metavar="COLUMN=FIELD",
              help=f"Read COLUMN as FIELD ({', '.join(TARGETS)}); repeatable.")
@click.option("--dry-run", is_flag=True, help="Write nothing; report what would change.")
@click.option("--neighbourhoods", "hoods_file", type=PathArg(dir_okay=False),
              help=f"YAML of streets and ZIP codes per neighbourhood [default: "
                   f"{DEFAULT_NEIGHBOURHOODS} in the project, if present].")
@project_option
@quiet_option
def import_cmd(file: Path, audience: str, maps: tuple[str, ...], dry_run: bool,
               hoods_file: Path | None, project: Path, quiet: bool) -> None:
    """Import a CSV (Google, Outlook, Follow Up Boss, any spreadsheet) or vCard FILE."""
    # The store is an in-memory copy (its suppressions are read): an import never writes
    # the database.
    with opened(project, dry_run=True) as p:
        overrides = _overrides(maps)
        # A bar on a terminal only (a pipe or a log gets the summary lines alone).
        bar = None if quiet or not err.is_terminal else _ImportBar(file.name)
        with bar.bar if bar else nullcontext():
            report = p.import_contacts(file, audience, overrides, hoods_file, dry_run, bar)
        config = p.config
        out.print(("Dry run: " if dry_run else "") + report.line(), markup=False)
        if report.columns:
            out.print("columns: " + ", ".join(f"{c!r} -> {f}" for c, f in report.columns),
                      markup=False)
        if report.encoding != "UTF-8":
            out.print(f"read as {report.encoding} (the file is not UTF-8)", markup=False)
        for line in report.skipped:
            out.print(f"  skipped: {line}", markup=False)
        if report.skipped_more:
            out.print(f"  ... and {report.skipped_more} more skipped rows not listed",
                      markup=False)
        for line in report.notes:
            out.print(f"  note: {line}", markup=False)
        if report.notes_more:
            out.print(f"  ... and {report.notes_more} more notes not listed", markup=False)
        if report.unchanged:
            out.print(f"  {report.unchanged} already in the audience with nothing new",
                      markup=False)
        where = report.target.relative_to(config.project) \
            if report.target.is_relative_to(config.project) else report.target
        out.print(f"Nothing written ({where} unchanged)." if dry_run else
                  f"Wrote {where}.", markup=False)


@main.command(context_settings=CONTEXT)
@click.argument("campaign", required=False, default="")
@click.option("--html", "html_file", type=PathArg(dir_okay=False),
              help="Also write a self-contained HTML page with a chart per campaign.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--events", "events_file", type=PathArg(dir_okay=False, exists=True),
              help="First record a saved SendGrid Event Webhook batch (a "
              "JSON array), as `sphere webhook serve` would; repeats are ignored.")
@project_option
def report(campaign: str, html_file: Path | None, as_json: bool, events_file: Path | None,
           project: Path) -> None:
    """Per send: sent, delivered, opened, clicked, bounced, unsubscribed, complained."""
    import json
    from dataclasses import asdict

    from pipeline.delivery import report as reports
    # Read-only unless a batch of events is to be recorded.
    with opened(project, dry_run=events_file is None) as p:
        if events_file is not None:
            recorded = p.record_events(events_file)
            err.print(f"Recorded {recorded.added} new event(s) of {recorded.total} from "
                      f"{events_file}.",
                      markup=False)
        result = p.report(campaign, html_file)
        if as_json:
            click.echo(json.dumps(asdict(result), indent=2, ensure_ascii=False))
            return
        for s in result.sends:
            out.print(s.line(), markup=False)
        for why in reports.footnotes(result):
            out.print(f"* {reports.UNKNOWN} unknown: {why}" if why == reports.UNTRACKED_WHY
                      else f"* {why}", markup=False)
        if not result.sends:
            out.print("No sends recorded yet.")
        if result.stories:
            out.print("Top clicked stories:")
            for st in result.stories:
                people = f"{st.contacts} {'person' if st.contacts == 1 else 'people'}"
                out.print(f"  {people}, {st.clicks} click(s): {st.title or st.url}",
                          markup=False)
        engaged = [c for c in result.contacts if c.opened or c.clicked]
        out.print(f"Contacts: {len(result.contacts)} mailed or active, {len(engaged)} opened "
                  f"or clicked, {len(result.cold)} cold (no open or click in the last "
                  f"{result.cold_after_sends} sends through SendGrid, the transport that reports "
                  "opens)", markup=False)
        for c in result.contacts:
            flags = ", ".join((("cold",) if c.cold else ()) + c.flags)
            out.print(f"  {c.email}: sent {c.sent}, opened {c.opened}, clicked {c.clicked}"
                      f"{f' [{flags}]' if flags else ''}", markup=False)
        if html_file is not None:
            out.print(f"Wrote {html_file}.", markup=False)
