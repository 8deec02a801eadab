"""SMTP: sends each rendered message's own bytes (RenderedEmail.raw) to a relay, over
STARTTLS or implicit TLS, with a small pool of connections (one per worker thread)."""
from __future__ import annotations

import os
import re
import smtplib
import ssl
import threading

from pipeline.config import SmtpSettings
from pipeline.delivery.deliver import Breaker, RetryPolicy
from pipeline.errors import TransportError, header_safe
from pipeline.models import Delivery, RenderedEmail, Sender
from pipeline.rendering.mime import AddressError, needs_smtputf8, wire_address

USERNAME_ENV = "SMTP_USERNAME"
PASSWORD_ENV = "SMTP_PASSWORD"
# A connection is closed and reopened after this many messages: relays such as Gmail
# and SES cap messages per connection, and a fresh one recovers from a stale state.
MESSAGES_PER_CONNECTION = 100
_LOOPBACK = ("localhost", "127.0.0.1", "::1")
# An enhanced status code (RFC 3463), "5.1.1": at the start of the reply, or anywhere in
# it (qmail ends with "(#5.1.1)"); never part of an IP address or a version number.
_ENHANCED = re.compile(r"(?<![\d.])[245]\.(\d{1,3})\.(\d{1,3})(?![\d.])")
# Bare replies (no enhanced code) that name the relay or our login, not the recipient.
_ABOUT_US = re.compile(r"relay|auth", re.IGNORECASE)


class SmtpAuthError(TransportError):
    """The relay refused our credentials: every message would fail the same way."""


class _SentUnknown(Exception):
    """The message's final dot went out and no reply came back."""


def credentials_from_env() -> tuple[str, str] | None:
    """(username, password) from SMTP_USERNAME / SMTP_PASSWORD, or None for no AUTH."""
    user = os.environ.get(USERNAME_ENV, "")
    password = os.environ.get(PASSWORD_ENV, "")
    if bool(user) != bool(password):
        missing = PASSWORD_ENV if user else USERNAME_ENV
        raise TransportError(f"{missing} is not set but "
                             f"{USERNAME_ENV if user else PASSWORD_ENV} is",
                             "export both, or neither for a relay without AUTH")
    if not user:
        return None
    # smtplib sends both as ASCII: anything else would fail inside a worker, mid-send.
    return (header_safe(USERNAME_ENV, user, spaces=True),
            header_safe(PASSWORD_ENV, password, spaces=True))


def _transient(code: int) -> bool:
    """4yz replies are temporary (RFC 5321 section 4.2.1); 5yz are permanent."""
    return 400 <= code < 500


def _hard_bounce(code: int, reply: str, after_data: bool = False) -> bool:
    """True when a 5yz reply refuses the recipient's address itself, for good: the
    address is then suppressed for every transport. Being wrong here drops a good
    person, so a refusal that is about the relay, our login or the message is not one:
    "554 5.7.1 Relay access denied" on every RCPT would otherwise suppress the list."""
    if not 500 <= code < 600:
        return False
    found = _ENHANCED.search(reply)
    if found:
        subject, detail = int(found[1]), int(found[2])
        # X.1.*: the address (user unknown, no such domain, bad syntax, moved), except
        # X.1.7 and X.1.8, which are about our sender; X.2.1: mailbox disabled. Not
        # X.2.2 (mailbox full: it empties), nor X.7.* (policy, relaying, auth).
        return (subject == 1 and detail not in (7, 8)) or (subject, detail) == (2, 1)
    # No enhanced code: RFC 5321's "mailbox unavailable", "user not local" and "mailbox
    # name not allowed". After DATA a bare 5yz is usually the content (a spam filter).
    return not after_data and code in (550, 551, 553) and not _ABOUT_US.search(reply)


