"""Contacts as the professional sees them: one list over every audience file with what
each person was sent and opened, a timeline per person, and edits written back to the
audience file (atomically, the file's other columns, rows, order and shape kept).
The studio's Contacts pages call these; they print nothing."""
from __future__ import annotations

import csv
import datetime as dt
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.approval.notes import notes
from pipeline.config import Config
from pipeline.contacts.audience import (
    FIELDS,
    _contact_from_row,
    email_key,
    load_audience,
)
from pipeline.contacts.csvsafe import guard, unguard
from pipeline.errors import ConfigError, Problem, SphereError
from pipeline.models import Contact, LedgerStatus
from pipeline.state.interface import Ledger
from pipeline.state.records import StoredNote

# What the contact page edits (the address is the identity: never edited here).
EDITABLE = ("first_name", "last_name", "neighbourhood", "interests", "relationship",
            "status", "timezone", "closing_date", "note", "private_note")


@dataclass(frozen=True)
class ContactRow:
    """One person in the contacts list."""

    contact: Contact
    last_sent: str  # ISO time or ''
    last_opened: str


@dataclass(frozen=True)
class TimelineEntry:
    """Something that happened to or for one person."""

    when: str  # ISO time
    what: str  # received | opened | clicked | bounced | note ...
    detail: str


@dataclass(frozen=True)
class ContactFile:
    """Where a person lives and their fields exactly as the file holds them."""

    path: Path
    fields: dict[str, str]


def contact_rows(config: Config, store: Ledger) -> list[ContactRow]:
    """Every contact of every audience file, with their last send and last open."""
    sent: dict[str, str] = {}
    for row in store.ledger_rows():
        if row.status == LedgerStatus.SENT:
            key = email_key(row.email)
            sent[key] = max(sent.get(key, ""), row.settled or row.created)
    opened: dict[str, str] = {}
    for event in store.events():
        if event.event in ("open", "click"):
            key = email_key(event.email)
            stamp = dt.datetime.fromtimestamp(event.timestamp, dt.UTC).isoformat()
            opened[key] = max(opened.get(key, ""), stamp)
    out = []
    for path in config.audience_files:
        for c in load_audience(path, config.project).contacts:
            key = email_key(c.email)
            out.append(ContactRow(c, sent.get(key, ""), opened.get(key, "")))
    return out


def find(config: Config, email: str) -> Contact | None:
    """The contact with this address (first audience file that has it)."""
    key = email_key(email)
    for path in config.audience_files:
        for c in load_audience(path, config.project).contacts:
            if email_key(c.email) == key:
                return c
    return None


def timeline(config: Config, store: Ledger, email: str) -> list[TimelineEntry]:
    """What this person received, opened and clicked, and their one-off notes, newest
    first."""
    key = email_key(email)
    titles = {a.id: a.title for a in store.articles()}
    titles.update({f"tip:{t.id}": f"Tip: {t.title}" for t in config.tips})
    items: dict[str, list[str]] = {}
    for got in store.received_by(key):
        items.setdefault(got.send_id, []).append(titles.get(got.item, got.item))
    out = []
    for row in store.ledger_rows():
        if email_key(row.email) == key:
            stories = "; ".join(items.get(row.send_id, []))
            out.append(TimelineEntry(row.settled or row.created, row.status if
                                     row.status != LedgerStatus.SENT else "received",
                                     row.send_id + (f": {stories}" if stories else "")))
    for event in store.events(key):
        what = {"open": "opened", "click": "clicked"}.get(event.event, event.event)
        out.append(TimelineEntry(dt.datetime.fromtimestamp(event.timestamp, dt.UTC)
                                 .isoformat(), what, event.url or event.send_id))
    for n in notes(store, key):
        out.append(_note_entry(n))
    for d in store.draft_notes(key):
        out.append(TimelineEntry(d.when, "personal note", f"{d.note} (in {d.send_id})"))
    return sorted(out, key=lambda t: t.when, reverse=True)


def _note_entry(n: StoredNote) -> TimelineEntry:
    state = f"sent in {n.used_send_id}" if n.used else "waiting for the next email"
    return TimelineEntry(n.created, "note", f"{n.text} ({state})")


# ---- reading and writing the audience file ---------------------------------------------
def _csv_rows(text: str) -> tuple[list[str], list[tuple[int, int, list[str]]]]:
    """Header and (first line, last line, cells) of every record, lines counted from 0."""
    reader = csv.reader(io.StringIO(text, newline=""))
    records = []
    start = 0
    header: list[str] = []
    for cells in reader:
        if not header:
            header = [h.strip().lower() for h in cells]
        else:
            records.append((start, reader.line_num - 1, cells))
        start = reader.line_num
    return header, records


