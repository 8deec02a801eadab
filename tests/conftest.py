"""Shared fixtures: a temp copy of the bundled sample project, a fixed clock, the CLI."""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pipeline.cli.main import main

REPO = Path(__file__).resolve().parent.parent
NOW = dt.datetime(2026, 11, 22, 18, 0, tzinfo=dt.UTC)
SAMPLE_PARTS = ("content_sources.yaml", "campaigns.yaml", "audiences", "samples", "templates")


def copy_sample(target: Path) -> Path:
    """Copy the bundled sample project into `target`."""
    target.mkdir(parents=True, exist_ok=True)
    for part in SAMPLE_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, target / part)
        else:
            shutil.copyfile(src, target / part)
    return target


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh copy of the sample project."""
    return copy_sample(tmp_path / "project")


@pytest.fixture
def now() -> dt.datetime:
    """The fixed 'now' of the tests."""
    return NOW


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch):
    """Run `sphere ARGS...` in-process with the clock pinned; returns the click Result."""
    monkeypatch.setenv("SPHERE_NOW", NOW.isoformat())

    def run(*args: str, project: Path | None = None) -> Result:
        full = list(args) + (["--project", str(project)] if project else [])
        return CliRunner().invoke(main, full, catch_exceptions=False)
    return run


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL server for the whole session (tests/pg_support.py); the
    PostgreSQL tests skip without one, but fail under CI (SPHERE_REQUIRE_POSTGRES=1)."""
    import os

    from tests import pg_support
    reason = pg_support.missing()
    if reason:
        if os.environ.get(pg_support.REQUIRE_ENV) == "1":
            pytest.fail(f"{pg_support.REQUIRE_ENV}=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    bin_dir = pg_support.find_bin_dir()
    assert bin_dir is not None
    server = pg_support.start(bin_dir)
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server) -> str:
    """The URL of a new, empty PostgreSQL database on the session's server."""
    return pg_server.create_database()


@pytest.fixture(params=["sqlite", "postgres"])
def open_ledger(request: pytest.FixtureRequest, tmp_path: Path):
    """Opens the project's store on each backend in turn: the SQLite file, then a fresh
    PostgreSQL database (skipped without PostgreSQL, like pg_url). Call it with the
    options of open_store (dry_run, ...); the stores it opened are closed at the end."""
    from pipeline.state.interface import open_store
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else ""
    opened = []

    def make(**options: bool):
        store = open_store(tmp_path / "sphere.db", url=url, **options)
        opened.append(store)
        return store
    make.backend = request.param  # type: ignore[attr-defined]
    yield make
    for store in opened:
        store.close()  # closing twice is harmless on both backends
