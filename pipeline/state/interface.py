"""The storage interface: what the rest of Sphere may ask of the project's state.

Everything outside pipeline/state types against `Ledger`, never against the SQLite class,
and opens the store with `open_store`; a second backend (PostgreSQL, for the team
service) is a new class with these methods plus a branch in `open_store`, not a rewrite.
Every method hands back plain values or the frozen records of records.py.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pipeline.models import (
    AlertStatus,
    Article,
    DraftStatus,
    DueKind,
    Note,
    ReferralStatus,
    RenderedEmail,
    Role,
    SendOutcome,
)
from pipeline.state.records import (
    Draft,
    DraftNote,
    DraftPick,
    FeedState,
    LedgerRow,
    QueuedAlert,
    Received,
    RecentArticle,
    Referral,
    SendCount,
    SendRow,
    StoredEvent,
    StoredNote,
    UserAccount,
)


class StorageFailure(Exception):
    """The backend failed under a command (damage, a lock, a full disk): what callers
    outside the state package catch instead of a driver's own exception class."""


@runtime_checkable
class Ledger(Protocol):
    """The project's state: articles, feed health, the sends ledger, history, notes,
    suppressions, events, referrals, alerts, drafts and the studio's accounts."""

    path: Path | None  # the database file, when the backend is one (sending locks by it)
    origin: Path | None  # what to name in error messages

    # ---- store ------------------------------------------------------------
    def close(self) -> None:
        """Close the store (its connection)."""
        ...

    def backup(self, target: Path) -> int:
        """Copy the database to `target`, consistent while others write; its size."""
        ...

    def migrate(self) -> int:
        """Apply pending numbered migrations; returns the schema version."""
        ...

    def secret(self) -> str:
        """The key that signs unsubscribe links: SPHERE_SECRET, else the project's own."""
        ...

    def secrets(self) -> tuple[str, ...]:
        """Every key an unsubscribe link may be signed with, the signing one first."""
        ...

    def jobstore_url(self) -> str:
        """The SQLAlchemy URL where the daemon's scheduler keeps its jobs."""
        ...

    def meta(self, key: str) -> str | None:
        """A value from the meta table (scheduler checkpoints and the like)."""
        ...

    def set_meta(self, key: str, value: str) -> None:
        """Store a value in the meta table."""
        ...

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Many writes as one transaction (one commit); all or nothing."""
        ...

    # ---- articles ------------------------------------------------------------
    def upsert_articles(self, articles: Iterable[Article], now: dt.datetime) -> tuple[int, int]:
        """Insert new articles and update edited ones; returns (new, updated)."""
        ...

    def article_clusters(self, ids: Iterable[str]) -> dict[str, str]:
        """id -> cluster for those of `ids` that are stored."""
        ...

    def latest_urls(self, source: str, limit: int) -> dict[str, str]:
        """id -> url of the `limit` articles of one source seen most recently."""
        ...

    def recent_articles(self, since: dt.datetime) -> list[RecentArticle]:
        """Articles first seen or published since `since`, oldest first (clustering)."""
        ...

    def articles(self) -> list[Article]:
        """Every stored article, newest first."""
        ...

    def article_count(self) -> int:
        """How many articles are stored."""
        ...

    def feed_state(self, source: str) -> FeedState:
        """Remembered validators and health of one feed."""
        ...

    def feed_states(self) -> list[FeedState]:
        """Health of every feed ever fetched."""
        ...

    def record_feed_success(self, source: str, now: dt.datetime, *, url: str,
                            etag: str | None, last_modified: str | None, new: int = 0,
                            permanent_url: str | None = None, content_hash: str | None = None,
                            outcome: str = "ok") -> None:
        """A fetch succeeded (200 or 304): store validators, reset the failure count."""
        ...

    def record_feed_failure(self, source: str, now: dt.datetime, error: str,
                            url: str | None = None) -> None:
        """A fetch or parse failed at `url`: remember why and count it."""
        ...

    def article_ids_since(self, since: dt.datetime) -> frozenset[str]:
        """Ids of the articles first stored at or after `since` (newly ingested)."""
        ...

    def article_titles(self) -> dict[str, str]:
        """url -> title of every stored article, for naming clicked links."""
        ...

    # ---- ledger ------------------------------------------------------------
    def start_send(self, send_id: str, campaign: str, period: str, now: dt.datetime) -> None:
        """Record that a send began (idempotent: a resumed send keeps its first start)."""
        ...

    def started(self, send_ids: Iterable[str]) -> frozenset[str]:
        """Those of these sends that have begun."""
        ...

    def finish_send(self, send_id: str, now: dt.datetime, outcome: SendOutcome) -> None:
        """Record how a send ended."""
        ...

    def ledger_status(self, send_id: str) -> dict[str, str]:
        """email -> status for every ledger row of one send."""
        ...

    def begin_delivery(self, send_id: str, email: str, message_id: str, transport: str,
                       picks: tuple[str, ...], clusters: tuple[str, ...],
                       note_ids: tuple[int, ...], now: dt.datetime) -> bool:
        """Write the 'pending' row before the transport call; False if one exists already."""
        ...

    def begin_many(self, send_id: str, transport: str, emails: Sequence[RenderedEmail],
                   now: dt.datetime) -> list[bool]:
        """begin_delivery for several messages in one transaction (one fsync, not N)."""
        ...

    def settle_delivery(self, send_id: str, email: str, status: str, now: dt.datetime,
                        provider_id: str = "", error: str = "") -> None:
        """Record the transport's outcome; on 'sent', history and used notes with it."""
        ...

    def settle_many(self, send_id: str, outcomes: Sequence[tuple[str, str, str, str]],
                    now: dt.datetime) -> None:
        """settle_delivery for several (email, status, provider_id, error) at once."""
        ...

    def settle_and_begin(self, send_id: str, transport: str,
                         outcomes: Sequence[tuple[str, str, str, str]],
                         emails: Sequence[RenderedEmail], now: dt.datetime) -> list[bool]:
        """Settle finished messages and begin the next ones in one transaction."""
        ...

    def pending_deliveries(self) -> list[LedgerRow]:
        """Rows whose outcome is unknown (the process stopped between write and settle)."""
        ...

    def send_counts(self) -> list[SendCount]:
        """Every send, newest first, with its sent, failed and unknown counts."""
        ...

    def received_in(self) -> dict[tuple[str, str], str]:
        """(email, item) -> the send that delivered that item to that person."""
        ...

    def tip_last_seen(self) -> dict[str, dict[str, str]]:
        """email -> tip id -> when it was last sent to that person."""
        ...

    def history(self) -> dict[str, frozenset[str]]:
        """email -> every item and story cluster that person has received."""
        ...

    def add_note(self, email: str, text: str, now: dt.datetime) -> int:
        """Queue a one-off note for the next email to this person."""
        ...

    def pending_notes(self) -> dict[str, tuple[Note, ...]]:
        """email -> unused one-off notes, oldest first."""
        ...

    def notes(self, email: str | None = None) -> list[StoredNote]:
        """Every one-off note (optionally for one address), oldest first."""
        ...

    def edit_note(self, note_id: int, text: str) -> bool:
        """Replace an unused note's text; False if there is no such unused note."""
        ...

    def remove_note(self, note_id: int) -> bool:
        """Delete an unused note; False if there is no such unused note."""
        ...

    def received_by(self, email: str) -> list[Received]:
        """Every item delivered to this address, with the send that carried it."""
        ...

    def recent_sends(self, since: dt.datetime) -> dict[str, list[dt.datetime]]:
        """email -> when each email sent since `since` was settled (for the frequency cap)."""
        ...

    def last_sent(self, campaign: str) -> dict[str, dt.datetime]:
        """email -> when this campaign last delivered to that person."""
        ...

    def ledger_rows(self) -> list[LedgerRow]:
        """Every ledger row, oldest first: the input of reports and cold-contact checks."""
        ...

    def send_rows(self) -> list[SendRow]:
        """Every recorded send (id, campaign, period), oldest first."""
        ...

    def provider_sends(self) -> dict[str, str]:
        """provider message id -> send_id, to place events that lack our send id."""
        ...

    # ---- people ------------------------------------------------------------
    def suppress(self, email: str, reason: str, source: str, now: dt.datetime) -> bool:
        """Never mail this address again; False if it was already suppressed."""
        ...

    def suppressed(self) -> frozenset[str]:
        """Every suppressed address, lower-cased."""
        ...

    def is_suppressed(self, email: str) -> bool:
        """True if this address must not be mailed (checked again just before sending)."""
        ...

    def suppressed_among(self, emails: Sequence[str]) -> frozenset[str]:
        """Which of these addresses are suppressed now (email keys), in one query."""
        ...

    def suppress_many(self, rows: Iterable[tuple[str, str, str]], now: dt.datetime) -> int:
        """suppress() for many (email, reason, source) at once; how many were new."""
        ...

    def suppression_counts(self) -> dict[str, int]:
        """reason -> how many addresses are suppressed for it."""
        ...

    def record_events(self, events: Iterable[StoredEvent],
                      suppress: Iterable[tuple[str, str, str]], now: dt.datetime) -> int:
        """Store webhook events (deduplicated) and the suppressions they imply, at once."""
        ...

    def events(self, email: str | None = None) -> list[StoredEvent]:
        """Stored webhook events, oldest first (optionally for one address)."""
        ...

    def provider_took(self, send_id: str, email: str) -> bool:
        """True if the provider reported taking this message (any event but 'dropped')."""
        ...

    def add_referral(self, by_email: str, name: str, received: dt.date,
                     now: dt.datetime) -> int:
        """Record that `by_email` referred `name`; returns the referral id."""
        ...

    def update_referral(self, referral_id: int, status: ReferralStatus, now: dt.datetime
                        ) -> bool:
        """Change a referral's status; False when there is no such referral."""
        ...

    def referrals(self) -> list[Referral]:
        """Every referral, in the order they were recorded."""
        ...

    def referrals_recorded(self) -> dict[int, dt.datetime]:
        """Referral id -> when it was recorded."""
        ...

    def queue_alerts(self, campaign: str, rows: Sequence[tuple[str, str, float, str]],
                     now: dt.datetime) -> int:
        """Queue (email, article_id, score, reason) alerts as pending; how many are new."""
        ...

    def alerts(self, campaign: str | None = None) -> list[QueuedAlert]:
        """Queued interest alerts (optionally of one campaign), oldest first."""
        ...

    def decide_alert(self, alert_id: int, status: AlertStatus, now: dt.datetime,
                     note: str | None = None) -> bool:
        """Approve, drop or mark sent one alert (optionally with an edited note)."""
        ...

    # ---- drafts ------------------------------------------------------------
    def hold_draft(self, send_id: str, name: str, kind: DueKind, period: str,
                   recipients: Sequence[tuple[str, Sequence[DraftPick], str, Mapping[str, Any]]],
                   now: dt.datetime, expires: dt.datetime) -> Draft:
        """Record the draft of `send_id` (or keep it) and add the recipients it lacks."""
        ...

    def drafts(self, draft_id: int | None = None, send_id: str | None = None
               ) -> list[Draft]:
        """Drafts (all, one by id, or the one of a send), oldest first, with their rows."""
        ...

    def drafts_approved_unsent(self) -> list[Draft]:
        """Drafts with someone approved whose email has not gone out yet."""
        ...

    def decide_draft(self, draft_id: int, status: DraftStatus, now: dt.datetime) -> None:
        """Approve or drop a whole draft."""
        ...

    def decide_draft_recipient(self, draft_id: int, email: str, now: dt.datetime, *,
                               approve: bool = False, exclude: bool = False,
                               note: str | None = None) -> bool:
        """Approve one person (maybe with a note) or drop them; False if not in the draft."""
        ...

    def drop_draft_item(self, draft_id: int, email: str, key: str,
                        picks: Sequence[DraftPick] | None = None) -> bool:
        """Drop one story from one person's email in a draft; False if not in it."""
        ...

    def replan_draft_recipient(self, draft_id: int, email: str,
                               picks: Sequence[DraftPick]) -> bool:
        """Replace a waiting person's held stories; False if they are not waiting."""
        ...

    def declined(self) -> dict[str, frozenset[str]]:
        """email -> every story dropped from that person's email in review."""
        ...

    def draft_notes(self, email: str) -> list[DraftNote]:
        """The personal notes written for this person in drafts' sends."""
        ...

    # ---- studio accounts (team mode) ----------------------------------------
    def add_user(self, login: str, role: Role, password_hash: str, now: dt.datetime
                 ) -> bool:
        """Record a new account; False (nothing changed) when the login is taken."""
        ...

    def user(self, login: str) -> UserAccount | None:
        """The account with this login, if there is one."""
        ...

    def users(self) -> list[UserAccount]:
        """Every account of the project, by login."""
        ...

    def set_user_password(self, login: str, password_hash: str, now: dt.datetime) -> bool:
        """Replace an account's password hash; False when there is no such account."""
        ...

    def remove_user(self, login: str) -> bool:
        """Delete an account; False when there was none."""
        ...


