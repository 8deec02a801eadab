"""The store on both backends (SQLite file, PostgreSQL through pgstore.py): the ledger's
rules, the translated SQL, the send lock, and a dry run that keeps nothing."""
from __future__ import annotations

import datetime as dt

import pytest

from pipeline.errors import LockedError, StoreError
from pipeline.state.pgsql import translate
from pipeline.state.records import DraftPick, StoredEvent

NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
DELIVERY_COLUMNS = (("deliveries", ("send_id", "email"),
                     ("send_id", "email", "message_id", "status", "transport", "error")),)


def test_sqlite_dialect_is_translated_in_one_place() -> None:
    assert translate("BEGIN IMMEDIATE") == "BEGIN"
    assert translate("SELECT 1 FROM t WHERE a=? AND b LIKE 'x%'") == \
        "SELECT 1 FROM t WHERE a=%s AND b LIKE 'x%%'"
    assert translate("INSERT OR IGNORE INTO suppressions VALUES (?,?)") == \
        "INSERT INTO suppressions VALUES (%s,%s) ON CONFLICT DO NOTHING"
    assert translate("SELECT * FROM events ORDER BY timestamp, rowid") == \
        "SELECT * FROM events ORDER BY timestamp, ctid"
    assert translate("SELECT sum(d.status='sent') FROM d") == \
        "SELECT sum((d.status='sent')::int) FROM d"


def test_insert_or_replace_resets_the_columns_it_does_not_name() -> None:
    # SQLite's OR REPLACE deletes the old row: an earlier failure's error must not stay.
    sql = translate("INSERT OR REPLACE INTO deliveries (send_id, email, message_id, status, "
                    "transport) VALUES (?,?,?,'pending',?)", DELIVERY_COLUMNS)
    assert sql.endswith("ON CONFLICT (send_id, email) DO UPDATE SET "
                        "message_id=EXCLUDED.message_id, status=EXCLUDED.status, "
                        "transport=EXCLUDED.transport, error=DEFAULT")
    with pytest.raises(ValueError, match="unknown"):
        translate("INSERT OR REPLACE INTO meta VALUES (?, ?)")


def _begin(store, email: str, send_id: str = "m@1") -> bool:
    return store.begin_delivery(send_id, email, f"<{email}>", "outbox", ("a1",), ("c1",),
                                (), NOW)


def test_the_ledger_rules_hold_on_both_backends(open_ledger) -> None:
    store = open_ledger()
    store.start_send("m@1", "monthly", "December", NOW)
    store.start_send("m@1", "monthly", "December", NOW + dt.timedelta(hours=1))
    assert _begin(store, "a@example.com") and _begin(store, "b@example.com")
    assert not _begin(store, "a@example.com")  # written once: never sent twice
    store.settle_delivery("m@1", "a@example.com", "sent", NOW, provider_id="p1")
    store.settle_delivery("m@1", "b@example.com", "failed", NOW, error="refused")
    assert [r.email for r in store.pending_deliveries()] == []
    assert _begin(store, "b@example.com")  # a failure may be retried...
    row = next(r for r in store.ledger_rows() if r.email == "b@example.com")
    assert row.status == "pending" and row.error == ""  # ...and its old error is gone
    assert [r.email for r in store.pending_deliveries()] == ["b@example.com"]
    count = store.send_counts()[0]
    assert (count.sent, count.failed, count.pending) == (1, 0, 1)
    assert store.history() == {"a@example.com": frozenset({"a1", "c1"})}
    assert store.started(["m@1", "m@2"]) == frozenset({"m@1"})
    assert store.send_counts()[0].started == NOW.isoformat()  # a resumed send keeps its start
    assert store.provider_sends() == {"p1": "m@1"}


def test_a_failed_batch_leaves_nothing_on_both_backends(open_ledger) -> None:
    store = open_ledger()
    with pytest.raises(RuntimeError), store.batch():
        store.suppress("x@example.com", "bounce", "test", NOW)
        raise RuntimeError("stop")
    assert store.suppressed() == frozenset()
    with store.batch():
        store.suppress("x@example.com", "bounce", "test", NOW)
    assert not store.suppress("X@example.com", "bounce", "test", NOW)
    assert store.is_suppressed("x@example.com")
    assert store.suppress_many([("x@example.com", "bounce", "t"),
                                ("y@example.com", "spam", "t")], NOW) == 1
    assert store.suppression_counts() == {"bounce": 1, "spam": 1}


