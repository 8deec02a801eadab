"""`sphere webhook serve`: one small HTTP service for what comes back from recipients.

- POST /sendgrid/events: SendGrid's signed Event Webhook. Each request is verified (ECDSA
  P-256 / SHA-256 over timestamp + body, key from SENDGRID_WEBHOOK_PUBLIC_KEY), events are
  stored once each (sg_event_id), and unsubscribes, bounces and spam reports suppress.
- GET/POST <unsubscribe path>?t=TOKEN: the one-click unsubscribe of our own links (SMTP
  and outbox sends). A GET only shows a confirm button, because mail scanners fetch every
  link; a POST (RFC 8058 `List-Unsubscribe=One-Click`, or the button) unsubscribes.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import html
import json
import os
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from .errors import SphereError
from .links import read_token
from .sendgrid_transport import EMAIL_ARG, SEND_ID_ARG
from .store import Store, StoredEvent

PUBLIC_KEY_ENV = "SENDGRID_WEBHOOK_PUBLIC_KEY"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
EVENTS_PATH = "/sendgrid/events"
UNSUBSCRIBE_PATH = "/unsubscribe"
# A signed request older (or newer) than this is refused: a captured request cannot be
# replayed later. SendGrid posts within seconds; ten minutes absorbs clock skew.
MAX_SKEW_SECONDS = 600
MAX_BODY = 8 * 1024 * 1024  # SendGrid batches events; a real batch is well under this
REQUEST_TIMEOUT = 15  # seconds a client may take to send its request
ONE_CLICK = "List-Unsubscribe=One-Click"
# Event -> suppression reason. A "blocked" bounce is the receiving server's temporary
# refusal (reputation, content), not a dead address, so it does not suppress.
SUPPRESSING = {"unsubscribe": "unsubscribed", "group_unsubscribe": "unsubscribed",
               "spamreport": "complained", "bounce": "bounced"}


class BadSignature(Exception):
    """The request is not provably from SendGrid."""


def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """The verification key SendGrid shows (base64 DER), or a SphereError."""
    hint = ("copy the Verification Key from SendGrid's Mail Settings > Event Webhook > "
            f"Signature Verification into {PUBLIC_KEY_ENV}")
    try:
        key = load_der_public_key(base64.b64decode(text.strip(), validate=True))
    except (ValueError, binascii.Error) as exc:
        raise SphereError(f"{PUBLIC_KEY_ENV} is not a base64 DER public key", hint) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or \
            not isinstance(key.curve, ec.SECP256R1):
        raise SphereError(f"{PUBLIC_KEY_ENV} is not an ECDSA P-256 key", hint)
    return key


def public_key_from_env() -> ec.EllipticCurvePublicKey | None:
    """The webhook verification key from the environment, None when unset."""
    text = os.environ.get(PUBLIC_KEY_ENV, "").strip()
    return load_public_key(text) if text else None


def verify(key: ec.EllipticCurvePublicKey, signature: str, timestamp: str, body: bytes,
           now: dt.datetime, max_skew: int = MAX_SKEW_SECONDS) -> None:
    """Raise BadSignature unless `signature` signs timestamp + body and is fresh."""
    if not signature or not timestamp:
        raise BadSignature("missing signature headers")
    try:
        stamp = int(timestamp)
        raw = base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error):
        raise BadSignature("malformed signature headers") from None
    if abs(now.timestamp() - stamp) > max_skew:
        raise BadSignature("stale timestamp")
    try:
        key.verify(raw, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise BadSignature("signature does not match") from None


def parse_events(body: bytes) -> tuple[list[StoredEvent], list[tuple[str, str, str]]]:
    """SendGrid's JSON array -> (events to store, (email, reason, source) to suppress)."""
    doc = json.loads(body)
    if not isinstance(doc, list):
        raise ValueError("expected a JSON array of events")
    events, suppress = [], []
    for item in doc:
        if not isinstance(item, dict) or not isinstance(item.get("email"), str) or \
                not isinstance(item.get("event"), str):
            continue
        kind, email = item["event"], item["email"].strip().lower()
        # sg_event_id is SendGrid's dedupe key; an event without one (old accounts)
        # gets a stable digest so a redelivery still deduplicates.
        event_id = str(item.get("sg_event_id") or hashlib.sha256(
            json.dumps(item, sort_keys=True).encode()).hexdigest())
        try:
            stamp = int(item.get("timestamp") or 0)
        except (TypeError, ValueError):
            stamp = 0
        events.append(StoredEvent(
            sg_event_id=event_id, event=kind, email=email, timestamp=stamp,
            sg_message_id=str(item.get("sg_message_id") or ""),
            send_id=str(item.get(SEND_ID_ARG) or ""),
            url=str(item.get("url") or "") if kind == "click" else "",
            reason=str(item.get("reason") or item.get("response") or "")[:500]))
        reason = SUPPRESSING.get(kind)
        if kind == "bounce" and item.get("type") == "blocked":
            reason = None
        if reason:
            suppress.append((str(item.get(EMAIL_ARG) or email), reason, f"webhook:{kind}"))
    return events, suppress


