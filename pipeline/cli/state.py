"""`sphere backup`: a consistent copy of the project's database (part of the CLI; main.py
registers it)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import click

from pipeline.cli.app import CONTEXT, PathArg, main, opened, out, project_option

if TYPE_CHECKING:
    from pathlib import Path


@main.command("backup", context_settings=CONTEXT)
@click.argument("file", type=PathArg(dir_okay=False))
@project_option
def backup_cmd(file: Path, project: Path) -> None:
    """Copy the database (ledger, history, signing key) to FILE, safely while sends run."""
    with opened(project) as p:
        size = p.backup(file)
        out.print(f"Backed up {p.config.db_path} to {file} ({size:,} bytes, checked, "
                  "readable by you only). To restore: README, \"Backup and restore\".",
                  markup=False)
