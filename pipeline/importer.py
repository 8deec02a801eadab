"""`sphere contacts import`: CRM exports (CSV from Google Contacts, Outlook, Follow Up
Boss or a plain spreadsheet; vCard) merged into audiences/NAME.csv, with a report.

Reading (exports.py) is forgiving: encodings, delimiters, header spellings. Merging is
conservative: it never drops a contact, a note or an unsubscribe (see `merge_contact`)."""
from __future__ import annotations

import csv
import datetime as dt
import io
import os
import tempfile
import unicodedata
import zoneinfo
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path

from email_validator import EmailNotValidError

from .audience import FIELDS, email_key, normalise_email
from .errors import ConfigError, Problem, SphereError
from .exports import Record, decode, read_csv, read_vcf
from .models import RELATIONSHIPS
from .neighbourhoods import Neighbourhoods

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

    def line(self) -> str:
        """'imported 412, updated 37, skipped 9: row 14 'bob@' invalid email, ...'."""
        head = (f"imported {self.imported}, updated {self.updated}, "
                f"skipped {len(self.skipped)}")
        if not self.skipped:
            return head
        shown = ", ".join(self.skipped[:3])
        more = f", and {len(self.skipped) - 3} more below" if len(self.skipped) > 3 else ""
        return f"{head}: {shown}{more}"


@dataclass
class _Merge:
    """Mutable tally while merging (local to one import)."""

    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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
            "note": rec.note, "status": status}


def _pick_email(rec: Record, tally: _Merge) -> str | None:
    """The first valid address of a record; alternates are noted, problems skip it."""
    if not rec.emails:
        tally.skipped.append(f"{rec.where} missing email")
        return None
    for i, raw in enumerate(rec.emails):
        if "<" in raw and ">" in raw:  # "Ann Lee <ann@example.com>"
            raw = parseaddr(raw)[1] or raw
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


def _read_audience(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and raw rows of an existing audience CSV, every row kept as written."""
    if not path.exists():
        return list(FIELDS), []
    text, _ = decode(path.read_bytes())
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        rows = [{k: (v or "") for k, v in row.items() if k is not None} for row in reader]
    except csv.Error as exc:
        raise ConfigError([Problem(str(path), reader.line_num, "", f"CSV syntax error: {exc}",
                                   "fix the audience file (or `sphere check`) first")]) from None
    if header and "email" not in header:
        raise ConfigError([Problem(str(path), 1, "email", "no `email` column",
                                   "the audience's first row must name its columns")])
    extra = [h for h in header if h and h not in FIELDS]
    return list(FIELDS) + extra, rows


def write_atomic(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    """Write the CSV to `path` atomically (temp file, fsync, os.replace)."""
    # A crash leaves the old file or the new one, never half of one.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore",
                                    lineterminator="\n")
            writer.writeheader()
            writer.writerows({k: row.get(k, "") for k in header} for row in rows)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself must reach the disk too
    finally:
        os.close(dir_fd)


def import_contacts(source: Path, audience_dir: Path, audience: str, *,
                    overrides: dict[str, str] | None = None,
                    neighbourhoods: Neighbourhoods | None = None,
                    suppressed: frozenset[str] = frozenset(), dry_run: bool = False,
                    shown: str = "", known_hoods: tuple[str, ...] = ()) -> ImportReport:
    """Read an export, validate it and merge it into audiences/AUDIENCE.csv."""
    # Neighbourhoods the feeds cover, by folded name: 'maple heights' is written as the
    # feeds spell it, and one no feed covers is pointed out.
    canonical = {_fold(h): h for h in known_hoods if h}
    shown = shown or str(source)
    if not source.is_file():
        raise SphereError(f"{shown}: no such file", "give the path of a .csv or .vcf export")
    if (audience_dir / f"{audience}.yaml").exists() or (audience_dir / f"{audience}.yml"
                                                        ).exists():
        raise SphereError(f"audience {audience!r} is a YAML file; import writes CSV",
                          "import into a new audience name, or convert the YAML to CSV")
    data = source.read_bytes()
    if data.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):  # zip (xlsx) or OLE (xls)
        raise SphereError(f"{shown} is a spreadsheet workbook, not CSV",
                          "save it as CSV first (Excel: File > Save As > CSV UTF-8; Google "
                          "Sheets: File > Download > CSV)")
    text, encoding = decode(data)
    is_vcf = source.suffix.lower() in (".vcf", ".vcard") or \
        text.lstrip()[:11].upper() == "BEGIN:VCARD"
    if is_vcf:
        records, columns = read_vcf(text), ()
    else:
        records, columns = read_csv(text, shown, overrides or {})
    target = audience_dir / f"{audience}.csv"
    header, rows = _read_audience(target)
    index = {email_key(r.get("email", "")): i for i, r in enumerate(rows)
             if r.get("email", "").strip()}
    tally = _Merge()
    seen: dict[str, str] = {}
    for rec in records:
        email = _pick_email(rec, tally)
        if email is None:
            continue
        key = email_key(email)
        if key in seen:
            tally.skipped.append(f"{rec.where} {email!r} duplicate of {seen[key]}")
            continue
        seen[key] = rec.where
        new = _row_from(rec, email, neighbourhoods, tally.notes)
        hood = new["neighbourhood"]
        if hood and canonical:
            new["neighbourhood"] = canonical.get(_fold(hood), hood)
            if _fold(hood) not in canonical:
                tally.notes.append(f"{rec.where} {email!r}: no feed covers neighbourhood "
                                   f"{hood!r} (feeds cover: {', '.join(sorted(canonical.values()))})")
        if not new["first_name"] and not new["last_name"]:
            tally.notes.append(f"{rec.where} {email!r}: no name (emails greet them "
                               "without one)")
        if key in suppressed:
            new["status"] = "unsubscribed"
        if key in index:
            old = rows[index[key]]
            merged = merge_contact(old, new)
            if (old.get("status") or "").strip().lower() == "unsubscribed":
                tally.notes.append(f"{rec.where} {email!r}: unsubscribed; stays unsubscribed")
            elif key in suppressed:
                tally.notes.append(f"{rec.where} {email!r}: on the suppression list; marked "
                                   "unsubscribed")
            if merged != old:
                rows[index[key]] = merged
                tally.updated += 1
                changed = [k for k in FIELDS if merged.get(k, "") != old.get(k, "")]
                tally.notes.append(f"{rec.where} {email!r}: updated {', '.join(changed)}")
            else:
                tally.unchanged += 1
        else:
            new["status"] = new["status"] or "subscribed"
            if key in suppressed:
                tally.notes.append(f"{rec.where} {email!r}: on the suppression list; "
                                   "added as unsubscribed")
            index[key] = len(rows)
            rows.append(new)
            tally.imported += 1
    if not dry_run and (tally.imported or tally.updated or not target.exists()):
        write_atomic(target, header, rows)
    return ImportReport(audience=audience, target=target, imported=tally.imported,
                        updated=tally.updated, unchanged=tally.unchanged,
                        skipped=tuple(tally.skipped), notes=tuple(tally.notes),
                        columns=columns, encoding=encoding, dry_run=dry_run)
