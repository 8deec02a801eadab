"""The project's state on PostgreSQL (team mode, issue #17): the same mixins as the
SQLite store (articles, ledger, people, drafts, meta) over pgsql.PgConnection, which
translates their SQL in one place. Opening applies pending migrations under the
advisory lock of postgres.upgrade.

What needs a file works differently here: a send is locked by a PostgreSQL advisory
lock keyed by its id (hold_send), `backup` refuses (pg_dump is the tool), and the
daemon's scheduler keeps its one job in memory (daemon.py).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.errors import LockedError, StoreError, redact_url
from pipeline.state import postgres
from pipeline.state.articles import ArticleStore
from pipeline.state.drafts import DraftStore
from pipeline.state.ledger import LedgerStore
from pipeline.state.meta import MetaStore
from pipeline.state.people import PeopleStore
from pipeline.state.pgsql import PgConnection
from pipeline.state.users import UserStore


def send_lock_key(send_id: str) -> int:
    """The 64-bit advisory-lock key of one send (a hash of its id)."""
    digest = hashlib.blake2b(f"sphere-send:{send_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PgStore(MetaStore, ArticleStore, LedgerStore, PeopleStore, DraftStore,
              UserStore):
    """The project's state in a PostgreSQL database. Every write is one short transaction."""

    url: str

    @classmethod
    def open(cls, url: str, dry_run: bool = False, verify: bool = False) -> PgStore:
        """Connect, apply pending migrations (under the advisory lock), and with dry_run
        work inside one transaction that close() rolls back: nothing is kept."""
        raw = postgres.connect(url)
        conn = PgConnection(raw)
        store = cls(conn, None)  # type: ignore[arg-type]
        store.url = url
        try:
            if verify:
                raw.execute("SELECT 1")
            store.migrate()
            if dry_run:
                conn.start_dry_run()
        except BaseException:
            raw.close()
            raise
        return store

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def backup(self, target: Path) -> int:
        """Refused: PostgreSQL's own tools back a server database up."""
        raise StoreError(f"sphere backup copies the SQLite file; this project's state is "
                         f"in PostgreSQL ({redact_url(self.url)})",
                         "back it up with pg_dump (e.g. pg_dump -Fc -f sphere.dump "
                         "\"$SPHERE_DATABASE_URL\")")

    def migrate(self) -> int:
        """Apply pending numbered migrations; returns the schema version."""
        return postgres.upgrade(self._raw).version

    @property
    def _raw(self) -> Any:
        return self.conn.raw  # type: ignore[attr-defined]

    def jobstore_url(self) -> str:
        """This database as an SQLAlchemy URL (psycopg 3 driver). The daemon does not
        keep APScheduler's jobs here: that store is not safe to share between
        processes, so on PostgreSQL its one tick job lives in memory."""
        return "postgresql+psycopg://" + self.url.split("://", 1)[1]

    @contextmanager
    def hold_send(self, send_id: str) -> Iterator[None]:
        """Hold the send's advisory lock while the block runs (a killed holder's session
        ends and releases it), or raise LockedError when another session holds it."""
        key = send_lock_key(send_id)
        got = self._raw.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
        if not got:
            raise LockedError(f"{send_id} is being sent by another process on "
                              f"{redact_url(self.url)}",
                              "let it finish (or stop it), then run the same command "
                              "again: it sends only what is still missing")
        try:
            yield
        finally:
            if not self._raw.closed:
                self._raw.execute("SELECT pg_advisory_unlock(%s)", (key,))
