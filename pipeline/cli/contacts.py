"""`sphere contacts import` and `sphere report` (issue #9): part of the CLI, registered on
the `sphere` group by cli.py."""
from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipeline.cli.main import CONTEXT, LazyConsole, clock, err, escape, fail, handled, load, main, \
    open_store, out, project_option, quiet_option

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.state.store import Store
# Each command imports what it uses (see cli.py): `sphere --help` stays light.

# exports.TARGETS, spelled out so that --help need not import the importer (tests/test_cli.py
# checks they agree); config.AUDIENCES_DIR likewise.
TARGETS = ("email", "first_name", "last_name", "neighbourhood", "interests", "relationship",
           "closing_date", "timezone", "note", "private_note", "status", "name", "street",
           "zip", "opt_out", "subscribed", "ignore")
AUDIENCES_DIR = "audiences"

# A project-level mapping used when --neighbourhoods is not given.
DEFAULT_NEIGHBOURHOODS = "neighbourhoods.yaml"
COLD_SHOWN = 20  # addresses listed by `status`; the report lists them all


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
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--audience", required=True, help="Merge into audiences/NAME.csv (created if "
              "missing).")
@click.option("--map", "maps", multiple=True, metavar="COLUMN=FIELD",
              help=f"Read COLUMN as FIELD ({', '.join(TARGETS)}); repeatable.")
@click.option("--dry-run", is_flag=True, help="Write nothing; report what would change.")
@click.option("--neighbourhoods", "hoods_file", type=click.Path(dir_okay=False, path_type=Path),
              help=f"YAML of streets and ZIP codes per neighbourhood [default: "
                   f"{DEFAULT_NEIGHBOURHOODS} in the project, if present].")
@project_option
@quiet_option
def import_cmd(file: Path, audience: str, maps: tuple[str, ...], dry_run: bool,
               hoods_file: Path | None, project: Path, quiet: bool) -> None:
    """Import a CSV (Google, Outlook, Follow Up Boss, any spreadsheet) or vCard FILE."""
    from pipeline.contacts.importer import import_contacts
    from pipeline.contacts.neighbourhoods import load_neighbourhoods
    with handled():
        config = load(project)
        if not audience.replace("-", "").replace("_", "").isalnum():
            fail(f"--audience {audience!r}: use letters, digits, '-' or '_' (it becomes "
                 f"{AUDIENCES_DIR}/NAME.csv)")
        hoods_path = hoods_file or (config.project / DEFAULT_NEIGHBOURHOODS)
        hoods = None
        if hoods_file is not None or hoods_path.is_file():
            hoods = load_neighbourhoods(hoods_path)
        # Read the suppressions from an in-memory copy: an import never writes the database.
        store = open_store(config, dry_run=True)
        # A bar on a terminal only (a pipe or a log gets the summary lines alone).
        bar = None if quiet or not err.is_terminal else _ImportBar(file.name)
        with bar.bar if bar else nullcontext():
            report = import_contacts(file, config.project / AUDIENCES_DIR, audience,
                                     overrides=_overrides(maps), neighbourhoods=hoods,
                                     suppressed=store.suppressed(), dry_run=dry_run,
                                     shown=str(file), progress=bar,
                                     known_hoods=tuple(sorted({s.neighbourhood for s in
                                                               config.sources
                                                               if s.neighbourhood})))
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
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a self-contained HTML page with a chart per campaign.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--events", "events_file", type=click.Path(dir_okay=False, exists=True,
              path_type=Path), help="First record a saved SendGrid Event Webhook batch (a "
              "JSON array), as `sphere webhook serve` would; repeats are ignored.")
@project_option
def report(campaign: str, html_file: Path | None, as_json: bool, events_file: Path | None,
           project: Path) -> None:
    """Per send: sent, delivered, opened, clicked, bounced, unsubscribed, complained."""
    from pipeline.delivery import report as reports
    from pipeline.delivery.webhook import parse_events
    with handled():
        config = load(project)
        # Read-only unless a batch of events is to be recorded.
        store = open_store(config, dry_run=events_file is None)
        if events_file is not None:
            try:
                events, suppress = parse_events(events_file.read_bytes())
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                fail(f"{events_file}: not a SendGrid event batch ({exc}); give the JSON "
                     "array the Event Webhook posts")
            added = store.record_events(events, suppress, clock()())
            err.print(f"Recorded {added} new event(s) of {len(events)} from {events_file}.",
                      markup=False)
        known = {c.name for c in config.campaigns} | {c for _, c, _ in store.send_rows()}
        if campaign and campaign not in known:
            fail(f"no campaign {campaign!r}; known: {', '.join(sorted(known)) or 'none'}")
        result = reports.report_from_store(store, campaign, config.engagement.cold_after_sends)
        if html_file is not None:
            html_file.parent.mkdir(parents=True, exist_ok=True)
            html_file.write_text(reports.render_html(result, clock()()), encoding="utf-8")
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


def print_cold(config: Config, store: Store) -> None:
    """The `status` line about cold contacts."""
    from pipeline.contacts.engagement import cold_contacts
    n = config.engagement.cold_after_sends
    cold = sorted(cold_contacts(store.ledger_rows(), store.events(), n))
    if not cold:
        return
    shown = ", ".join(cold[:COLD_SHOWN]) + (" ..." if len(cold) > COLD_SHOWN else "")
    out.print(f"[yellow]{len(cold)} cold contact(s)[/] (no open or click in the last {n} "
              f"sends): {escape(shown)}; `sphere report` has details, and a campaign's "
              "`cold_contacts: quarterly` mails them less often.")