def _mask(email: str) -> str:
    """'d***@example.com': enough for the owner to recognise, little for anyone else."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def _page(title: str, body: str) -> bytes:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<meta name=robots content=noindex><title>{html.escape(title)}</title></head>"
            f"<body style='font-family:sans-serif;max-width:34em;margin:3em auto;"
            f"padding:0 1em'><h1>{html.escape(title)}</h1>{body}</body></html>").encode()


class HookServer(HTTPServer):
    """One thread serves every request, so the SQLite connection stays in that thread
    (webhook traffic is a few requests a minute; a slow client is cut off by a timeout)."""

    def __init__(self, address: tuple[str, int], open_store: Callable[[], Store],
                 public_key: ec.EllipticCurvePublicKey | None,
                 unsubscribe_paths: tuple[str, ...] = (UNSUBSCRIBE_PATH,),
                 clock: Callable[[], dt.datetime] | None = None,
                 sender_name: str = "") -> None:
        super().__init__(address, _Handler)
        self.open_store = open_store
        self.public_key = public_key
        self.unsubscribe_paths = unsubscribe_paths
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.sender_name = sender_name
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        """The project's store, opened in the serving thread on first use."""
        if self._store is None:
            self._store = self.open_store()
        return self._store

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until shutdown(); the database closes in the thread that opened it."""
        try:
            super().serve_forever(poll_interval)
        finally:
            if self._store is not None:
                self._store.close()
                self._store = None


class _Handler(BaseHTTPRequestHandler):
    server: HookServer
    timeout = REQUEST_TIMEOUT
    server_version = "sphere-webhook"
    sys_version = ""

    def log_message(self, fmt: str, *args: Any) -> None:
        """No access log: query strings hold unsubscribe tokens."""

    def _send(self, status: int, body: bytes, content_type: str = "text/html; charset=utf-8"
              ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        self.wfile.write(body)

    def _text(self, status: int, text: str) -> None:
        self._send(status, text.encode() + b"\n", "text/plain; charset=utf-8")

    def _body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self._text(413 if length > MAX_BODY else 400, "bad Content-Length")
            return None
        return self.rfile.read(length)

    def _token(self) -> str | None:
        """The address a valid token names; otherwise answers 400/403 and returns None.
        Neither answer says anything about any address."""
        values = parse_qs(urlsplit(self.path).query).get("t", [])
        token = values[-1] if values else ""
        parts = token.split(".")
        if len(parts) != 2 or not all(parts):
            self._send(400, _page("Link not recognised", "<p>This unsubscribe link is "
                                  "incomplete. Please use the link from the email.</p>"))
            return None
        email = read_token(self.server.store.secrets(), token)
        if email is None:
            self._send(403, _page("Link not valid", "<p>This unsubscribe link is not "
                                  "valid. Please use the link from the email.</p>"))
        return email

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        """/health, or the unsubscribe confirm page (which changes nothing)."""
        path = urlsplit(self.path).path
        if path == "/health":
            self._text(200, "ok")
        elif path in self.server.unsubscribe_paths:
            email = self._token()
            if email is None:
                return
            # A form, not a link: prefetchers follow links but do not submit forms.
            who = html.escape(self.server.sender_name or "these emails")
            self._send(200, _page("Unsubscribe?", (
                f"<p>Stop emails from {who} to <strong>{html.escape(_mask(email))}"
                "</strong>?</p><form method=post><input type=hidden name=confirm "
                "value=yes><button type=submit style='font-size:1.1em;padding:.5em 1.2em'>"
                "Unsubscribe</button></form>")))
        else:
            self._text(404, "not found")

    def do_POST(self) -> None:  # noqa: N802
        """SendGrid's events, or an unsubscribe (one-click or the confirm button)."""
        path = urlsplit(self.path).path
        body = self._body()
        if body is None:
            return
        if path == EVENTS_PATH:
            self._events(body)
        elif path in self.server.unsubscribe_paths:
            form = parse_qs(body.decode("utf-8", "replace"))
            one_click = body.decode("utf-8", "replace").strip() == ONE_CLICK
            if not one_click and form.get("confirm") != ["yes"]:
                self._text(400, f"expected {ONE_CLICK} or the confirm form")
                return
            email = self._token()
            if email is None:
                return
            self.server.store.suppress(email, "unsubscribed",
                                       "one-click" if one_click else "confirm page",
                                       self.server.clock())
            self._send(200, _page("You are unsubscribed", "<p>You will not receive these "
                                  "emails any more. Sorry to see you go.</p>"))
        else:
            self._text(404, "not found")

    def _events(self, body: bytes) -> None:
        key = self.server.public_key
        if key is None:
            self._text(403, f"event webhook disabled: {PUBLIC_KEY_ENV} is not set")
            return
        try:
            verify(key, self.headers.get(SIGNATURE_HEADER, ""),
                   self.headers.get(TIMESTAMP_HEADER, ""), body, self.server.clock())
        except BadSignature as exc:
            self._text(403, f"forbidden: {exc}")
            return
        try:
            events, suppress = parse_events(body)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            self._text(400, f"bad payload: {exc}")
            return
        added = self.server.store.record_events(events, suppress, self.server.clock())
        self._text(200, f"ok: {added} new event(s)")


def unsubscribe_paths(unsubscribe_url: str) -> tuple[str, ...]:
    """The paths this service answers unsubscribes on: the path of sender.unsubscribe_url
    (what the links carry) and the default /unsubscribe."""
    own = urlsplit(unsubscribe_url).path.rstrip("/") if unsubscribe_url else ""
    return tuple(dict.fromkeys(p for p in (own, UNSUBSCRIBE_PATH) if p))
