"""Frozen dataclasses passed between the pipeline's stages (never loose dicts)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

SourceKind = Literal["neighbourhood", "economy", "hobby", "tips", "market"]
SOURCE_KINDS: tuple[str, ...] = ("neighbourhood", "economy", "hobby", "tips", "market")
RELATIONSHIPS: tuple[str, ...] = ("past_client", "sphere", "referral_source", "prospect")
STATUSES: tuple[str, ...] = ("subscribed", "unsubscribed")
CAMPAIGN_KINDS: tuple[str, ...] = ("newsletter", "recent_sales", "interest_alert")
TRANSPORTS: tuple[str, ...] = ("outbox", "smtp", "sendgrid")
# Sections of a digest, in the order the reader sees them.
SECTIONS: tuple[str, ...] = ("neighbourhood", "market", "interests", "tip")


@dataclass(frozen=True)
class Source:
    """One feed from content_sources.yaml."""

    name: str
    url: str  # http(s) URL, or an absolute path resolved from the project
    kind: str
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
    kind: str
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
    status: str = "subscribed"
    audience: str = ""
    origin: str = ""  # "audiences/sphere.csv:12", for messages

    @property
    def name(self) -> str:
        """Full name, or empty when the file gives none."""
        return " ".join(p for p in (self.first_name, self.last_name) if p)

    @property
    def subscribed(self) -> bool:
        """True unless the audience file says the person unsubscribed."""
        return self.status == "subscribed"


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
    kind: str
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


class _NoExtra(Mapping[str, Any]):
    """The empty, read-only `extra` shared by every email without one (a million emails
    need no million empty dicts); pickles as itself, for the render workers."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __reduce__(self) -> str:
        return "NO_EXTRA"


NO_EXTRA: Mapping[str, Any] = _NoExtra()


@dataclass(frozen=True, slots=True)
class PlannedEmail:
    """What one contact will receive in one send."""

    contact: Contact
    picks: tuple[Pick, ...]
    notes: tuple[Note, ...] = ()
    template: str = ""  # overrides the campaign's (drip steps name their own)
    extra: Mapping[str, Any] = field(default_factory=lambda: NO_EXTRA)  # years, referral...
    rejected: tuple = ()  # explain.Rejected: best candidates left out, with why (--explain)

    def section(self, name: str) -> tuple[Pick, ...]:
        """The picks of one section, in order."""
        return tuple(p for p in self.picks if p.section == name)


@dataclass(frozen=True)
class Skipped:
    """A contact left out of a send, and why."""

    email: str
    reason: str
    rejected: tuple = ()  # explain.Rejected: what was considered and why it lost (--explain)


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
    """What a send did, for the one-line summary and `status`."""

    campaign: str
    send_id: str
    dry_run: bool
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
