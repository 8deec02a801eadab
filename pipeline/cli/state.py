"""`sphere backup`: a consistent copy of the project's database (part of the CLI; main.py
registers it)."""
from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli.app import CONTEXT, main, opened, out, project_option


@main.command("backup", context_settings=CONTEXT)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@project_option
def backup_cmd(file: Path, project: Path) -> None:
    """Copy the database (ledger, history, signing key) to FILE, safely while sends run."""
    with opened(project) as p:
        size = p.backup(file)
        out.print(f"Backed up {p.config.db_path} to {file} ({size:,} bytes, checked, "
                  "readable by you only). To restore: README, \"Backup and restore\".",
                  markup=False)
