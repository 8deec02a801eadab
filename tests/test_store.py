"""The SQLite store: numbered migrations upgrade old files in place, keeping their data."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pipeline.errors import StoreError
from pipeline.migrations import MIGRATIONS
from pipeline.store import Store


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