def test_people_notes_and_drafts_on_both_backends(open_ledger) -> None:
    store = open_ledger()
    first = store.add_note("zoe@example.com", "Hi", NOW)
    second = store.add_note("zoe@example.com", "Again", NOW)
    assert second == first + 1
    assert store.edit_note(first, "Hello") and not store.remove_note(999)
    assert [n.text for n in store.pending_notes()["zoe@example.com"]] == ["Hello", "Again"]
    events = [StoredEvent("e2", "open", "zoe@example.com", 20, send_id="m@1"),
              StoredEvent("e1", "bounce", "zoe@example.com", 10, send_id="m@1")]
    assert store.record_events(events, [("zoe@example.com", "bounce", "webhook")], NOW) == 2
    assert store.record_events(events, [], NOW) == 0
    assert [e.sg_event_id for e in store.events()] == ["e1", "e2"]
    assert store.queue_alerts("alerts", [("zoe@example.com", "a1", 0.5, "r")] * 2, NOW) == 1
    assert store.queue_alerts("alerts", [("zoe@example.com", "a1", 0.5, "r")], NOW) == 0
    pick = DraftPick("news", "a1", "near you", 0.7)
    draft = store.hold_draft("m@1", "monthly", "campaign", "December",
                             [("zoe@example.com", [pick], "digest", {})], NOW,
                             NOW + dt.timedelta(days=2))
    assert store.drafts(send_id="m@1")[0].id == draft.id
    assert store.decide_draft_recipient(draft.id, "zoe@example.com", NOW, approve=True)
    assert [d.id for d in store.drafts_approved_unsent()] == [draft.id]
    store.set_meta("k", "1")
    store.set_meta("k", "2")
    assert store.meta("k") == "2" and store.secret() == store.secrets()[0]


def test_a_dry_run_keeps_nothing_on_both_backends(open_ledger) -> None:
    open_ledger().suppress("kept@example.com", "bounce", "test", NOW)
    dry = open_ledger(dry_run=True)
    dry.suppress("dry@example.com", "bounce", "test", NOW)
    assert dry.suppressed() == frozenset({"kept@example.com", "dry@example.com"})
    dry.close()
    assert open_ledger().suppressed() == frozenset({"kept@example.com"})


def test_a_send_is_locked_by_an_advisory_lock_on_postgresql(pg_url: str) -> None:
    from pipeline.state.pgstore import PgStore
    one, two = PgStore.open(pg_url), PgStore.open(pg_url)
    try:
        with one.hold_send("m@1"):
            with pytest.raises(LockedError, match="m@1 is being sent"), two.hold_send("m@1"):
                pass
            with two.hold_send("m@2"):  # another send is free
                pass
        with two.hold_send("m@1"):  # released when the holder is done
            pass
    finally:
        one.close()
        two.close()


def test_backup_of_a_postgresql_store_points_to_pg_dump(pg_url: str, tmp_path) -> None:
    from pipeline.state.pgstore import PgStore
    store = PgStore.open(pg_url)
    try:
        with pytest.raises(StoreError) as caught:
            store.backup(tmp_path / "copy.db")
        assert "pg_dump" in caught.value.hint  # type: ignore[attr-defined]
        assert "sphere_test" not in str(caught.value) or "@" in str(caught.value)
    finally:
        store.close()


