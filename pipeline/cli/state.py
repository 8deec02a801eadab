"""`sphere backup`: a consistent copy of the project's database (part of the CLI,
registered on the `sphere` group by cli.py)."""
from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli.main import CONTEXT, fail, handled, load, main, open_store, out, project_option


@main.command("backup", context_settings=CONTEXT)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@project_option
def backup_cmd(file: Path, project: Path) -> None:
    """Copy the database (ledger, history, signing key) to FILE, safely while sends run."""
    with handled():
        config = load(project)
        if file.resolve() == config.db_path.resolve():
            fail(f"{file} is the database itself; give another file name (for example "
                 f"{config.state_dir / 'backups' / 'sphere-YYYY-MM-DD.db'})")
        store = open_store(config)
        size = store.backup(file)
        out.print(f"Backed up {config.db_path} to {file} ({size:,} bytes, checked, "
                  "readable by you only). To restore: README, \"Backup and restore\".",
                  markup=False)
