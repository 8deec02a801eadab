"""The project's database as a file: created private, refused when it was lost, copied
with SQLite's online backup, and every SQLite failure turned into one line with the fix.

The database holds the ledger (who was sent what) and the key that signs unsubscribe
links, so it is created readable by its owner only, and an empty one where earlier sends
left traces is refused: starting a new ledger there would mail everyone again.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import tempfile
from pathlib import Path

from pipeline.errors import StoreError

NEW_LEDGER_ENV = "SPHERE_NEW_LEDGER"
# Written next to the database (sphere.db.started) when its first send begins: a trace
# of sends that survives the database itself, whatever the transport (SMTP and SendGrid
# leave no files behind).
LEDGER_MARK = ".started"
_FAMILY = ("", "-wal", "-shm", "-journal")  # the database and SQLite's companion files
_BACKUP_SUFFIXES = (".db", ".sqlite", ".sqlite3", ".bak", ".backup")
_DAMAGED = ("malformed", "not a database", "corrupt", "encrypted")
RESTORE_HINT = ("restore your latest backup: stop `sphere run` and `sphere webhook serve`, "
                "copy the backup over {db} and delete {db}-wal and {db}-shm (README: "
                "\"Backup and restore\")")


def damaged(path: Path | None, detail: str) -> StoreError:
    """The error for a database SQLite finds damaged, with how to restore it."""
    db = str(path) if path else "the database"
    return StoreError(f"{db} is damaged ({detail})", RESTORE_HINT.format(db=db))


def db_error(path: Path | None, exc: sqlite3.Error) -> StoreError:
    """One clear line, with the fix, for an SQLite failure on the project's database."""
    db = str(path) if path else "the database"
    text = str(exc)
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        return StoreError(f"{db} is locked by another process ({text})",
                          "wait for the other sphere command (or `sphere run`) to finish, "
                          "or stop it, then run this again")
    if any(word in lowered for word in _DAMAGED):
        return damaged(path, text)
    if "readonly" in lowered or "unable to open" in lowered:
        return StoreError(f"cannot write {db} ({text})",
                          "check that you own the folder and the file, and that they are "
                          "writable")
    if "disk" in lowered or "full" in lowered:
        return StoreError(f"cannot write {db} ({text})", "free some disk space, then run "
                          "this again")
    return StoreError(f"{db}: {text}", "if it persists, " + RESTORE_HINT.format(db=db))


def make_private(path: Path) -> None:
    """Create the database file as 0600 if it is new, and take group and other access
    away from it and its companions if they have it (SQLite gives -wal and -shm the
    database's own mode)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    for suffix in _FAMILY:
        member = path.with_name(path.name + suffix)
        try:
            mode = stat.S_IMODE(member.stat().st_mode)
            if mode & 0o077:
                member.chmod(mode & 0o700)
        except FileNotFoundError:
            continue
        except PermissionError:
            continue  # not ours to change (a shared install); SQLite still works


def has_schema(conn: sqlite3.Connection) -> bool:
    """True once our migrations have run on this database."""
    return bool(conn.execute("PRAGMA user_version").fetchone()[0]) or \
        conn.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone() is not None


def schema_version(path: Path) -> int:
    """The schema version of the database file, read without changing it (0: no file)."""
    if not path.exists():
        return 0
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise db_error(path, exc) from None


def traces_of_sends(conn: sqlite3.Connection, path: Path) -> list[str]:
    """What says earlier sends happened from this project, though its database is empty:
    messages in the outbox, the scheduler's job store, the ledger mark, a backup."""
    folder = path.parent
    found = []
    outbox = folder / "outbox"
    if outbox.is_dir():
        sent = sum(1 for p in outbox.glob("*.eml"))
        if sent:
            found.append(f"{sent} message(s) in {outbox}")
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name='apscheduler_jobs'").fetchone():
        found.append("the scheduler's job store in the database")
    mark = path.with_name(path.name + LEDGER_MARK)
    if mark.exists():
        found.append(str(mark))
    # A copy of this database beside it (sphere-2026-12-01.db, sphere.db.bak), or
    # anything in backups/ (where the README suggests `sphere backup` writes).
    family = {path.name + suffix for suffix in _FAMILY}
    backups = [p for p in folder.iterdir() if p.is_file() and p.name not in family and
               p.name.lower().startswith(path.stem.lower()) and
               p.name.lower().endswith(_BACKUP_SUFFIXES)] if folder.is_dir() else []
    if (folder / "backups").is_dir():
        backups += [p for p in (folder / "backups").iterdir() if p.is_file()]
    if backups:
        found.append(f"backup(s) {', '.join(str(p) for p in sorted(backups)[:3])}")
    return found


def refuse_lost_ledger(conn: sqlite3.Connection, path: Path, new_ledger: bool) -> None:
    """Raise StoreError when the database is missing or empty but earlier sends left
    traces, unless the user asked for a new ledger (--new-ledger, SPHERE_NEW_LEDGER=1)."""
    if new_ledger or os.environ.get(NEW_LEDGER_ENV, "") in ("1", "yes", "true"):
        return
    if has_schema(conn):
        return
    traces = traces_of_sends(conn, path)
    if traces:
        db = str(path)
        raise StoreError(
            f"{db} is empty or missing, but earlier sends left traces ({'; '.join(traces)}):"
            " starting a new ledger would send everyone this period's email again",
            RESTORE_HINT.format(db=db) + f"; or, to really start over, run again with "
            f"{NEW_LEDGER_ENV}=1 (or `sphere send --new-ledger`)")


def mark_ledger(path: Path) -> None:
    """Leave the ledger mark next to the database (once)."""
    mark = path.with_name(path.name + LEDGER_MARK)
    if not mark.exists():
        mark.write_text("This project's ledger (sphere.db) has recorded sends. If sphere.db "
                        "is lost, restore a backup (README: \"Backup and restore\").\n",
                        encoding="utf-8")


def backup(conn: sqlite3.Connection, target: Path) -> int:
    """Copy the open database to `target` with SQLite's online backup (consistent while
    other processes write), as a private file checked after copying; written to a temp
    file and renamed, so a failure never leaves half a backup. Returns its size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)  # mkstemp creates it 0600; the backup keeps that mode
    try:
        copy = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.backup(copy)
            problem = copy.execute("PRAGMA quick_check").fetchone()[0]
            # One file, no -wal: a backup is restored by copying just it.
            copy.execute("PRAGMA journal_mode=DELETE")
        finally:
            copy.close()
        if problem != "ok":
            raise StoreError(f"the copy of the database fails SQLite's check ({problem})",
                             "the database itself is damaged: keep your older backups, "
                             "and see README \"Backup and restore\"")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target.stat().st_size
