"""Frozen dataclasses passed between the pipeline's stages (never loose dicts)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pipeline import names


# Kinds and statuses are StrEnums: each member is its own string ("newsletter"), so the
# YAML, the database and JSON keep the same text while the code compares named members.
class SourceKind(StrEnum):
    """What a feed is about (content_sources.yaml `kind`)."""

    NEIGHBOURHOOD = "neighbourhood"
    ECONOMY = "economy"
    HOBBY = "hobby"
    TIPS = "tips"
    MARKET = "market"


class CampaignKind(StrEnum):
    """What a campaign sends (campaigns.yaml `kind`); each has one planner."""

    NEWSLETTER = "newsletter"
    RECENT_SALES = "recent_sales"
    INTEREST_ALERT = "interest_alert"


class ContactStatus(StrEnum):
    """An audience row's `status`."""

    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"


class Role(StrEnum):
    """What a studio account may do in team mode (issue #17)."""

    AGENT = "agent"  # everything: approve and send, change the sender's settings
    ASSISTANT = "assistant"  # draft, personalise and review; never approve or send

    @property
    def may_approve(self) -> bool:
        """Whether this role may approve a send (and so send it) or change settings."""
        return self is Role.AGENT


class AlertStatus(StrEnum):
    """Where a queued interest alert stands."""

    PENDING = "pending"
    APPROVED = "approved"
    DROPPED = "dropped"
    SENT = "sent"


class DraftStatus(StrEnum):
    """Where a held send (a draft), or one person in it, stands in review."""

    PENDING = "pending"
    APPROVED = "approved"
    DROPPED = "dropped"


class LedgerStatus(StrEnum):
    """A delivery's row in the ledger: pending until its outcome is known."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class SendOutcome(StrEnum):
    """How a recorded send ended (None in the ledger while it runs)."""

    DONE = "done"
    PAUSED = "paused"
    FAILED = "failed"


class FetchStatus(StrEnum):
    """What fetching a feed gave."""

    OK = "ok"
    NOT_MODIFIED = "not_modified"
    FAILED = "failed"


class ReviewState(StrEnum):
    """One person of a draft, as review shows them."""

    HELD = "held"
    APPROVED = "approved"
    DROPPED = "dropped"
    EXPIRED = "expired"
    SENT = "sent"
    FAILED = "failed"
    PENDING = "pending"
    SCHEDULED = "sends on schedule"  # a campaign sent without approval, as the studio shows it


ReferralStatus = names.ReferralStatus  # defined with the CLI's cheap names


class DueKind(StrEnum):
    """What a calendar item sends: a campaign's firing or a drip step."""

    CAMPAIGN = "campaign"
    DRIP = "drip"


SOURCE_KINDS: tuple[str, ...] = tuple(SourceKind)
RELATIONSHIPS: tuple[str, ...] = ("past_client", "sphere", "referral_source", "prospect")
STATUSES: tuple[str, ...] = tuple(ContactStatus)
CAMPAIGN_KINDS: tuple[str, ...] = tuple(CampaignKind)
TRANSPORTS: tuple[str, ...] = names.TRANSPORTS  # the one list, kept cheap for the CLI
# Sections of a digest, in the order the reader sees them.
SECTIONS: tuple[str, ...] = ("neighbourhood", "market", "interests", "tip")


@dataclass(frozen=True)
class Source:
    """One feed from content_sources.yaml."""

    name: str
    url: str  # http(s) URL, or an absolute path resolved from the project
    kind: SourceKind
    neighbourhood: str = ""
    topics: tuple[str, ...] = ()
    line: int = 0  # where it is declared, for error messages
    # May reach loopback and private addresses (a feed on the user's own network, the
    # tests' loopback servers). Link-local ones (cloud metadata) stay refused regardless.
    allow_private: bool = False
    # The project folder a local `url` must stay inside (after resolving symlinks); a
    # local source without one is not read.
    root: str = ""

    @property
    def is_remote(self) -> bool:
        """True when the source is fetched over HTTP rather than read from disk."""
        return self.url.startswith(("http://", "https://"))


@dataclass(frozen=True)
class Article:
    """A sanitised feed entry as stored in SQLite."""

    id: str  # stable identity: source + guid/link/hash
    source: str
    kind: SourceKind
    url: str
    title: str
    summary_html: str  # sanitised with an allow-list; never trusted further
    summary_text: str  # plain text, escaped on output
    published: dt.datetime | None
    neighbourhood: str = ""  # the source's neighbourhood, for neighbourhood feeds
    topics: tuple[str, ...] = ()  # feed-declared topics + entry categories
    image_url: str = ""
    cluster: str = ""  # near-duplicate key: the same story from two sources shares it
    profile: TopicProfile | None = None  # hobby topics, computed once at ingest


@dataclass(frozen=True)
class TopicProfile:
    """Which hobbies an article is about, by the taxonomy (taxonomy.profile, at ingest)."""

    version: str  # taxonomy and scoring version: another one is recomputed, not trusted
    topics: tuple[tuple[str, float, str], ...] = ()  # (topic, score, evidence), best first
    business: bool = False  # reads as company or stock-market news


