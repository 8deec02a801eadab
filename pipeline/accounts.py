"""The studio's accounts (team mode, issue #17): logins, roles and argon2 password hashes.

Team mode (the project's state in PostgreSQL) logs into the studio by login and password
instead of the printed token; `sphere user add` creates the accounts. Only the hash is
stored (argon2id, argon2-cffi's default cost), never the password."""
from __future__ import annotations

import re
from functools import lru_cache

from pipeline.errors import SphereError
from pipeline.models import Role

LOGIN = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # hashing a megabyte per attempt would be a cheap way to load us
ROLES = tuple(r.value for r in Role)


@lru_cache(maxsize=1)
def _hasher():  # type: ignore[no-untyped-def]
    from argon2 import PasswordHasher
    return PasswordHasher()


def login_name(login: str) -> str:
    """A login as stored (lower case), or a SphereError saying what a login may be."""
    name = login.strip().lower()
    if not LOGIN.match(name):
        raise SphereError(f"login {login!r}: use 1-64 letters, digits, '.', '_', '-' or "
                          "'@', starting with a letter or digit",
                          "e.g. sphere user add dana --role agent")
    return name


def role_of(role: str) -> Role:
    """The role named, or a SphereError listing the roles."""
    try:
        return Role(role.strip().lower())
    except ValueError:
        raise SphereError(f"role {role!r}: not a role", f"use one of {', '.join(ROLES)}"
                          ) from None


def hash_password(password: str) -> str:
    """The argon2id hash of a new password, refused (SphereError) when too short."""
    if len(password) < MIN_PASSWORD:
        raise SphereError(f"the password is shorter than {MIN_PASSWORD} characters",
                          "choose a longer one; a few words make a good password")
    if len(password) > MAX_PASSWORD:
        raise SphereError(f"the password is longer than {MAX_PASSWORD} characters",
                          "choose a shorter one")
    return str(_hasher().hash(password))


@lru_cache(maxsize=1)
def _decoy() -> str:
    """A hash to check a password against when the login is unknown, so a wrong login
    costs the same time as a wrong password (no telling which logins exist)."""
    return str(_hasher().hash("sphere-decoy-password"))


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches the stored hash (None: no such account; still hashes)."""
    from argon2.exceptions import InvalidHashError, VerificationError
    if not password or len(password) > MAX_PASSWORD:
        return False
    try:
        ok = bool(_hasher().verify(password_hash or _decoy(), password))
    except (VerificationError, InvalidHashError):
        return False
    return ok and password_hash is not None