def open_store(path: Path, dry_run: bool = False, new_ledger: bool = False,
               verify: bool = False, url: str = "") -> Ledger:
    """Open (and migrate) the project's store; with dry_run, a copy that changes nothing.

    PostgreSQL (pgstore.py) when a database URL is set (SPHERE_DATABASE_URL, else `url`,
    campaigns.yaml's `database_url:`), else the SQLite file at `path`."""
    from pipeline.state.postgres import database_url
    chosen = database_url(url)
    if chosen:
        from pipeline.state.pgstore import PgStore
        return PgStore.open(chosen, dry_run=dry_run, verify=verify)
    from pipeline.state.store import Store
    return Store.open(path, dry_run=dry_run, new_ledger=new_ledger, verify=verify)


def backend_errors() -> tuple[type[Exception], ...]:
    """The exception classes a backend fails with under a command (damage, a lock), for
    the CLI's last-resort message; imported only when one is being handled."""
    import sqlite3
    try:
        import psycopg
    except ImportError:
        return (sqlite3.Error, StorageFailure)
    return (sqlite3.Error, psycopg.Error, StorageFailure)


def describe_failure(origin: Path | None, exc: BaseException) -> Exception:
    """The one line, with the fix, for a backend failure under a command."""
    import sqlite3

    from pipeline.state import dbfile
    if isinstance(exc, sqlite3.Error):
        return dbfile.db_error(origin, exc)
    if type(exc).__module__.startswith("psycopg"):
        from pipeline.errors import StoreError, redact
        return StoreError(f"PostgreSQL failed: {' '.join(redact(str(exc)).split())}",
                          "check the server (its log names the cause), then run the "
                          "command again: each delivery is recorded with its outcome")
    return exc if isinstance(exc, Exception) else Exception(str(exc))
