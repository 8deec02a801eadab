"""One send of a period at a time: a file lock per send id, held while it delivers.

Two processes delivering the same send (two `sphere send`, or one and the daemon) would
each see the other's in-flight ledger rows as left 'pending' by a crash. The second is
refused instead, with who holds the send. The lock is the operating system's (flock, or
msvcrt on Windows, through the filelock package): a killed holder releases it, so a crash
never leaves a send locked.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from pipeline.errors import LockedError

LOCK_FOLDER = "locks"  # under the state folder, beside sphere.db
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _holder(path: Path) -> str:
    """'pid 4242 on host, since 2026-11-01 09:00 UTC', or what is known of it."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {info['pid']} on {info['host']}, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (it is just starting)"


@contextmanager
def send_lock(db_path: Path | None, send_id: str, now: dt.datetime) -> Iterator[None]:
    """Hold the lock of `send_id` (the project of the database at `db_path`) while the
    block runs, or raise LockedError naming the holder (and `now`, when it took the lock).
    No lock for an in-memory database (a dry run, which sends nothing)."""
    if db_path is None:
        yield
        return
    folder = db_path.parent / LOCK_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    stem = _UNSAFE.sub("_", send_id)
    who = folder / f"{stem}.holder"
    lock = FileLock(folder / f"{stem}.lock", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise LockedError(f"{send_id} is being sent by {_holder(who)}",
                          "let it finish (or stop it), then run the same command again: "
                          "it sends only what is still missing") from None
    try:
        # Written after taking the lock, replaced whole: a reader sees one holder or none.
        since = now.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        tmp = who.with_name(f".{who.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                   "since": since}), encoding="utf-8")
        os.replace(tmp, who)
        yield
    finally:
        who.unlink(missing_ok=True)
        lock.release()
