"""SendGrid: the v3 Web API client Sphere needs (mail send, suppression lists) and the
transport built on it.

The `sendgrid` library's Mail helper builds each v3 payload; the JSON goes over one
pooled httpx client (HTTP/1.1 keep-alive), because python-http-client opens a new
connection per request and caps throughput at a few dozen emails a second.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import httpx
from sendgrid.helpers.mail import (
    Asm,
    Category,
    CustomArg,
    From,
    GroupId,
    Header,
    Mail,
    MailSettings,
    ReplyTo,
    SandBoxMode,
    SendAt,
    To,
)

from pipeline.addresses import email_key
from pipeline.config import Config, SendGridSettings
from pipeline.delivery.deliver import Breaker, RetryPolicy, extra_headers
from pipeline.errors import SphereError, TransportError, header_safe, redact, redact_url
from pipeline.models import Delivery, RenderedEmail, Sender
from pipeline.names import utc_now
from pipeline.rendering.mime import needs_smtputf8, wire_address
from pipeline.scheduling import cron

API_KEY_ENV = "SENDGRID_API_KEY"
API_HOST_ENV = "SENDGRID_API_HOST"
SEND_ID_ARG = "sphere_send_id"  # our custom_args key; the Event Webhook echoes it back
EMAIL_ARG = "sphere_email"
MAX_SCHEDULE_AHEAD = dt.timedelta(hours=72)  # SendGrid refuses send_at further out
CONNECT_TIMEOUT = 10.0  # seconds; a TCP+TLS handshake that takes longer is not coming


class SendGridError(TransportError):
    """SendGrid answered with an error we cannot retry past."""


def api_key_from_env(hint: str = "export it, or use --transport outbox") -> str:
    """The API key from SENDGRID_API_KEY, or a TransportError saying how to set it."""
    key = os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise TransportError(f"{API_KEY_ENV} is not set", hint)
    return header_safe(API_KEY_ENV, key)


def api_host(settings: SendGridSettings) -> str:
    """SENDGRID_API_HOST if set, else campaigns.yaml's sendgrid.api_host."""
    host = os.environ.get(API_HOST_ENV, "").strip() or settings.api_host
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TransportError(f"SendGrid API host {redact_url(host)!r} is not an http(s) URL",
                             f"set sendgrid.api_host or {API_HOST_ENV} to e.g. "
                             "https://api.sendgrid.com")
    return host.rstrip("/")


def error_text(response: httpx.Response) -> str:
    """SendGrid's own words from an error response (`errors[].message`), else the body."""
    try:
        doc = response.json()
    except ValueError:
        doc = None
    messages = []
    if isinstance(doc, dict) and isinstance(doc.get("errors"), list):
        for e in doc["errors"]:
            if isinstance(e, dict) and e.get("message"):
                field = e.get("field")
                messages.append(f"{e['message']}" + (f" ({field})" if field and
                                                     field != "null" else ""))
    text = "; ".join(messages) or response.text.strip()[:200] or response.reason_phrase
    return f"SendGrid {response.status_code}: {text}"


def _reset_in(response: httpx.Response, now: float) -> float | None:
    """Seconds from `now` (epoch s) until the rate-limit window reopens, from
    X-RateLimit-Reset (epoch s)."""
    value = response.headers.get("X-RateLimit-Reset")
    try:
        return max(0.0, float(value) - now) if value else None
    except ValueError:
        return None


class Unknown(Exception):
    """The request may have reached SendGrid, and we have no answer."""


class Held(TransportError):
    """No request was made: the run's breaker had tripped."""


