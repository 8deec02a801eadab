"""Parsed audience files, kept until the file changes.

Validating an address costs about 0.1 ms, so reading 10,000 contacts costs over a second:
more than all the rest of `sphere status`, and the daemon would pay it on every tick. The
contacts of each file are kept in memory (the daemon) and in var/cache/ (each command is a
new process), keyed by the file's size, times and inode and by the source of the code that
parses it, so an edited file or a changed parser is read afresh. The cache holds only what
the file says; problems are still reported by `check`, which always reads the files.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import tempfile
from pathlib import Path

from pipeline import models
from pipeline.contacts import audience
from pipeline.models import Contact

_memory: dict[Path, tuple[str, tuple[Contact, ...]]] = {}
_code: list[str] = []  # the parser's fingerprint, computed once per process


def _fingerprint() -> str:
    if not _code:
        digest = hashlib.sha256()
        for module in (audience, models):
            digest.update(Path(module.__file__ or "").read_bytes())
        _code.append(digest.hexdigest()[:16])
    return _code[0]


def _columns(contacts: tuple[Contact, ...]) -> tuple[list[str], list[int], list[int]]:
    """Field names, and which hold dates and which tuples (of plain values)."""
    names = [f.name for f in dataclasses.fields(Contact)]
    dates, tuples = set(), set()
    for c in contacts:
        for i, name in enumerate(names):
            value = getattr(c, name)
            if isinstance(value, dt.date):
                dates.add(i)
            elif isinstance(value, tuple):
                if not all(isinstance(v, str) for v in value):
                    raise TypeError(f"cannot cache {name}")
                tuples.add(i)
            elif value is not None and not isinstance(value, (str, int, float, bool)):
                raise TypeError(f"cannot cache a {type(value).__name__}")
    return names, sorted(dates), sorted(tuples)


def _read(file: Path, key: str) -> tuple[Contact, ...] | None:
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
        if doc.get("key") != key or doc["fields"] != [f.name for f in
                                                      dataclasses.fields(Contact)]:
            return None
        dates, tuples, names = doc["dates"], doc["tuples"], doc["fields"]
        out = []
        setters = [getattr(Contact, name).__set__ for name in names]
        for row in doc["rows"]:
            for i in dates:
                if row[i] is not None:
                    row[i] = dt.date.fromisoformat(row[i])
            for i in tuples:
                row[i] = tuple(row[i])
            # Our own rows of exactly these fields (the key covers models.py): set them
            # without the frozen dataclass's per-field __init__, a third of the read.
            # Contact has slots (no __dict__), so through its slot descriptors.
            contact = object.__new__(Contact)
            for put, value in zip(setters, row, strict=True):
                put(contact, value)
            out.append(contact)
        return tuple(out)
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None  # missing, damaged or from another version: read the file again


def _write(file: Path, key: str, contacts: tuple[Contact, ...]) -> None:
    try:
        names, dates, tuples = _columns(contacts)
        rows = [[getattr(c, n) for n in names] for c in contacts]
        for row in rows:
            for i in dates:
                if row[i] is not None:
                    row[i] = row[i].isoformat()
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=file.name, suffix=".tmp")
    except (OSError, TypeError):
        return  # a read-only project, or a field JSON cannot hold: no cache, same answer
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"key": key, "fields": names, "dates": dates, "tuples": tuples,
                       "rows": rows}, fh, ensure_ascii=False)
        os.replace(tmp, file)  # readers see the old cache or the new, never half of one
    except OSError:
        Path(tmp).unlink(missing_ok=True)


def contacts(path: Path, project: Path, cache_dir: Path) -> tuple[Contact, ...]:
    """The contacts of one audience file (as audience.load_audience reads them)."""
    st = path.stat()
    key = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{_fingerprint()}"
    held = _memory.get(path)
    if held and held[0] == key:
        return held[1]
    name = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    file = cache_dir / f"audience-{path.stem}-{name}.json"
    found = _read(file, key)
    if found is None:
        found = audience.load_audience(path, project).contacts
        _write(file, key, found)
    _memory[path] = (key, found)
    return found
