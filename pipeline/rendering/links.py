"""Signed one-click unsubscribe links: HMAC tokens, no guessable ids."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Callable, Sequence
from urllib.parse import quote

from pipeline.addresses import email_key
from pipeline.errors import SphereError
from pipeline.models import Sender

_TAG_BYTES = 16  # 128-bit tag: unforgeable, and short enough for a tidy URL
SECRET_ENV = "SPHERE_SECRET"
PREVIOUS_ENV = "SPHERE_SECRET_PREVIOUS"
PROJECT_KEY = "project"  # in SPHERE_SECRET_PREVIOUS: the key kept in the database
MIN_SECRET_CHARS = 16  # shorter keys can be guessed offline from one link
_MAKE_ONE = "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def link_keys(stored: Callable[[], str]) -> tuple[str, ...]:
    """The keys of unsubscribe links: the first signs new links, every one verifies.

    SPHERE_SECRET signs, else the project's own key (`stored`, kept in the database).
    SPHERE_SECRET_PREVIOUS lists retired keys, comma-separated: links signed with them
    keep working while they are listed, which is how a key is rotated. The word
    `project` in that list stands for the project's own key (for moving to
    SPHERE_SECRET without breaking the links already sent)."""
    current = os.environ.get(SECRET_ENV, "").strip()
    previous = [k.strip() for k in os.environ.get(PREVIOUS_ENV, "").split(",") if k.strip()]
    named = ([(SECRET_ENV, current)] if current else []) + \
        [(PREVIOUS_ENV, k) for k in previous if k != PROJECT_KEY]
    for name, key in named:
        if len(key) < MIN_SECRET_CHARS:
            raise SphereError(f"{name} holds a key of {len(key)} characters; a key needs "
                              f"at least {MIN_SECRET_CHARS}", _MAKE_ONE)
    keys = [current or stored()]
    for key in previous:
        key = stored() if key == PROJECT_KEY else key
        if key not in keys:
            keys.append(key)
    return tuple(keys)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(secret: str, email: str) -> str:
    """`<address>.<tag>`, both url-safe base64; the tag is HMAC-SHA256 of the address."""
    addr = email_key(email).encode()
    tag = hmac.new(secret.encode(), b"unsubscribe|" + addr, hashlib.sha256).digest()
    return f"{_b64(addr)}.{_b64(tag[:_TAG_BYTES])}"


def read_token(keys: Sequence[str], token: str) -> str | None:
    """The address a token was made for with any of `keys` (link_keys), or None when it
    is forged or malformed."""
    try:
        addr_part, tag_part = token.split(".", 1)
        addr = _unb64(addr_part).decode()
        tag = _unb64(tag_part)
    except (ValueError, UnicodeDecodeError):
        return None
    # Every key is tried, the match not short-circuited: the time taken does not say
    # which key (if any) signed the link.
    matched = False
    for key in keys:
        expected = make_token(key, addr).split(".", 1)[1]
        matched |= hmac.compare_digest(_b64(tag), expected)
    return addr if matched else None


def unsubscribe_links(sender: Sender, secret: str, email: str) -> tuple[str, str]:
    """(https one-click URL or '', mailto URL) for one recipient."""
    https = ""
    if sender.unsubscribe_url:
        sep = "&" if "?" in sender.unsubscribe_url else "?"
        https = f"{sender.unsubscribe_url}{sep}t={make_token(secret, email)}"
    mailto = f"mailto:{sender.reply_to or sender.email}?subject={quote('unsubscribe ' + email)}"
    return https, mailto
