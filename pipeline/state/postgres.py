"""PostgreSQL for a team (issue #17): where the database is, connecting to it, and the
numbered migrations (the same list as SQLite's, in PostgreSQL's dialect) applied once.

psycopg 3 is imported only here and only when a PostgreSQL URL is in use: a solo project
on SQLite never needs it (it comes with `pip install 'sphere-mailer[team]'`).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from pipeline.errors import HIDDEN, StoreError, redact, redact_url
from pipeline.state.migrations import SchemaState, for_dialect

if TYPE_CHECKING:
    import psycopg

URL_ENV = "SPHERE_DATABASE_URL"
SCHEMES = ("postgresql", "postgres")
# The advisory lock every upgrader takes before reading the schema version: two
# processes starting together migrate one after the other, the second finding nothing
# to do. A fixed 64-bit key of ours ("sphere" "mi" in ASCII).
MIGRATION_LOCK = 0x737068657265_6D69
# One row per applied step; PostgreSQL has no PRAGMA user_version.
VERSION_TABLE = "sphere_schema_version"
# campaigns.yaml's `database_url:` with a password in it: (problem, fix).
PASSWORD_IN_FILE = ("holds a password, and files are no place for secrets",
                    (f"remove it; export {URL_ENV} with the whole URL, or PGPASSWORD, "
                     "instead"))
INSTALL_HINT = "install the team extra: pip install 'sphere-mailer[team]' (psycopg 3)"


def is_postgres_url(url: str) -> bool:
    """True for a postgresql:// (or postgres://) URL."""
    return urlsplit(url).scheme.lower() in SCHEMES


def database_url(configured: str = "") -> str:
    """The PostgreSQL URL in use: SPHERE_DATABASE_URL, else campaigns.yaml's
    `database_url:`; "" when neither is set (the project's SQLite file is used)."""
    return os.environ.get(URL_ENV, "").strip() or configured.strip()


def _passwords(url: str) -> tuple[str, ...]:
    """The password in a URL's user info, as written and decoded (none: ())."""
    try:
        raw = urlsplit(url).password or ""
    except ValueError:
        return ()
    return tuple(p for p in {raw, unquote(raw)} if p)


def has_password(url: str) -> bool:
    """True when the URL's user info carries a password."""
    return bool(_passwords(url))


def _scrub(text: str, url: str) -> str:
    """`text` (a driver's message) with the URL's password nowhere in it."""
    for secret in sorted(_passwords(url), key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    return redact(text)


def connect(url: str) -> psycopg.Connection[Any]:
    """A connection to the PostgreSQL database at `url`; a StoreError (password
    redacted) when the driver is missing or the server cannot be reached."""
    try:
        import psycopg
    except ImportError:
        raise StoreError("a PostgreSQL database URL is set but psycopg is not installed",
                         INSTALL_HINT) from None
    if not is_postgres_url(url):
        raise StoreError(f"{redact_url(url)} is not a PostgreSQL URL",
                         "write it as postgresql://USER@HOST:PORT/DATABASE")
    try:
        # Autocommit: every transaction is an explicit conn.transaction() block.
        return psycopg.connect(url, connect_timeout=10, application_name="sphere",
                               autocommit=True)
    except psycopg.Error as exc:
        detail = " ".join(_scrub(str(exc), url).split())
        raise StoreError(f"cannot connect to {redact_url(url)}: {detail}",
                         f"check that the server runs and that {URL_ENV} (or "
                         "database_url:) names the right host, database and user; put "
                         "the password in the environment (the URL in "
                         f"{URL_ENV}, or PGPASSWORD), never in a file") from None


def _version(conn: psycopg.Connection[Any]) -> int:
    """The newest step recorded in the version table (0 when there is none)."""
    exists = conn.execute("SELECT to_regclass(%s)", (VERSION_TABLE,)).fetchone()
    if not exists or exists[0] is None:
        return 0
    row = conn.execute(f"SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}").fetchone()
    return int(row[0]) if row else 0


def status(conn: psycopg.Connection[Any]) -> SchemaState:
    """The schema version of the database and the newest this Sphere knows."""
    with conn.transaction():
        return SchemaState(_version(conn), len(for_dialect("postgresql")))


def upgrade(conn: psycopg.Connection[Any]) -> SchemaState:
    """Apply the pending numbered migrations in order, all in one transaction under an
    advisory lock (so concurrent upgraders apply each step once); refuses a schema newer
    than this Sphere."""
    steps = for_dialect("postgresql")
    applied: list[int] = []
    with conn.transaction():
        # Held until the transaction ends: a second upgrader waits here, then finds the
        # version the first one committed.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} ("
                     "version INTEGER PRIMARY KEY, "
                     "applied TIMESTAMPTZ NOT NULL DEFAULT now())")
        before = _version(conn)
        if before > len(steps):
            raise StoreError(f"the database's schema ({before}) is newer than this Sphere "
                             f"({len(steps)})", "upgrade Sphere on this machine")
        for number in range(before + 1, len(steps) + 1):
            _apply(conn, number, steps[number - 1])
            applied.append(number)
    return SchemaState(len(steps) if applied else before, len(steps), tuple(applied))


def _apply(conn: psycopg.Connection[Any], number: int, text: str) -> None:
    """Run one step and record it; a failure names the step (and rolls all back)."""
    import psycopg
    try:
        # No parameters: psycopg sends the step's several statements as one script.
        conn.execute(text.encode())
    except psycopg.Error as exc:
        raise StoreError(f"migration {number} failed on PostgreSQL: "
                         f"{' '.join(str(exc).split())}",
                         "nothing was changed; report this with the PostgreSQL version "
                         "(SELECT version())") from None
    conn.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES (%s)", (number,))
