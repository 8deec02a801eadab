"""SQLite state: articles, feed health, the sends ledger, history, notes, suppressions."""
from __future__ import annotations

import datetime as dt
import json
import secrets
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.state import dbfile
from pipeline.errors import StoreError
from pipeline.rendering.links import link_keys
from pipeline.state.migrations import MIGRATIONS
from pipeline.models import Article, Note, RenderedEmail, TopicProfile

# Seconds a command waits for another process's write to finish before it says the
# database is locked (a send commits often, so a real wait is short).
BUSY_TIMEOUT = 30.0

def _iso(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.timezone.utc).isoformat() if moment else None


def _parse(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _profile_json(profile: TopicProfile | None) -> str:
    """An article's topic profile as stored ('' when none was computed)."""
    if profile is None:
        return ""
    return json.dumps({"v": profile.version, "t": [list(t) for t in profile.topics],
                       "b": profile.business}, ensure_ascii=False)


def _profile(text: str) -> TopicProfile | None:
    """The stored topic profile, or None (then the matcher computes it)."""
    if not text:
        return None
    doc = json.loads(text)
    return TopicProfile(doc["v"], tuple((str(t), float(s), str(h)) for t, s, h in doc["t"]),
                        bool(doc.get("b")))


def _begin_row(tx: sqlite3.Connection, send_id: str, email: str, message_id: str,
               transport: str, picks: tuple[str, ...], clusters: tuple[str, ...],
               note_ids: tuple[int, ...], stamp: str | None) -> bool:
    row = tx.execute("SELECT status FROM deliveries WHERE send_id=? AND email=?",
                     (send_id, email)).fetchone()
    if row is not None and row[0] != "failed":
        return False
    tx.execute("INSERT OR REPLACE INTO deliveries (send_id, email, message_id, status, "
               "transport, picks, clusters, note_ids, attempts, created) "
               "VALUES (?,?,?,'pending',?,?,?,?, coalesce((SELECT attempts FROM "
               "deliveries WHERE send_id=? AND email=?), 0) + 1, ?)",
               (send_id, email, message_id, transport, json.dumps(list(picks)),
                json.dumps(list(clusters)), json.dumps(list(note_ids)), send_id, email,
                stamp))
    return True


def _settle_row(tx: sqlite3.Connection, send_id: str, email: str, status: str,
                stamp: str | None, provider_id: str, error: str) -> None:
    row = tx.execute("SELECT picks, clusters, note_ids FROM deliveries "
                     "WHERE send_id=? AND email=?", (send_id, email)).fetchone()
    if row is None:
        raise StoreError(f"no ledger row for {email} in {send_id}")
    tx.execute("UPDATE deliveries SET status=?, provider_id=?, error=?, settled=? "
               "WHERE send_id=? AND email=?",
               (status, provider_id, error[:1000], stamp, send_id, email))
    if status != "sent":
        return
    picks, clusters = json.loads(row["picks"]), json.loads(row["clusters"])
    key = email.lower()
    # Upsert: an item sent again (a tip, once the rotation is used up) records its
    # latest send, which is what the rotation's restart orders by. One executemany per
    # message: the dispatcher settles thousands a second on one thread.
    tx.executemany("INSERT INTO history VALUES (?,?,?,?,?) ON CONFLICT(email, item) DO "
                   "UPDATE SET send_id=excluded.send_id, sent=excluded.sent",
                   [(key, item, cluster, send_id, stamp) for item, cluster in
                    zip(picks, clusters + [""] * (len(picks) - len(clusters)))])
    note_ids = json.loads(row["note_ids"])
    if note_ids:
        tx.executemany("UPDATE notes SET used=?, used_send_id=? WHERE id=? AND used IS NULL",
                       [(stamp, send_id, note_id) for note_id in note_ids])


def _snapshot_source(path: Path) -> sqlite3.Connection:
    """A read-only connection that sees every committed write, for a dry run's copy.

    While another process (the webhook service, the daemon) has the database open, the
    latest commits live in the -wal file: `immutable=1` would skip them and a dry run
    would still list a contact unsubscribed seconds ago, so then we read through the WAL
    like any reader. Without a -wal file everything is in the main file, and
    `immutable=1` reads it without creating -wal/-shm files: a dry run touches nothing.
    """
    wal = path.with_name(path.name + "-wal")
    mode = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
    # as_uri() escapes a '?' or '#' in the folder name; Store.open words any error.
    return sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True,
                           timeout=BUSY_TIMEOUT)


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
class LedgerRow:
    """One (send, contact) row of the ledger."""

    send_id: str
    email: str
    message_id: str
    status: str
    transport: str
    error: str
    created: str
    settled: str | None


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


