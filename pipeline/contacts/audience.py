"""Contacts from audiences/*.csv and *.yaml: parsing, validation and a report of problems."""
from __future__ import annotations

import csv
import datetime as dt
import io
import re
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

# email_key is re-exported here: the one rule lives in pipeline.addresses.
from pipeline import names
from pipeline.addresses import email_key
from pipeline.contacts.csvsafe import unguard
from pipeline.errors import Problem
from pipeline.models import RELATIONSHIPS, STATUSES, Contact, ContactStatus
from pipeline.yamlfile import LineDict, LineList, load_yaml

FIELDS = names.CONTACT_FIELDS
# `note` is printed in that person's emails; `private_note` (a CRM's Notes) is the
# professional's own and is never read into a Contact, so no template can print it.
# Date columns a drip may anchor on; other dates live in `extra` fields later.
DATE_FIELDS = ("closing_date",)


@dataclass(frozen=True)
class AudienceLoad:
    """The contacts of one or more audience files and the problems met reading them."""

    contacts: tuple[Contact, ...]
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> tuple[Problem, ...]:
        """Problems that must be fixed (the row was left out and `check` fails)."""
        return tuple(p for p in self.problems if p.severity == "error")


def normalise_email(raw: str) -> str:
    """Validate syntax only (no DNS) and return the address with a lower-cased domain."""
    info = validate_email(raw.strip(), check_deliverability=False)
    return info.normalized


_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """`text` with every line break and control character made a space, spaces folded:
    what a name must be before it goes anywhere near a header (To:, Subject:)."""
    return " ".join(_CONTROL_RE.sub(" ", text).split())


def _contact_from_row(row: dict[str, str], audience: str, shown: str, line: int,
                      problems: list[Problem]) -> Contact | None:
    def bad(key: str, problem: str, fix: str, severity: str = "error") -> None:
        problems.append(Problem(shown, line, key, problem, fix, severity))

    raw_email = (row.get("email") or "").strip()
    if not raw_email:
        bad("email", "missing email address", "fill in the email column or delete the row",
            "warning")
        return None
    try:
        email = normalise_email(raw_email)
    except EmailNotValidError as exc:
        bad("email", f"{raw_email!r} is not a valid email address ({exc}); row skipped",
            "correct the address", "warning")
        return None
    ok = True
    status = (row.get("status") or "subscribed").strip().lower()
    if status not in STATUSES:
        bad("status", f"unknown status {status!r}; row skipped so nobody is mailed by mistake",
            "use subscribed or unsubscribed")
        ok = False
    relationship = (row.get("relationship") or "sphere").strip().lower()
    if relationship not in RELATIONSHIPS:
        bad("relationship", f"unknown relationship {relationship!r}",
            f"use one of: {' | '.join(RELATIONSHIPS)}")
        ok = False
    closing: dt.date | None = None
    raw_date = (row.get("closing_date") or "").strip()
    if raw_date:
        try:
            closing = dt.date.fromisoformat(raw_date)
        except ValueError:
            bad("closing_date", f"{raw_date!r} is not a date", "write it as YYYY-MM-DD")
            ok = False
    tz = (row.get("timezone") or "").strip()
    if tz:
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            bad("timezone", f"unknown time zone {tz!r}", "use an IANA name such as "
                "America/New_York, or leave it empty to use the sender's")
            ok = False
    if not ok:
        return None
    interests_raw = row.get("interests") or ""
    interests = interests_raw if isinstance(interests_raw, list) else str(interests_raw).split(";")
    return Contact(
        email=email,
        # One line each: a name reaches the To: header and a subject line.
        first_name=one_line(row.get("first_name") or ""),
        last_name=one_line(row.get("last_name") or ""),
        neighbourhood=one_line(row.get("neighbourhood") or ""),
        interests=tuple(dict.fromkeys(one_line(str(i)).lower() for i in interests
                                      if one_line(str(i)))),
        relationship=relationship,
        closing_date=closing,
        timezone=tz,
        note=(row.get("note") or "").strip(),
        status=ContactStatus(status),
        audience=audience,
        origin=f"{shown}:{line}",
    )


