"""Which transport a send uses: the `--transport` override, else campaigns.yaml's
`transport` (outbox, smtp or sendgrid); a dry run uses none."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

from pipeline import names
from pipeline.errors import SphereError

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.delivery.deliver import Transport
    from pipeline.delivery.sendgrid_api import SendAtRule

TRANSPORTS = names.TRANSPORTS


def choose_transport(config: Config, name: str | None = None, dry_run: bool = False,
                     send_at: SendAtRule | None = None,
                     clock: Callable[[], dt.datetime] | None = None) -> Transport:
    """The transport a send uses: `name` if given, else the config's `transport`."""
    # Each transport's own libraries (smtplib, httpx) load only when it is chosen.
    from pipeline.delivery.deliver import DryRunTransport, OutboxTransport
    if dry_run:
        return DryRunTransport()
    chosen = name or config.transport
    if chosen == "outbox":
        return OutboxTransport(config.outbox_dir)
    if chosen == "smtp":
        from pipeline.delivery.smtp import SmtpTransport
        return SmtpTransport.from_env(config.smtp, config.sender)
    if chosen == "sendgrid":
        from pipeline.delivery.sendgrid_api import SendGridTransport
        return SendGridTransport.from_env(config.sendgrid, config.sender, send_at, clock)
    raise SphereError(f"unknown transport {chosen!r}", f"use {names.one_of(TRANSPORTS)}")
