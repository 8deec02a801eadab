"""The database under damage (issue 13.7 and 13.9): a damaged file, a lock held by another
process and a lost ledger each give one line with the fix; `sphere backup` makes a copy
that restores; the file holding the signing key is private."""
from __future__ import annotations

import os
import random
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.state import store as store_module
from pipeline.state.dbfile import LEDGER_MARK
from pipeline.state.store import Store


def _db(project: Path) -> Path:
    return project / "var" / "sphere.db"


def _one_error_line(result) -> str:
    """The run failed with exactly one `Error:` line and no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def _damage_middle_pages(db: Path, seed: int = 13) -> None:
    """Overwrite every page but the first and the last with random bytes."""
    size = db.stat().st_size
    page = 4096
    pages = size // page
    assert pages > 4, "the sample database should span several pages"
    rng = random.Random(seed)
    with open(db, "r+b") as fh:
        for number in range(1, pages - 1):
            fh.seek(number * page)
            fh.write(rng.randbytes(page))


def test_damaged_middle_pages_give_one_line_with_the_fix(project: Path, cli) -> None:
    assert cli("send", "monthly-sphere", project=project).exit_code == 0
    _damage_middle_pages(_db(project))
    for args in (("status",), ("send", "monthly-sphere", "--no-ingest"), ("ingest",),
                 ("plan", "monthly-sphere")):
        line = _one_error_line(cli(*args, project=project))
        assert f"{_db(project)} is damaged (" in line
        assert "restore your latest backup" in line and "Backup and restore" in line
    # The send stopped before writing anything: the outbox holds the first run's 28.
    assert len(list((project / "var" / "outbox").glob("*.eml"))) == 28


def test_a_damaged_header_gives_one_line_for_every_command(project: Path, cli) -> None:
    assert cli("send", "monthly-sphere", project=project).exit_code == 0
    db = _db(project)
    with open(db, "r+b") as fh:
        fh.write(random.Random(7).randbytes(100))  # the header: no longer SQLite's
    for args in (("status",), ("plan", "monthly-sphere"), ("backup", str(db) + ".copy")):
        line = _one_error_line(cli(*args, project=project))
        assert line.startswith(f"Error: {db} is damaged (file is not a database)")


def test_a_lock_held_by_another_process_gives_one_line(project: Path, cli,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli("send", "monthly-sphere", project=project).exit_code == 0
    holder = subprocess.Popen(
        [sys.executable, "-c",
         ("import sqlite3, sys\n"
         f"c = sqlite3.connect({str(_db(project))!r}, isolation_level=None)\n"
         "c.execute('PRAGMA locking_mode=EXCLUSIVE')\n"
         "c.execute('BEGIN EXCLUSIVE')\n"
         "c.execute('CREATE TABLE held (x)')\n"
         "print('held', flush=True)\n"
         "sys.stdin.read()\n")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(store_module, "BUSY_TIMEOUT", 0.2)
        for args in (("status",), ("send", "monthly-sphere", "--no-ingest")):
            line = _one_error_line(cli(*args, project=project))
            assert f"{_db(project)} is locked by another process" in line
            assert "wait for the other sphere command" in line
    finally:
        holder.communicate("")
    assert cli("status", project=project).exit_code == 0  # released: all is well


def test_an_emptied_database_with_outbox_files_is_refused(project: Path, cli) -> None:
    assert cli("send", "monthly-sphere", project=project).exit_code == 0
    outbox = project / "var" / "outbox"
    before = {p.name: p.stat().st_mtime_ns for p in outbox.iterdir()}
    db = _db(project)
    db.write_bytes(b"")  # truncated to zero length
    for args in (("send", "monthly-sphere"), ("status",), ("send", "monthly-sphere",
                                                           "--dry-run")):
        line = _one_error_line(cli(*args, project=project))
        assert f"{db} is empty or missing, but earlier sends left traces" in line
        assert f"28 message(s) in {outbox}" in line
        assert "restore your latest backup" in line and "--new-ledger" in line
    assert db.stat().st_size == 0  # untouched, so a backup can still be copied over it
    assert {p.name: p.stat().st_mtime_ns for p in outbox.iterdir()} == before
    # Saying so explicitly starts over (and sends everyone again, as asked).
    again = cli("send", "monthly-sphere", "--new-ledger", project=project)
    assert again.exit_code == 0 and "Sent 28" in again.stdout


def test_a_lost_ledger_is_refused_without_outbox_files_too(project: Path, cli,
                                                          monkeypatch) -> None:
    # SMTP and SendGrid leave no files behind; the ledger mark is the trace.
    assert cli("send", "monthly-sphere", project=project).exit_code == 0
    for p in (project / "var" / "outbox").iterdir():
        p.unlink()
    _db(project).unlink()
    mark = project / "var" / f"sphere.db{LEDGER_MARK}"
    assert mark.exists()
    line = _one_error_line(cli("status", project=project))
    assert "is empty or missing, but earlier sends left traces" in line
    assert str(mark) in line
    monkeypatch.setenv("SPHERE_NEW_LEDGER", "1")
    assert cli("status", project=project).exit_code == 0


def test_a_copy_beside_it_is_a_trace_but_another_projects_database_is_not(
        tmp_path: Path) -> None:
    (tmp_path / "other.db").write_bytes(b"x")  # not ours: a fresh ledger may start
    Store.open(tmp_path / "sphere.db").close()
    (tmp_path / "sphere.db").unlink()
    (tmp_path / "sphere-2026-12-01.db").write_bytes(b"x")
    with pytest.raises(Exception, match="backup"):
        Store.open(tmp_path / "sphere.db")


def test_the_job_store_table_is_a_trace(tmp_path: Path) -> None:
    db = tmp_path / "sphere.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE apscheduler_jobs (id TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(Exception, match="scheduler's job store"):
        Store.open(db)
    Store.open(db, new_ledger=True).close()


def test_a_fresh_project_starts_its_ledger_without_asking(project: Path, cli) -> None:
    result = cli("send", "monthly-sphere", project=project)
    assert result.exit_code == 0 and "Sent 28" in result.stdout


def test_backup_copies_a_private_checked_database_that_restores(project: Path, cli) -> None:
    assert cli("send", "monthly-sphere", project=project).exit_code == 0
    target = project / "var" / "backups" / "sphere-2026-11-22.db"
    result = cli("backup", str(target), project=project)
    assert result.exit_code == 0, result.output
    assert f"to {target}" in result.stdout
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not list(target.parent.glob("*.tmp"))
    # Disaster, then the README's restore: copy the backup over the database.
    db = _db(project)
    db.write_bytes(b"")
    assert "backup(s)" in _one_error_line(cli("status", project=project))
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    db.write_bytes(target.read_bytes())
    again = cli("send", "monthly-sphere", project=project)
    assert again.exit_code == 0 and "Sent 0, 28 already sent" in again.stdout
    refused = cli("backup", str(db), project=project)
    assert refused.exit_code == 1 and "is the database itself" in refused.stderr


def test_the_database_and_its_companions_are_private(project: Path, cli) -> None:
    old = os.umask(0o022)
    try:
        assert cli("ingest", project=project).exit_code == 0
        store = Store.open(_db(project))
        store.set_meta("x", "y")  # the WAL and shared-memory files exist while open
        for suffix in ("", "-wal", "-shm"):
            member = _db(project).with_name("sphere.db" + suffix)
            assert stat.S_IMODE(member.stat().st_mode) == 0o600, member
        store.close()
    finally:
        os.umask(old)


def test_an_existing_world_readable_database_is_made_private(tmp_path: Path) -> None:
    db = tmp_path / "sphere.db"
    Store.open(db).close()
    db.chmod(0o644)
    Store.open(db).close()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
