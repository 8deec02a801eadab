"""`sphere webhook serve`: one small HTTP service for what comes back from recipients.

- POST /sendgrid/events: SendGrid's signed Event Webhook. Each request is verified (ECDSA
  P-256 / SHA-256 over timestamp + body, key from SENDGRID_WEBHOOK_PUBLIC_KEY), events are
  stored once each (sg_event_id), and unsubscribes, bounces and spam reports suppress.
- GET/POST <unsubscribe path>?t=TOKEN: the one-click unsubscribe of our own links (SMTP
  and outbox sends). A GET only shows a confirm button, because mail scanners fetch every
  link; a POST (RFC 8058 `List-Unsubscribe=One-Click`, or the button) unsubscribes.
- GET /health: "ok", for monitors.

These are Starlette routes of the app in pipeline/web (served by uvicorn, concurrently,
with a whole-request deadline), so a slow or hostile client delays no one else.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import html
import json
import os
import re
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from pipeline.addresses import email_key
from pipeline.delivery.sendgrid_api import EMAIL_ARG, SEND_ID_ARG
from pipeline.errors import SphereError
from pipeline.rendering.links import read_token
from pipeline.state.interface import Ledger
from pipeline.state.records import StoredEvent
from pipeline.web.app import PRIVATE_HEADERS, WebContext, create_app, read_body, text_response

PUBLIC_KEY_ENV = "SENDGRID_WEBHOOK_PUBLIC_KEY"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
EVENTS_PATH = "/sendgrid/events"
UNSUBSCRIBE_PATH = "/unsubscribe"
# A signed request older (or newer) than this is refused: a captured request cannot be
# replayed later. SendGrid posts within seconds; ten minutes absorbs clock skew.
MAX_SKEW_SECONDS = 600
ONE_CLICK = "List-Unsubscribe=One-Click"
FORM_BODY = 4096  # an unsubscribe POST is ONE_CLICK or `confirm=yes`: a few bytes
# SendGrid's events nest three levels (the batch, an event, its custom args); anything
# much deeper is not SendGrid's.
MAX_DEPTH = 32
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"')  # a JSON string, escapes included
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
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


def check_depth(body: bytes, limit: int = MAX_DEPTH) -> None:
    """ValueError when the JSON's arrays and objects nest deeper than `limit`.

    json.loads recurses once per level: a body nested 200,000 deep (validly signed, or
    read from a file) would end in RecursionError. Counting brackets outside strings
    first costs one regex pass."""
    depth = 0
    for byte in _STRING.sub(b"", body).translate(None, _NOT_BRACKETS):
        depth += 1 if byte in b"[{" else -1
        if depth > limit:
            raise ValueError(f"JSON nested deeper than {limit} levels")


def parse_events(body: bytes) -> tuple[list[StoredEvent], list[tuple[str, str, str]]]:
    """SendGrid's JSON array -> (events to store, (email, reason, source) to suppress)."""
    check_depth(body)
    doc = json.loads(body)
    if not isinstance(doc, list):
        # Bad input, not a programming error: callers answer ValueError with a 400.
        raise ValueError("expected a JSON array of events")  # noqa: TRY004
    events, suppress = [], []
    for item in doc:
        if not isinstance(item, dict) or not isinstance(item.get("email"), str) or \
                not isinstance(item.get("event"), str):
            continue
        kind, email = item["event"], email_key(item["email"])
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


def _html(status: int, title: str, body: str) -> Response:
    return HTMLResponse(_page(title, body), status, headers=PRIVATE_HEADERS)


async def health(request: Request) -> Response:
    """GET /health: the service is up (for monitors and proxies)."""
    return text_response(200, "ok")


async def _token(request: Request) -> str | Response:
    """The address a valid token names, or the 400/403 page to answer. Neither page says
    anything about any address."""
    token = request.query_params.getlist("t")[-1:] or [""]
    parts = token[0].split(".")
    if len(parts) != 2 or not all(parts):
        return _html(400, "Link not recognised", "<p>This unsubscribe link is incomplete. "
                     "Please use the link from the email.</p>")
    context: WebContext = request.app.state.context
    email = await context.store.run(lambda store: read_token(store.secrets(), token[0]))
    if email is None:
        return _html(403, "Link not valid", "<p>This unsubscribe link is not valid. "
                     "Please use the link from the email.</p>")
    return email


