"""`sphere contacts import`: CRM exports (CSV from Google Contacts, Outlook, Follow Up
Boss or a plain spreadsheet; vCard) merged into audiences/NAME.csv, with a report.

Reading (exports.py) is forgiving: encodings, delimiters, header spellings. Merging is
conservative: it never drops a contact, a note or an unsubscribe (see `merge_contact`)."""
from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import unicodedata
import zoneinfo
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from email_validator import EmailNotValidError

from pipeline.contacts.audience import FIELDS, email_key, normalise_email
from pipeline.contacts.csvsafe import AtomicCsv, remove_stale_temps, unguard
from pipeline.contacts.exports import (
    Record,
    angle_address,
    detect_encoding,
    read_csv_lines,
    read_vcf_lines,
    text_lines,
)
from pipeline.contacts.neighbourhoods import Neighbourhoods
from pipeline.errors import ConfigError, Problem, SphereError
from pipeline.models import RELATIONSHIPS
from pipeline.state.scratch import Scratch

# Follow Up Boss stages (and common CRM words) -> our relationship values.
STAGES: dict[str, str] = {
    "past client": "past_client", "past clients": "past_client", "closed": "past_client",
    "client": "past_client", "sphere": "sphere", "friend": "sphere", "family": "sphere",
    "referral source": "referral_source", "referral partner": "referral_source",
    "agent": "referral_source", "lead": "prospect", "new lead": "prospect",
    "prospect": "prospect", "hot prospect": "prospect", "nurture": "prospect",
    "active client": "prospect", "attempted contact": "prospect", "buyer": "prospect",
    "seller": "prospect", "customer": "past_client", "subscriber": "sphere",
    "opportunity": "prospect", "marketing qualified lead": "prospect",
    "sales qualified lead": "prospect", "evangelist": "referral_source",
}
# Labels and tags that name a relationship rather than an interest.
RELATIONSHIP_TAGS: dict[str, str] = {
    **dict.fromkeys(("past client", "past clients", "past_client"), "past_client"),
    **dict.fromkeys(("sphere", "sphere of influence", "soi"), "sphere"),
    **dict.fromkeys(("referral source", "referral sources", "referral partner",
                     "referral partners", "referral_source"), "referral_source"),
    **dict.fromkeys(("prospect", "prospects", "lead", "leads"), "prospect"),
}
UNSUBSCRIBED_WORDS = frozenset({"unsubscribed", "unsubscribe", "opted out", "opt-out",
                                "optout", "do not email", "dnc", "no email"})
# Report lines kept of each kind; a million-row export with a note on every row is
# counted beyond this, not held (nor printed) line by line.
LINES_KEPT = 10_000
PROGRESS_EVERY = 2_000  # records between two progress reports
# (stage, done, total): "read" counts bytes of the export, "write" the rows placed.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ImportReport:
    """What an import did (or, with dry_run, would do)."""

    audience: str
    target: Path
    imported: int
    updated: int
    unchanged: int
    skipped: tuple[str, ...]  # "row 14 'bob@' invalid email", one per skipped record
    notes: tuple[str, ...]  # everything else worth telling: alternates, kept statuses
    columns: tuple[tuple[str, str], ...]  # (column, field) as mapped; empty for vCard
    encoding: str
    dry_run: bool
    skipped_more: int = 0  # skipped records beyond the LINES_KEPT listed
    notes_more: int = 0  # notes beyond the LINES_KEPT listed

    def line(self) -> str:
        """'imported 412, updated 37, skipped 9: row 14 'bob@' invalid email, ...'."""
        total = len(self.skipped) + self.skipped_more
        head = f"imported {self.imported}, updated {self.updated}, skipped {total}"
        if not total:
            return head
        shown = ", ".join(self.skipped[:3])
        more = f", and {total - 3} more below" if total > 3 else ""
        return f"{head}: {shown}{more}"


class _Lines(list[str]):
    """Report lines: the first LINES_KEPT are kept, the rest only counted."""

    more = 0

    def append(self, line: str) -> None:
        """Keep the line, or count it once LINES_KEPT are kept."""
        if len(self) < LINES_KEPT:
            super().append(line)
        else:
            self.more += 1

    def extend(self, lines: Iterable[str]) -> None:
        """append() each line."""
        for line in lines:
            self.append(line)


@dataclass
class _Merge:
    """Mutable tally while merging (local to one import)."""

    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: _Lines = field(default_factory=_Lines)
    notes: _Lines = field(default_factory=_Lines)


