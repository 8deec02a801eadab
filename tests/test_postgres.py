"""PostgreSQL (issue #17) on a real, throwaway server (tests/pg_support.py): the numbered
migrations apply on an empty database, once, even with two upgraders starting together;
connection errors never show the password."""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from pipeline.errors import StoreError
from pipeline.state import migrations, postgres
from pipeline.state.store import Store

LATEST = len(migrations.MIGRATIONS)


def _versions(url: str) -> list[int]:
    with postgres.connect(url) as conn:
        return [r[0] for r in conn.execute(
            f"SELECT version FROM {postgres.VERSION_TABLE} ORDER BY version")]


def test_all_migrations_apply_on_an_empty_database_and_a_second_run_applies_none(
        pg_url: str) -> None:
    with postgres.connect(pg_url) as conn:
        assert postgres.status(conn) == postgres.SchemaState(0, LATEST)
        first = postgres.upgrade(conn)
        assert first == postgres.SchemaState(LATEST, LATEST, tuple(range(1, LATEST + 1)))
        second = postgres.upgrade(conn)
        assert second == postgres.SchemaState(LATEST, LATEST, ())
        assert postgres.status(conn).pending == 0
        # The tables work: an identity id, as SQLite's AUTOINCREMENT gave.
        row = conn.execute("INSERT INTO notes (email, text, created) VALUES "
                           "('a@example.com', 'hi', '2026-12-01') RETURNING id").fetchone()
        assert row == (1,)
    assert _versions(pg_url) == list(range(1, LATEST + 1))


def test_two_upgraders_starting_together_apply_each_step_once(pg_url: str) -> None:
    start = threading.Barrier(2)
    results: list[postgres.SchemaState] = []
    errors: list[BaseException] = []

    def upgrader() -> None:
        try:
            with postgres.connect(pg_url) as conn:
                start.wait(timeout=30)
                results.append(postgres.upgrade(conn))
        except Exception as exc:  # noqa: BLE001  (reported below, in the test thread)
            errors.append(exc)

    threads = [threading.Thread(target=upgrader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sorted(len(r.applied) for r in results) == [0, LATEST]
    assert _versions(pg_url) == list(range(1, LATEST + 1))


def test_postgres_tables_have_the_columns_and_indexes_of_sqlite(
        pg_url: str, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "sphere.db")
    try:
        lite: sqlite3.Connection = store.conn
        tables = [r[0] for r in lite.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name")]
        lite_columns = {t: [r[1] for r in lite.execute(f"PRAGMA table_info({t})")]
                        for t in tables}
        lite_indexes = sorted(r[0] for r in lite.execute(
            "SELECT name FROM sqlite_master WHERE type='index' AND sql IS NOT NULL"))
    finally:
        store.close()
    with postgres.connect(pg_url) as conn:
        postgres.upgrade(conn)
        pg_columns: dict[str, list[str]] = {}
        for table, column in conn.execute(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name <> %s "
                "ORDER BY table_name, ordinal_position", (postgres.VERSION_TABLE,)):
            pg_columns.setdefault(table, []).append(column)
        pg_indexes = sorted(r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' "
            "AND indexname NOT LIKE '%%_pkey' AND indexname NOT LIKE '%%_key'"))
    assert pg_columns == lite_columns
    assert pg_indexes == lite_indexes


def test_a_schema_newer_than_this_sphere_is_refused(pg_url: str) -> None:
    with postgres.connect(pg_url) as conn:
        postgres.upgrade(conn)
        conn.execute(f"INSERT INTO {postgres.VERSION_TABLE} (version) VALUES (%s)",
                     (LATEST + 1,))
        with pytest.raises(StoreError, match="newer than this Sphere"):
            postgres.upgrade(conn)


def test_a_refused_login_names_the_server_but_never_the_password(pg_server) -> None:
    good = pg_server.url("postgres")
    wrong = good.replace(f":{pg_server.password}@", ":Wr0ng-s3cret@")
    with pytest.raises(StoreError) as caught:
        postgres.connect(wrong)
    shown = str(caught.value)
    assert "Wr0ng-s3cret" not in shown and pg_server.password not in shown
    assert f"127.0.0.1:{pg_server.port}" in shown and "password" in shown


def test_the_url_comes_from_the_environment_before_the_config(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(postgres.URL_ENV, raising=False)
    assert postgres.database_url("") == ""
    assert postgres.database_url("postgresql://db.example/sphere") == \
        "postgresql://db.example/sphere"
    monkeypatch.setenv(postgres.URL_ENV, "postgresql://u:pw@db2.example/team")
    assert postgres.database_url("postgresql://db.example/sphere") == \
        "postgresql://u:pw@db2.example/team"
    assert postgres.is_postgres_url("postgres://x/y") and \
        not postgres.is_postgres_url("sqlite:///x.db")


def test_a_driver_message_that_quotes_the_password_is_scrubbed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    psycopg = pytest.importorskip("psycopg")

    def refuse(conninfo: str, **_kw: object) -> None:
        # As a driver might word it: the URL, and the decoded password on its own.
        raise psycopg.OperationalError(f"bad conninfo {conninfo!r}: option password "
                                       "'s@cret-9' rejected")

    monkeypatch.setattr(psycopg, "connect", refuse)
    with pytest.raises(StoreError) as caught:
        postgres.connect("postgresql://agent:s%40cret-9@db.example:5432/team")
    shown = str(caught.value)
    assert "s@cret-9" not in shown and "s%40cret-9" not in shown and "agent" not in shown
    assert "db.example:5432" in shown


@pytest.mark.parametrize("required", ["1", ""])
def test_without_postgres_the_tests_skip_but_fail_under_ci(
        required: str, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests import pg_support
    from tests.conftest import REPO
    env = {**os.environ, "PYTHONPATH": str(REPO), pg_support.BIN_ENV: str(tmp_path),
           pg_support.REQUIRE_ENV: required}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
         "tests/test_postgres.py::test_a_schema_newer_than_this_sphere_is_refused"],
        check=False, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    if required:
        assert run.returncode == 1, run.stdout
        assert "SPHERE_REQUIRE_POSTGRES=1 but PostgreSQL is not installed" in run.stdout
    else:
        assert run.returncode == 0, run.stdout
        assert "1 skipped" in run.stdout and "PostgreSQL is not installed" in run.stdout
