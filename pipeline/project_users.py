"""The studio's accounts for a Project (team mode, issue #17): `sphere user ...` and the
studio's login call these; the store keeps the rows, pipeline.accounts hashes."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.errors import SphereError

if TYPE_CHECKING:
    import datetime as dt

    from pipeline.config import Config
    from pipeline.state.interface import Ledger
    from pipeline.state.records import UserAccount

ADD_AGENT = "sphere user add LOGIN --role agent"


class UserDesk:
    """`sphere user` for a Project: it supplies the config, the store and the clock."""

    if TYPE_CHECKING:
        @property
        def config(self) -> Config: ...

        @property
        def store(self) -> Ledger: ...

        def now(self) -> dt.datetime: ...

        def _database(self) -> tuple[str, str]: ...

    def team_mode(self) -> bool:
        """Whether the state is in PostgreSQL: then the studio logs in by password."""
        return bool(self._database()[0])

    def add_user(self, login: str, role: str, password: str) -> UserAccount:
        """Create a studio account with an argon2 hash of `password`."""
        from pipeline.accounts import hash_password, login_name, role_of
        name, chosen = login_name(login), role_of(role)
        if self.store.user(name) is not None:
            raise SphereError(f"there is already an account {name!r}",
                              f"choose another login, or `sphere user passwd {name}`")
        if not self.store.add_user(name, chosen, hash_password(password), self.now()):
            raise SphereError(f"there is already an account {name!r}",
                              "choose another login")
        found = self.store.user(name)
        assert found is not None
        return found

    def users(self) -> list[UserAccount]:
        """The project's studio accounts, by login."""
        return self.store.users()

    def set_password(self, login: str, password: str) -> None:
        """Give an account a new password (its sessions keep going until they end)."""
        from pipeline.accounts import hash_password, login_name
        name = login_name(login)
        if not self.store.set_user_password(name, hash_password(password), self.now()):
            raise SphereError(f"no account {name!r}", "see `sphere user list`")

    def remove_user(self, login: str) -> None:
        """Delete an account; its open studio sessions end at their next request."""
        from pipeline.accounts import login_name
        name = login_name(login)
        if not self.store.remove_user(name):
            raise SphereError(f"no account {name!r}", "see `sphere user list`")

    def check_login(self, login: str, password: str) -> UserAccount | None:
        """The account whose login and password these are, else None (as slow either
        way: an unknown login is checked against a decoy hash)."""
        from pipeline.accounts import LOGIN, verify_password
        name = login.strip().lower()
        account = self.store.user(name) if LOGIN.match(name) else None
        ok = verify_password(account.password_hash if account else None, password)
        return account if ok else None

    def studio_logins(self) -> bool:
        """Whether the studio logs in by password (team mode) rather than by the printed
        token; in team mode, refused until an agent account exists."""
        if not self.team_mode():
            return False
        if not any(u.role.may_approve for u in self.store.users()):
            raise SphereError("team mode (PostgreSQL): the studio logs in by password, and "
                              "there is no agent account yet",
                              f"create one first with `{ADD_AGENT}`, then start the "
                              "studio again")
        return True
