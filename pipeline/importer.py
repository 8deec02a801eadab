"""`sphere contacts import`: CRM exports (CSV from Google Contacts, Outlook, Follow Up
Boss or a plain spreadsheet; vCard) merged into audiences/NAME.csv, with a report.

Reading is forgiving (encodings, delimiters, header spellings); merging is conservative:
it never drops a contact, a note or an unsubscribe (see `merge_contact`)."""
from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
import tempfile
import unicodedata
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path

from email_validator import EmailNotValidError

from .audience import FIELDS, email_key, normalise_email
from .errors import ConfigError, Problem, SphereError
from .models import RELATIONSHIPS
from .neighbourhoods import Neighbourhoods
from .vcard import parse_vcards

# Fields a column can feed: the audience's own, plus the parts we derive them from.
TARGETS: tuple[str, ...] = FIELDS + ("name", "street", "zip", "ignore")
# Header aliases after _norm() (lower-case, letters and digits only). Order matters for
# email: the first column is the primary address, later ones are alternates.
ALIASES: dict[str, str] = {
    **dict.fromkeys(("email", "emailaddress", "email1", "email1value", "email1address",
                     "primaryemail", "emailaddress1", "mail", "personalemail"), "email"),
    **dict.fromkeys(("firstname", "givenname", "first", "fname", "forename"), "first_name"),
    **dict.fromkeys(("lastname", "familyname", "surname", "last", "lname"), "last_name"),
    **dict.fromkeys(("name", "fullname", "displayname", "contactname", "contact"), "name"),
    **dict.fromkeys(("neighbourhood", "neighborhood", "neighbourhoods", "neighborhoods",
                     "area", "subdivision", "community"), "neighbourhood"),
    **dict.fromkeys(("interests", "interest", "tags", "tag", "categories", "category",
                     "groupmembership", "groups", "labels", "hobbies"), "interests"),
    **dict.fromkeys(("relationship", "stage", "type", "contacttype"), "relationship"),
    **dict.fromkeys(("closingdate", "closedate", "closed", "purchasedate"), "closing_date"),
    **dict.fromkeys(("timezone", "tz", "timezoneiana"), "timezone"),
    **dict.fromkeys(("note", "notes", "background", "personalnote"), "note"),
    **dict.fromkeys(("status", "subscription", "emailstatus"), "status"),
    **dict.fromkeys(("street", "address", "streetaddress", "homestreet", "address1street",
                     "homeaddress", "mailingaddress", "address1formatted", "address1",
                     "propertyaddress"), "street"),
    **dict.fromkeys(("zip", "zipcode", "postalcode", "postcode", "homepostalcode",
                     "address1postalcode", "address1zip", "homezip"), "zip"),
}
# A column "E-mail 2 - Value" or "E-mail 3 Address" is an alternate address; "E-mail
# Type", "E-mail 1 - Label" or "E-mail Display Name" are not addresses at all.
_EXTRA_EMAIL_RE = re.compile(r"^e?-?mail\d*(value|address)?$|^emailaddress\d+$|^email\d+$")
_NOT_EMAIL = ("type", "label", "display", "optout", "status")
# Google's "* myContacts" / "* starred" and its "Imported on 5/1/24" are bookkeeping,
# not interests.
_SYSTEM_GROUP_RE = re.compile(r"^(\*.*|mycontacts|starred|imported on .*|friends & family)$",
                              re.I)
_TAG_SPLIT_RE = re.compile(r"\s*(?::::|;|,|\n)\s*")
_NO_SPLIT_RE = re.compile(r"(?!)")  # matches nothing
# Follow Up Boss stages (and common CRM words) -> our relationship values.
STAGES: dict[str, str] = {
    "past client": "past_client", "past clients": "past_client", "closed": "past_client",
    "client": "past_client", "sphere": "sphere", "friend": "sphere", "family": "sphere",
    "referral source": "referral_source", "referral partner": "referral_source",
    "agent": "referral_source", "lead": "prospect", "new lead": "prospect",
    "prospect": "prospect", "hot prospect": "prospect", "nurture": "prospect",
    "active client": "prospect", "attempted contact": "prospect", "buyer": "prospect",
    "seller": "prospect",
}
UNSUBSCRIBED_WORDS = frozenset({"unsubscribed", "unsubscribe", "opted out", "opt-out",
                                "optout", "do not email", "dnc", "no email"})
_PARTICLES = frozenset({"van", "von", "der", "den", "de", "del", "della", "da", "di", "du",
                        "la", "le", "st.", "ter", "bin", "al"})
