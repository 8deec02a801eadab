"""Engagement feeds back: who has gone cold, and whether a campaign mails them this period.

Pure functions over the ledger and the provider's events; planning/holds.py applies them
to each plan (hold_cold), the report and `status` show the same set."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING

from pipeline.addresses import email_key
from pipeline.models import LedgerStatus

if TYPE_CHECKING:  # pure module: only the shapes of the store's rows are needed
    from pipeline.state.records import LedgerRow, StoredEvent

COLD_POLICIES: tuple[str, ...] = ("normal", "quarterly", "skip")
# A contact needs this many sends without an open or click before we call them cold;
# fewer and one unlucky month would mark a new contact cold. campaigns.yaml
# `engagement: {cold_after_sends: N}` overrides it.
DEFAULT_COLD_AFTER_SENDS = 4
# Quarterly cadence: cold contacts still hear from us in the first month of each quarter.
QUARTER_MONTHS = frozenset({1, 4, 7, 10})
ENGAGED_EVENTS = frozenset({"open", "click"})
# Transports (the ledger's `transport` column) whose emails can come back as open and
# click events: only SendGrid's Event Webhook reports them. An email written to the
# outbox, handed to an SMTP server or dry-run can never show a reader, so it neither
# makes anyone cold nor counts towards `n`; without this, every contact of an SMTP user
# would go cold after `n` sends.
TRACKED_TRANSPORTS = frozenset({"sendgrid"})


def _epoch(stamp: str) -> float:
    moment = dt.datetime.fromisoformat(stamp)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def cold_contacts(ledger_rows: Iterable[LedgerRow], events: Iterable[StoredEvent],
                  n: int) -> set[str]:
    """Addresses (lower-cased) with no open or click in their last `n` emails sent through
    a transport that reports engagement (TRACKED_TRANSPORTS)."""
    # Fewer than `n` tracked sends: too early to judge. An open or click of any email since
    # the first of those `n` counts too (an old email opened late still shows a reader).
    if n < 1:
        return set()
    sent: dict[str, list[tuple[float, str]]] = {}
    for row in ledger_rows:
        if row.status == LedgerStatus.SENT and row.transport in TRACKED_TRANSPORTS:
            sent.setdefault(email_key(row.email), []).append((_epoch(row.created), row.send_id))
    engaged: dict[str, list[StoredEvent]] = {}
    for event in events:
        if event.event in ENGAGED_EVENTS:
            engaged.setdefault(email_key(event.email), []).append(event)
    cold: set[str] = set()
    for email, rows in sent.items():
        if len(rows) < n:
            continue
        window = sorted(rows)[-n:]
        since = window[0][0]
        ids = {send_id for _, send_id in window}
        # An old email opened late still shows the person reads us: count it by time.
        alive = any(e.send_id in ids or e.timestamp >= since
                    for e in engaged.get(email, ()))
        if not alive:
            cold.add(email)
    return cold


def _period(period: dt.datetime | dt.date | str) -> dt.date:
    if isinstance(period, str):
        return dt.datetime.fromisoformat(period).date()
    return period.date() if isinstance(period, dt.datetime) else period


def allow_send(policy: str, period: dt.datetime | dt.date | str) -> bool:
    """Whether a campaign with this cold_contacts policy mails cold contacts this period."""
    if policy == "skip":
        return False
    if policy == "quarterly":
        return _period(period).month in QUARTER_MONTHS
    return True
