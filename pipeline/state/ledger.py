"""The sends ledger in the SQLite store: sends, deliveries (each written before its
transport call and settled with its outcome), history and one-off notes."""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterable, Sequence

from pipeline.addresses import email_key
from pipeline.errors import StoreError
from pipeline.models import Note, RenderedEmail, SendOutcome
from pipeline.state import dbfile
from pipeline.state.base import SQLiteBase
from pipeline.state.base import iso as _iso
from pipeline.state.records import LedgerRow, Received, SendCount, SendRow, StoredNote


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
    key = email_key(email)
    # Upsert: an item sent again (a tip, once the rotation is used up) records its
    # latest send, which is what the rotation's restart orders by. One executemany per
    # message: the dispatcher settles thousands a second on one thread.
    tx.executemany("INSERT INTO history VALUES (?,?,?,?,?) ON CONFLICT(email, item) DO "
                   "UPDATE SET send_id=excluded.send_id, sent=excluded.sent",
                   [(key, item, cluster, send_id, stamp) for item, cluster in
                    zip(picks, clusters + [""] * (len(picks) - len(clusters)), strict=False)])
    note_ids = json.loads(row["note_ids"])
    if note_ids:
        tx.executemany("UPDATE notes SET used=?, used_send_id=? WHERE id=? AND used IS NULL",
                       [(stamp, send_id, note_id) for note_id in note_ids])



class LedgerStore(SQLiteBase):
    """Sends, deliveries, history and notes."""

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

    def finish_send(self, send_id: str, now: dt.datetime, outcome: SendOutcome) -> None:
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

    def send_counts(self) -> list[SendCount]:
        """Every send, newest first, with how many of its messages were sent, failed or
        have an unknown outcome."""
        return [SendCount(r[0], r[1], r[2], r[3], int(r[4] or 0), int(r[5] or 0),
                          int(r[6] or 0)) for r in self.conn.execute(
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
                             (email_key(email), text, _iso(now)))
        return int(cur.lastrowid or 0)

    def pending_notes(self) -> dict[str, tuple[Note, ...]]:
        """email -> unused one-off notes, oldest first."""
        out: dict[str, list[Note]] = {}
        for r in self.conn.execute("SELECT id, email, text FROM notes WHERE used IS NULL "
                                   "ORDER BY id"):
            out.setdefault(r["email"], []).append(Note(r["id"], r["email"], r["text"]))
        return {k: tuple(v) for k, v in out.items()}

    def notes(self, email: str | None = None) -> list[StoredNote]:
        """Every one-off note (optionally for one address), oldest first."""
        sql = "SELECT id, email, text, created, used, used_send_id FROM notes"
        args: tuple[str, ...] = ()
        if email:
            sql, args = sql + " WHERE email=?", (email_key(email),)
        return [StoredNote(*r) for r in self.conn.execute(sql + " ORDER BY id", args)]

    def edit_note(self, note_id: int, text: str) -> bool:
        """Replace an unused note's text; False if there is no such unused note."""
        with self.transaction() as tx:
            cur = tx.execute("UPDATE notes SET text=? WHERE id=? AND used IS NULL",
                             (text, note_id))
        return cur.rowcount > 0

    def remove_note(self, note_id: int) -> bool:
        """Delete an unused note; False if there is no such unused note."""
        with self.transaction() as tx:
            cur = tx.execute("DELETE FROM notes WHERE id=? AND used IS NULL", (note_id,))
        return cur.rowcount > 0

    def received_by(self, email: str) -> list[Received]:
        """Every item delivered to this address, with the send that carried it."""
        return [Received(*r) for r in self.conn.execute(
            "SELECT email, item, send_id FROM history WHERE lower(email)=?",
            (email_key(email),))]

    def recent_sends(self, since: dt.datetime) -> dict[str, list[dt.datetime]]:
        """email -> when each email sent since `since` was settled (for the frequency cap)."""
        out: dict[str, list[dt.datetime]] = {}
        for email, settled in self.conn.execute(
                "SELECT email, settled FROM deliveries WHERE status='sent' AND settled >= ?",
                (_iso(since),)):
            out.setdefault(email_key(email), []).append(dt.datetime.fromisoformat(settled))
        return out


    def last_sent(self, campaign: str) -> dict[str, dt.datetime]:
        """email -> when this campaign last delivered to that person."""
        return {email_key(email): dt.datetime.fromisoformat(settled) for email, settled in
                self.conn.execute(
                    "SELECT email, max(settled) FROM deliveries WHERE status='sent' AND "
                    "send_id LIKE ? GROUP BY email", (campaign.replace("%", "") + "@%",))}


    # ---- reports (issue #9) --------------------------------------------------------
    def ledger_rows(self) -> list[LedgerRow]:
        """Every ledger row, oldest first: the input of reports and cold-contact checks."""
        return [LedgerRow(*r) for r in self.conn.execute(
            "SELECT send_id, email, message_id, status, transport, error, created, settled "
            "FROM deliveries ORDER BY created, send_id, email")]

    def send_rows(self) -> list[SendRow]:
        """Every recorded send (id, campaign, period), oldest first."""
        return [SendRow(*r) for r in self.conn.execute(
            "SELECT id, campaign, period FROM sends ORDER BY started, id")]

    def provider_sends(self) -> dict[str, str]:
        """provider message id -> send_id, to place events that lack our send id."""
        return {r[0]: r[1] for r in self.conn.execute(
            "SELECT provider_id, send_id FROM deliveries WHERE provider_id != ''")}

