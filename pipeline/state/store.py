"""The project's SQLite file: opening it (private, migrated, a dry run on an in-memory
copy), its meta table and the link-signing key. The tables' operations live in mixins:
articles.py (articles, feed health), ledger.py (sends, deliveries, history, notes),
people.py (suppressions, events, referrals, alerts), drafts.py (held sends) and
users.py (the studio's accounts)."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from pipeline.errors import StoreError
from pipeline.state import dbfile
from pipeline.state.articles import ArticleStore
from pipeline.state.drafts import DraftStore
from pipeline.state.ledger import LedgerStore
from pipeline.state.meta import MetaStore
from pipeline.state.migrations import MIGRATIONS
from pipeline.state.people import PeopleStore
from pipeline.state.records import FeedState, LedgerRow, StoredEvent
from pipeline.state.users import UserStore

# Re-exported: callers named these from here before records.py held them.
__all__ = ["BUSY_TIMEOUT", "FeedState", "LedgerRow", "Store", "StoredEvent"]

# Seconds a command waits for another process's write to finish before it says the
# database is locked (a send commits often, so a real wait is short).
BUSY_TIMEOUT = 30.0


def _snapshot_source(path: Path) -> sqlite3.Connection:
    """A read-only connection that sees every committed write, for a dry run's copy.

    While another process (the webhook service, the daemon) has the database open, the
    latest commits live in the -wal file: `immutable=1` would skip them and a dry run
    would still list a contact unsubscribed seconds ago, so then we read through the WAL
    like any reader. Without a -wal file everything is in the main file, and
    `immutable=1` reads it without creating -wal/-shm files: a dry run touches nothing.
    """
    wal = path.with_name(path.name + "-wal")
    mode = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
    # as_uri() escapes a '?' or '#' in the folder name; Store.open words any error.
    return sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True,
                           timeout=BUSY_TIMEOUT)


class Store(MetaStore, ArticleStore, LedgerStore, PeopleStore, DraftStore,
            UserStore):
    """The project's SQLite file. Every write is one short transaction."""

    # ---- opening -------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, dry_run: bool = False, new_ledger: bool = False,
             verify: bool = False) -> Store:
        """Open (and migrate) the database; with dry_run, work on an in-memory copy.

        Refuses an empty database where earlier sends left traces unless `new_ledger`
        (see dbfile.py); with `verify`, runs SQLite's quick check first, so a damaged
        ledger stops a send before anything goes out. Every SQLite failure becomes a
        StoreError with the fix."""
        try:
            store = cls._connect(path, dry_run, new_ledger)
        except sqlite3.Error as exc:
            raise dbfile.db_error(path, exc) from None
        try:
            if verify:
                problem = store.conn.execute("PRAGMA quick_check(1)").fetchone()[0]
                if problem != "ok":
                    raise dbfile.damaged(path, f"quick check: {problem}")
            store.migrate()
        except BaseException as exc:
            store.close()
            if isinstance(exc, sqlite3.Error):
                raise dbfile.db_error(path, exc) from None
            raise
        return store

    @classmethod
    def _connect(cls, path: Path, dry_run: bool, new_ledger: bool) -> Store:
        if dry_run:
            # A dry run must change nothing on disk, ledger included: copy the file into
            # memory and let the run write there.
            mem = sqlite3.connect(":memory:", isolation_level=None)
            if path.exists():
                src = _snapshot_source(path)
                try:
                    src.backup(mem)  # the backup API reads one consistent snapshot
                finally:
                    src.close()
            dbfile.refuse_lost_ledger(mem, path, new_ledger)
            store = cls(mem, None, origin=path)
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                dbfile.make_private(path)
            except OSError as exc:
                raise StoreError(f"cannot create {path}: {exc.strerror}",
                                 "check the folder is writable, or set state_dir") from None
            conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT)
            try:
                # Before anything writes to it: an empty file here may be a lost ledger.
                dbfile.refuse_lost_ledger(conn, path, new_ledger)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
            except BaseException:
                conn.close()
                raise
            store = cls(conn, path)
        store.conn.row_factory = sqlite3.Row
        store.conn.execute("PRAGMA foreign_keys=ON")
        return store

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def backup(self, target: Path) -> int:
        """Copy the database to `target` (SQLite's online backup); returns its size."""
        try:
            return dbfile.backup(self.conn, target)
        except sqlite3.Error as exc:
            raise dbfile.db_error(self.origin, exc) from None

    def migrate(self) -> int:
        """Apply pending numbered migrations; returns the schema version."""
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(f"database schema {version} is newer than this Sphere "
                             f"({len(MIGRATIONS)})", "upgrade Sphere")
        for number in range(version + 1, len(MIGRATIONS) + 1):
            with self.transaction() as tx:
                for statement in MIGRATIONS[number - 1].split(";"):
                    if statement.strip():
                        tx.execute(statement)
                tx.execute(f"PRAGMA user_version = {number}")
        return len(MIGRATIONS)

    # ---- scheduler ---------------------------------------------------------------------
    def jobstore_url(self) -> str:
        """The SQLAlchemy URL where the daemon's scheduler keeps its jobs: this same file,
        so one backup holds both (an in-memory copy has none to share)."""
        return f"sqlite:///{self.path}" if self.path is not None else "sqlite://"
