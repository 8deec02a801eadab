"""One numbered list of migrations for both backends (issue #17): the shipped SQLite
steps are unchanged, byte for byte and in the schema they build, and every PostgreSQL
edit still finds the SQLite text it replaces."""
from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from pipeline.state import migrations
from pipeline.state.store import Store

# sha256 of each shipped step's text (first 16 hex digits): editing a shipped migration
# changes existing databases' history; append a new step instead.
SHIPPED = ("bdefc0e3471106d0", "9439ac8ce0f92e1a", "9e4dbea6dfc48909", "2ffe994d221966a9",
           "c25a9b4c3f2e005d", "b2f2953a28718a2e", "91aa81ea4f7c33fa", "cd02477cf3f18b2d")
# sha256 of sqlite_master after steps 1-8, as built before the PostgreSQL variants.
SCHEMA_8 = "ca25a20081f595f144cdd2f1d958ab4b4d62d28d7ac6c1ccc29edffd8fdfbfdf"


def _schema(conn: sqlite3.Connection) -> list[tuple[str, ...]]:
    return [tuple(r) for r in conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")]


def _apply(steps: tuple[str, ...]) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    for text in steps:
        for statement in text.split(";"):
            if statement.strip():
                conn.execute(statement)
    return conn


def test_shipped_sqlite_migrations_are_unchanged() -> None:
    steps = migrations.for_dialect("sqlite")
    assert steps == migrations.MIGRATIONS
    assert tuple(hashlib.sha256(t.encode()).hexdigest()[:16]
                 for t in steps[:len(SHIPPED)]) == SHIPPED
    built = _schema(_apply(steps[:len(SHIPPED)]))
    assert hashlib.sha256(repr(built).encode()).hexdigest() == SCHEMA_8


def test_the_store_builds_the_schema_of_the_sqlite_list(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "sphere.db")
    try:
        assert _schema(store.conn) == _schema(_apply(migrations.for_dialect("sqlite")))
    finally:
        store.close()


def test_postgres_steps_keep_the_numbering_and_drop_sqlite_dialect() -> None:
    pg = migrations.for_dialect("postgresql")
    assert len(pg) == len(migrations.MIGRATIONS)
    for number, text in enumerate(pg, 1):
        assert "AUTOINCREMENT" not in text and "INSERT OR" not in text, number
        assert " REAL " not in text and "PRAGMA" not in text, number
        assert (text == migrations.MIGRATIONS[number - 1]) == \
            (number not in migrations.POSTGRES_EDITS), number


def test_an_edit_whose_sqlite_text_is_gone_is_an_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(migrations.POSTGRES_EDITS, 2, (("no such text", "x"),))
    with pytest.raises(ValueError, match="migration 2"):
        migrations.for_dialect("postgresql")
    with pytest.raises(ValueError, match="unknown SQL dialect"):
        migrations.for_dialect("mysql")
