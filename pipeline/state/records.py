"""What the store hands back: frozen dataclasses with named fields, never positional
rows. Plain data (no SQLite here), so every stage and every backend can share them."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from pipeline.addresses import email_key
from pipeline.models import (
    AlertStatus,
    DraftStatus,
    DripExtra,
    DueKind,
    LedgerStatus,
    ReferralStatus,
    ReviewState,
    Role,
    SendOutcome,
)


@dataclass(frozen=True)
class FeedState:
    """What we remember about one feed between runs."""

    source: str
    etag: str | None = None
    last_modified: str | None = None
    permanent_url: str | None = None
    last_attempt: str | None = None
    last_success: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    consecutive_failures: int = 0
    articles_seen: int = 0  # distinct articles stored from this feed
    url: str | None = None  # the url the validators and content_hash belong to
    content_hash: str | None = None
    last_outcome: str | None = None  # ok | not_modified | failed
    last_new: int = 0  # new articles on the last successful run


@dataclass(frozen=True)
class RecentArticle:
    """A stored story as clustering needs it (a new story may be its near-duplicate)."""

    id: str
    source: str
    url: str
    title: str
    cluster: str


@dataclass(frozen=True)
class LedgerRow:
    """One (send, contact) row of the ledger."""

    send_id: str
    email: str
    message_id: str
    status: LedgerStatus
    transport: str
    error: str
    created: str
    settled: str | None

    def __post_init__(self) -> None:
        # A backend reads the column as text: the record holds the member, whichever.
        object.__setattr__(self, "status", LedgerStatus(self.status))


@dataclass(frozen=True)
class SendCount:
    """One recorded send and how its ledger rows stand."""

    send_id: str
    started: str | None
    finished: str | None
    outcome: SendOutcome | None  # None while running (or when the process stopped mid-send)
    sent: int
    failed: int
    pending: int  # outcome unknown

    def __post_init__(self) -> None:
        if self.outcome is not None:
            object.__setattr__(self, "outcome", SendOutcome(self.outcome))


@dataclass(frozen=True)
class SendRow:
    """One recorded send: its id, its campaign (or drip) and its period label."""

    send_id: str
    campaign: str
    period: str


@dataclass(frozen=True)
class Received:
    """One item (story, tip) delivered to one person, and the send that carried it."""

    email: str
    item: str
    send_id: str


@dataclass(frozen=True)
class StoredEvent:
    """One provider event (SendGrid Event Webhook), as kept for reports."""

    sg_event_id: str
    event: str  # processed, delivered, open, click, bounce, spamreport, unsubscribe ...
    email: str
    timestamp: int  # unix seconds, as SendGrid reports it
    sg_message_id: str = ""
    send_id: str = ""  # our custom_args sphere_send_id
    url: str = ""  # the link, for clicks
    reason: str = ""  # bounce/drop reason


@dataclass(frozen=True)
class StoredNote:
    """A one-off note as stored: unused until an email carrying it was sent."""

    id: int
    email: str
    text: str
    created: str
    used: str | None  # when the email that carried it was sent
    used_send_id: str | None


@dataclass(frozen=True)
class Referral:
    """Someone a contact referred to the professional."""

    id: int
    by_email: str
    name: str
    received: dt.date
    status: ReferralStatus = ReferralStatus.RECEIVED
    updated: dt.datetime | None = None  # when the status last changed
    recorded: dt.datetime | None = None  # when it was entered (`sphere referral add`)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", ReferralStatus(self.status))


@dataclass(frozen=True)
class QueuedAlert:
    """An interest alert waiting for, or given, the professional's approval."""

    id: int
    email: str
    article_id: str
    reason: str
    note: str
    status: AlertStatus
    campaign: str = ""
    score: float = 0.0
    created: dt.datetime | None = None


@dataclass(frozen=True)
class DraftPick:
    """One pick as the draft stores it (an article id or 'tip:<id>', with its reason)."""

    section: str
    key: str
    reason: str
    score: float = 0.0
    general: bool = False


@dataclass(frozen=True)
class DraftRecipient:
    """One person in a draft, with what review may change for them."""

    email: str
    status: DraftStatus  # pending (follows the draft) | approved (this person alone)
    picks: tuple[DraftPick, ...]
    created: dt.datetime
    template: str = ""
    extra: DripExtra | None = None  # a drip step's referral, years or times
    note: str = ""  # a personal note for this send only
    excluded: bool = False  # dropped from this send in review
    dropped_items: tuple[str, ...] = ()  # pick keys removed in review


@dataclass(frozen=True)
class Draft:
    """One held send."""

    id: int
    send_id: str
    name: str  # the campaign or drip
    kind: DueKind
    period: str
    created: dt.datetime
    expires: dt.datetime
    status: DraftStatus
    decided: dt.datetime | None
    recipients: tuple[DraftRecipient, ...]

    def approved(self, r: DraftRecipient) -> bool:
        """True if this person's email may go: approved alone, or with the whole draft
        (someone added to the draft after that decision was not part of it)."""
        if r.excluded or self.status == DraftStatus.DROPPED:
            return False
        return r.status == DraftStatus.APPROVED or (
            self.status == DraftStatus.APPROVED and self.decided is not None and
            r.created <= self.decided)

    def expired(self, now: dt.datetime) -> bool:
        """Past its expiry with the whole send still undecided."""
        return self.status == DraftStatus.PENDING and now >= self.expires

    def state(self, r: DraftRecipient, now: dt.datetime) -> ReviewState:
        """dropped | approved | expired | held, for one recipient."""
        if r.excluded or self.status == DraftStatus.DROPPED:
            return ReviewState.DROPPED
        if self.approved(r):
            return ReviewState.APPROVED
        return ReviewState.EXPIRED if now >= self.expires else ReviewState.HELD

    def recipient(self, email: str) -> DraftRecipient | None:
        """The row of one address, if it is in the draft."""
        key = email_key(email)
        return next((r for r in self.recipients if r.email == key), None)


@dataclass(frozen=True)
class DraftNote:
    """A personal note written for one person in one draft's send."""

    send_id: str
    note: str
    when: str  # when it was decided (or the row created)


@dataclass(frozen=True)
class UserAccount:
    """One studio account of the project (team mode): its login, role and password hash."""

    login: str
    role: Role
    password_hash: str = field(repr=False)  # argon2id; never shown, never logged
    created: str
    updated: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", Role(self.role))
