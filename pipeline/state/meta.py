"""The meta table and the link-signing key, the same on both backends (a mixin)."""
from __future__ import annotations

import secrets

from pipeline.rendering.links import link_keys
from pipeline.state.base import SQLiteBase


class MetaStore(SQLiteBase):
    """Key-value settings of the project: scheduler checkpoints, the link secret."""

    def secret(self) -> str:
        """The key that signs unsubscribe links: SPHERE_SECRET, else the project's own."""
        return self.secrets()[0]

    def secrets(self) -> tuple[str, ...]:
        """Every key an unsubscribe link may be signed with, the signing one first."""
        return link_keys(self._project_secret)

    def _project_secret(self) -> str:
        """A per-project random key for signing unsubscribe links (made once)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key='link_secret'").fetchone()
        if row:
            return str(row[0])
        value = secrets.token_urlsafe(32)
        with self.transaction() as tx:
            tx.execute("INSERT OR IGNORE INTO meta VALUES ('link_secret', ?)", (value,))
        return str(self.conn.execute(
            "SELECT value FROM meta WHERE key='link_secret'").fetchone()[0])

    def meta(self, key: str) -> str | None:
        """A value from the meta table (scheduler checkpoints and the like)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        """Store a value in the meta table."""
        with self.transaction() as tx:
            tx.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