@dataclass(frozen=True)
class Tip:
    """One piece of advice from the tips library."""

    id: str
    topic: str
    title: str
    body: str
    season: str = ""


# Slots: a send can hold a million contacts and planned emails; without a __dict__ each
# is about a third the size (issue 18: planning 1M contacts under 1 GB).
@dataclass(frozen=True, slots=True)
class Contact:
    """A person in an audience file."""

    email: str
    first_name: str = ""
    last_name: str = ""
    neighbourhood: str = ""
    interests: tuple[str, ...] = ()
    relationship: str = "sphere"
    closing_date: dt.date | None = None
    timezone: str = ""
    note: str = ""  # printed in their newsletters; the audience's `private_note` column is
    # deliberately not a field: what is not here no template can print
    status: ContactStatus = ContactStatus.SUBSCRIBED
    audience: str = ""
    origin: str = ""  # "audiences/sphere.csv:12", for messages

    @property
    def name(self) -> str:
        """Full name, or empty when the file gives none."""
        return " ".join(p for p in (self.first_name, self.last_name) if p)

    @property
    def subscribed(self) -> bool:
        """True unless the audience file says the person unsubscribed."""
        return self.status == ContactStatus.SUBSCRIBED


@dataclass(frozen=True)
class Brand:
    """Colours and logo used by the templates."""

    primary: str = "#1F5F8B"
    accent: str = "#E07A3F"
    text: str = "#222222"
    background: str = "#F4F1EC"
    logo_url: str = ""


@dataclass(frozen=True)
class Sender:
    """The professional the emails come from."""

    name: str
    email: str
    postal_address: str
    reply_to: str = ""
    phone: str = ""
    brokerage: str = ""
    timezone: str = "UTC"
    title: str = ""
    website: str = ""
    photo_url: str = ""
    signature: str = ""
    unsubscribe_url: str = ""  # public base URL of `sphere webhook serve`, if any
    referral_ask: str = ""
    brand: Brand = field(default_factory=Brand)


@dataclass(frozen=True)
class SectionSizes:
    """How many items each section of a digest holds at most."""

    neighbourhood: int = 2
    market: int = 2
    interests: int = 3
    tip: int = 1


@dataclass(frozen=True)
class Campaign:
    """One campaign from campaigns.yaml."""

    name: str
    kind: CampaignKind
    audiences: tuple[str, ...]
    schedule: str
    subject: str
    intro: str = ""
    preheader: str = ""
    template: str = ""  # defaults to the kind's template
    sections: SectionSizes = field(default_factory=SectionSizes)
    max_age_days: int | None = 45  # older articles are stale; None keeps everything
    max_per_source: int = 2
    skip_empty: bool = True  # a contact with nothing worth sending gets no email
    line: int = 0
    # recent_sales: the professional's sales CSV, how far back, how many per email
    sales_file: str = ""
    sales_window_days: int | None = 120  # None shows every sale in the file
    sales_limit: int = 4
    # interest_alert: how strong a match must be, how often one person may get one, and
    # whether the professional approves each before it goes
    alert_threshold: float = 2.5
    alert_throttle_days: int = 14
    # Every kind: hold each due send as a draft for `sphere approve` (interest alerts
    # queue each alert instead); an undecided draft expires after this many days.
    approval: bool = False
    approval_expires_days: int = 7


@dataclass(frozen=True)
class Pick:
    """An article (or tip) chosen for a contact, with the reason it was chosen."""

    section: str
    reason: str
    score: float
    article: Article | None = None
    tip: Tip | None = None
    general: bool = False  # filler, not matched to this person

    @property
    def key(self) -> str:
        """The id recorded in the never-repeat history."""
        return self.article.id if self.article else f"tip:{self.tip.id}"  # type: ignore[union-attr]


@dataclass(frozen=True, slots=True)
class SalesExtra:
    """A recent-sales mailer's own content: the sales shown, how many in their area."""

    sales: tuple[Sale, ...]
    own_sales: int  # how many of `sales` are in the contact's own neighbourhood

    def variables(self) -> dict[str, Any]:
        """The template variables it gives."""
        return {"sales": self.sales, "own_sales": self.own_sales}


@dataclass(frozen=True, slots=True)
class AlertExtra:
    """An interest alert's opening: the professional's short personal note."""

    intro: str

    def variables(self) -> dict[str, Any]:
        """The template variables it gives."""
        return {"intro": self.intro}


@dataclass(frozen=True, slots=True)
class ReferralInfo:
    """The referral a drip step or a referral update is about."""

    id: int
    name: str
    status: ReferralStatus


