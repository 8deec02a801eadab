"""A fast, strict writer for our one message shape: multipart/alternative, text + HTML.

The standard library's EmailMessage spends ~5 ms per message re-parsing and folding
headers; this writer does the same job with the C encoders (quoted-printable for the
text, base64 for the HTML) in ~0.1 ms, and the tests parse its output back with the
standard library to prove it equivalent.
"""
from __future__ import annotations

import binascii
import secrets
from email.utils import formataddr
from functools import lru_cache

import idna

CRLF = b"\r\n"
ADDRESS_HEADERS = frozenset({"From", "To", "Reply-To"})


_WORD_BYTES = 45  # 45 bytes -> 60 base64 chars: an encoded word stays under 75 (RFC 2047)


def encoded_words(text: str) -> str:
    """RFC 2047 'B' encoded words for non-ASCII text, folded with CRLF + space, never
    splitting a character across two words."""
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for ch in text:
        n = len(ch.encode("utf-8"))
        if size + n > _WORD_BYTES:
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(ch)
        size += n
    words.append("".join(chunk))
    return "\r\n ".join(
        "=?utf-8?b?" + binascii.b2a_base64(w.encode("utf-8"), newline=False).decode() + "?="
        for w in words)


def _fold_ascii(value: str, width: int = 76) -> str:
    """Fold a long ASCII header at spaces (a long URL or word is left whole)."""
    lines, line = [], ""
    for word in value.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\r\n ".join(lines)


def _header_value(value: str) -> str:
    """RFC 2047-encode non-ASCII text and fold long values (CRLF + space)."""
    value = " ".join(value.split())  # no line breaks may hide in a header value
    if not value.isascii():
        return encoded_words(value)
    return value if len(value) < 70 else _fold_ascii(value)


class AddressError(ValueError):
    """An address that cannot be written on the wire (a domain IDNA refuses)."""


@lru_cache(maxsize=65536)
def wire_address(email: str) -> str:
    """The address as it travels: an international domain in its IDNA ('xn--') form,
    which every server and provider accepts. A non-ASCII local part stays UTF-8: only
    a server offering SMTPUTF8 (RFC 6531) can carry it (see needs_smtputf8)."""
    local, _, domain = email.strip().rpartition("@")
    if domain.isascii():
        return f"{local}@{domain}"
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise AddressError(f"{email}: the domain cannot be written in IDNA form ({exc})") \
            from None
    return f"{local}@{ascii_domain}"


def needs_smtputf8(email: str) -> bool:
    """True when the part before the @ has non-ASCII characters (RFC 6530 addresses)."""
    return not email.rpartition("@")[0].isascii()


def address_problem(email: str, transport: str) -> str:
    """Why `transport` cannot carry this address, or '' (for `sphere check`)."""
    try:
        wire_address(email)
    except AddressError as exc:
        return str(exc)
    if needs_smtputf8(email) and transport == "sendgrid":
        return (f"{email!r} has non-ASCII characters before the @, which SendGrid does not "
                "deliver (send it over SMTP through a relay that offers SMTPUTF8, or ask "
                "the contact for another address)")
    return ""


def address(name: str, email: str) -> str:
    """'Display Name <addr>' with the name quoted or encoded as needed and the domain in
    IDNA form; a non-ASCII local part is written as UTF-8 (RFC 6532)."""
    email = wire_address(email)
    name = " ".join(name.split())  # a line break in a name must not start a header
    if not name:
        return email
    if name.isascii():
        # formataddr would IDNA-encode a non-ASCII local part into nonsense: quote the
        # name ourselves then.
        quoted = formataddr((name, "x@x")).rsplit(" <", 1)[0]
        return f"{quoted} <{email}>"
    return f"{encoded_words(name)} <{email}>"


def _crlf_utf8(text: str) -> bytes:
    """UTF-8 in canonical form, every line break CRLF (RFC 2045 section 6.1); done on
    bytes, which is twice as fast as on a str holding non-ASCII characters."""
    data = text.encode("utf-8")
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", CRLF)


def quoted_printable(text: str) -> bytes:
    """UTF-8 quoted-printable with CRLF line ends; no encoded line exceeds 76 octets."""
    normal = text.replace("\r\n", "\n").replace("\r", "\n")
    return binascii.b2a_qp(normal.encode("utf-8"), istext=True).replace(b"\n", CRLF)


def base64_lines(data: bytes) -> bytes:
    """Base64 in 76-column CRLF lines (RFC 2045)."""
    enc = binascii.b2a_base64(data, newline=False)
    return CRLF.join([enc[i:i + 76] for i in range(0, len(enc), 76)])


def build_alternative(headers: list[tuple[str, str]], text: str, html: str) -> bytes:
    """The whole message: headers, then a text/plain and a text/html part (HTML last,
    so clients that can show it prefer it)."""
    boundary = f"=_sphere_{secrets.token_hex(12)}"
    # Address headers come ready from address(): their names are encoded already, and
    # an address may only be UTF-8 as it is (RFC 6532), never in encoded words.
    lines = [f"{name}: " + (" ".join(value.split()) if name in ADDRESS_HEADERS
                            else _header_value(value)) for name, value in headers]
    lines += ["MIME-Version: 1.0",
              f'Content-Type: multipart/alternative; boundary="{boundary}"']
    head = "\r\n".join(lines).encode("utf-8") + CRLF + CRLF
    part = (f"--{boundary}\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n").encode("ascii")
    # The HTML goes as base64: MJML output is full of '=' that quoted-printable would
    # escape one by one, and base64 encodes three times faster.
    part_html = (f"\r\n--{boundary}\r\nContent-Type: text/html; charset=\"utf-8\"\r\n"
                 "Content-Transfer-Encoding: base64\r\n\r\n").encode("ascii")
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")
    return b"".join((head, part, quoted_printable(text), part_html,
                     base64_lines(_crlf_utf8(html)), tail))
