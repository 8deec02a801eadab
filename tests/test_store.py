"""The SQLite store: numbered migrations upgrade old files in place, keeping their data."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pipeline.errors import StoreError
from pipeline.state.migrations import MIGRATIONS
from pipeline.state.store import Store


def test_a_version_1_database_is_upgraded_keeping_its_data(tmp_path: Path) -> None:
    path = tmp_path / "sphere.db"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO deliveries (send_id, email, message_id, status, transport, "
                 "created) VALUES ('m@2026-11-01T09:00', 'a@example.com', '<x>', 'sent', "
                 "'outbox', '2026-11-01T17:00:00+00:00')")
    conn.execute("INSERT INTO history VALUES ('a@example.com', 'tip:gutters', '', "
                 "'m@2026-11-01T09:00', '2026-11-01T17:00:00+00:00')")
    conn.commit()
    conn.close()
    store = Store.open(path)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert store.ledger_status("m@2026-11-01T09:00") == {"a@example.com": "sent"}
    assert store.tip_last_seen() == {"a@example.com": {"gutters": "2026-11-01T17:00:00+00:00"}}
    assert store.alerts() == [] and store.referrals() == []  # later tables exist
    store.close()


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sphere.db"
    Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer than this Sphere"):
        Store.open(path)


def test_a_dry_run_copy_sees_writes_still_in_another_process_wal(tmp_path: Path) -> None:
    # The webhook service holds the database open in WAL mode; its unsubscribe is
    # committed but not yet checkpointed into the main file.
    path = tmp_path / "sphere.db"
    Store.open(path).close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("PRAGMA wal_autocheckpoint=0")
    other.execute("INSERT INTO suppressions VALUES ('ann@example.com', 'unsubscribed', "
                  "'link', '2026-11-22T18:00:00+00:00')")
    assert (tmp_path / "sphere.db-wal").stat().st_size > 0
    copy = Store.open(path, dry_run=True)
    assert copy.suppressed() == frozenset({"ann@example.com"})
    copy.close()
    other.close()


def test_a_dry_run_copy_of_a_closed_database_creates_no_file(tmp_path: Path) -> None:
    path = tmp_path / "sphere.db"
    Store.open(path).close()
    before = sorted(p.name for p in tmp_path.iterdir())
    Store.open(path, dry_run=True).close()
    assert sorted(p.name for p in tmp_path.iterdir()) == before == ["sphere.db"]