def _unsubscribe(sender_name: str) -> Callable[[Request], Awaitable[Response]]:
    async def unsubscribe(request: Request) -> Response:
        """GET: the confirm page (which changes nothing); POST: unsubscribe (RFC 8058
        one-click, or the page's button)."""
        body = await read_body(request, FORM_BODY) if request.method == "POST" else b""
        text = body.decode("utf-8", "replace")
        one_click = text.strip() == ONE_CLICK
        if request.method == "POST" and not one_click and \
                parse_qs(text).get("confirm") != ["yes"]:
            return text_response(400, f"expected {ONE_CLICK} or the confirm form")
        email = await _token(request)
        if isinstance(email, Response):
            return email
        if request.method == "GET":
            # A form, not a link: prefetchers follow links but do not submit forms.
            who = html.escape(sender_name or "these emails")
            return _html(200, "Unsubscribe?", (
                f"<p>Stop emails from {who} to <strong>{html.escape(_mask(email))}"
                "</strong>?</p><form method=post><input type=hidden name=confirm "
                "value=yes><button type=submit style='font-size:1.1em;padding:.5em 1.2em'>"
                "Unsubscribe</button></form>"))
        context: WebContext = request.app.state.context
        how = "one-click" if one_click else "confirm page"
        await context.store.run(lambda store: store.suppress(email, "unsubscribed", how,
                                                             context.clock()))
        return _html(200, "You are unsubscribed", "<p>You will not receive these emails "
                     "any more. Sorry to see you go.</p>")
    return unsubscribe


def _events(public_key: ec.EllipticCurvePublicKey | None
            ) -> Callable[[Request], Awaitable[Response]]:
    async def events(request: Request) -> Response:
        """POST /sendgrid/events: verify, parse and store one signed batch."""
        if public_key is None:
            return text_response(403, f"event webhook disabled: {PUBLIC_KEY_ENV} is not set",
                                 close=True)
        body = await read_body(request)
        context: WebContext = request.app.state.context
        signature = request.headers.get(SIGNATURE_HEADER, "")
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")

        def record(store: Ledger) -> Response:
            # Verifying and parsing a big batch takes CPU time: done in the store's
            # thread, off the event loop, like the writing.
            try:
                verify(public_key, signature, timestamp, body, context.clock())
            except BadSignature as exc:
                return text_response(403, f"forbidden: {exc}")
            try:
                events, suppress = parse_events(body)
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                return text_response(400, f"bad payload: {exc}")
            added = store.record_events(events, suppress, context.clock())
            return text_response(200, f"ok: {added} new event(s)")
        return await context.store.run(record)
    return events


def webhook_routes(public_key: ec.EllipticCurvePublicKey | None,
                   unsubscribe_paths: tuple[str, ...] = (UNSUBSCRIBE_PATH,),
                   sender_name: str = "") -> list[BaseRoute]:
    """The routes of `sphere webhook serve`: /health, the signed events, and the
    one-click unsubscribe on each of `unsubscribe_paths`."""
    unsubscribe = _unsubscribe(sender_name)
    return [Route("/health", health, methods=["GET"]),
            Route(EVENTS_PATH, _events(public_key), methods=["POST"]),
            *(Route(path, unsubscribe, methods=["GET", "POST"])
              for path in unsubscribe_paths)]


def webhook_app(open_store: Callable[[], Ledger], public_key: ec.EllipticCurvePublicKey | None,
                unsubscribe_paths: tuple[str, ...] = (UNSUBSCRIBE_PATH,),
                clock: Callable[[], dt.datetime] | None = None,
                sender_name: str = "") -> Starlette:
    """The ASGI app of `sphere webhook serve`."""
    return create_app(open_store, webhook_routes(public_key, unsubscribe_paths, sender_name),
                      clock)


def unsubscribe_paths(unsubscribe_url: str) -> tuple[str, ...]:
    """The paths this service answers unsubscribes on: the path of sender.unsubscribe_url
    (what the links carry) and the default /unsubscribe."""
    own = urlsplit(unsubscribe_url).path.rstrip("/") if unsubscribe_url else ""
    return tuple(dict.fromkeys(p for p in (own, UNSUBSCRIBE_PATH) if p))