class SmtpTransport:
    """Delivers through an SMTP relay; thread-safe, one connection per worker thread."""

    name = "smtp"

    def __init__(self, settings: SmtpSettings, sender: Sender,
                 credentials: tuple[str, str] | None = None,
                 ssl_context: ssl.SSLContext | None = None,
                 retry: RetryPolicy | None = None) -> None:
        if credentials and settings.security == "none" and settings.host not in _LOOPBACK:
            raise TransportError(f"smtp.security is none: the password for "
                                 f"{settings.host} would cross the network in clear",
                                 "set smtp.security to starttls or ssl")
        self.settings = settings
        self.sender = sender
        self.workers = settings.workers
        # Messages begun and not yet settled (dispatch.py): twice the connections, so
        # each connection has its next message committed and queued while the ledger
        # commits (an fsync, as long as a relay's reply): no connection idles waiting
        # for it, and each commit covers more messages. After a crash at most this
        # many are 'unknown'.
        self.window = 2 * self.workers
        self.raw_only = True  # sends `raw` alone (render_pool.py need not ship the rest)
        self.credentials = credentials
        self.context = ssl_context or ssl.create_default_context()
        self.retry = retry or RetryPolicy()
        self.breaker = Breaker()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[smtplib.SMTP] = []

    @classmethod
    def from_env(cls, settings: SmtpSettings, sender: Sender) -> SmtpTransport:
        """A transport with credentials from SMTP_USERNAME / SMTP_PASSWORD."""
        return cls(settings, sender, credentials_from_env())

    # ---- connections ---------------------------------------------------------------
    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if s.security == "ssl":
            conn: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout,
                                                  context=self.context)
        else:
            conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        try:
            conn.ehlo()
            if s.security == "starttls":
                if not conn.has_extn("starttls"):
                    raise TransportError(f"{s.host}:{s.port} does not offer STARTTLS",
                                         "set smtp.security to ssl (port 465) or check "
                                         "smtp.host and smtp.port")
                conn.starttls(context=self.context)
                conn.ehlo()
            if self.credentials:
                try:
                    conn.login(*self.credentials)
                except smtplib.SMTPAuthenticationError as exc:
                    raise SmtpAuthError(f"{s.host} refused the login ({exc.smtp_code})",
                                        f"check {USERNAME_ENV} and {PASSWORD_ENV}") from None
                except smtplib.SMTPNotSupportedError:
                    raise SmtpAuthError(f"{s.host} does not offer AUTH",
                                        f"unset {USERNAME_ENV}/{PASSWORD_ENV}, or use "
                                        "starttls/ssl") from None
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self._open.append(conn)
        return conn

    def _connection(self) -> smtplib.SMTP:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.count >= MESSAGES_PER_CONNECTION:
            self._drop()
            conn = self._local.conn = self._connect()
            self._local.count = 0
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._lock:
                if conn in self._open:
                    self._open.remove(conn)
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                conn.close()

    # ---- sending -------------------------------------------------------------------
    def _transaction(self, conn: smtplib.SMTP, rcpt: str, raw: bytes,
                     smtputf8: bool = False) -> None:
        """MAIL, RCPT, DATA by hand, so we know whether the message itself went out: a
        failure before the final dot is safe to retry, one after it is not. `smtputf8`
        asks for RFC 6531 (the caller checked the relay offers it)."""
        code, reply = conn.mail(wire_address(self.sender.email),
                                ["SMTPUTF8"] if smtputf8 else [])
        if code != 250:
            conn.rset()
            raise smtplib.SMTPSenderRefused(code, reply, self.sender.email)
        code, reply = conn.rcpt(rcpt)
        if code not in (250, 251):
            conn.rset()
            raise smtplib.SMTPRecipientsRefused({rcpt: (code, reply)})
        code, reply = conn.docmd("data")
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        # Dot-stuffing; most messages have no line starting with '.', and a search is
        # far cheaper than the regex over 50 KB.
        stuff = raw.startswith(b".") or b"\n." in raw
        body = smtplib._quote_periods(raw) if stuff else raw  # type: ignore[attr-defined]
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        conn.send(body + b".\r\n")
        try:
            code, reply = conn.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _SentUnknown(f"no reply after the message was sent: {exc}") from exc
        if code != 250:
            raise smtplib.SMTPDataError(code, reply)

    def send(self, email: RenderedEmail) -> Delivery:
        """One SMTP transaction; retries 4yz replies and lost connections. Each try is
        reported to the breaker, which may forbid the next (deliver.Breaker)."""
        to = email.contact.email
        if not self.breaker.admit():
            return Delivery(to, "skipped", self.name, error=self.breaker.held())
        try:
            return self._send(email)
        except TransportError as exc:
            # A refused login or an untrusted certificate: every message would fail the
            # same way, so no worker starts another connection.
            self.breaker.trip(f"stopped: {exc}")
            raise

    def _send(self, email: RenderedEmail) -> Delivery:
        to = email.contact.email
        try:
            rcpt = wire_address(to)  # an international domain travels as IDNA
        except AddressError as exc:
            return Delivery(to, "failed", self.name, error=str(exc))
        utf8 = needs_smtputf8(to)
        last = ""
        for attempt in range(1, self.retry.attempts + 1):
            if attempt > 1 and not self.breaker.admit():
                break
            try:
                conn = self._connection()
                if utf8 and not conn.has_extn("smtputf8"):
                    # Not this message's fault alone, but no retry will change it.
                    return Delivery(to, "failed", self.name, error=(
                        f"{self.settings.host} does not offer SMTPUTF8, which {to} needs "
                        "(non-ASCII characters before the @); send through a relay that "
                        "offers it, or ask the contact for another address"))
                self._transaction(conn, rcpt, email.raw, utf8)
                self._local.count += 1
                self.breaker.succeeded()
                return Delivery(to, "sent", self.name, provider_id=email.message_id)
            except _SentUnknown as exc:
                self._drop()
                self.breaker.failed(str(exc))
                return Delivery(to, "unknown", self.name, error=str(exc))
            except smtplib.SMTPRecipientsRefused as exc:
                code, reply = exc.recipients[rcpt]
                text = reply.decode(errors="replace")
                last = f"{to} refused: {code} {text}"
                self.breaker.failed(last)
                if not _transient(code):
                    return Delivery(to, "failed", self.name, error=last,
                                    bounced=_hard_bounce(code, text))
            except smtplib.SMTPResponseException as exc:
                text = exc.smtp_error.decode(errors="replace") \
                    if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
                last = f"SMTP {exc.smtp_code} {text}"
                self._drop()
                self.breaker.failed(last)
                if not _transient(exc.smtp_code):
                    # One recipient per transaction, so a refusal of DATA or of the
                    # message can be about this address (some relays check mailboxes
                    # only then); one of MAIL FROM or of the connection never is.
                    bounced = isinstance(exc, smtplib.SMTPDataError) and \
                        _hard_bounce(exc.smtp_code, text, after_data=True)
                    return Delivery(to, "failed", self.name, error=last, bounced=bounced)
            except ssl.SSLCertVerificationError as exc:
                # Not transient, and the same for every message: stop the run.
                raise TransportError(f"{self.settings.host}'s TLS certificate is not "
                                     f"trusted: {exc.verify_message}",
                                     "fix the relay's certificate, or point SSL_CERT_FILE "
                                     "at the CA that signed it") from None
            except (TimeoutError, smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError,
                    ssl.SSLError, OSError) as exc:
                # Before the final dot: the relay has not taken the message.
                last = (f"cannot reach {self.settings.host}:{self.settings.port}: "
                        f"{type(exc).__name__}: {exc}")
                self._drop()
                self.breaker.failed(last)
            if attempt == self.retry.attempts or \
                    self.breaker.pause(self.retry.delay(attempt)):
                break
        return Delivery(to, "failed", self.name,
                        error=f"{last} (gave up after {attempt} attempt(s))")

    def confirm(self, send_id: str, email: str, message_id: str) -> bool | None:
        """SMTP gives no way to ask a relay what it took."""
        return None

    def close(self) -> None:
        """QUIT every pooled connection."""
        self.breaker.trip("the transport was closed")
        with self._lock:
            conns, self._open = self._open, []
        for conn in conns:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                conn.close()
