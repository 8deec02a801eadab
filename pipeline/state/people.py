"""People in the SQLite store: suppressions, provider events, referrals and the
interest-alert queue."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from pipeline.addresses import email_key
from pipeline.models import AlertStatus, ReferralStatus
from pipeline.state.base import SQLiteBase
from pipeline.state.base import iso as _iso
from pipeline.state.base import parse as _parse
from pipeline.state.records import QueuedAlert, Referral, StoredEvent


class PeopleStore(SQLiteBase):
    """Suppressions, events, referrals and alerts."""

    # ---- suppressions --------------------------------------------------------------
    def suppress(self, email: str, reason: str, source: str, now: dt.datetime) -> bool:
        """Never mail this address again; False if it was already suppressed."""
        with self.transaction() as tx:
            cur = tx.execute("INSERT OR IGNORE INTO suppressions VALUES (?,?,?,?)",
                             (email_key(email), reason, source, _iso(now)))
        return cur.rowcount > 0


    def suppressed(self) -> frozenset[str]:
        """Every suppressed address, lower-cased."""
        return frozenset(r[0] for r in self.conn.execute("SELECT email FROM suppressions"))

    def is_suppressed(self, email: str) -> bool:
        """True if this address must not be mailed (checked again just before sending)."""
        return self.conn.execute("SELECT 1 FROM suppressions WHERE email=?",
                                 (email_key(email),)).fetchone() is not None

    def suppressed_among(self, emails: Sequence[str]) -> frozenset[str]:
        """Which of these addresses are suppressed now, lower-cased: one query for a
        batch (checked again just before sending)."""
        keys = sorted({email_key(e) for e in emails})
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
                                    (email_key(email), reason, source, stamp)).rowcount
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
                    (e.sg_event_id, e.event, email_key(e.email), e.timestamp, e.sg_message_id,
                     e.send_id, e.url, e.reason, stamp)).rowcount
            for email, reason, source in suppress:
                tx.execute("INSERT OR IGNORE INTO suppressions VALUES (?,?,?,?)",
                           (email_key(email), reason, source, stamp))
        return added

    def events(self, email: str | None = None) -> list[StoredEvent]:
        """Stored webhook events, oldest first (optionally for one address)."""
        sql = ("SELECT sg_event_id, event, email, timestamp, sg_message_id, send_id, url, "
               "reason FROM events")
        args: tuple[str, ...] = ()
        if email:
            sql, args = sql + " WHERE email=?", (email_key(email),)
        return [StoredEvent(*r) for r in self.conn.execute(sql + " ORDER BY timestamp, rowid",
                                                           args)]

    def provider_took(self, send_id: str, email: str) -> bool:
        """True if the Event Webhook reported that the provider took this message (any
        event but 'dropped' carrying our send id)."""
        return self.conn.execute(
            "SELECT 1 FROM events WHERE send_id=? AND email=? AND event != 'dropped' LIMIT 1",
            (send_id, email_key(email))).fetchone() is not None


    def add_referral(self, by_email: str, name: str, received: dt.date,
                     now: dt.datetime) -> int:
        """Record that `by_email` referred `name`; returns the referral id."""
        with self.transaction() as tx:
            cur = tx.execute("INSERT INTO referrals (by_email, name, received, updated, "
                             "recorded) VALUES (?,?,?,?,?)",
                             (email_key(by_email), name, received.isoformat(), _iso(now),
                              _iso(now)))
        return int(cur.lastrowid or 0)

    def update_referral(self, referral_id: int, status: ReferralStatus, now: dt.datetime
                        ) -> bool:
        """Change a referral's status; False when there is no such referral."""
        with self.transaction() as tx:
            cur = tx.execute("UPDATE referrals SET status=?, updated=? WHERE id=?",
                             (status, _iso(now), referral_id))
        return cur.rowcount > 0

    def referrals(self) -> list[Referral]:
        """Every referral, in the order they were recorded."""
        return [Referral(id=r[0], by_email=r[1], name=r[2],
                         received=dt.date.fromisoformat(r[3]), status=r[4],
                         updated=_parse(r[5]), recorded=_parse(r[6]))
                for r in self.conn.execute(
                    "SELECT id, by_email, name, received, status, updated, recorded "
                    "FROM referrals ORDER BY id")]

    def referrals_recorded(self) -> dict[int, dt.datetime]:
        """Referral id -> when it was recorded."""
        return {r[0]: dt.datetime.fromisoformat(r[1]) for r in self.conn.execute(
            "SELECT id, recorded FROM referrals WHERE recorded IS NOT NULL")}


    def queue_alerts(self, campaign: str, rows: Sequence[tuple[str, str, float, str]],
                     now: dt.datetime) -> int:
        """Add (email, article_id, score, reason) alerts as pending; returns how many are
        new (an alert already queued for that person and story is left as it is)."""
        with self.transaction() as tx:
            before = tx.total_changes
            tx.executemany("INSERT OR IGNORE INTO alerts (campaign, email, article_id, score, "
                           "reason, created) VALUES (?,?,?,?,?,?)",
                           [(campaign, email_key(e), a, sc, r, _iso(now)) for e, a, sc, r in rows])
            return tx.total_changes - before

    def alerts(self, campaign: str | None = None) -> list[QueuedAlert]:
        """Queued interest alerts (optionally of one campaign), oldest first."""
        sql = ("SELECT id, campaign, email, article_id, score, reason, note, status, created "
               "FROM alerts")
        args: tuple[str, ...] = ()
        if campaign:
            sql += " WHERE campaign=?"
            args = (campaign,)
        return [QueuedAlert(id=r[0], campaign=r[1], email=r[2], article_id=r[3], score=r[4],
                            reason=r[5], note=r[6], status=AlertStatus(r[7]),
                            created=_parse(r[8]))
                for r in self.conn.execute(sql + " ORDER BY id", args)]

    def decide_alert(self, alert_id: int, status: AlertStatus, now: dt.datetime,
                     note: str | None = None) -> bool:
        """Approve, drop or mark sent one alert (optionally with an edited note)."""
        with self.transaction() as tx:
            cur = tx.execute("UPDATE alerts SET status=?, decided=?, note=coalesce(?, note) "
                             "WHERE id=?", (status, _iso(now), note, alert_id))
        return cur.rowcount > 0

