"""What every part of the SQLite store shares: the connection, its transactions, and
how moments are written (ISO 8601, UTC)."""
from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def iso(moment: dt.datetime | None) -> str | None:
    """A moment as stored: ISO 8601 in UTC (None stays None)."""
    return moment.astimezone(dt.UTC).isoformat() if moment else None


def parse(value: str | None) -> dt.datetime | None:
    """A stored moment back (None or '' is None)."""
    return dt.datetime.fromisoformat(value) if value else None


class SQLiteBase:
    """The connection and its transactions; each part of the store (articles, ledger,
    people, drafts) is a mixin over this."""

    # The project whose rows this store reads and writes: one database may hold many
    # agents' projects in team mode (issue #17); a solo SQLite file holds one.
    project_id: str = ""

    def __init__(self, conn: sqlite3.Connection, path: Path | None,
                 origin: Path | None = None) -> None:
        self.conn = conn
        self.path = path  # None for an in-memory copy (a dry run)
        self.origin = origin or path  # the file it holds, to name in error messages
        self._batched = False  # inside batch(): transaction() joins its one transaction

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception; inside batch(),
        part of the batch's one transaction."""
        if self._batched:
            yield self.conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Many writes in one transaction, so one commit (one fsync) instead of one
        each: ingest records 500 feeds' states and articles this way. All or nothing:
        an exception rolls the whole batch back."""
        with self.transaction():
            self._batched = True
            try:
                yield
            finally:
                self._batched = False