@dataclass(frozen=True, slots=True)
class DripExtra:
    """A drip step's own content: the referral it is about, the anniversary's year count
    (`years`) or a repeat's count (`times`)."""

    referral: ReferralInfo | None = None
    years: int | None = None
    times: int | None = None

    def variables(self) -> dict[str, Any]:
        """The template variables it gives (the referral as a mapping, as templates and
        the drafts table have always seen it)."""
        out: dict[str, Any] = {}
        if self.referral is not None:
            r = self.referral
            out["referral"] = {"id": r.id, "name": r.name, "status": r.status}
        if self.years is not None:
            out["years"] = self.years
        if self.times is not None:
            out["times"] = self.times
        return out

    @classmethod
    def from_variables(cls, data: Mapping[str, Any]) -> DripExtra | None:
        """Back from `variables()` (a draft's stored JSON); None when it holds nothing."""
        if not data:
            return None
        ref = data.get("referral")
        referral = ReferralInfo(int(ref.get("id", 0)), str(ref.get("name", "")),
                                ReferralStatus(str(ref.get("status", "received")))) if ref \
            else None
        return cls(referral, data.get("years"), data.get("times"))


Extra = SalesExtra | AlertExtra | DripExtra


def template_variables(extra: Extra | None) -> dict[str, Any]:
    """The template variables of one email's kind-specific content ({} for none)."""
    return extra.variables() if extra is not None else {}


@dataclass(frozen=True)
class Rejected:
    """A candidate left out of one contact's email, and why (--explain)."""

    section: str
    article_id: str
    title: str
    source: str
    score: float
    why: str


@dataclass(frozen=True, slots=True)
class PlannedEmail:
    """What one contact will receive in one send."""

    contact: Contact
    picks: tuple[Pick, ...]
    notes: tuple[Note, ...] = ()
    template: str = ""  # overrides the campaign's (drip steps name their own)
    extra: Extra | None = None  # the kind's own content: sales, an alert's note, a drip's
    rejected: tuple[Rejected, ...] = ()  # best candidates left out, with why (--explain)

    def section(self, name: str) -> tuple[Pick, ...]:
        """The picks of one section, in order."""
        return tuple(p for p in self.picks if p.section == name)


@dataclass(frozen=True)
class Skipped:
    """A contact left out of a send, and why."""

    email: str
    reason: str
    rejected: tuple[Rejected, ...] = ()  # what was considered and why it lost (--explain)


@dataclass(frozen=True)
class Plan:
    """Everything one send will do: who gets what, who is skipped and why."""

    campaign: Campaign
    send_id: str  # "<campaign>@<period>": the ledger's key for exactly-once
    period: str
    emails: tuple[PlannedEmail, ...]
    skipped: tuple[Skipped, ...] = ()
    # With --explain: each interest as typed -> how it was read ("'loves golf' -> golf")
    understood: Mapping[str, str] = field(default_factory=dict)
    # Interest alerts with approval: new alerts for the caller to queue for review (the
    # planner is pure; runner.prepare writes them).
    queue: tuple[AlertRequest, ...] = ()


@dataclass(frozen=True)
class AlertRequest:
    """A new interest alert to queue for the professional's approval."""

    email: str
    article_id: str
    score: float
    reason: str


@dataclass(frozen=True)
class Note:
    """A one-off personal note for the next email to a contact."""

    id: int
    email: str
    text: str


@dataclass(frozen=True)
class RenderedEmail:
    """A finished message, ready for any transport."""

    send_id: str
    contact: Contact
    message_id: str
    subject: str
    preheader: str
    html: str
    text: str
    raw: bytes  # the RFC 5322 message, multipart/alternative
    pick_keys: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    note_ids: tuple[int, ...] = ()
    # The transport's own request body, built beside the rendering in a worker process
    # (SendGrid's v3 JSON); empty when the transport builds it itself.
    wire: bytes = b""


@dataclass(frozen=True)
class Delivery:
    """The outcome of handing one message to a transport."""

    email: str
    status: Literal["sent", "failed", "unknown", "skipped"]
    transport: str
    provider_id: str = ""
    error: str = ""
    # The relay refused the address itself for good (550 5.1.1 user unknown): it is
    # suppressed, so no transport mails it again.
    bounced: bool = False


@dataclass(frozen=True)
class RunSummary:
    """What a send did, for the one-line summary and `status`: dispatch counts it, the
    runner adds the campaign, the plan's skips and the time taken."""

    campaign: str = ""
    send_id: str = ""
    dry_run: bool = False
    sent: int = 0
    already_sent: int = 0
    failed: int = 0
    unknown: int = 0
    skipped: tuple[Skipped, ...] = ()
    problems: tuple[str, ...] = ()  # contacts rejected by validation
    failures: tuple[str, ...] = ()
    paused: str = ""  # why the run stopped early, if it did
    seconds: float = 0.0


@dataclass(frozen=True)
class Sale:
    """One of the professional's recent sales, from the sales CSV they keep."""

    address: str
    neighbourhood: str
    price: int
    sold_date: dt.date
    beds: int = 0
    baths: float = 0
    days_on_market: int = 0
    photo_url: str = ""
    note: str = ""

    @property
    def price_text(self) -> str:
        """'$1,250,000'."""
        return f"${self.price:,}"

    @property
    def baths_text(self) -> str:
        """'2' or '2.5': no '.0' for whole baths."""
        return f"{self.baths:g}"
