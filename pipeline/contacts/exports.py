"""Contact exports as the tools write them (Google Contacts, Outlook, Follow Up Boss,
spreadsheets, vCard) read into Records: encodings, delimiters, header spellings."""
from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pipeline import names
from pipeline.contacts.audience import one_line
from pipeline.contacts.vcard import iter_vcards
from pipeline.errors import ConfigError, Problem

# Fields a column can feed: the audience's own, plus the parts we derive them from.
TARGETS: tuple[str, ...] = names.IMPORT_TARGETS
# Header aliases after _norm() (lower-case, letters and digits only). Order matters for
# email: the first column is the primary address, later ones are alternates.
ALIASES: dict[str, str] = {
    **dict.fromkeys(("email", "emailaddress", "email1", "email1value", "email1address",
                     "primaryemail", "emailaddress1", "mail", "personalemail", "emails",
                     "emailaddresses"), "email"),
    **dict.fromkeys(("firstname", "givenname", "first", "fname", "forename"), "first_name"),
    **dict.fromkeys(("lastname", "familyname", "surname", "last", "lname"), "last_name"),
    **dict.fromkeys(("name", "fullname", "displayname", "contactname", "contact"), "name"),
    **dict.fromkeys(("neighbourhood", "neighborhood", "neighbourhoods", "neighborhoods",
                     "area", "subdivision", "community"), "neighbourhood"),
    **dict.fromkeys(("interests", "interest", "tags", "tag", "categories", "category",
                     "groupmembership", "groups", "labels", "hobbies"), "interests"),
    **dict.fromkeys(("relationship", "stage", "type", "contacttype", "lifecyclestage",
                     "leadstatus"), "relationship"),
    **dict.fromkeys(("closingdate", "closedate", "closed", "purchasedate"), "closing_date"),
    **dict.fromkeys(("timezone", "tz", "timezoneiana"), "timezone"),
    # A CRM's notes are the professional's private notes ("Met at open house"): only a
    # column headed exactly `note` (Sphere's own) or mapped with --map is ever emailed.
    **dict.fromkeys(("note", "notes", "background", "personalnote", "privatenote",
                     "privatenotes"), "private_note"),
    **dict.fromkeys(("status", "subscription", "emailstatus"), "status"),
    # Yes/true (or any date, for Mailchimp's UNSUB_TIME) means the person opted out ...
    **dict.fromkeys(("emailoptout", "optout", "optedout", "donotemail", "unsubscribed",
                     "hasoptedoutofemail", "unsubtime", "unsubscribedate", "cleantime"),
                    "opt_out"),
    # ... and no/false here means the same.
    **dict.fromkeys(("subscribed", "emailsubscribed", "subscribedtoemail", "emailconsent",
                     "acceptsemailmarketing"), "subscribed"),
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
_SYSTEM_GROUP_RE = re.compile(r"^(\*.*|mycontacts|starred|imported on .*)$", re.I)
_TAG_SPLIT_RE = re.compile(r"\s*(?::::|;|,|\n)\s*")
_NO_SPLIT_RE = re.compile(r"(?!)")  # matches nothing
# Header patterns tried (on _norm()ed names) for a field no alias found, in this order.
_FALLBACKS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("email", re.compile(r"email|^mails?\d*$|^mailaddress")),
    ("street", re.compile(r"street|addressline1|address1$")),
    ("zip", re.compile(r"zip|postalcode|postcode")),
    ("interests", re.compile(r"(tags|categories|groups|labels|interests)$")),
    ("first_name", re.compile(r"firstname|givenname")),
    ("last_name", re.compile(r"lastname|familyname|surname")),
    ("neighbourhood", re.compile(r"neighbou?rhood")),
)
_LOOKS_LIKE_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$|<[^@\s<>]+@[^@\s<>]+>")
# One cell with several addresses: Google writes "a@x.com ::: b@x.com".
_EMAIL_SPLIT_RE = re.compile(r"\s*(?::::|;|,)\s*")
# "Name <address>": a display name (quoted strings and anything but quotes and angle
# brackets), one bracketed address, nothing after it.
_ANGLE_RE = re.compile(r'\s*(?:"(?:[^"\\]|\\.)*"|[^"<>])*<([^<>]*)>\s*', re.DOTALL)
# Excel's "sep=;" first line names the delimiter.
_SEP_LINE_RE = re.compile(r"^\ufeff?sep=(.)\s*$", re.I)
_PARTICLES = frozenset({"van", "von", "der", "den", "de", "del", "della", "da", "di", "du",
                        "la", "le", "st.", "ter", "bin", "al"})