_TITLES = frozenset({"mr", "mrs", "ms", "miss", "dr", "prof", "rev", "mx"})
_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv", "phd", "md", "esq"})
SAMPLE_BYTES = 64 * 1024  # enough rows for csv.Sniffer to see the delimiter


@dataclass(frozen=True)
class Record:
    """One contact as read from an export, before validation and merging."""

    where: str  # "row 14" (as a spreadsheet numbers it) or "card 3"
    line: int  # line in the file where the record starts
    emails: tuple[str, ...]
    first_name: str = ""
    last_name: str = ""
    neighbourhood: str = ""
    interests: tuple[str, ...] = ()
    relationship: str = ""
    closing_date: str = ""
    timezone: str = ""
    note: str = ""
    status: str = ""
    street: str = ""
    zip: str = ""


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


def _norm(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


def _fold(text: str) -> str:
    """Case- and accent-insensitive form: 'Zoë' and 'ZOE' are the same name."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).strip()


# ---- reading --------------------------------------------------------------------------
def decode(data: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-16 by BOM, else UTF-8 (BOM optional), else Windows-1252."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), "UTF-16"
    try:
        return data.decode("utf-8-sig"), "UTF-8"
    except UnicodeDecodeError:
        pass
    # Excel and Outlook on Windows save "CSV" as cp1252; five bytes are undefined there,
    # and Latin-1 reads them instead of failing.
    try:
        return data.decode("cp1252"), "Windows-1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "Latin-1"


def _delimiter(text: str) -> str:
    sample = text[:SAMPLE_BYTES]
    first = sample.split("\n", 1)[0]
    try:
        found = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
        if first.count(found):
            return found
    except csv.Error:
        pass
    # The header line rarely quotes anything: count there.
    return max(",;\t|", key=first.count) if any(d in first for d in ",;\t|") else ","


def split_name(full: str) -> tuple[str, str]:
    """'José Müller' -> ('José', 'Müller'); 'Müller, José' -> ('José', 'Müller');
    'Anna van der Berg' -> ('Anna', 'van der Berg'); titles dropped, suffixes kept."""
    full = " ".join(full.split())
    if not full:
        return "", ""
    if "," in full:
        last, _, first = full.partition(",")
        if first.strip() and _norm(first) not in _SUFFIXES:
            return first.strip(), last.strip()
        full = last
    words = [w for w in full.split() if _norm(w) not in _TITLES or len(full.split()) == 1]
    suffix = []
    while len(words) > 2 and _norm(words[-1]) in _SUFFIXES:
        suffix.insert(0, words.pop())
    if len(words) == 1:
        return words[0], " ".join(suffix)
    cut = len(words) - 1
    while cut > 1 and words[cut - 1].lower() in _PARTICLES:
        cut -= 1
    return " ".join(words[:cut]), " ".join(words[cut:] + suffix)


def split_tags(values: list[str], separators: re.Pattern[str] = _TAG_SPLIT_RE
               ) -> tuple[str, ...]:
    """Tags, groups or categories -> lower-cased interests, system groups left out."""
    out: dict[str, None] = {}
    for value in values:
        for tag in separators.split(value or ""):
            tag = " ".join(tag.split()).lower()
            if tag and not _SYSTEM_GROUP_RE.match(tag):
                out[tag] = None
    return tuple(out)


def map_columns(header: list[str], overrides: dict[str, str], shown: str
                ) -> list[str | None]:
    """The field each column feeds (None: ignored); --map overrides win."""
    by_norm = {_norm(h): i for i, h in reversed(list(enumerate(header)))}
    fields: list[str | None] = []
    for h in header:
        key = _norm(h)
        target = ALIASES.get(key)
        if target is None and "mail" in key and not any(w in key for w in _NOT_EMAIL) \
                and _EXTRA_EMAIL_RE.match(key):
            target = "email"
        fields.append(target)
    problems = []
    for column, target in overrides.items():
        if target not in TARGETS:
            problems.append(Problem(shown, 1, column, f"--map {column}={target}: unknown field",
                                    f"use one of: {', '.join(TARGETS)}"))
        elif _norm(column) not in by_norm:
            problems.append(Problem(shown, 1, column, f"--map {column}={target}: no such "
                                    "column", f"columns are: {', '.join(header)}"))
        else:
            fields[by_norm[_norm(column)]] = None if target == "ignore" else target
    if problems:
        raise ConfigError(problems)
    if "email" not in fields:
        raise ConfigError([Problem(shown, 1, "email", "no column holds email addresses "
                                   f"(columns: {', '.join(h for h in header if h) or 'none'})",
                                   "name it with --map 'COLUMN=email'")])
    return fields


def read_csv(text: str, shown: str, overrides: dict[str, str]
             ) -> tuple[list[Record], tuple[tuple[str, str], ...]]:
    """Records of a CSV export and the (column, field) mapping used."""
    delim = _delimiter(text)
    # strict: a stray quote is an error with a line number, not 300 rows in one cell.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim, strict=True)
    records: list[Record] = []
    header: list[str] = []
    fields: list[str | None] = []
    row_no = 0
    start = 1
    try:
        for cells in reader:
            row_no += 1
            if not header:
                if not any(c.strip() for c in cells):
                    start = reader.line_num + 1
                    continue
                header = [c.strip() for c in cells]
                fields = map_columns(header, overrides, shown)
                start = reader.line_num + 1
                continue
            if any(c.strip() for c in cells):
                records.append(_record(cells, fields, f"row {row_no}", start))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise ConfigError([Problem(shown, reader.line_num, "", f"CSV syntax error: {exc}",
                                   "close the quote that opens on or before this line, "
                                   "then import again")]) from None
    if not header:
        raise ConfigError([Problem(shown, 1, "", "the file is empty",
                                   "export the contacts again, with a header row")])
    mapping = tuple((h, f) for h, f in zip(header, fields) if f)
    return records, mapping


def _record(cells: list[str], fields: list[str | None], where: str, line: int) -> Record:
    got: dict[str, list[str]] = {}
    for value, target in zip(cells, fields):
        if target and value.strip():
            got.setdefault(target, []).append(value.strip())

    def first(key: str) -> str:
        return (got.get(key) or [""])[0]

    first_name, last_name = first("first_name"), first("last_name")
    if not first_name and not last_name and first("name"):
        first_name, last_name = split_name(first("name"))
    return Record(where=where, line=line, emails=tuple(got.get("email", [])),
                  first_name=first_name, last_name=last_name,
                  neighbourhood=first("neighbourhood"),
                  interests=split_tags(got.get("interests", [])),
                  relationship=first("relationship"), closing_date=first("closing_date"),
                  timezone=first("timezone"), note="\n".join(got.get("note", [])),
                  status=first("status"), street=first("street"), zip=first("zip"))


def read_vcf(text: str) -> list[Record]:
    """Records of a vCard file."""
    records = []
    for card in parse_vcards(text):
        first, last = card.first_name, card.last_name
        if not first and not last:
            first, last = split_name(card.full_name)
        records.append(Record(where=f"card {card.number}", line=card.line, emails=card.emails,
                              first_name=first, last_name=last,
                              # CATEGORIES are split already; a comma left in one
                              # was escaped on purpose.
                              interests=split_tags(list(card.categories), _NO_SPLIT_RE),
                              note=card.note, street=card.street, zip=card.postal_code))
    return records


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
            "neighbourhood": hood, "interests": ";".join(rec.interests),
            "relationship": relationship, "closing_date": closing, "timezone": tz,
            "note": rec.note, "status": status}


def _pick_email(rec: Record, tally: _Merge) -> str | None:
    """The first valid address of a record; alternates are noted, problems skip it."""
    if not rec.emails:
        tally.skipped.append(f"{rec.where} missing email")
        return None
    for i, raw in enumerate(rec.emails):
        try:
            email = normalise_email(raw)
        except EmailNotValidError:
            continue
        bad = [e for e in rec.emails[:i]]
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
    """Write the CSV to a temp file, fsync it, and os.replace it over `path`: a crash
    leaves the old file or the new one, never half of one."""
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
                    shown: str = "") -> ImportReport:
    """Read an export, validate it and merge it into audiences/AUDIENCE.csv."""
    shown = shown or str(source)
    if not source.is_file():
        raise SphereError(f"{shown}: no such file", "give the path of a .csv or .vcf export")
    if (audience_dir / f"{audience}.yaml").exists() or (audience_dir / f"{audience}.yml"
                                                        ).exists():
        raise SphereError(f"audience {audience!r} is a YAML file; import writes CSV",
                          "import into a new audience name, or convert the YAML to CSV")
    text, encoding = decode(source.read_bytes())
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
        if not new["first_name"] and not new["last_name"]:
            tally.notes.append(f"{rec.where} {email!r}: no name (emails greet them "
                               "without one)")
        if key in suppressed:
            new["status"] = "unsubscribed"
        if key in index:
            old = rows[index[key]]
            merged = merge_contact(old, new)
            if (old.get("status") or "").strip().lower() == "unsubscribed" \
                    or key in suppressed:
                tally.notes.append(f"{rec.where} {email!r}: unsubscribed; stays unsubscribed")
            if merged != old:
                rows[index[key]] = merged
                tally.updated += 1
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
