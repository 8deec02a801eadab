"""The studio's accounts in the store (team mode, issue #17): one row per (project,
login) with its role and argon2 hash, the same on both backends (a mixin). Hashing and
checking passwords live in pipeline.accounts; this is only their storage."""
from __future__ import annotations

import datetime as dt

from pipeline.models import Role
from pipeline.state.base import SQLiteBase
from pipeline.state.base import iso as _iso
from pipeline.state.records import UserAccount

_COLUMNS = "login, role, password_hash, created, updated"


class UserStore(SQLiteBase):
    """Accounts of this store's project (every query scoped by project_id)."""

    def add_user(self, login: str, role: Role, password_hash: str, now: dt.datetime
                 ) -> bool:
        """Record a new account; False (nothing changed) when the login is taken."""
        stamp = _iso(now)
        with self.transaction() as tx:
            cur = tx.execute("INSERT OR IGNORE INTO users (project, login, role, "
                             "password_hash, created, updated) VALUES (?,?,?,?,?,?)",
                             (self.project_id, login, str(role), password_hash, stamp,
                              stamp))
            return cur.rowcount > 0

    def user(self, login: str) -> UserAccount | None:
        """The account with this login, if there is one."""
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM users WHERE project=? AND login=?",
                                (self.project_id, login)).fetchone()
        return UserAccount(*row) if row else None

    def users(self) -> list[UserAccount]:
        """Every account of the project, by login."""
        return [UserAccount(*row) for row in self.conn.execute(
            f"SELECT {_COLUMNS} FROM users WHERE project=? ORDER BY login",
            (self.project_id,))]

    def set_user_password(self, login: str, password_hash: str, now: dt.datetime) -> bool:
        """Replace an account's password hash; False when there is no such account."""
        with self.transaction() as tx:
            cur = tx.execute("UPDATE users SET password_hash=?, updated=? WHERE project=? "
                             "AND login=?", (password_hash, _iso(now), self.project_id,
                                             login))
            return cur.rowcount > 0

    def remove_user(self, login: str) -> bool:
        """Delete an account; False when there was none."""
        with self.transaction() as tx:
            cur = tx.execute("DELETE FROM users WHERE project=? AND login=?",
                             (self.project_id, login))
            return cur.rowcount > 0