def _read_csv(path: Path, shown: str, problems: list[Problem]) -> list[tuple[int, dict]]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        problems.append(Problem(shown, 0, "", "not UTF-8 text",
                                "save the file as UTF-8 (CSV UTF-8 in Excel), or use "
                                "`sphere contacts import` which also reads Latin-1"))
        return []
    # strict=True turns a stray quote into an error instead of silently swallowing
    # every following row into one field.
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, dict]] = []
    try:
        header = [unguard(h).strip().lower() for h in (reader.fieldnames or [])]
        if "email" not in header:
            problems.append(Problem(shown, 1, "email", "no `email` column in the header row",
                                    f"the first row must name the columns; known: "
                                    f"{', '.join(FIELDS)}"))
            return []
        reader.fieldnames = header
        unknown = [h for h in header if h and h not in FIELDS]
        if unknown:
            problems.append(Problem(shown, 1, unknown[0], f"unknown column(s) {unknown} ignored",
                                    f"known columns: {', '.join(FIELDS)}", "warning"))
        start = reader.line_num + 1
        for row in reader:
            if None in row:
                problems.append(Problem(shown, start, "", "more cells than header columns; "
                                        "row skipped", "quote cells that contain commas",
                                        "warning"))
            elif any((v or "").strip() for v in row.values()):
                # A cell Sphere wrote as '=... (so no spreadsheet runs it) reads as =...
                rows.append((start, {k: unguard(v or "") for k, v in row.items()}))
            start = reader.line_num + 1
    except csv.Error as exc:
        problems.append(Problem(shown, reader.line_num, "", f"CSV syntax error: {exc}",
                                "close the quote that starts on or before this line"))
    return rows


def _read_yaml(path: Path, shown: str, problems: list[Problem]) -> list[tuple[int, dict]]:
    data, errs = load_yaml(path, shown)
    problems.extend(errs)
    if errs:
        return []
    items = data.get("contacts") if isinstance(data, LineDict) else data
    if not isinstance(items, LineList):
        problems.append(Problem(shown, 1, "contacts", "must be a list of contacts",
                                "write `- {email: ..., first_name: ...}` items"))
        return []
    rows = []
    for i, item in enumerate(items):
        if not isinstance(item, LineDict):
            problems.append(Problem(shown, items.lines[i], "", "each contact must be a mapping",
                                    "write `- email: ...` with its fields indented below"))
            continue
        rows.append((items.lines[i], {k: v if isinstance(v, list) else
                                      ("" if v is None else str(v)) for k, v in item.items()}))
    return rows


def load_audience(path: Path, project: Path) -> AudienceLoad:
    """Read one audience file; rows with problems are skipped and reported."""
    shown = str(path.relative_to(project)) if path.is_relative_to(project) else str(path)
    problems: list[Problem] = []
    reader = _read_csv if path.suffix.lower() == ".csv" else _read_yaml
    rows = reader(path, shown, problems)
    contacts: list[Contact] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        contact = _contact_from_row(row, path.stem, shown, line, problems)
        if contact is None:
            continue
        key = email_key(contact.email)
        if key in seen:
            problems.append(Problem(shown, line, "email", f"duplicate of line {seen[key]}; "
                                    "row skipped", "keep one row per person", "warning"))
            continue
        seen[key] = line
        contacts.append(contact)
    return AudienceLoad(tuple(contacts), tuple(problems))


def load_audiences(files: tuple[Path, ...], names: tuple[str, ...], project: Path) -> AudienceLoad:
    """Contacts of the named audiences; a person in two audiences is mailed once."""
    contacts: list[Contact] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for path in files:
        if path.stem not in names:
            continue
        loaded = load_audience(path, project)
        problems.extend(loaded.problems)
        for c in loaded.contacts:
            if email_key(c.email) not in seen:
                seen.add(email_key(c.email))
                contacts.append(c)
    return AudienceLoad(tuple(contacts), tuple(problems))
