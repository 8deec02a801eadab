"""The SQLite dialect the store's mixins speak, translated for PostgreSQL in one place.

The mixins (articles.py, ledger.py, people.py, drafts.py) call a sqlite3-like connection:
execute/executemany with `?` placeholders, INSERT OR IGNORE / OR REPLACE, BEGIN
IMMEDIATE, `lastrowid`, `rowcount`, `total_changes`, rows read by index or by name.
`PgConnection` gives psycopg 3 that surface, so the PostgreSQL store runs the same
mixins; the SQLite store never goes through it (it keeps sqlite3's own speed).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

# Tables whose id PostgreSQL generates (IDENTITY): an INSERT into one returns it, which
# is what sqlite3's cursor.lastrowid gives.
ID_TABLES = frozenset({"notes", "referrals", "alerts", "drafts"})
_INSERT_OR = re.compile(r"^\s*INSERT\s+OR\s+(IGNORE|REPLACE)\s+INTO\s+(\w+)\s*(\(([^)]*)\))?",
                        re.IGNORECASE)
_INSERT_INTO = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)", re.IGNORECASE)
# A dry run's store transactions, as savepoints of the one transaction it never commits.
_DRY = {"BEGIN": "SAVEPOINT sphere_dry", "COMMIT": "RELEASE SAVEPOINT sphere_dry",
        "ROLLBACK": "ROLLBACK TO SAVEPOINT sphere_dry"}
# sum(a='b'): SQLite sums a comparison as 0/1; PostgreSQL's boolean needs a cast.
_SUM_TEST = re.compile(r"\bsum\(([^()]*=[^()]*)\)", re.IGNORECASE)
_ROWID = re.compile(r"\browid\b", re.IGNORECASE)


class Row(tuple[Any, ...]):
    """A row read by index, by column name, unpacked, or made a dict (like sqlite3.Row)."""

    _names: tuple[str, ...] = ()

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names.index(key))
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        """The column names, in order."""
        return list(self._names)


@lru_cache(maxsize=256)
def _row_type(names: tuple[str, ...]) -> type[Row]:
    """One Row class per column list (the mixins run a few dozen distinct queries)."""
    return type("Row", (Row,), {"_names": names})


def _row_factory(cursor: Any) -> Any:
    kind = _row_type(tuple(d.name for d in cursor.description or ()))

    def make(values: Sequence[Any]) -> Row:
        return kind(values)
    return make


@lru_cache(maxsize=512)
def translate(sql: str, columns: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = ()
              ) -> str:
    """One statement of the mixins' SQLite dialect in PostgreSQL's. `columns` gives, for
    an INSERT OR REPLACE, (table, primary key, every column)."""
    text = sql.strip()
    upper = text.upper()
    if upper == "BEGIN IMMEDIATE":
        return "BEGIN"
    text = _SUM_TEST.sub(r"sum((\1)::int)", _ROWID.sub("ctid", text))
    text = text.replace("%", "%%").replace("?", "%s")
    match = _INSERT_OR.match(text)
    if not match:
        return text
    verb, table, listed = match.group(1).upper(), match.group(2), match.group(4)
    text = f"INSERT INTO {text[match.start(2):]}"
    if verb == "IGNORE":
        return f"{text} ON CONFLICT DO NOTHING"
    # OR REPLACE deletes the old row and inserts the new one: columns the INSERT does
    # not name go back to their defaults, so they are set to DEFAULT here too.
    known = {name: (key, every) for name, key, every in columns}
    if table not in known:
        raise ValueError(f"INSERT OR REPLACE into {table}: its columns are unknown")
    key, every = known[table]
    named = [c.strip() for c in listed.split(",")] if listed else list(every)
    sets = [f"{c}=EXCLUDED.{c}" if c in named else f"{c}=DEFAULT"
            for c in every if c not in key]
    return f"{text} ON CONFLICT ({', '.join(key)}) DO UPDATE SET {', '.join(sets)}"


class PgCursor:
    """What a mixin reads back from one statement."""

    def __init__(self, cursor: psycopg.Cursor[Any], lastrowid: int | None) -> None:
        self._cursor = cursor
        self.lastrowid = lastrowid
        self.rowcount = cursor.rowcount

    def fetchone(self) -> Any:
        """The next row, or None."""
        return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list[Any]:
        """Every remaining row."""
        return self._cursor.fetchall() if self._cursor.description else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class PgConnection:
    """A psycopg 3 connection (autocommit) behind sqlite3's surface, for the mixins."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn
        self.total_changes = 0
        self._tables: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self.row_factory: Any = None  # sqlite3's attribute; rows are always Row here
        self.dry_run = False

    def start_dry_run(self) -> None:
        """From now on nothing is kept: one outer transaction, rolled back at close,
        and each of the store's transactions a savepoint inside it."""
        self.raw.execute("BEGIN")
        self.dry_run = True

    def _columns(self, sql: str) -> tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]:
        match = _INSERT_OR.match(sql)
        if not match or match.group(1).upper() != "REPLACE":
            return ()
        table = match.group(2)
        if table not in self._tables:
            self._tables[table] = self._describe(table)
        return ((table, *self._tables[table]),)

    def _describe(self, table: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(primary key columns, every column) of one table, from the catalog."""
        every = tuple(r[0] for r in self.raw.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name=%s "
            "AND table_schema=current_schema() ORDER BY ordinal_position", (table,)))
        key = tuple(r[0] for r in self.raw.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid=i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid=%s::regclass AND i.indisprimary",
            (table,)))
        return key, every

    def execute(self, sql: str, params: Sequence[Any] = ()) -> PgCursor:
        """Run one statement (SQLite dialect) with `?` parameters."""
        text = translate(sql, self._columns(sql))
        inserted = _INSERT_INTO.match(text)
        returning = bool(inserted and inserted.group(1) in ID_TABLES)
        if returning:
            text += " RETURNING id"
        cursor = self.raw.cursor(row_factory=_row_factory)
        if self.dry_run and text in _DRY:
            text = _DRY[text]
        cursor.execute(text, tuple(params))
        lastrowid = None
        if returning:
            row = cursor.fetchone()
            lastrowid = int(row[0]) if row else None
        self.total_changes += max(cursor.rowcount, 0)
        return PgCursor(cursor, lastrowid)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> PgCursor:
        """Run one statement once per row of parameters."""
        text = translate(sql, self._columns(sql))
        cursor = self.raw.cursor(row_factory=_row_factory)
        cursor.executemany(text, [tuple(r) for r in rows])
        self.total_changes += max(cursor.rowcount, 0)
        return PgCursor(cursor, None)

    def close(self) -> None:
        """Close the connection (a dry run's writes are rolled back first)."""
        if self.dry_run and not self.raw.closed:
            self.raw.rollback()
        self.raw.close()
