"""Signed one-click unsubscribe links: HMAC tokens, no guessable ids."""
from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote

from .models import Sender

_TAG_BYTES = 16  # 128-bit tag: unforgeable, and short enough for a tidy URL


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(secret: str, email: str) -> str:
    """`<address>.<tag>`, both url-safe base64; the tag is HMAC-SHA256 of the address."""
    addr = email.strip().lower().encode()
    tag = hmac.new(secret.encode(), b"unsubscribe|" + addr, hashlib.sha256).digest()
    return f"{_b64(addr)}.{_b64(tag[:_TAG_BYTES])}"


def read_token(secret: str, token: str) -> str | None:
    """The address a token was made for, or None when it is forged or malformed."""
    try:
        addr_part, tag_part = token.split(".", 1)
        addr = _unb64(addr_part).decode()
        tag = _unb64(tag_part)
    except (ValueError, UnicodeDecodeError):
        return None
    expected = make_token(secret, addr).split(".", 1)[1]
    return addr if hmac.compare_digest(_b64(tag), expected) else None


def unsubscribe_links(sender: Sender, secret: str, email: str) -> tuple[str, str]:
    """(https one-click URL or '', mailto URL) for one recipient."""
    https = ""
    if sender.unsubscribe_url:
        sep = "&" if "?" in sender.unsubscribe_url else "?"
        https = f"{sender.unsubscribe_url}{sep}t={make_token(secret, email)}"
    mailto = f"mailto:{sender.reply_to or sender.email}?subject={quote('unsubscribe ' + email)}"
    return https, mailto