class SendGridClient:
    """A pooled, retrying client for the v3 API. Thread-safe (httpx.Client is)."""

    def __init__(self, host: str, api_key: str, timeout: float = 30.0,
                 pool: int = 16, retry: RetryPolicy | None = None,
                 stop: Breaker | None = None) -> None:
        self.host = host
        self.shown = redact_url(host)  # the host as error messages may show it
        self.retry = retry or RetryPolicy()
        self.stop = stop or Breaker()
        # The key lives only in this header; httpx never logs headers, and none of our
        # messages include them.
        self._http = httpx.Client(
            base_url=host, http2=False,
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json",
                     "User-Agent": "sphere-mailer"},
            timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout)),
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool))

    def request(self, method: str, path: str, *, body: bytes | None = None,
                params: dict[str, Any] | None = None) -> httpx.Response:
        """One call with retries on 429, 5xx and failures to connect, each try reported
        to the breaker (deliver.Breaker), which may forbid the next.

        Returns the final response (2xx, or an error that is not worth retrying). Raises
        Unknown when a POST was sent and no answer came (a read timeout): SendGrid may
        have accepted it, so sending it again could deliver it twice. A GET changes
        nothing, so it is retried then too. Raises Held when the breaker stops the run
        before a first try.
        """
        headers = {"Content-Type": "application/json"} if body is not None else None
        last = ""
        for attempt in range(1, self.retry.attempts + 1):
            if not self.stop.admit():
                if attempt == 1:
                    raise Held(self.stop.held())
                break
            reset_in = None
            try:
                response = self._http.request(method, path, content=body, params=params,
                                              headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout,
                    httpx.WriteError, httpx.WriteTimeout) as exc:
                # Nothing complete reached the server: safe to try again.
                last = redact(f"cannot reach {self.shown}: {type(exc).__name__}: {exc}")
                self.stop.failed(last)
            except (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError) as exc:
                last = redact(f"no answer from {self.shown} ({type(exc).__name__}"
                              f"{': ' + str(exc) if str(exc) else ''})")
                self.stop.failed(last)
                if method != "GET":
                    raise Unknown(last) from exc
            else:
                if response.status_code == 429:
                    last = error_text(response)
                    # The wait is real, against the server's wall clock: read at
                    # this network edge.
                    reset_in = _reset_in(response, time.time())
                    if attempt == self.retry.attempts:
                        self.stop.failed(last)
                elif response.status_code >= 500:
                    last = error_text(response)
                    self.stop.failed(last)
                else:
                    if response.status_code < 400:
                        self.stop.succeeded()
                    elif response.status_code not in (401, 403):  # those trip the breaker
                        self.stop.failed(error_text(response))
                    return response
            if attempt == self.retry.attempts or \
                    self.stop.pause(self.retry.delay(attempt, reset_in)):
                break
        raise TransportError(f"{last} (gave up after {attempt} attempt(s))",
                             retryable=True)

    def close(self) -> None:
        """Close the pooled connections."""
        self.stop.trip("the client was closed")
        self._http.close()


def build_payload(email: RenderedEmail, sender: Sender, settings: SendGridSettings,
                  send_at: int | None = None) -> dict[str, Any]:
    """The v3 /mail/send body for one rendered message, built with SendGrid's Mail
    helper: text before HTML (as SendGrid requires), our MIME headers, our ids in
    custom_args, the campaign as a category, the unsubscribe group and sandbox mode."""
    contact = email.contact
    mail = Mail(from_email=From(sender.email, sender.name or None),
                to_emails=To(wire_address(contact.email), contact.name or None),
                subject=email.subject, plain_text_content=email.text,
                html_content=email.html)
    if sender.reply_to:
        mail.reply_to = ReplyTo(sender.reply_to)
    headers = extra_headers(email.raw)
    for key, value in headers.items():
        mail.header = Header(key, value)
    # Per-personalization custom_args (the spec's object form); every event SendGrid
    # reports for this message carries them, which ties the event to our ledger row.
    mail.custom_arg = CustomArg(SEND_ID_ARG, email.send_id, p=0)
    mail.custom_arg = CustomArg(EMAIL_ARG, email_key(contact.email), p=0)
    campaign = headers.get("X-Sphere-Campaign") or email.send_id.split("@", 1)[0]
    for name in dict.fromkeys(("sphere", campaign[:255])):
        mail.category = Category(name)
    if settings.asm_group_id:
        mail.asm = Asm(GroupId(settings.asm_group_id))
    if send_at is not None:
        mail.send_at = SendAt(send_at)
    if settings.sandbox_mode:
        mail.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))
    return mail.get()


def request_body(email: RenderedEmail, sender: Sender, settings: SendGridSettings,
                 send_at: int | None = None) -> bytes:
    """The JSON bytes POSTed to /v3/mail/send for one rendered message."""
    return json.dumps(build_payload(email, sender, settings, send_at),
                      ensure_ascii=False).encode("utf-8")


def prepare_request(sender: Sender, settings: SendGridSettings, email: RenderedEmail
                    ) -> RenderedEmail:
    """In a render worker (render_pool.py): the email with its request body in `wire`
    and the parts the transport no longer reads (html, text, raw) left empty, so the
    dispatcher's process neither builds the JSON nor unpickles the message three times.
    An email the body cannot be built for is returned as it was: send() builds it and
    reports the error for that contact."""
    try:
        body = request_body(email, sender, settings)
    except ValueError:
        return email
    return replace(email, html="", text="", raw=b"", wire=body)


SendAtRule = Callable[[RenderedEmail], "dt.datetime | None"]


