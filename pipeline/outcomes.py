"""What the operations of a `Project` (project.py) return: frozen dataclasses the CLI and
the studio print or show as they like. Nothing here imports a heavy library."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import socket

    from pipeline.approval.drafts import Draft, DraftRecipient
    from pipeline.delivery.suppressions import SyncSummary
    from pipeline.errors import Problem
    from pipeline.feeds.ingest import IngestSummary
    from pipeline.models import (
        Campaign,
        Contact,
        Pick,
        ReferralStatus,
        ReviewState,
        RunSummary,
        Source,
    )
    from pipeline.runner import Prepared
    from pipeline.scheduling.calendar import Due, Firing
    from pipeline.scheduling.daemon import Unsent
    from pipeline.state.records import FeedState, LedgerRow, QueuedAlert, SendCount
    from pipeline.web.server import Server


@dataclass(frozen=True)
class CheckResult:
    """`check`: every problem found in the project's files, and what was counted."""

    problems: tuple[Problem, ...]  # audience files and neighbourhood coverage
    address_warnings: tuple[str, ...]  # addresses the configured transport cannot carry
    template_errors: tuple[str, ...]
    audience_errors: int
    sources: int
    campaigns: int
    contacts: int
    audiences: int
    tips: int

    @property
    def errors(self) -> int:
        """How many problems stop a run."""
        return self.audience_errors + len(self.template_errors)


@dataclass(frozen=True)
class PlanResult:
    """`plan`: the prepared plan (held as a send would hold it) and who already has it."""

    prepared: Prepared
    done: frozenset[str]  # addresses this period's send already reached


@dataclass(frozen=True)
class SendResult:
    """`send`: the ingest that ran first (if any), the send's summary, the outbox used."""

    ingested: IngestSummary | None
    summary: RunSummary
    outbox: Path | None


@dataclass(frozen=True)
class PreviewWritten:
    """One gallery `preview` wrote: a campaign's, or a drip step's."""

    count: int
    path: Path
    step: int | None = None
    template: str = ""


@dataclass(frozen=True)
class ReferralAdded:
    """`referral add`: the new referral's id and the drips that will thank the referrer."""

    id: int
    drips: tuple[str, ...]


@dataclass(frozen=True)
class ReferralUpdated:
    """`referral update`: sent now, already had it, or waiting for quiet hours to end."""

    id: int
    status: ReferralStatus
    by_email: str
    sent: bool
    already_sent: bool
    waits_until: dt.datetime | None = None  # the contact's local time it goes out
    their_time: dt.datetime | None = None  # their local time now (inside quiet hours)


@dataclass(frozen=True)
class ScheduleView:
    """`schedule`: what fell due and did not go out, what is due, what the cap holds."""

    start: dt.datetime
    end: dt.datetime
    late: tuple[Unsent, ...]
    due: tuple[Due | Firing, ...]
    held: tuple[Due | Firing, ...]


@dataclass(frozen=True)
class DraftState:
    """A draft and how many of its people are in each state (sent from the ledger)."""

    draft: Draft
    counts: dict[ReviewState, int]


FAILING_FEED_THRESHOLD = 3  # consecutive failures before a feed is flagged as failing


@dataclass(frozen=True)
class FeedHealth:
    """One configured feed: its state (None: never fetched), when ingest tries a failing
    one again, and the address it has moved to for good ('' unless it moved)."""

    source: Source
    state: FeedState | None
    retry: dt.datetime | None
    moved_to: str

    @property
    def failing(self) -> bool:
        """Failed FAILING_FEED_THRESHOLD times in a row or more."""
        return self.state is not None and \
            self.state.consecutive_failures >= FAILING_FEED_THRESHOLD


@dataclass(frozen=True)
class StatusView:
    """`status`: feeds' health, sends, unknown outcomes, what is next, who is cold."""

    feeds: dict[str, FeedState]
    sends: tuple[SendCount, ...]  # newest first
    pending: tuple[LedgerRow, ...]  # deliveries whose outcome is unknown
    late: tuple[Unsent, ...]
    nexts: tuple[Due, ...]  # the next send of each campaign and drip
    last_tick: str | None
    cold: tuple[str, ...]
    drafts: tuple[DraftState, ...]
    suppressed: int
    suppression_counts: dict[str, int]
    articles: int
    health: tuple[FeedHealth, ...] = ()  # each configured feed, in config order


