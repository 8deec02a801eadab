"""vCard (.vcf) 2.1, 3.0 and 4.0 reading: the few properties a contact import needs."""
from __future__ import annotations

import quopri
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# "item1.EMAIL;TYPE=INTERNET,pref:..." -> group, name, params, value (Apple and Google
# prefix properties with a group name).
_PROP_RE = re.compile(r"^(?:[A-Za-z0-9-]+\.)?([A-Za-z0-9-]+)((?:;[^:]*)?):(.*)$", re.S)


@dataclass(frozen=True)
class Card:
    """One vCard, reduced to the fields Sphere imports."""

    number: int  # 1-based position in the file
    line: int  # line of BEGIN:VCARD
    full_name: str = ""
    first_name: str = ""
    last_name: str = ""
    emails: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    street: str = ""
    postal_code: str = ""
    note: str = ""


def _unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            out.append("\n" if nxt in "nN" else nxt)
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _split(value: str, sep: str) -> list[str]:
    """Split on `sep` except where it is backslash-escaped, then unescape each part."""
    parts, cur, i = [], [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            cur.append(value[i:i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return [_unescape(p).strip() for p in parts]


def _params(raw: str) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for item in filter(None, raw.split(";")):
        key, eq, val = item.partition("=")
        if not eq:  # vCard 2.1 bare parameters: ";HOME;PREF;QUOTED-PRINTABLE"
            bare = key.upper()
            key, val = ("ENCODING", bare) if bare in ("QUOTED-PRINTABLE", "BASE64") \
                else ("TYPE", bare)
        params.setdefault(key.upper(), []).extend(
            v.strip('"').lower() for v in val.split(","))
    return params


def _logical_lines(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """Unfold continuation lines (RFC 6350 3.2) and 2.1 quoted-printable soft breaks."""
    pending: tuple[int, str] | None = None
    qp_open = False
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if pending and (qp_open or (line[:1] in (" ", "\t"))):
            prev_no, prev = pending
            if qp_open:
                # A soft line break: the '=' goes, the next line follows as it is.
                pending = (prev_no, prev[:-1] + line if prev.endswith("=") else prev + line)
            else:
                pending = (prev_no, prev + line[1:])
        elif line.strip():
            if pending:
                yield pending
            pending = (number, line)
        else:
            continue
        last = pending[1]
        qp_open = "QUOTED-PRINTABLE" in last.split(":", 1)[0].upper() and last.endswith("=")
    if pending:
        yield pending


def _decode(value: str, params: dict[str, list[str]]) -> str:
    if "quoted-printable" in params.get("ENCODING", []):
        charset = (params.get("CHARSET") or ["utf-8"])[0]
        raw = quopri.decodestring(value.encode("latin-1", "replace"))
        try:
            return raw.decode(charset)
        except (LookupError, UnicodeDecodeError):
            return raw.decode("cp1252", "replace")
    return value


def parse_vcards(text: str) -> list[Card]:
    """Every card in a .vcf file, in order; unknown properties are ignored."""
    return list(iter_vcards(text.splitlines()))


def iter_vcards(lines: Iterable[str]) -> Iterator[Card]:
    """The cards of a .vcf file's lines, each as soon as its END:VCARD is read."""
    count = 0
    fields: dict | None = None
    for line_no, line in _logical_lines(lines):
        m = _PROP_RE.match(line)
        if not m:
            continue
        name, params, value = m.group(1).upper(), _params(m.group(2)), m.group(3)
        if name == "BEGIN" and value.strip().upper() == "VCARD":
            fields = {"line": line_no, "emails": [], "categories": []}
            continue
        if fields is None:
            continue
        if name == "END":
            count += 1
            yield _card(count, fields)
            fields = None
            continue
        value = _decode(value, params)
        if name == "FN":
            fields["full_name"] = _unescape(value).strip()
        elif name == "N":
            parts = _split(value, ";") + [""] * 5
            fields["last_name"], fields["first_name"] = parts[0], parts[1]
        elif name == "EMAIL":
            email = _unescape(value).strip()
            if email.lower().startswith("mailto:"):
                email = email[7:]
            if email:
                preferred = "pref" in params.get("TYPE", []) or "PREF" in params
                fields["emails"].append((0 if preferred else 1, email))
        elif name == "CATEGORIES":
            fields["categories"].extend(c for c in _split(value, ",") if c)
        elif name == "ADR" and "street" not in fields:
            parts = _split(value, ";") + [""] * 7
            fields["street"], fields["postal_code"] = parts[2], parts[5]
        elif name == "NOTE":
            fields["note"] = _unescape(value).strip()


def _card(number: int, fields: dict) -> Card:
    # A PREF email first, otherwise file order (sorted() is stable).
    emails = tuple(e for _, e in sorted(fields["emails"], key=lambda pair: pair[0]))
    return Card(number=number, line=fields["line"], full_name=fields.get("full_name", ""),
                first_name=fields.get("first_name", ""), last_name=fields.get("last_name", ""),
                emails=emails, categories=tuple(fields["categories"]),
                street=fields.get("street", ""), postal_code=fields.get("postal_code", ""),
                note=fields.get("note", ""))