def _fold(text: str) -> str:
    """Case- and accent-insensitive form: 'Zoë' and 'ZOE' are the same name."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).strip()


# ---- validation -----------------------------------------------------------------------
def _date(raw: str) -> str:
    """A closing date in ISO form, or '' when it cannot be read."""
    raw = raw.strip()
    for fmt in ("%Y-%m-%d", "%m/%d/%Y", "%m/%d/%y", "%d.%m.%Y", "%Y/%m/%d", "%b %d, %Y",
                "%B %d, %Y"):
        try:
            return dt.datetime.strptime(raw.split("T")[0] if fmt == "%Y-%m-%d" else raw,
                                        fmt).date().isoformat()
        except ValueError:
            continue
    return ""


def _row_from(rec: Record, email: str, hoods: Neighbourhoods | None,
              notes: list[str]) -> dict[str, str]:
    """The audience row an import record becomes (empty strings where it says nothing)."""
    relationship = rec.relationship.strip().lower().replace("-", "_")
    if relationship not in RELATIONSHIPS:
        relationship = STAGES.get(rec.relationship.strip().lower(), "")
    # A "Past Clients" label or a "Sphere" tag says who someone is, not what they enjoy.
    interests = [t for t in rec.interests if t not in RELATIONSHIP_TAGS]
    if not relationship:
        relationship = next((RELATIONSHIP_TAGS[t] for t in rec.interests
                             if t in RELATIONSHIP_TAGS), "")
    closing = _date(rec.closing_date) if rec.closing_date else ""
    if rec.closing_date and not closing:
        notes.append(f"{rec.where} {email!r}: closing date {rec.closing_date!r} not "
                     "understood, left empty (write it as YYYY-MM-DD)")
    tz = rec.timezone.strip()
    if tz:
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            notes.append(f"{rec.where} {email!r}: unknown time zone {tz!r} left out "
                         "(use an IANA name such as America/New_York)")
            tz = ""
    hood = rec.neighbourhood
    if not hood and hoods is not None:
        hood = hoods.lookup(rec.street, rec.zip)
    status = "unsubscribed" if rec.status.strip().lower() in UNSUBSCRIBED_WORDS else ""
    return {"email": email, "first_name": rec.first_name, "last_name": rec.last_name,
            "neighbourhood": hood, "interests": ";".join(interests),
            "relationship": relationship, "closing_date": closing, "timezone": tz,
            "note": rec.note, "private_note": rec.private_note, "status": status}


def _pick_email(rec: Record, tally: _Merge) -> str | None:
    """The first valid address of a record; alternates are noted, problems skip it."""
    if not rec.emails:
        tally.skipped.append(f"{rec.where} missing email")
        return None
    for i, raw in enumerate(rec.emails):
        if "<" in raw or ">" in raw:  # "Ann Lee <ann@example.com>"
            # The address is the one in the brackets, or none: a display name may hold
            # anything ('"x\r\nBcc: z@evil.example" <trudy@example.com>' is Trudy's).
            inner = angle_address(raw)
            if inner is None:
                tally.skipped.append(f"{rec.where} {raw!r} is not one address in angle "
                                     "brackets; row refused (write Name <address>)")
                return None
            raw = inner
        if raw.lower().startswith("mailto:"):
            raw = raw[7:]
        try:
            email = normalise_email(raw)
        except EmailNotValidError:
            continue
        bad = rec.emails[:i]
        others = [e for e in rec.emails[i + 1:] if email_key(e) != email_key(email)]
        if bad:
            tally.notes.append(f"{rec.where} {email!r}: used instead of invalid "
                               f"{', '.join(repr(b) for b in bad)}")
        if others:
            tally.notes.append(f"{rec.where} {email!r}: also has "
                               f"{', '.join(others)} (not imported; only one address per "
                               "contact)")
        return email
    tally.skipped.append(f"{rec.where} {rec.emails[0]!r} invalid email")
    return None


# ---- merging --------------------------------------------------------------------------
def merge_contact(old: dict[str, str], new: dict[str, str]) -> dict[str, str]:
    """One existing audience row updated from an import row.

    - Empty fields are filled from the import; non-empty ones are kept (you edited them).
    - Names are the exception: a non-empty imported first/last name replaces the stored
      one (the CRM holds the newer spelling: a married name, a typo fixed), unless the two
      differ only in case or accents ('Zoe' never replaces 'Zoë').
    - Status only ever moves to unsubscribed: an import never resubscribes anyone.
    - Notes are never replaced or dropped; columns Sphere does not know are kept as they are.
    """
    merged = dict(old)
    for key in FIELDS:
        was, got = (old.get(key) or "").strip(), (new.get(key) or "").strip()
        if key == "email" or not got:
            continue
        if key == "status":
            if got == "unsubscribed":
                merged[key] = "unsubscribed"
        elif key in ("first_name", "last_name"):
            if not was or _fold(was) != _fold(got):
                merged[key] = got
        elif not was:
            merged[key] = got
    return merged


def _existing(path: Path, stack: ExitStack) -> tuple[list[str], Iterator[dict[str, str]]]:
    """Header and rows (read as they are pulled) of an existing audience CSV, every row
    kept as written; the file stays open until `stack` closes."""
    if not path.exists():
        return list(FIELDS), iter(())
    codec, _ = detect_encoding(path)
    text = stack.enter_context(path.open(encoding=codec, newline=""))
    reader = csv.DictReader(text_lines(text, str(path)))
    try:
        header = [unguard(h).strip().lower() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise _syntax(path, reader.line_num, exc) from None
    reader.fieldnames = header
    if header and "email" not in header:
        raise ConfigError([Problem(str(path), 1, "email", "no `email` column",
                                   "the audience's first row must name its columns")])
    extra = [h for h in header if h and h not in FIELDS]

    def rows() -> Iterator[dict[str, str]]:
        try:
            for row in reader:
                yield {k: unguard(v or "") for k, v in row.items() if k is not None}
        except csv.Error as exc:
            raise _syntax(path, reader.line_num, exc) from None
    return list(FIELDS) + extra, rows()


def _syntax(path: Path, line: int, exc: csv.Error) -> ConfigError:
    return ConfigError([Problem(str(path), line, "", f"CSV syntax error: {exc}",
                                "fix the audience file (or `sphere check`) first")])


@dataclass(frozen=True)
class _Options:
    """What an import checks each record against."""

    neighbourhoods: Neighbourhoods | None
    suppressed: frozenset[str]
    canonical: dict[str, str]  # folded neighbourhood -> the feeds' spelling


def import_contacts(source: Path, audience_dir: Path, audience: str, *,
                    overrides: dict[str, str] | None = None,
                    neighbourhoods: Neighbourhoods | None = None,
                    suppressed: frozenset[str] = frozenset(), dry_run: bool = False,
                    shown: str = "", known_hoods: tuple[str, ...] = (),
                    progress: Progress | None = None) -> ImportReport:
    """Read an export, validate it and merge it into audiences/AUDIENCE.csv.

    The export is read a row at a time and the audience is rewritten as a stream, so
    memory does not grow with either; `progress` hears how far it got."""
    # Neighbourhoods the feeds cover, by folded name: 'maple heights' is written as the
    # feeds spell it, and one no feed covers is pointed out.
    options = _Options(neighbourhoods, suppressed, {_fold(h): h for h in known_hoods if h})
    shown = shown or str(source)
    if not source.is_file():
        raise SphereError(f"{shown}: no such file", "give the path of a .csv or .vcf export")
    if (audience_dir / f"{audience}.yaml").exists() or (audience_dir / f"{audience}.yml"
                                                        ).exists():
        raise SphereError(f"audience {audience!r} is a YAML file; import writes CSV",
                          "import into a new audience name, or convert the YAML to CSV")
    with source.open("rb") as probe:
        if probe.read(4) in (b"PK\x03\x04", b"\xd0\xcf\x11\xe0"):  # zip (xlsx), OLE (xls)
            raise SphereError(f"{shown} is a spreadsheet workbook, not CSV",
                              "save it as CSV first (Excel: File > Save As > CSV UTF-8; "
                              "Google Sheets: File > Download > CSV)")
    codec, encoding = detect_encoding(source)
    target = audience_dir / f"{audience}.csv"
    tally = _Merge()
    if not dry_run:
        for stale in remove_stale_temps(audience_dir):
            tally.notes.append(f"removed {stale.name}, left by an import that was stopped")
    report = (lambda stage, done, total: None) if progress is None else progress
    with ExitStack() as stack:
        raw = stack.enter_context(source.open("rb"))
        text = stack.enter_context(io.TextIOWrapper(raw, encoding=codec, newline=""))
        lines = text_lines(text, shown)
        ahead = []
        for line in lines:  # up to the first line that says something
            ahead.append(line)
            if line.strip():
                break
        lines = itertools.chain(ahead, lines)
        columns: tuple[tuple[str, str], ...] = ()
        if source.suffix.lower() in (".vcf", ".vcard") or \
                "".join(ahead).lstrip()[:11].upper() == "BEGIN:VCARD":
            records: Iterator[Record] = read_vcf_lines(lines)
        else:
            records, columns = read_csv_lines(lines, shown, overrides or {})
        scratch = Scratch()
        stack.callback(scratch.close)
        size = source.stat().st_size
        for n, rec in enumerate(records, 1):
            _collect(rec, scratch, tally, options)
            if n % PROGRESS_EVERY == 0:
                report("read", raw.tell(), size)
        report("read", size, size)
        _write(target, scratch, tally, options, dry_run, report)
    return ImportReport(audience=audience, target=target, imported=tally.imported,
                        updated=tally.updated, unchanged=tally.unchanged,
                        skipped=tuple(tally.skipped), notes=tuple(tally.notes),
                        columns=columns, encoding=encoding, dry_run=dry_run,
                        skipped_more=tally.skipped.more, notes_more=tally.notes.more)


def _collect(rec: Record, scratch: Scratch, tally: _Merge, options: _Options) -> None:
    """Validate one record and keep its row in the scratch database (or skip it)."""
    email = _pick_email(rec, tally)
    if email is None:
        return
    key = email_key(email)
    notes: list[str] = []  # the row's own notes, dropped with it if it is a repeat
    new = _row_from(rec, email, options.neighbourhoods, notes)
    hood, canonical = new["neighbourhood"], options.canonical
    if hood and canonical:
        new["neighbourhood"] = canonical.get(_fold(hood), hood)
        if _fold(hood) not in canonical:
            notes.append(f"{rec.where} {email!r}: no feed covers neighbourhood {hood!r} "
                         f"(feeds cover: {', '.join(sorted(canonical.values()))})")
    if not new["first_name"] and not new["last_name"]:
        notes.append(f"{rec.where} {email!r}: no name (emails greet them without one)")
    if key in options.suppressed:
        new["status"] = "unsubscribed"
    earlier = scratch.add(key, rec.where, new)
    if earlier is not None:
        tally.skipped.append(f"{rec.where} {email!r} duplicate of {earlier}")
        return
    tally.notes.extend(notes)


def _write(target: Path, scratch: Scratch, tally: _Merge, options: _Options,
           dry_run: bool, report: Progress) -> None:
    """Stream the audience file into its new version: the contacts it has, merged with
    the import, then the new ones; replace it if anything changed (unless dry_run)."""
    existed = target.exists()
    placed = 0
    with ExitStack() as stack:
        header, rows = _existing(target, stack)
        out = None if dry_run else stack.enter_context(AtomicCsv(target, header))
        for old in rows:
            key = email_key(old.get("email", ""))
            found = scratch.take(key) if key else None
            if found is not None:
                old = _merge_one(old, *found, key, tally, options)
                placed += 1
                if placed % PROGRESS_EVERY == 0:
                    report("write", placed, scratch.count)
            if out is not None:
                out.write(old)
        for place, new in scratch.rest():
            new["status"] = new["status"] or "subscribed"
            if email_key(new["email"]) in options.suppressed:
                tally.notes.append(f"{place} {new['email']!r}: on the suppression list; "
                                   "added as unsubscribed")
            tally.imported += 1
            if out is not None:
                out.write(new)
            placed += 1
            if placed % PROGRESS_EVERY == 0:
                report("write", placed, scratch.count)
        report("write", scratch.count, scratch.count)
        if out is not None and (tally.imported or tally.updated or not existed):
            out.commit()


def _merge_one(old: dict[str, str], place: str, new: dict[str, str], key: str,
               tally: _Merge, options: _Options) -> dict[str, str]:
    """An existing contact's row merged with its import row, counted and noted."""
    email = new["email"]
    merged = merge_contact(old, new)
    if (old.get("status") or "").strip().lower() == "unsubscribed":
        tally.notes.append(f"{place} {email!r}: unsubscribed; stays unsubscribed")
    elif key in options.suppressed:
        tally.notes.append(f"{place} {email!r}: on the suppression list; marked "
                           "unsubscribed")
    if merged != old:
        tally.updated += 1
        changed = [k for k in FIELDS if merged.get(k, "") != old.get(k, "")]
        tally.notes.append(f"{place} {email!r}: updated {', '.join(changed)}")
    else:
        tally.unchanged += 1
    return merged