class SendGridTransport:
    """Delivers through SendGrid's v3 Mail Send API."""

    name = "sendgrid"

    def __init__(self, settings: SendGridSettings, sender: Sender, api_key: str,
                 host: str | None = None, send_at: SendAtRule | None = None,
                 retry: RetryPolicy | None = None,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.settings = settings
        self.sender = sender
        self.workers = settings.workers
        # Messages begun and not yet settled (dispatch.py): each ledger commit (an fsync)
        # covers up to this many, and after a crash at most this many are 'unknown'.
        # Twice the connections keeps every one busy while the ledger commits.
        self.window = 2 * self.workers
        self.send_at = send_at
        self.clock = clock or utc_now
        self.breaker = Breaker()
        self.client = SendGridClient(host or api_host(settings), api_key, settings.timeout,
                                     pool=settings.workers, retry=retry, stop=self.breaker)
        # The request body is built in the render workers unless each email's send_at
        # depends on this process's clock (send --local-time).
        self.prepare = None if send_at else partial(prepare_request, sender, settings)

    @classmethod
    def from_env(cls, settings: SendGridSettings, sender: Sender,
                 send_at: SendAtRule | None = None,
                 clock: Callable[[], dt.datetime] | None = None) -> SendGridTransport:
        """A transport with the key from SENDGRID_API_KEY and the host from
        SENDGRID_API_HOST or campaigns.yaml."""
        return cls(settings, sender, api_key_from_env(), api_host(settings), send_at,
                   clock=clock)

    def _send_at(self, email: RenderedEmail) -> int | None:
        when = self.send_at(email) if self.send_at else None
        if when is None:
            return None
        now = self.clock()
        if when <= now:
            return None  # the moment has passed: send now rather than not at all
        if when - now > MAX_SCHEDULE_AHEAD:
            raise ValueError(f"send_at {when.isoformat()} is more than 72 hours ahead "
                             "(SendGrid refuses it; send closer to the time)")
        return int(when.timestamp())

    def send(self, email: RenderedEmail) -> Delivery:
        """POST /v3/mail/send; 202 (200 in sandbox mode) means SendGrid took it."""
        to = email.contact.email
        if needs_smtputf8(to):
            # SendGrid accepts such a request and then drops the message as "invalid".
            return Delivery(to, "failed", self.name, error=(
                "SendGrid does not deliver to an address with non-ASCII characters before "
                "the @; send it over SMTP through a relay that offers SMTPUTF8, or ask the "
                "contact for another address"))
        try:
            body = email.wire or request_body(email, self.sender, self.settings,
                                              self._send_at(email))
        except ValueError as exc:
            return Delivery(to, "failed", self.name, error=str(exc))
        try:
            response = self.client.request("POST", "/v3/mail/send", body=body)
        except Held as exc:
            return Delivery(to, "skipped", self.name, error=str(exc))
        except Unknown as exc:
            return Delivery(to, "unknown", self.name, error=str(exc))
        except TransportError as exc:
            return Delivery(to, "failed", self.name, error=str(exc))
        if response.status_code in (200, 202):
            return Delivery(to, "sent", self.name,
                            provider_id=response.headers.get("X-Message-Id", ""))
        if response.status_code in (401, 403):
            # Every other message would be refused the same way: stop the run, and no
            # worker starts another request.
            error = SendGridError(error_text(response),
                                  f"check {API_KEY_ENV} is a key with Mail Send permission")
            self.breaker.trip(f"stopped: {error}")
            raise error
        return Delivery(to, "failed", self.name, error=error_text(response))

    def confirm(self, send_id: str, email: str, message_id: str) -> bool | None:
        """The v3 API cannot tell without the paid Email Activity add-on; the runner
        checks the Event Webhook's records first."""
        return None

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


def local_time_rule(config: Config, campaign_name: str, transport_name: str | None,
                    now: dt.datetime) -> tuple[dt.datetime, SendAtRule]:
    """For `send --local-time`: the campaign's next scheduled time (which names the send)
    and the rule giving each email that wall-clock time in its contact's zone."""
    if (transport_name or config.transport) != "sendgrid":
        raise SphereError("--local-time schedules delivery with SendGrid's send_at",
                          "use --transport sendgrid, or let `sphere run` send at local "
                          "time with any transport")
    campaign = config.campaign(campaign_name)
    zone = zoneinfo.ZoneInfo(config.sender.timezone)
    nxt = cron.trigger(campaign.schedule, zone).get_next_fire_time(None, now.astimezone(zone))
    if nxt is None or nxt - now > MAX_SCHEDULE_AHEAD:
        raise SphereError(f"{campaign_name}'s next scheduled time is more than 72 hours "
                          "away", "run the send closer to the time (SendGrid holds mail "
                          "for at most 72 hours)")

    def rule(email: RenderedEmail) -> dt.datetime:
        tz = zoneinfo.ZoneInfo(email.contact.timezone or config.sender.timezone)
        return dt.datetime.combine(nxt.date(), nxt.time(), tzinfo=tz)
    return nxt, rule