def _locate(config: Config, email: str) -> Path:
    key = email_key(email)
    for path in config.audience_files:
        if any(email_key(c.email) == key for c in load_audience(path, config.project).contacts):
            return path
    raise SphereError(f"{email} is in no audience file", "add them to audiences/ first")


def read(config: Config, email: str) -> ContactFile:
    """This person's fields as the audience file holds them (private note included)."""
    path = _locate(config, email)
    key = email_key(email)
    if path.suffix == ".csv":
        header, records = _csv_rows(path.read_bytes().decode("utf-8-sig"))
        for _first, _last, cells in records:
            row = dict(zip(header, cells, strict=False))  # short rows read as empty
            if email_key(row.get("email", "")) == key:
                return ContactFile(path, {k: unguard(row.get(k, "")) for k in
                                          FIELDS})
    else:
        for item in _yaml_items(path):
            if email_key(str(item.get("email", ""))) == key:
                return ContactFile(path, {k: _yaml_text(item.get(k)) for k in
                                          FIELDS})
    raise SphereError(f"{email} is in no audience file", "add them to audiences/ first")


def _yaml_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    return str(value)


def _yaml_items(path: Path) -> list[dict]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    items = data.get("contacts") if isinstance(data, dict) else data
    return items if isinstance(items, list) else []


def clean(fields: dict[str, str]) -> dict[str, str]:
    """Form input as the file writes it: trimmed, interests `;`-separated and
    lower-cased (commas accepted), one line per field except the notes."""
    out = {}
    for key in EDITABLE:
        if key not in fields:
            continue
        value = fields[key].replace("\r\n", "\n").strip()
        if key == "interests":
            parts = value.replace(",", ";").replace("\n", ";").split(";")
            value = ";".join(dict.fromkeys(p.strip().lower() for p in parts if p.strip()))
        elif key not in ("note", "private_note"):
            value = " ".join(value.split())
        out[key] = value
    return out


def save(config: Config, email: str, changes: dict[str, str]) -> Contact:
    """Write changed fields of one person back to their audience file, atomically; the
    file's other rows, columns and their order are kept. Refuses a change that would
    make the row invalid (with the problem, file unchanged)."""
    current = read(config, email)
    merged = {**current.fields, **clean(changes)}
    shown = os.path.relpath(current.path, config.project)
    problems: list[Problem] = []
    contact = _contact_from_row(merged, current.path.stem, shown, 0, problems)
    if contact is None or any(p.severity == "error" for p in problems):
        raise ConfigError([p for p in problems if p.severity == "error"] or problems)
    if current.path.suffix == ".csv":
        _save_csv(current.path, email, merged)
    else:
        _save_yaml(current.path, email, merged)
    return contact


def _save_csv(path: Path, email: str, fields: dict[str, str]) -> None:
    raw = path.read_bytes()
    bom = raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8-sig")
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines(keepends=True)
    header, records = _csv_rows(text)
    if fields.get("private_note") and "private_note" not in header:
        # A new column at the end: the other rows stay as they are (a missing last
        # cell reads as empty).
        header.append("private_note")
        lines[0] = lines[0].rstrip("\r\n") + ",private_note" + newline
    key = email_key(email)
    for first, last, cells in records:
        row = dict(zip(header, cells, strict=False))  # short rows read as empty
        if email_key(row.get("email", "")) != key:
            continue
        # Columns Sphere does not know keep their cells; a typed value a spreadsheet
        # would run as a formula is written with a leading apostrophe (csvsafe).
        values = [guard(fields.get(h, "")) if h in FIELDS
                  else row.get(h, "") for h in header]
        out = io.StringIO()
        csv.writer(out, lineterminator=newline).writerow(values)
        ending = newline if lines[last].endswith(("\n", "\r")) else ""
        lines[first:last + 1] = [out.getvalue().rstrip("\r\n") + ending]
        break
    _write_atomic(path, ("\ufeff" if bom else "") + "".join(lines))


def _save_yaml(path: Path, email: str, fields: dict[str, str]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    items = data.get("contacts") if isinstance(data, dict) else data
    key = email_key(email)
    for item in items or []:
        if isinstance(item, dict) and email_key(str(item.get("email", ""))) == key:
            for k, v in fields.items():
                if k == "email" or (not v and k not in item):
                    continue
                item[k] = [i for i in v.split(";") if i] if k == "interests" and \
                    isinstance(item.get(k), list) else v
    _write_atomic(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def _write_atomic(path: Path, text: str) -> None:
    """Temp file in the same folder, fsync, rename: a crash leaves the old file or the
    new one, never half of one."""
    # Named as csvsafe names its temp files, so an interrupted write's is cleaned up.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                               dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