@dataclass(frozen=True)
class ApprovalQueue:
    """`approve` with nothing to decide: the interest alerts and drafts of the project."""

    alerts: tuple[QueuedAlert, ...]  # of interest-alert campaigns
    drafts: tuple[DraftState, ...]
    notices: tuple[str, ...]  # alerts that expired or were withdrawn meanwhile


@dataclass(frozen=True)
class DraftDecided:
    """One draft `approve` decided: the draft (as it was) and what sends it next."""

    draft: Draft
    when_sent: str  # empty when dropped


@dataclass(frozen=True)
class Approved:
    """`approve`: the queue (its notices first); with nothing to decide `listed` is true
    (or `nothing_waiting` with --all); else the drafts and alerts decided."""

    queue: ApprovalQueue
    listed: bool = False
    nothing_waiting: bool = False
    drafts: tuple[DraftDecided, ...] = ()
    alerts: tuple[QueuedAlert, ...] = ()


@dataclass(frozen=True)
class WebhookService:
    """`webhook serve`: the server, bound and ready to run (the caller closes `sock`),
    the unsubscribe paths it answers, and whether events can be verified."""

    server: Server
    sock: socket.socket
    paths: tuple[str, ...]
    signed: bool  # the Event Webhook's public key is set: signed events are accepted


@dataclass(frozen=True)
class ComingSend:
    """One send on the calendar: its first moment, what, how many people."""

    at: dt.datetime
    name: str
    send_id: str
    people: int


@dataclass(frozen=True)
class HeldDraft:
    """A draft with people held for approval, and how many."""

    draft: Draft
    held: int


@dataclass(frozen=True)
class HomeView:
    """The studio's Home: coming sends, what waits for approval, failing feeds, sends."""

    coming: tuple[ComingSend, ...]
    drafts: tuple[HeldDraft, ...]
    alerts: tuple[QueuedAlert, ...]
    failing_feeds: tuple[FeedState, ...]
    sends: tuple[SendCount, ...]


@dataclass(frozen=True)
class AlertWaiting:
    """A pending interest alert, with its story's title and the person (None: no longer
    in an audience file)."""

    alert: QueuedAlert
    title: str
    contact: Contact | None


@dataclass(frozen=True)
class ContactPreview:
    """What one person would get now from one newsletter of theirs: its picks."""

    campaign: Campaign
    picks: tuple[Pick, ...]


@dataclass(frozen=True)
class SuppressionsSynced:
    """`suppressions sync`: what was fetched from SendGrid, and how many are suppressed."""

    summary: SyncSummary
    total: int


@dataclass(frozen=True)
class EventsRecorded:
    """`report --events FILE`: new events recorded, and how many the file held."""

    added: int
    total: int


@dataclass(frozen=True)
class RecipientState:
    """One person of a draft and where they stand (`sent` from the ledger)."""

    recipient: DraftRecipient
    state: str


def summary_parts(summary: RunSummary, verb: str = "Sent") -> list[str]:
    """The pieces of a send's one-line summary (the CLI's): sent, already sent, failed,
    unknown, skipped with their reasons."""
    from pipeline.runner import skipped_line
    parts = [f"{verb} {summary.sent}"]
    if summary.already_sent:
        parts.append(f"{summary.already_sent} already sent for {summary.send_id}")
    if summary.failed:
        parts.append(f"{summary.failed} failed")
    if summary.unknown:
        parts.append(f"{summary.unknown} outcome unknown (see `sphere status`)")
    if summary.skipped:
        parts.append(skipped_line(summary.skipped))
    return parts


def summary_line(summaries: list[RunSummary]) -> str:
    """'Sent 28, 2 skipped, 0 failed' over a list of run summaries (the studio's)."""
    sent = sum(s.sent for s in summaries)
    skipped = sum(len(s.skipped) for s in summaries)
    failed = sum(s.failed for s in summaries)
    unknown = sum(s.unknown for s in summaries)
    line = f"Sent {sent}, {skipped} skipped, {failed} failed"
    return line + (f", {unknown} unknown (see sphere status)" if unknown else "")