_TITLES = frozenset({"mr", "mrs", "ms", "miss", "dr", "prof", "rev", "mx"})
_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv", "phd", "md", "esq"})
SAMPLE_BYTES = 64 * 1024  # enough rows for csv.Sniffer to see the delimiter
HEADER_SEARCH_ROWS = 10  # rows of preamble tolerated above the header
_FALSE = frozenset({"false", "no", "n", "f", "0", "off"})


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
    note: str = ""  # emailed: only from a `note` column or --map COLUMN=note
    private_note: str = ""  # a CRM's notes: kept, never emailed
    status: str = ""
    street: str = ""
    zip: str = ""


def _norm(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


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


# Bytes Windows-1252 leaves undefined: a file holding one is read as Latin-1 instead.
_CP1252_UNDEFINED = re.compile(rb"[\x81\x8d\x8f\x90\x9d]")
CHUNK = 1 << 20
MAX_LINE = 1 << 20  # characters; a longer line is not a contact export


def detect_encoding(path: Path) -> tuple[str, str]:
    """(codec, name) of a file as `decode` would read it, found reading 1 MB at a time."""
    with path.open("rb") as handle:
        start = handle.read(2)
        if start in (b"\xff\xfe", b"\xfe\xff"):
            return "utf-16", "UTF-16"
        handle.seek(0)
        utf8 = codecs.getincrementaldecoder("utf-8")()
        is_utf8, is_cp1252 = True, True
        while chunk := handle.read(CHUNK):
            if is_utf8:
                try:
                    utf8.decode(chunk)
                except UnicodeDecodeError:
                    is_utf8 = False
            is_cp1252 = is_cp1252 and not _CP1252_UNDEFINED.search(chunk)
        if is_utf8:
            try:
                utf8.decode(b"", final=True)  # a file cut inside a character
            except UnicodeDecodeError:
                is_utf8 = False
    if is_utf8:
        return "utf-8-sig", "UTF-8"
    return ("cp1252", "Windows-1252") if is_cp1252 else ("latin-1", "Latin-1")


def text_lines(handle: IO[str], shown: str) -> Iterator[str]:
    """The lines of a text file opened with newline="", each at most MAX_LINE long."""
    number = 0
    while line := handle.readline(MAX_LINE):
        number += 1
        if len(line) == MAX_LINE and not line.endswith(("\n", "\r")):
            raise ConfigError([Problem(shown, number, "", f"a line longer than "
                                       f"{MAX_LINE:,} characters: not a contact export",
                                       "export the contacts again as CSV")])
        yield line


def _delimiter(text: str) -> str:
    sample = text[:SAMPLE_BYTES]
    lines = sample.split("\n", HEADER_SEARCH_ROWS + 1)[:HEADER_SEARCH_ROWS]
    # The header line: the first that mentions mail (notes may sit above it).
    first = next((ln for ln in lines if "mail" in ln.lower()), lines[0])
    try:
        found = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
        if first.count(found):
            return found
    except csv.Error:
        pass
    # The header line rarely quotes anything: count there.
    return max(",;\t|", key=first.count) if any(d in first for d in ",;\t|") else ","


def split_name(full: str) -> tuple[str, str]:
    """A full name -> (first, last): 'Müller, José' and 'José Müller' alike."""
    # 'Anna van der Berg' -> ('Anna', 'van der Berg'); titles dropped, suffixes kept.
    full = " ".join(full.split())
    if not full:
        return "", ""
    if "," in full:
        last, _, first = full.partition(",")
        if first.strip() and _norm(first) not in _SUFFIXES:
            return first.strip(), last.strip()
        full = last
    words = [w for w in full.split() if _norm(w) not in _TITLES or len(full.split()) == 1]
    suffix: list[str] = []
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
            # Mailchimp quotes each tag inside the cell: "Golf","Wine".
            tag = " ".join(tag.strip("\"' ").split()).lower()
            if tag and not _SYSTEM_GROUP_RE.match(tag):
                out[tag] = None
    return tuple(out)


def _fallbacks(header: list[str], fields: list[str | None],
               sample: list[list[str]]) -> None:
    """Fill fields no alias found from header patterns, then an email column from its
    contents: an export we have never seen still imports without --map."""
    for target, pattern in _FALLBACKS:
        if target in fields:
            continue
        for i, h in enumerate(header):
            key = _norm(h)
            if fields[i] is None and pattern.search(key) and \
                    not any(w in key for w in _NOT_EMAIL):
                fields[i] = target
    if "email" in fields:
        return
    for i in range(len(header)):
        values = [row[i].strip() for row in sample if i < len(row) and row[i].strip()]
        if fields[i] is None and values and \
                sum(_LOOKS_LIKE_EMAIL.search(v) is not None for v in values) * 2 > len(values):
            fields[i] = "email"
            return


def map_columns(header: list[str], overrides: dict[str, str], shown: str,
                sample: list[list[str]] | None = None) -> list[str | None]:
    """The field each column feeds (None: ignored); --map overrides win."""
    by_norm = {_norm(h): i for i, h in reversed(list(enumerate(header)))}
    fields: list[str | None] = []
    for h in header:
        key = _norm(h)
        target = ALIASES.get(key)
        if target == "private_note" and h.strip() == "note":
            target = "note"  # Sphere's own audience column
        if target is None and "mail" in key and not any(w in key for w in _NOT_EMAIL) \
                and _EXTRA_EMAIL_RE.match(key):
            target = "email"
        fields.append(target)
    _fallbacks(header, fields, sample or [])
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
    """Records of a CSV export held in memory and the (column, field) mapping used."""
    records, mapping = read_csv_lines(io.StringIO(text, newline=""), shown, overrides)
    return list(records), mapping


def read_csv_lines(lines: Iterable[str], shown: str, overrides: dict[str, str]
                   ) -> tuple[Iterator[Record], tuple[tuple[str, str], ...]]:
    """Records of a CSV export, read as they are pulled, and the mapping used.

    `lines` are the file's lines with their line ends (a text file opened with
    newline=""). Only a sample is read ahead: the first SAMPLE_BYTES (for the delimiter)
    and the rows up to 50 past the header (for columns known by their contents); the
    rest is read one row at a time, so a file of any size takes the same memory."""
    lines = iter(lines)
    ahead: list[str] = []
    size = 0
    for line in lines:
        ahead.append(line)
        size += len(line)
        if size >= SAMPLE_BYTES:
            break
    sep = _SEP_LINE_RE.match(ahead[0].rstrip("\r\n")) if ahead else None
    skip = 1 if sep else 0
    delim = sep.group(1) if sep else _delimiter("".join(ahead))
    # strict: a stray quote is an error with a line number, not 300 rows in one cell.
    reader = csv.reader(itertools.chain(ahead[skip:], lines), delimiter=delim, strict=True)
    rows = _rows(reader, shown, skip)
    head = list(itertools.islice(rows, HEADER_SEARCH_ROWS))
    if not head:
        raise ConfigError([Problem(shown, 1, "", "the file is empty",
                                   "export the contacts again, with a header row")])
    # The header is the first row naming an email column: LinkedIn and some CRMs put a
    # few lines of notes above it.
    top = next((i for i, (_, _, cells) in enumerate(head)
                if any(ALIASES.get(_norm(c)) == "email" for c in cells)), 0)
    header = [c.strip().lstrip("\ufeff") for c in head[top][2]]
    after = head[top + 1:]
    after += itertools.islice(rows, max(0, 50 - len(after)))
    fields = map_columns(header, overrides, shown, [cells for _, _, cells in after[:50]])
    records = (_record(cells, fields, f"row {n}", line)
               for n, line, cells in itertools.chain(after, rows))
    mapping = tuple((h, f) for h, f in zip(header, fields, strict=True) if f)
    return records, mapping


def _rows(reader: Any, shown: str, skip: int) -> Iterator[tuple[int, int, list[str]]]:
    """(spreadsheet row, first line, cells) of each non-empty row."""
    row_no, start = skip, 1 + skip
    try:
        for cells in reader:
            row_no += 1
            if any(c.strip() for c in cells):
                yield row_no, start, cells
            start = reader.line_num + 1 + skip
    except csv.Error as exc:
        raise ConfigError([Problem(shown, reader.line_num + skip, "", f"CSV syntax error: "
                                   f"{exc}", "close the quote that opens on or before this "
                                   "line, then import again")]) from None


def _record(cells: list[str], fields: list[str | None], where: str, line: int) -> Record:
    got: dict[str, list[str]] = {}
    for value, target in zip(cells, fields, strict=False):  # rows may be ragged
        if target and value.strip():
            got.setdefault(target, []).append(value.strip())

    def first(key: str) -> str:
        return (got.get(key) or [""])[0]

    first_name, last_name = first("first_name"), first("last_name")
    opted_out = any(v.lower() not in _FALSE for v in got.get("opt_out", [])) or \
        any(v.lower() in _FALSE | {"unsubscribed"} for v in got.get("subscribed", []))
    status = "unsubscribed" if opted_out else first("status")
    if not first_name and not last_name and first("name"):
        first_name, last_name = split_name(first("name"))
    emails = tuple(e for cell in got.get("email", []) for e in split_addresses(cell))
    # Names on one line: they go into the To: header of every email.
    return Record(where=where, line=line, emails=emails,
                  first_name=one_line(first_name), last_name=one_line(last_name),
                  neighbourhood=one_line(first("neighbourhood")),
                  interests=split_tags(got.get("interests", [])),
                  relationship=first("relationship"), closing_date=first("closing_date"),
                  timezone=first("timezone"), note="\n".join(got.get("note", [])),
                  private_note="\n".join(got.get("private_note", [])), status=status,
                  street=first("street"), zip=first("zip"))


def split_addresses(cell: str) -> list[str]:
    """The addresses of one cell: Google writes "a@x.com ::: b@x.com", others use ';' or
    ','; a separator inside a quoted name or angle brackets is part of the address."""
    if '"' not in cell and "<" not in cell:  # the usual cell: no name to read around
        return [p for p in _EMAIL_SPLIT_RE.split(cell.strip()) if p]
    parts, start, quoted, angle, i = [], 0, False, False, 0
    while i < len(cell):
        ch = cell[i]
        if ch == "\\" and quoted:
            i += 2
            continue
        if ch == '"' and not angle:
            quoted = not quoted
        elif ch in "<>" and not quoted:
            angle = ch == "<"
        elif not quoted and not angle and (ch in ";," or cell.startswith(":::", i)):
            parts.append(cell[start:i])
            i += 3 if ch == ":" else 1
            start = i
            continue
        i += 1
    parts.append(cell[start:])
    return [p.strip() for p in parts if p.strip()]


def angle_address(value: str) -> str | None:
    """The address of 'Name <address>', or None when the value is not that shape
    (two bracketed parts, text after the '>', an unclosed quote)."""
    m = _ANGLE_RE.fullmatch(value)
    return m.group(1).strip() if m else None


def read_vcf(text: str) -> list[Record]:
    """Records of a vCard file held in memory."""
    return list(read_vcf_lines(text.splitlines()))


def read_vcf_lines(lines: Iterable[str]) -> Iterator[Record]:
    """Records of a vCard file's lines, read as they are pulled."""
    for card in iter_vcards(lines):
        first, last = card.first_name, card.last_name
        if not first and not last:
            first, last = split_name(card.full_name)
        yield Record(where=f"card {card.number}", line=card.line, emails=card.emails,
                     first_name=one_line(first), last_name=one_line(last),
                     # CATEGORIES are split already; a comma left in one was escaped
                     # on purpose.
                     interests=split_tags(list(card.categories), _NO_SPLIT_RE),
                     private_note=card.note, street=card.street, zip=card.postal_code)
