"""Deliver: the Transport interface, declared here where it is used, and its outbox
implementation (SMTP and SendGrid live in their own modules)."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from .models import Delivery, RenderedEmail

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class Transport(Protocol):
    """Hands finished messages to the world. One instance serves one run."""

    name: str

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


def outbox_name(send_id: str, email: str) -> str:
    """A readable, unique file name for one (send, contact)."""
    return f"{_UNSAFE.sub('_', send_id)}--{_UNSAFE.sub('_', email.lower())}.eml"


class OutboxTransport:
    """Writes each message as an RFC 5322 .eml file (the default, and the offline demo)."""

    name = "outbox"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)

    def send(self, email: RenderedEmail) -> Delivery:
        """Write temp, fsync, rename: a crash leaves either the whole file or none."""
        target = self.folder / outbox_name(email.send_id, email.contact.email)
        try:
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".eml")
            with os.fdopen(fd, "wb") as fh:
                fh.write(email.raw)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            return Delivery(email.contact.email, "failed", self.name,
                            error=f"cannot write {target}: {exc.strerror}")
        return Delivery(email.contact.email, "sent", self.name, provider_id=target.name)

    def confirm(self, send_id: str, email: str, message_id: str) -> bool | None:
        """The file exists exactly when the message was delivered."""
        return (self.folder / outbox_name(send_id, email)).exists()

    def close(self) -> None:
        """Nothing to release."""


class DryRunTransport:
    """Sends nothing; remembers what would have been sent."""

    name = "dry-run"

    def __init__(self) -> None:
        self.messages: list[RenderedEmail] = []

    def send(self, email: RenderedEmail) -> Delivery:
        """Record the message and report it as sent."""
        self.messages.append(email)
        return Delivery(email.contact.email, "sent", self.name)

    def confirm(self, send_id: str, email: str, message_id: str) -> bool | None:
        """A dry run cannot know what a real transport did."""
        return None

    def close(self) -> None:
        """Nothing to release."""
