"""`sphere db upgrade` and `sphere db status`: the schema of the project's database, the
SQLite file or, for a team (issue #17), PostgreSQL when SPHERE_DATABASE_URL or
`database_url:` is set (part of the CLI, main.py registers it)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import click

from pipeline.cli.app import CONTEXT, main, opened, out, project_option

if TYPE_CHECKING:
    from pathlib import Path

    from pipeline.state.migrations import SchemaState


@main.group("db", context_settings=CONTEXT)
def db() -> None:
    """The project's database: its schema version, and upgrading it."""


def _say(where: str, state: SchemaState | None) -> None:
    if state is None:
        out.print(f"{where}: no database yet; `sphere db upgrade` (or any command "
                  "that uses it) creates it.", markup=False)
    elif state.version > state.latest:
        out.print(f"{where}: schema {state.version} is newer than this Sphere's "
                  f"({state.latest}): upgrade Sphere here.", markup=False)
    elif state.applied:
        steps = f"{state.applied[0]}" if len(state.applied) == 1 else \
            f"{state.applied[0]}-{state.applied[-1]}"
        out.print(f"{where}: applied migration(s) {steps}; schema {state.version} of "
                  f"{state.latest}.", markup=False)
    elif state.pending:
        out.print(f"{where}: schema {state.version} of {state.latest}, {state.pending} "
                  "migration(s) pending: `sphere db upgrade` applies them.", markup=False)
    else:
        out.print(f"{where}: schema {state.version} of {state.latest}, up to date.",
                  markup=False)


@db.command("upgrade", context_settings=CONTEXT)
@project_option
def upgrade_cmd(project: Path) -> None:
    """Apply the pending numbered migrations to the project's database (PostgreSQL when
    SPHERE_DATABASE_URL or database_url: is set, else sphere.db)."""
    with opened(project) as p:
        report = p.upgrade_schema()
    _say(report.where, report.state)


@db.command("status", context_settings=CONTEXT)
@project_option
def status_cmd(project: Path) -> None:
    """Show the database's schema version and how many migrations are pending; changes
    nothing."""
    with opened(project) as p:
        report = p.schema_status()
    _say(report.where, report.state)


@db.command("migrate-to", context_settings=CONTEXT)
@click.argument("url")
@project_option
def migrate_to_cmd(url: str, project: Path) -> None:
    """Copy this project's sphere.db into the empty PostgreSQL database at URL (one
    transaction, every table's rows counted); then set SPHERE_DATABASE_URL to use it."""
    from pipeline.errors import redact_url
    with opened(project) as p:
        moved = p.migrate_to(url)
        db_path = p.config.db_path
    for table, rows in moved.tables:
        out.print(f"  {table}: {rows}", markup=False)
    out.print(f"Moved {moved.rows} row(s) in {len(moved.tables)} tables from "
              f"{db_path} to {redact_url(url)}. Set SPHERE_DATABASE_URL (or "
              "database_url:) to it; keep sphere.db as a backup.", markup=False)
