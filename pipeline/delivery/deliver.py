"""Deliver: the Transport interface, declared here where it is used, the retry policy the
network transports share, and the outbox implementation (SMTP and SendGrid live in
smtp_transport.py and sendgrid_transport.py)."""
from __future__ import annotations

import hashlib
import os
import random
import re
import tempfile
import threading
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path
from typing import Any, Protocol

from pipeline.addresses import email_key
from pipeline.models import Delivery, RenderedEmail

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# Addresses whose file name maps back to them: its one '_' was the '@'.
_REVERSIBLE = re.compile(r"[a-z0-9.-]+@[a-z0-9.-]+")


class Transport(Protocol):
    """Hands finished messages to the world. One instance serves one run.

    `send` is called from up to `workers` threads at once; the runner alone touches the
    database. A per-message failure is a returned Delivery: 'sent', 'failed' (certainly
    not delivered: the run may try again later) or 'unknown' (the request may have
    reached the provider, so it must not be retried blindly). A problem that will fail
    every message (bad credentials) raises TransportError so the run stops at once.
    """

    name: str
    workers: int
    # Every request is reported to it; a tripped breaker makes `send` return 'skipped'
    # (not tried, certainly not delivered) without a request.
    breaker: Breaker

    def send(self, email: RenderedEmail) -> Delivery:
        """Deliver one message; never raises for a per-message failure."""
        ...

    def confirm(self, send_id: str, email: str, message_id: str) -> bool | None:
        """For a message whose outcome is unknown: True if it was delivered, False if it
        certainly was not, None when this transport cannot tell."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    """How a network transport retries a transient failure (429, 5xx, no connection).

    Exponential backoff with full jitter (AWS's recommendation): concurrent workers that
    failed together do not come back together and fail together again.
    """

    attempts: int = 5  # tries in all, the first included
    base: float = 0.5  # seconds; the first retry waits up to this long
    cap: float = 30.0  # no single wait is longer than this
    max_reset_wait: float = 120.0  # longest we honour a 429's X-RateLimit-Reset

    def delay(self, attempt: int, reset_in: float | None = None) -> float:
        """Seconds to wait before try number `attempt + 1` (attempt counts from 1)."""
        if reset_in is not None and reset_in >= 0:
            # The provider said when the window reopens: wait for it, plus a little jitter
            # so every worker does not hit the new window in the same millisecond.
            return min(reset_in, self.max_reset_wait) + random.uniform(0, self.base)
        return random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))


class Cancelled(threading.Event):
    """Set when the run is stopping: a worker waiting to retry gives up at once."""

    def pause(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if the run was cancelled meanwhile."""
        return self.wait(seconds)


# listmonk pauses a campaign after this many errors in a row rather than burning
# through the whole list against a broken transport.
MAX_CONSECUTIVE_FAILURES = 10


class Breaker(Cancelled):
    """A run's circuit breaker, shared by all its workers. The unit is the request: every
    request that fails (no answer, 5xx, a refused message) counts one, whichever message
    it was for, so a retry that fails counts again; any success resets the count; a 429
    counts only when it was a message's last try (it means "slow down", which we do).
    It trips after `limit` failures in a row, or at once on an answer that every message
    would get (a bad key, a refused login). Once tripped, no request starts, retries
    included; requests already in flight finish.

    Slow start: until a request has succeeded, and again after any failure, one request
    is in flight at a time (a probe); the others wait for its answer. So a bad key costs
    exactly one request, a provider failing everything exactly `limit`, and only requests
    already in flight when a healthy provider starts failing can add to that."""

    def __init__(self, limit: int = MAX_CONSECUTIVE_FAILURES) -> None:
        super().__init__()
        self._lock = threading.Condition()
        self.limit = limit
        self.streak = 0
        self.reason = ""
        self._proven = False  # the last answered request succeeded
        self._prober: threading.Thread | None = None  # the one request allowed meanwhile

    def rearm(self, limit: int) -> None:
        """Start a new run: nothing counted, nothing tripped."""
        with self._lock:
            self.clear()
            self.limit, self.streak, self.reason = max(1, limit), 0, ""
            self._proven, self._prober = False, None

    def admit(self) -> bool:
        """May a request start now? Waits while another worker's probe is unanswered."""
        me = threading.current_thread()
        with self._lock:
            while not self.is_set():
                prober = self._prober
                if self._proven or prober is None or prober is me \
                        or not prober.is_alive():  # a probe whose worker has gone
                    if not self._proven:
                        self._prober = me
                    return True
                self._lock.wait(0.05)
            return False

    def succeeded(self) -> None:
        """A request succeeded: the failures were not in a row; open to every worker."""
        with self._lock:
            self.streak, self._proven, self._prober = 0, True, None
            self._lock.notify_all()

    def failed(self, why: str) -> None:
        """A request failed; trips the breaker at the limit."""
        with self._lock:
            self.streak += 1
            self._proven, self._prober = False, None
            if self.streak >= self.limit and not self.is_set():
                self.reason = f"paused after {self.streak} failed requests in a row " \
                              f"(last: {why})"
                self.set()
            self._lock.notify_all()

    def trip(self, reason: str) -> None:
        """Stop every new request now (the first reason is kept)."""
        with self._lock:
            if not self.is_set():
                self.reason = reason
                self.set()
            self._lock.notify_all()

    def held(self) -> str:
        """The error of a message that was not tried because the breaker tripped."""
        return f"not sent: {self.reason or 'the run stopped'}"


# Headers a provider's API sets itself from its own fields (SendGrid refuses them in
# `headers`), or that describe the MIME structure we do not send as such.
RESERVED_HEADERS = frozenset(h.lower() for h in (
    "x-sg-id", "x-sg-eid", "received", "dkim-signature", "Content-Type",
    "Content-Transfer-Encoding", "To", "From", "Subject", "Reply-To", "CC", "BCC",
    "MIME-Version", "Date"))


def extra_headers(raw: bytes) -> dict[str, str]:
    """The headers of a rendered message that an API transport must carry itself
    (List-Unsubscribe, List-Unsubscribe-Post, Message-ID, X-Sphere-Campaign ...)."""
    # Only the header block: parsing stops there anyway, but handing the parser the
    # whole message costs ~0.2 ms of decoding per email at 50 KB.
    head = raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    parsed = BytesHeaderParser(policy=compat32).parsebytes(head, headersonly=True)
    out: dict[str, str] = {}
    for key, value in parsed.items():
        if key.lower() in RESERVED_HEADERS:
            continue
        # compat32 keeps the folded wire form; an API wants one logical line.
        out[key] = re.sub(r"\r?\n[ \t]+", " ", str(value)).strip()
    return out


def outbox_name(send_id: str, email: str) -> str:
    """A readable, unique file name for one (send, contact)."""
    address = email_key(email)
    name = f"{_UNSAFE.sub('_', send_id)}--{_UNSAFE.sub('_', address)}"
    if not _REVERSIBLE.fullmatch(address):
        # Replacing characters loses them (`a+b@` and `a_b@`, `ü@` and `ø@` would share
        # a file, the second overwriting the first): a digest of the address keeps it
        # unique. '~' never occurs in a sanitised name, so no plain name can collide.
        name += "~" + hashlib.sha256(address.encode("utf-8")).hexdigest()[:12]
    return name + ".eml"


class OutboxTransport:
    """Writes each message as an RFC 5322 .eml file (the default, and the offline demo)."""

    name = "outbox"
    workers = 4  # a few writers keep the disk busy
    # Messages begun and not yet settled (see dispatch): after a crash confirm() settles
    # every one of them from the files, so a wide window costs nothing, and each ledger
    # commit and flush() covers up to this many messages.
    window = 512
    raw_only = True  # writes `raw` alone (render_pool.py need not ship html and text)

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.breaker = Breaker()

    def send(self, email: RenderedEmail) -> Delivery:
        """Write temp, rename: a crash leaves either the whole file or none. The bytes
        reach the disk at the next flush(), which the dispatcher calls before the ledger
        records the message sent."""
        target = self.folder / outbox_name(email.send_id, email.contact.email)
        if not self.breaker.admit():
            return Delivery(email.contact.email, "skipped", self.name,
                            error=self.breaker.held())
        try:
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".eml")
            with os.fdopen(fd, "wb") as fh:
                fh.write(email.raw)
            os.replace(tmp, target)
        except OSError as exc:
            error = f"cannot write {target}: {exc.strerror}"
            self.breaker.failed(error)
            return Delivery(email.contact.email, "failed", self.name, error=error)
        self.breaker.succeeded()
        return Delivery(email.contact.email, "sent", self.name, provider_id=target.name)

    def flush(self) -> None:
        """Make every file written so far durable, names and bytes: one syncfs per
        batch instead of an fsync per file (which was a fifth of a send's time)."""
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            if _syncfs(fd) != 0:
                os.sync()
        finally:
            os.close(fd)

    def confirm(self, send_id: str, email: str, message_id: str) -> bool | None:
        """The file exists exactly when the message was delivered."""
        return (self.folder / outbox_name(send_id, email)).exists()

    def close(self) -> None:
        """Nothing to release."""


def _syncfs(fd: int) -> int:
    """Linux's syncfs(2) for the file system holding `fd`; -1 where there is none."""
    global _libc
    if _libc is None:
        import ctypes
        try:
            _libc = ctypes.CDLL(None, use_errno=True).syncfs
        except (OSError, AttributeError):
            _libc = False
    return int(_libc(fd)) if _libc else -1


_libc: Any = None


class DryRunTransport:
    """Sends nothing; remembers what would have been sent."""

    name = "dry-run"
    workers = 1  # keeps `messages` in plan order

    def __init__(self) -> None:
        self.messages: list[RenderedEmail] = []
        self.breaker = Breaker()

    def send(self, email: RenderedEmail) -> Delivery:
        """Record the message and report it as sent."""
        self.messages.append(email)
        return Delivery(email.contact.email, "sent", self.name)

    def confirm(self, send_id: str, email: str, message_id: str) -> bool | None:
        """A dry run cannot know what a real transport did."""
        return None

    def close(self) -> None:
        """Nothing to release."""
