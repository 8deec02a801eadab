"""`sphere db upgrade` and `sphere db status` (issue #17) on the project's SQLite file and
on a real PostgreSQL (SPHERE_DATABASE_URL, or campaigns.yaml `database_url:`)."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pipeline.state import migrations, postgres

LATEST = len(migrations.MIGRATIONS)


@pytest.fixture(autouse=True)
def _no_url_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(postgres.URL_ENV, raising=False)


def test_sqlite_status_then_upgrade(cli, project: Path) -> None:
    result = cli("db", "status", project=project)
    assert result.exit_code == 0 and "no database yet" in result.output
    assert not (project / "var" / "sphere.db").exists()  # status changes nothing
    result = cli("db", "upgrade", project=project)
    assert result.exit_code == 0, result.output
    assert f"applied migration(s) 1-{LATEST}; schema {LATEST} of {LATEST}" in result.output
    db = next(project.rglob("sphere.db"))
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
    again = cli("db", "upgrade", project=project)
    assert f"schema {LATEST} of {LATEST}, up to date" in again.output
    assert "(SQLite)" in cli("db", "status", project=project).output


def test_sqlite_status_reports_pending_steps(cli, project: Path) -> None:
    cli("db", "upgrade", project=project)
    db = next(project.rglob("sphere.db"))
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {LATEST - 1}")
    result = cli("db", "status", project=project)
    assert f"schema {LATEST - 1} of {LATEST}, 1 migration(s) pending" in result.output


def test_postgres_upgrade_from_the_environment_never_shows_the_password(
        cli, project: Path, pg_url: str, pg_server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(postgres.URL_ENV, pg_url)
    result = cli("db", "status", project=project)
    assert result.exit_code == 0, result.output
    assert f"schema 0 of {LATEST}, {LATEST} migration(s) pending" in result.output
    result = cli("db", "upgrade", project=project)
    assert result.exit_code == 0, result.output
    assert f"applied migration(s) 1-{LATEST}" in result.output and "(PostgreSQL)" in \
        result.output
    assert pg_server.password not in result.output and "***@127.0.0.1" in result.output
    assert "up to date" in cli("db", "upgrade", project=project).output
    assert not list(project.rglob("sphere.db"))  # the SQLite file was not touched


def test_postgres_url_from_campaigns_yaml(cli, project: Path, pg_server,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    url = pg_server.create_database()
    # No password in the file: PGPASSWORD (read by libpq) carries it.
    bare = url.replace(f":{pg_server.password}@", "@")
    with open(project / "campaigns.yaml", "a", encoding="utf-8") as fh:
        fh.write(f"\ndatabase_url: {bare}\n")
    monkeypatch.setenv("PGPASSWORD", pg_server.password)
    result = cli("db", "upgrade", project=project)
    assert result.exit_code == 0, result.output
    assert f"applied migration(s) 1-{LATEST}" in result.output


def test_a_password_in_campaigns_yaml_is_refused(cli, project: Path) -> None:
    with open(project / "campaigns.yaml", "a", encoding="utf-8") as fh:
        fh.write("\ndatabase_url: postgresql://agent:hunter22@db.example/sphere\n")
    result = cli("db", "status", project=project)
    assert result.exit_code == 1
    assert "campaigns.yaml:" in result.output and "database_url: holds a password" in \
        result.output
    assert "hunter22" not in result.output
