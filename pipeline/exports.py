"""Contact exports as the tools write them (Google Contacts, Outlook, Follow Up Boss,
spreadsheets, vCard) read into Records: encodings, delimiters, header spellings."""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from .audience import FIELDS
from .errors import ConfigError, Problem
from .vcard import parse_vcards

# Fields a column can feed: the audience's own, plus the parts we derive them from.
TARGETS: tuple[str, ...] = FIELDS + ("name", "street", "zip", "opt_out", "subscribed",
                                     "ignore")
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
    **dict.fromkeys(("note", "notes", "background", "personalnote"), "note"),
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
_EMAIL_SPLIT_RE = re.compile(r"\s*(?::::|;|,(?![^<]*>))\s*")
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
    note: str = ""
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
    """Records of a CSV export and the (column, field) mapping used."""
    first_line = text.split("\n", 1)[0]
    sep = _SEP_LINE_RE.match(first_line.rstrip("\r"))
    skip = 1 if sep else 0
    delim = sep.group(1) if sep else _delimiter(text)
    body = text.split("\n", 1)[1] if sep and "\n" in text else ("" if sep else text)
    # strict: a stray quote is an error with a line number, not 300 rows in one cell.
    reader = csv.reader(io.StringIO(body, newline=""), delimiter=delim, strict=True)
    raw: list[tuple[int, int, list[str]]] = []  # (spreadsheet row, first line, cells)
    row_no, start = skip, 1 + skip
    try:
        for cells in reader:
            row_no += 1
            if any(c.strip() for c in cells):
                raw.append((row_no, start, cells))
            start = reader.line_num + 1 + skip
    except csv.Error as exc:
        raise ConfigError([Problem(shown, reader.line_num + skip, "", f"CSV syntax error: "
                                   f"{exc}", "close the quote that opens on or before this "
                                   "line, then import again")]) from None
    if not raw:
        raise ConfigError([Problem(shown, 1, "", "the file is empty",
                                   "export the contacts again, with a header row")])
    # The header is the first row naming an email column: LinkedIn and some CRMs put a
    # few lines of notes above it.
    top = next((i for i, (_, _, cells) in enumerate(raw[:HEADER_SEARCH_ROWS])
                if any(ALIASES.get(_norm(c)) == "email" for c in cells)), 0)
    header = [c.strip().lstrip("\ufeff") for c in raw[top][2]]
    fields = map_columns(header, overrides, shown,
                         [cells for _, _, cells in raw[top + 1:top + 51]])
    records = [_record(cells, fields, f"row {n}", line) for n, line, cells in raw[top + 1:]]
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
    opted_out = any(v.lower() not in _FALSE for v in got.get("opt_out", [])) or \
        any(v.lower() in _FALSE | {"unsubscribed"} for v in got.get("subscribed", []))
    status = "unsubscribed" if opted_out else first("status")
    if not first_name and not last_name and first("name"):
        first_name, last_name = split_name(first("name"))
    emails = tuple(e for cell in got.get("email", []) for e in _EMAIL_SPLIT_RE.split(cell)
                   if e)
    return Record(where=where, line=line, emails=emails,
                  first_name=first_name, last_name=last_name,
                  neighbourhood=first("neighbourhood"),
                  interests=split_tags(got.get("interests", [])),
                  relationship=first("relationship"), closing_date=first("closing_date"),
                  timezone=first("timezone"), note="\n".join(got.get("note", [])),
                  status=status, street=first("street"), zip=first("zip"))


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