def test_the_sample_project_runs_on_postgresql(project, cli, pg_url: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # ingest, send to the outbox, send again, status: all against PostgreSQL.
    monkeypatch.setenv("SPHERE_DATABASE_URL", pg_url)
    ingest = cli("ingest", project=project)
    assert ingest.exit_code == 0, ingest.output
    dry = cli("send", "monthly-sphere", "--dry-run", project=project)
    assert dry.exit_code == 0, dry.output
    assert "Done: Would send 28," in dry.stdout  # and keeps nothing: 28 are sent next
    first = cli("send", "monthly-sphere", "--transport", "outbox", project=project)
    assert first.exit_code == 0, first.output
    assert first.stdout.strip().splitlines()[-1].startswith("Done: Sent 28,")
    outbox = sorted((project / "var/outbox").glob("*.eml"))
    assert len(outbox) == 28
    again = cli("send", "monthly-sphere", "--transport", "outbox", project=project)
    assert again.exit_code == 0, again.output
    assert len(sorted((project / "var/outbox").glob("*.eml"))) == 28  # 0 sent again
    assert "Done: Sent 0, 28 already sent for monthly-sphere@" in again.stdout
    status = cli("status", project=project)
    assert status.exit_code == 0, status.output
    assert "│ done    │ 28   │ 0      │ 0       │" in status.stdout
    backup = cli("backup", str(project / "copy.db"), project=project)
    assert backup.exit_code != 0 and "pg_dump" in backup.output
    assert not list(project.rglob("sphere.db"))  # nothing went to SQLite
    from pipeline.state.pgstore import PgStore
    store = PgStore.open(pg_url)
    try:
        assert store.send_counts()[0].sent == 28
        assert f"{store.article_count()} articles stored" in status.stdout
    finally:
        store.close()


def test_migrate_to_moves_a_solo_project_into_postgresql(project, cli, pg_url: str,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from pipeline.state.pgstore import PgStore
    from pipeline.state.store import Store
    first = cli("send", "monthly-sphere", "--transport", "outbox", project=project)
    assert first.exit_code == 0, first.output
    solo = Store.open(project / "var/sphere.db")
    try:
        note = solo.add_note("zoe@example.com", "Congrats!", NOW)
        solo.suppress("gone@example.com", "bounce", "test", NOW)
        secret = solo.secret()
        counts = {t: solo.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("articles", "deliveries", "history", "notes", "meta")}
    finally:
        solo.close()
    moved = cli("db", "migrate-to", pg_url, project=project)
    assert moved.exit_code == 0, moved.output
    for table, rows in counts.items():
        assert f"  {table}: {rows}\n" in moved.stdout
    assert cli("db", "migrate-to", pg_url, project=project).exit_code != 0  # not empty now
    store = PgStore.open(pg_url)
    try:
        assert store.secret() == secret  # links already sent still verify
        assert store.suppressed() == frozenset({"gone@example.com"})
        assert store.add_note("zoe@example.com", "Next", NOW) == note + 1  # ids go on
        assert store.send_counts()[0].sent == 28
    finally:
        store.close()
    monkeypatch.setenv("SPHERE_DATABASE_URL", pg_url)
    again = cli("send", "monthly-sphere", "--transport", "outbox", project=project)
    assert "Done: Sent 0, 28 already sent for monthly-sphere@" in again.stdout


def test_the_daemon_sends_and_stops_cleanly_on_postgresql(project, pg_url: str) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from pipeline.state.pgstore import PgStore
    env = {**os.environ, "SPHERE_NOW": "2026-12-01T17:30:00+00:00",
           "SPHERE_DATABASE_URL": pg_url}
    cmd = [sys.executable, "-m", "pipeline", "run", "--tick", "1", "--project", str(project)]
    daemon = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(
                (project / "var/outbox").glob("monthly-sphere*"))) < 28:
            time.sleep(0.2)
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0, stderr
    assert "stopped cleanly" in stderr
    assert len(list((project / "var/outbox").glob("monthly-sphere*"))) == 28
    assert not list(project.rglob("sphere.db"))  # no SQLite file, not even for jobs
    store = PgStore.open(pg_url)
    try:
        assert store.pending_deliveries() == []
        sent = {c.send_id: c.sent for c in store.send_counts()}
        assert sent["monthly-sphere@2026-12-01T09:00"] == 28
    finally:
        store.close()


def test_a_killed_sender_releases_its_send_lock(pg_url: str) -> None:
    import os
    import subprocess
    import sys

    from pipeline.state.pgstore import PgStore
    from tests.conftest import REPO
    script = ("import sys, time\nfrom pipeline.state.pgstore import PgStore\n"
              "store = PgStore.open(sys.argv[1])\nwith store.hold_send('m@1'):\n"
              "    print('held', flush=True)\n    time.sleep(600)\n")
    holder = subprocess.Popen(
        [sys.executable, "-c", script, pg_url],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
        text=True)
    store = PgStore.open(pg_url)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(LockedError), store.hold_send("m@1"):
            pass
        holder.kill()  # SIGKILL: no cleanup runs; the server ends its session
        holder.wait(timeout=30)
        for _attempt in range(200):
            try:
                with store.hold_send("m@1"):
                    break
            except LockedError:
                store.conn.raw.execute("SELECT pg_sleep(0.05)")
        else:
            pytest.fail("the killed holder's lock was never released")
    finally:
        if holder.poll() is None:
            holder.kill()
        store.close()
