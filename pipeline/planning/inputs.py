"""What a planner reads: one read-only view of the ledger (built once by the caller from the
store) and the send's other inputs (from the config). Planners are pure functions of these,
the campaign, its contacts and `now`."""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from pipeline.models import Article, Note, Sale, Tip

# The queue's record is the store's; named here too, where planners read it.
from pipeline.state.records import QueuedAlert

_NO_HISTORY: Mapping[str, frozenset[str]] = {}


@dataclass(frozen=True)
class LedgerView:
    """What the store knows that planning needs, read once per send (keys: email_key)."""

    # What each person received (item keys and story clusters), plus what review dropped.
    history: Mapping[str, frozenset[str]] = field(default_factory=dict)
    suppressed: frozenset[str] = frozenset()  # unsubscribed, bounced, complained
    notes: Mapping[str, tuple[Note, ...]] = field(default_factory=dict)  # one-off notes
    # email -> tip id -> when last sent: a finished tip rotation restarts with the oldest.
    tip_last_seen: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Interest alerts only: stories ingested recently, each person's last alert of this
    # campaign, and the campaign's approval queue (already reconciled).
    fresh: frozenset[str] = frozenset()
    last_alert: Mapping[str, dt.datetime] = field(default_factory=dict)
    alerts: tuple[QueuedAlert, ...] = ()


@dataclass(frozen=True)
class PlanInputs:
    """A send's inputs other than the ledger: stored articles and the config's parts."""

    articles: list[Article] = field(default_factory=list)
    tips: tuple[Tip, ...] = ()
    sender_tz: str = "UTC"
    synonyms: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    source_topics: Mapping[str, tuple[str, ...]] | None = None  # source name -> topics
    period: dt.datetime | None = None  # the send's period; None: the latest firing
    sales: tuple[Sale, ...] = ()  # recent_sales: the professional's sales file
    explain: bool = False  # add what each contact did not get, and why
    # Interest alerts: `contacts` is part of the audience (the daemon's due group), so an
    # approved alert of someone else waits for that person's own group.
    partial: bool = False