class Store:
    """The project's SQLite file. Every write is one short transaction."""

    def __init__(self, conn: sqlite3.Connection, path: Path | None,
                 origin: Path | None = None) -> None:
        self.conn = conn
        self.path = path  # None for an in-memory copy (a dry run)
        self.origin = origin or path  # the file it holds, to name in error messages
        self._batched = False  # inside batch(): transaction() joins its one transaction

    # ---- opening -------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, dry_run: bool = False, new_ledger: bool = False,
             verify: bool = False) -> Store:
        """Open (and migrate) the database; with dry_run, work on an in-memory copy.

        Refuses an empty database where earlier sends left traces unless `new_ledger`
        (see dbfile.py); with `verify`, runs SQLite's quick check first, so a damaged
        ledger stops a send before anything goes out. Every SQLite failure becomes a
        StoreError with the fix."""
        try:
            store = cls._connect(path, dry_run, new_ledger)
        except sqlite3.Error as exc:
            raise dbfile.db_error(path, exc) from None
        try:
            if verify:
                problem = store.conn.execute("PRAGMA quick_check(1)").fetchone()[0]
                if problem != "ok":
                    raise dbfile.damaged(path, f"quick check: {problem}")
            store.migrate()
        except BaseException as exc:
            store.close()
            if isinstance(exc, sqlite3.Error):
                raise dbfile.db_error(path, exc) from None
            raise
        return store

    @classmethod
    def _connect(cls, path: Path, dry_run: bool, new_ledger: bool) -> Store:
        if dry_run:
            # A dry run must change nothing on disk, ledger included: copy the file into
            # memory and let the run write there.
            mem = sqlite3.connect(":memory:", isolation_level=None)
            if path.exists():
                src = _snapshot_source(path)
                try:
                    src.backup(mem)  # the backup API reads one consistent snapshot
                finally:
                    src.close()
            dbfile.refuse_lost_ledger(mem, path, new_ledger)
            store = cls(mem, None, origin=path)
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                dbfile.make_private(path)
            except OSError as exc:
                raise StoreError(f"cannot create {path}: {exc.strerror}",
                                 "check the folder is writable, or set state_dir") from None
            conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT)
            try:
                # Before anything writes to it: an empty file here may be a lost ledger.
                dbfile.refuse_lost_ledger(conn, path, new_ledger)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
            except BaseException:
                conn.close()
                raise
            store = cls(conn, path)
        store.conn.row_factory = sqlite3.Row
        store.conn.execute("PRAGMA foreign_keys=ON")
        return store

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def backup(self, target: Path) -> int:
        """Copy the database to `target` (SQLite's online backup); returns its size."""
        try:
            return dbfile.backup(self.conn, target)
        except sqlite3.Error as exc:
            raise dbfile.db_error(self.origin, exc) from None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception; inside batch(),
        part of the batch's one transaction."""
        if self._batched:
            yield self.conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Many writes in one transaction, so one commit (one fsync) instead of one
        each: ingest records 500 feeds' states and articles this way. All or nothing:
        an exception rolls the whole batch back."""
        with self.transaction():
            self._batched = True
            try:
                yield
            finally:
                self._batched = False

    def migrate(self) -> int:
        """Apply pending numbered migrations; returns the schema version."""
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(f"database schema {version} is newer than this Sphere "
                             f"({len(MIGRATIONS)})", "upgrade Sphere")
        for number in range(version + 1, len(MIGRATIONS) + 1):
            with self.transaction() as tx:
                for statement in MIGRATIONS[number - 1].split(";"):
                    if statement.strip():
                        tx.execute(statement)
                tx.execute(f"PRAGMA user_version = {number}")
        return len(MIGRATIONS)

    # ---- meta ----------------------------------------------------------------------
    def secret(self) -> str:
        """The key that signs unsubscribe links: SPHERE_SECRET, else the project's own."""
        return self.secrets()[0]

    def secrets(self) -> tuple[str, ...]:
        """Every key an unsubscribe link may be signed with, the signing one first."""
        return link_keys(self._project_secret)

    def _project_secret(self) -> str:
        """A per-project random key for signing unsubscribe links (made once)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key='link_secret'").fetchone()
        if row:
            return row[0]
        value = secrets.token_urlsafe(32)
        with self.transaction() as tx:
            tx.execute("INSERT OR IGNORE INTO meta VALUES ('link_secret', ?)", (value,))
        return self.conn.execute("SELECT value FROM meta WHERE key='link_secret'").fetchone()[0]

    # ---- articles ------------------------------------------------------------------
    def upsert_articles(self, articles: Iterable[Article], now: dt.datetime) -> tuple[int, int]:
        """Insert new articles and update edited ones; returns (new, updated).

        An update keeps the stored cluster: it may already be in someone's history, and
        moving the story to another cluster would let its twin reach them again."""
        new = updated = 0
        stamp = _iso(now)
        with self.transaction() as tx:
            for a in articles:
                values = (a.source, a.kind, a.url, a.title, a.summary_html, a.summary_text,
                          _iso(a.published), a.neighbourhood, json.dumps(list(a.topics)),
                          a.image_url)
                profile = _profile_json(a.profile)
                row = tx.execute("SELECT source, kind, url, title, summary_html, "
                                 "summary_text, published, neighbourhood, topics, image_url, "
                                 "profile FROM articles WHERE id=?", (a.id,)).fetchone()
                if row is None:
                    tx.execute("INSERT INTO articles (source, kind, url, title, summary_html, "
                               "summary_text, published, neighbourhood, topics, image_url, "
                               "cluster, id, first_seen, updated, profile) "
                               "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                               (*values, a.cluster, a.id, stamp, stamp, profile))
                    new += 1
                elif tuple(row)[:-1] != values:
                    tx.execute("UPDATE articles SET source=?, kind=?, url=?, title=?, "
                               "summary_html=?, summary_text=?, published=?, neighbourhood=?, "
                               "topics=?, image_url=?, updated=?, profile=? WHERE id=?",
                               (*values, stamp, profile, a.id))
                    updated += 1
                elif profile and row[-1] != profile:
                    # The same story read by a newer taxonomy: not an edit.
                    tx.execute("UPDATE articles SET profile=? WHERE id=?", (profile, a.id))
        return new, updated

    def article_clusters(self, ids: Iterable[str]) -> dict[str, str]:
        """id -> cluster for those of `ids` that are stored."""
        wanted = list(ids)
        found: dict[str, str] = {}
        for start in range(0, len(wanted), 500):  # SQLite caps bound parameters
            chunk = wanted[start:start + 500]
            found.update(self.conn.execute(
                f"SELECT id, cluster FROM articles WHERE id IN ({','.join('?' * len(chunk))})",
                chunk).fetchall())
        return found

    def latest_urls(self, source: str, limit: int) -> dict[str, str]:
        """id -> url of the `limit` articles of one source seen most recently."""
        return {r[0]: r[1] for r in self.conn.execute(
            "SELECT id, url FROM articles WHERE source=? ORDER BY first_seen DESC, id "
            "LIMIT ?", (source, limit))}

    def recent_articles(self, since: dt.datetime) -> list[tuple[str, str, str, str, str]]:
        """(id, source, url, title, cluster) of articles first seen or published since
        `since`, oldest first: the candidates a new story may be a near-duplicate of."""
        stamp = _iso(since)
        return [tuple(r) for r in self.conn.execute(
            "SELECT id, source, url, title, cluster FROM articles "
            "WHERE first_seen >= ? OR published >= ? ORDER BY first_seen, id",
            (stamp, stamp))]

    def articles(self) -> list[Article]:
        """Every stored article, newest first."""
        rows = self.conn.execute("SELECT * FROM articles ORDER BY published DESC, id")
        return [Article(id=r["id"], source=r["source"], kind=r["kind"], url=r["url"],
                        title=r["title"], summary_html=r["summary_html"],
                        summary_text=r["summary_text"], published=_parse(r["published"]),
                        neighbourhood=r["neighbourhood"], topics=tuple(json.loads(r["topics"])),
                        image_url=r["image_url"], cluster=r["cluster"],
                        profile=_profile(r["profile"])) for r in rows]

    def article_count(self) -> int:
        """How many articles are stored."""
        return self.conn.execute("SELECT count(*) FROM articles").fetchone()[0]

    # ---- feed state ----------------------------------------------------------------
    def feed_state(self, source: str) -> FeedState:
        """Remembered validators and health of one feed."""
        row = self.conn.execute("SELECT * FROM feed_state WHERE source=?", (source,)).fetchone()
        return FeedState(**dict(row)) if row else FeedState(source=source)

    def feed_states(self) -> list[FeedState]:
        """Health of every feed ever fetched."""
        return [FeedState(**dict(r)) for r in
                self.conn.execute("SELECT * FROM feed_state ORDER BY source")]

    def record_feed_success(self, source: str, now: dt.datetime, *, url: str,
                            etag: str | None, last_modified: str | None, new: int = 0,
                            permanent_url: str | None = None, content_hash: str | None = None,
                            outcome: str = "ok") -> None:
        """A fetch succeeded (200 or 304): store validators, reset the failure count.

        permanent_url is replaced, not kept: once the user updates the url (or the
        server stops redirecting) the advice to move disappears."""
        stamp = _iso(now)
        with self.transaction() as tx:
            tx.execute("INSERT OR IGNORE INTO feed_state (source) VALUES (?)", (source,))
            tx.execute("UPDATE feed_state SET etag=?, last_modified=?, last_attempt=?, "
                       "last_success=?, consecutive_failures=0, permanent_url=?, url=?, "
                       "content_hash=coalesce(?, content_hash), last_outcome=?, last_new=?, "
                       "articles_seen=(SELECT count(*) FROM articles WHERE source=?) "
                       "WHERE source=?",
                       (etag, last_modified, stamp, stamp, permanent_url, url, content_hash,
                        outcome, new, source, source))

    def record_feed_failure(self, source: str, now: dt.datetime, error: str,
                            url: str | None = None) -> None:
        """A fetch or parse failed: remember why and count it, and at which `url` (the
        retry backoff, fetch.backing_off, holds for that url only). A failure at a new
        url drops the old url's validators: they belong to the url that gave them."""
        stamp = _iso(now)
        with self.transaction() as tx:
            tx.execute("INSERT OR IGNORE INTO feed_state (source) VALUES (?)", (source,))
            if url is not None:
                tx.execute("UPDATE feed_state SET url=?, etag=NULL, last_modified=NULL, "
                           "content_hash=NULL WHERE source=? AND url IS NOT ?",
                           (url, source, url))
            tx.execute("UPDATE feed_state SET last_attempt=?, last_error=?, last_error_at=?, "
                       "consecutive_failures=consecutive_failures+1, last_outcome='failed' "
                       "WHERE source=?",
                       (stamp, error[:500], stamp, source))

    # ---- sends and the ledger ------------------------------------------------------
    def start_send(self, send_id: str, campaign: str, period: str, now: dt.datetime) -> None:
        """Record that a send began (idempotent: a resumed send keeps its first start)."""
        if self.path is not None:
            dbfile.mark_ledger(self.path)  # a trace of sends that outlives the database file
        with self.transaction() as tx:
            tx.execute("INSERT OR IGNORE INTO sends (id, campaign, period, started) "
                       "VALUES (?,?,?,?)", (send_id, campaign, period, _iso(now)))

    def started(self, send_ids: Iterable[str]) -> frozenset[str]:
        """Those of these sends that have begun."""
        ids = list(send_ids)
        return frozenset(r[0] for r in self.conn.execute(
            f"SELECT id FROM sends WHERE id IN ({','.join('?' * len(ids))})", ids))

    def finish_send(self, send_id: str, now: dt.datetime, outcome: str) -> None:
        """Record how a send ended."""
        with self.transaction() as tx:
            tx.execute("UPDATE sends SET finished=?, outcome=? WHERE id=?",
                       (_iso(now), outcome, send_id))

    def ledger_status(self, send_id: str) -> dict[str, str]:
        """email -> status for every ledger row of one send."""
        return {r[0]: r[1] for r in self.conn.execute(
            "SELECT email, status FROM deliveries WHERE send_id=?", (send_id,))}

    def begin_delivery(self, send_id: str, email: str, message_id: str, transport: str,
                       picks: tuple[str, ...], clusters: tuple[str, ...],
                       note_ids: tuple[int, ...], now: dt.datetime) -> bool:
        """Write the 'pending' row before the transport call; False if one exists already."""
        with self.transaction() as tx:
            return _begin_row(tx, send_id, email, message_id, transport, picks, clusters,
                              note_ids, _iso(now))

    def begin_many(self, send_id: str, transport: str, emails: Sequence[RenderedEmail],
                   now: dt.datetime) -> list[bool]:
        """begin_delivery for several messages in one transaction (one fsync, not N)."""
        stamp = _iso(now)
        with self.transaction() as tx:
            return [_begin_row(tx, send_id, e.contact.email, e.message_id, transport,
                               e.pick_keys, e.clusters, e.note_ids, stamp) for e in emails]

    def settle_delivery(self, send_id: str, email: str, status: str, now: dt.datetime,
                        provider_id: str = "", error: str = "") -> None:
        """Record the transport's outcome; on 'sent', history and used notes in the same
        transaction, so a crash can never leave one without the other."""
        with self.transaction() as tx:
            _settle_row(tx, send_id, email, status, _iso(now), provider_id, error)

    def settle_many(self, send_id: str, outcomes: Sequence[tuple[str, str, str, str]],
                    now: dt.datetime) -> None:
        """settle_delivery for several (email, status, provider_id, error) at once."""
        self.settle_and_begin(send_id, "", outcomes, (), now)

    def settle_and_begin(self, send_id: str, transport: str,
                         outcomes: Sequence[tuple[str, str, str, str]],
                         emails: Sequence[RenderedEmail], now: dt.datetime) -> list[bool]:
        """Settle finished messages and begin the next ones in one transaction: each
        commit is an fsync, and the delivery loop needs one per turn, not two."""
        stamp = _iso(now)
        with self.transaction() as tx:
            for email, status, provider_id, error in outcomes:
                _settle_row(tx, send_id, email, status, stamp, provider_id, error)
            return [_begin_row(tx, send_id, e.contact.email, e.message_id, transport,
                               e.pick_keys, e.clusters, e.note_ids, stamp) for e in emails]

    def pending_deliveries(self) -> list[LedgerRow]:
        """Rows whose outcome is unknown (the process stopped between write and settle)."""
        return [LedgerRow(*r) for r in self.conn.execute(
            "SELECT send_id, email, message_id, status, transport, error, created, settled "
            "FROM deliveries WHERE status='pending' ORDER BY created")]

    def send_counts(self) -> list[tuple[str, str, str | None, str | None, int, int, int]]:
        """Per send: id, started, finished, outcome, sent, failed, pending."""
        return [tuple(r) for r in self.conn.execute(
            "SELECT s.id, s.started, s.finished, s.outcome, "
            "sum(d.status='sent'), sum(d.status='failed'), sum(d.status='pending') "
            "FROM sends s LEFT JOIN deliveries d ON d.send_id = s.id "
            "GROUP BY s.id ORDER BY s.started DESC")]

    def received_in(self) -> dict[tuple[str, str], str]:
        """(email, item) -> the send that delivered that item to that person."""
        return {(e, i): sid for e, i, sid in self.conn.execute(
            "SELECT email, item, send_id FROM history")}

    def tip_last_seen(self) -> dict[str, dict[str, str]]:
        """email -> tip id -> when it was last sent to that person."""
        out: dict[str, dict[str, str]] = {}
        for email, item, sent in self.conn.execute(
                "SELECT email, item, sent FROM history WHERE item LIKE 'tip:%'"):
            out.setdefault(email, {})[item[4:]] = sent
        return out

    def history(self) -> dict[str, frozenset[str]]:
        """email -> every item and story cluster that person has received."""
        seen: dict[str, set[str]] = {}
        for email, item, cluster in self.conn.execute(
                "SELECT email, item, cluster FROM history"):
            bucket = seen.setdefault(email, set())
            bucket.add(item)
            if cluster:
                bucket.add(cluster)
        return {k: frozenset(v) for k, v in seen.items()}

    # ---- notes ---------------------------------------------------------------------
    def add_note(self, email: str, text: str, now: dt.datetime) -> int:
        """Queue a one-off note for the next email to this person."""
        with self.transaction() as tx:
            cur = tx.execute("INSERT INTO notes (email, text, created) VALUES (?,?,?)",
                             (email.lower(), text, _iso(now)))
        return int(cur.lastrowid or 0)

    def pending_notes(self) -> dict[str, tuple[Note, ...]]:
        """email -> unused one-off notes, oldest first."""
        out: dict[str, list[Note]] = {}
        for r in self.conn.execute("SELECT id, email, text FROM notes WHERE used IS NULL "
                                   "ORDER BY id"):
            out.setdefault(r["email"], []).append(Note(r["id"], r["email"], r["text"]))
        return {k: tuple(v) for k, v in out.items()}

    # ---- suppressions --------------------------------------------------------------
    def suppress(self, email: str, reason: str, source: str, now: dt.datetime) -> bool:
        """Never mail this address again; False if it was already suppressed."""
        with self.transaction() as tx:
            cur = tx.execute("INSERT OR IGNORE INTO suppressions VALUES (?,?,?,?)",
                             (email.lower(), reason, source, _iso(now)))
        return cur.rowcount > 0

    # ---- scheduler ---------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        """A value from the meta table (scheduler checkpoints and the like)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        """Store a value in the meta table."""
        with self.transaction() as tx:
            tx.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def recent_sends(self, since: dt.datetime) -> dict[str, list[dt.datetime]]:
        """email -> when each email sent since `since` was settled (for the frequency cap)."""
        out: dict[str, list[dt.datetime]] = {}
        for email, settled in self.conn.execute(
                "SELECT email, settled FROM deliveries WHERE status='sent' AND settled >= ?",
                (_iso(since),)):
            out.setdefault(email.lower(), []).append(dt.datetime.fromisoformat(settled))
        return out

    def add_referral(self, by_email: str, name: str, received: dt.date,
                     now: dt.datetime) -> int:
        """Record that `by_email` referred `name`; returns the referral id."""
        with self.transaction() as tx:
            cur = tx.execute("INSERT INTO referrals (by_email, name, received, updated, "
                             "recorded) VALUES (?,?,?,?,?)",
                             (by_email.lower(), name, received.isoformat(), _iso(now),
                              _iso(now)))
        return int(cur.lastrowid or 0)

    def update_referral(self, referral_id: int, status: str, now: dt.datetime) -> bool:
        """Change a referral's status; False when there is no such referral."""
        with self.transaction() as tx:
            cur = tx.execute("UPDATE referrals SET status=?, updated=? WHERE id=?",
                             (status, _iso(now), referral_id))
        return cur.rowcount > 0

    def referrals(self) -> list[tuple[int, str, str, str, str, str]]:
        """Every referral: (id, by_email, name, received date, status, updated)."""
        return [tuple(r) for r in self.conn.execute(
            "SELECT id, by_email, name, received, status, updated FROM referrals ORDER BY id")]

    def referrals_recorded(self) -> dict[int, dt.datetime]:
        """Referral id -> when it was recorded."""
        return {r[0]: dt.datetime.fromisoformat(r[1]) for r in self.conn.execute(
            "SELECT id, recorded FROM referrals WHERE recorded IS NOT NULL")}

    # ---- sends other than the newsletter -------------------------------------------------
    def article_ids_since(self, since: dt.datetime) -> frozenset[str]:
        """Ids of the articles first stored at or after `since` (newly ingested)."""
        return frozenset(r[0] for r in self.conn.execute(
            "SELECT id FROM articles WHERE first_seen >= ?", (_iso(since),)))

    def last_sent(self, campaign: str) -> dict[str, dt.datetime]:
        """email -> when this campaign last delivered to that person."""
        return {email.lower(): dt.datetime.fromisoformat(settled) for email, settled in
                self.conn.execute(
                    "SELECT email, max(settled) FROM deliveries WHERE status='sent' AND "
                    "send_id LIKE ? GROUP BY email", (campaign.replace("%", "") + "@%",))}

    def queue_alerts(self, campaign: str, rows: Sequence[tuple[str, str, float, str]],
                     now: dt.datetime) -> int:
        """Add (email, article_id, score, reason) alerts as pending; returns how many are
        new (an alert already queued for that person and story is left as it is)."""
        with self.transaction() as tx:
            before = tx.total_changes
            tx.executemany("INSERT OR IGNORE INTO alerts (campaign, email, article_id, score, "
                           "reason, created) VALUES (?,?,?,?,?,?)",
                           [(campaign, e.lower(), a, sc, r, _iso(now)) for e, a, sc, r in rows])
            return tx.total_changes - before

    def alerts(self, campaign: str | None = None) -> list[tuple]:
        """(id, campaign, email, article_id, score, reason, note, status, created) rows."""
        sql = ("SELECT id, campaign, email, article_id, score, reason, note, status, created "
               "FROM alerts")
        args: tuple = ()
        if campaign:
            sql += " WHERE campaign=?"
            args = (campaign,)
        return [tuple(r) for r in self.conn.execute(sql + " ORDER BY id", args)]

    def decide_alert(self, alert_id: int, status: str, now: dt.datetime,
                     note: str | None = None) -> bool:
        """Approve, drop or mark sent one alert (optionally with an edited note)."""
        with self.transaction() as tx:
            cur = tx.execute("UPDATE alerts SET status=?, decided=?, note=coalesce(?, note) "
                             "WHERE id=?", (status, _iso(now), note, alert_id))
        return cur.rowcount > 0

    def suppressed(self) -> frozenset[str]:
        """Every suppressed address, lower-cased."""
        return frozenset(r[0] for r in self.conn.execute("SELECT email FROM suppressions"))

    def is_suppressed(self, email: str) -> bool:
        """True if this address must not be mailed (checked again just before sending)."""
        return self.conn.execute("SELECT 1 FROM suppressions WHERE email=?",
                                 (email.lower(),)).fetchone() is not None

    def suppressed_among(self, emails: Sequence[str]) -> frozenset[str]:
        """Which of these addresses are suppressed now, lower-cased: one query for a
        batch (checked again just before sending)."""
        keys = sorted({e.lower() for e in emails})
        found: set[str] = set()
        for k in range(0, len(keys), 500):  # SQLite's limit on ? parameters
            part = keys[k:k + 500]
            found.update(r[0] for r in self.conn.execute(
                f"SELECT email FROM suppressions WHERE email IN ({','.join('?' * len(part))})",
                part))
        return frozenset(found)

    def suppress_many(self, rows: Iterable[tuple[str, str, str]], now: dt.datetime) -> int:
        """suppress() for many (email, reason, source) in one transaction; returns how
        many were new."""
        stamp = _iso(now)
        added = 0
        with self.transaction() as tx:
            for email, reason, source in rows:
                added += tx.execute("INSERT OR IGNORE INTO suppressions VALUES (?,?,?,?)",
                                    (email.strip().lower(), reason, source, stamp)).rowcount
        return added

    def suppression_counts(self) -> dict[str, int]:
        """reason -> how many addresses are suppressed for it."""
        return {r[0]: r[1] for r in self.conn.execute(
            "SELECT reason, count(*) FROM suppressions GROUP BY reason ORDER BY reason")}

    # ---- provider events -----------------------------------------------------------
    def record_events(self, events: Iterable[StoredEvent],
                      suppress: Iterable[tuple[str, str, str]], now: dt.datetime) -> int:
        """Store webhook events (deduplicated on sg_event_id) and the suppressions they
        imply, in one transaction; returns how many events were new."""
        stamp = _iso(now)
        added = 0
        with self.transaction() as tx:
            for e in events:
                added += tx.execute(
                    "INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?,?,?)",
                    (e.sg_event_id, e.event, e.email.lower(), e.timestamp, e.sg_message_id,
                     e.send_id, e.url, e.reason, stamp)).rowcount
            for email, reason, source in suppress:
                tx.execute("INSERT OR IGNORE INTO suppressions VALUES (?,?,?,?)",
                           (email.lower(), reason, source, stamp))
        return added

    def events(self, email: str | None = None) -> list[StoredEvent]:
        """Stored webhook events, oldest first (optionally for one address)."""
        sql = ("SELECT sg_event_id, event, email, timestamp, sg_message_id, send_id, url, "
               "reason FROM events")
        args: tuple[str, ...] = ()
        if email:
            sql, args = sql + " WHERE email=?", (email.lower(),)
        return [StoredEvent(*r) for r in self.conn.execute(sql + " ORDER BY timestamp, rowid",
                                                           args)]

    def provider_took(self, send_id: str, email: str) -> bool:
        """True if the Event Webhook reported that the provider took this message (any
        event but 'dropped' carrying our send id)."""
        return self.conn.execute(
            "SELECT 1 FROM events WHERE send_id=? AND email=? AND event != 'dropped' LIMIT 1",
            (send_id, email.lower())).fetchone() is not None

    # ---- reports (issue #9) --------------------------------------------------------
    def ledger_rows(self) -> list[LedgerRow]:
        """Every ledger row, oldest first: the input of reports and cold-contact checks."""
        return [LedgerRow(*r) for r in self.conn.execute(
            "SELECT send_id, email, message_id, status, transport, error, created, settled "
            "FROM deliveries ORDER BY created, send_id, email")]

    def send_rows(self) -> list[tuple[str, str, str]]:
        """(send_id, campaign, period) of every recorded send, oldest first."""
        return [tuple(r) for r in self.conn.execute(
            "SELECT id, campaign, period FROM sends ORDER BY started, id")]

    def provider_sends(self) -> dict[str, str]:
        """provider message id -> send_id, to place events that lack our send id."""
        return {r[0]: r[1] for r in self.conn.execute(
            "SELECT provider_id, send_id FROM deliveries WHERE provider_id != ''")}

    def article_titles(self) -> dict[str, str]:
        """url -> title of every stored article, for naming clicked links."""
        return {r[0]: r[1] for r in self.conn.execute("SELECT url, title FROM articles")}
