"""A fast, strict writer for our one message shape: multipart/alternative, text + HTML.

The standard library's EmailMessage spends ~5 ms per message re-parsing and folding
headers; this writer does the same job with the C encoders (quoted-printable for the
text, base64 for the HTML) in ~0.1 ms, and the tests parse its output back with the
standard library to prove it equivalent.
"""
from __future__ import annotations

import binascii
import secrets
from email.header import Header
from email.utils import formataddr

CRLF = b"\r\n"


def _header_value(value: str) -> str:
    """RFC 2047-encode non-ASCII text and fold to 78 columns (CRLF + space)."""
    if value.isascii() and len(value) < 70 and "\n" not in value:
        return value
    return Header(value, "utf-8" if not value.isascii() else "us-ascii",
                  maxlinelen=76).encode().replace("\n", "\r\n")


def address(name: str, email: str) -> str:
    """'Display Name <addr>' with the name quoted or encoded as needed."""
    return formataddr((name, email), charset="utf-8") if name else email


def _crlf(text: str) -> str:
    """Text in canonical form: every line break CRLF (RFC 2045 section 6.1)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")


def quoted_printable(text: str) -> bytes:
    """UTF-8 quoted-printable with CRLF line ends; no encoded line exceeds 76 octets."""
    normal = text.replace("\r\n", "\n").replace("\r", "\n")
    return binascii.b2a_qp(normal.encode("utf-8"), istext=True).replace(b"\n", CRLF)


def base64_lines(data: bytes) -> bytes:
    """Base64 in 76-column CRLF lines (RFC 2045)."""
    enc = binascii.b2a_base64(data, newline=False)
    return CRLF.join(enc[i:i + 76] for i in range(0, len(enc), 76))


def build_alternative(headers: list[tuple[str, str]], text: str, html: str) -> bytes:
    """The whole message: headers, then a text/plain and a text/html part (HTML last,
    so clients that can show it prefer it)."""
    boundary = f"=_sphere_{secrets.token_hex(12)}"
    lines = [f"{name}: {_header_value(value)}" for name, value in headers]
    lines += ["MIME-Version: 1.0",
              f'Content-Type: multipart/alternative; boundary="{boundary}"']
    head = "\r\n".join(lines).encode("ascii") + CRLF + CRLF
    part = (f"--{boundary}\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n").encode("ascii")
    # The HTML goes as base64: MJML output is full of '=' that quoted-printable would
    # escape one by one, and base64 encodes three times faster.
    part_html = (f"\r\n--{boundary}\r\nContent-Type: text/html; charset=\"utf-8\"\r\n"
                 "Content-Transfer-Encoding: base64\r\n\r\n").encode("ascii")
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")
    return b"".join((head, part, quoted_printable(text), part_html,
                     base64_lines(_crlf(html).encode("utf-8")), tail))
