"""`sphere db migrate-to URL`: a solo project's SQLite file copied into an empty
PostgreSQL database, every table in one transaction, each table's row count checked
before the commit (a mismatch rolls everything back)."""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import StoreError, redact_url
from pipeline.state import postgres
from pipeline.state.dbfile import db_error
from pipeline.state.pgsql import ID_TABLES
from pipeline.state.store import Store

# Not copied: APScheduler's jobs (the daemon writes them again at its first start).
SKIPPED = ("apscheduler_jobs",)


@dataclass(frozen=True)
class Moved:
    """What migrate_to copied: table -> rows, in the order copied."""

    tables: tuple[tuple[str, int], ...]

    @property
    def rows(self) -> int:
        """Rows copied, all tables together."""
        return sum(n for _, n in self.tables)


def _tables(conn: sqlite3.Connection) -> list[str]:
    """The store's tables, parents before children (drafts before draft_recipients)."""
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY rowid")]
    return [n for n in names if n not in SKIPPED]


def migrate_to(db_path: Path, url: str) -> Moved:
    """Copy every table of the SQLite file at `db_path` into the empty PostgreSQL
    database at `url` (its schema brought up to date first); all or nothing."""
    if not db_path.exists():
        raise StoreError(f"{db_path} does not exist: there is nothing to move",
                         "run this in the solo project whose sphere.db you want to move")
    store = Store.open(db_path)  # migrated to the newest schema, as PostgreSQL will be
    try:
        with postgres.connect(url) as pg:
            postgres.upgrade(pg)
            with pg.transaction():
                return Moved(tuple(_copy(store.conn, pg, t, url) for t in _tables(store.conn)))
    except sqlite3.Error as exc:
        raise db_error(db_path, exc) from None
    finally:
        store.close()


def _copy(lite: sqlite3.Connection, pg: Any, table: str, url: str) -> tuple[str, int]:
    """Copy one table; refuses a table already holding rows, checks the count after."""
    there = pg.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    if there:
        raise StoreError(f"{redact_url(url)}: table {table} already holds {there} row(s)",
                         "migrate-to fills an empty database only: create a new one "
                         "(createdb) and run it again; nothing was changed")
    cursor = lite.execute(f"SELECT * FROM {table} ORDER BY rowid")
    columns = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    if rows:
        marks = ", ".join(["%s"] * len(columns))
        with pg.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                            [tuple(r) for r in rows])
    if table in ID_TABLES:
        # Rows came with their ids: the identity must go on after the largest.
        pg.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                   f"coalesce(max(id), 0) + 1, false) FROM {table}")
    copied = pg.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    if copied != len(rows):
        raise StoreError(f"{table}: {len(rows)} row(s) in SQLite but {copied} in "
                         "PostgreSQL after the copy", "nothing was changed; report this")
    return table, len(rows)
