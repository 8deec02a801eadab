"""Drafts in the SQLite store: held sends, each recipient's row with what review changed
(approval, a personal note, an exclusion, dropped stories). The rules of approval live in
pipeline.approval.drafts; this is only their storage."""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pipeline.addresses import email_key
from pipeline.models import DraftStatus, DripExtra, DueKind
from pipeline.state.base import SQLiteBase
from pipeline.state.base import iso as _iso
from pipeline.state.records import Draft, DraftNote, DraftPick, DraftRecipient


def _picks_json(picks: Iterable[DraftPick]) -> str:
    return json.dumps([{"section": p.section, "key": p.key, "reason": p.reason,
                        "score": p.score, "general": p.general} for p in picks])


class DraftStore(SQLiteBase):
    """Drafts and their recipients."""

    def hold_draft(self, send_id: str, name: str, kind: DueKind, period: str,
                   recipients: Sequence[tuple[str, Sequence[DraftPick], str, Mapping[str, Any]]],
                   now: dt.datetime, expires: dt.datetime) -> Draft:
        """Record a draft for `send_id` (or keep the one there) and add the (email,
        picks, template, extra) recipients it does not hold yet; returns the draft."""
        stamp = _iso(now)
        with self.transaction() as tx:
            tx.execute("INSERT OR IGNORE INTO drafts (send_id, name, kind, period, created, "
                       "expires) VALUES (?,?,?,?,?,?)",
                       (send_id, name, kind, period, stamp, _iso(expires)))
            draft_id = tx.execute("SELECT id FROM drafts WHERE send_id=?",
                                  (send_id,)).fetchone()[0]
            tx.executemany(
                "INSERT OR IGNORE INTO draft_recipients (draft_id, email, picks, template, "
                "extra, created) VALUES (?,?,?,?,?,?)",
                [(draft_id, email_key(email), _picks_json(picks), template,
                  json.dumps(dict(extra), default=str), stamp)
                 for email, picks, template, extra in recipients])
        found = self.drafts(send_id=send_id)
        assert found  # just written
        return found[0]

    def drafts(self, draft_id: int | None = None, send_id: str | None = None
               ) -> list[Draft]:
        """Drafts (all, one by id, or the one of a send), oldest first, with their rows."""
        sql, args = "SELECT * FROM drafts", ()  # type: tuple[str, tuple]
        if draft_id is not None:
            sql, args = sql + " WHERE id=?", (draft_id,)
        elif send_id is not None:
            sql, args = sql + " WHERE send_id=?", (send_id,)
        out = []
        for d in self.conn.execute(sql + " ORDER BY id", args).fetchall():
            rows = self.conn.execute("SELECT * FROM draft_recipients WHERE draft_id=? "
                                     "ORDER BY rowid", (d["id"],)).fetchall()
            recipients = tuple(DraftRecipient(
                email=r["email"], status=DraftStatus(r["status"]),
                picks=tuple(DraftPick(**p) for p in json.loads(r["picks"])),
                created=dt.datetime.fromisoformat(r["created"]), template=r["template"],
                extra=DripExtra.from_variables(json.loads(r["extra"])), note=r["note"],
                excluded=bool(r["excluded"]),
                dropped_items=tuple(json.loads(r["dropped_items"]))) for r in rows)
            out.append(Draft(id=d["id"], send_id=d["send_id"], name=d["name"],
                             kind=DueKind(d["kind"]), period=d["period"],
                             created=dt.datetime.fromisoformat(d["created"]),
                             expires=dt.datetime.fromisoformat(d["expires"]),
                             status=DraftStatus(d["status"]),
                             decided=dt.datetime.fromisoformat(d["decided"]) if d["decided"]
                             else None, recipients=recipients))
        return out

    def drafts_approved_unsent(self) -> list[Draft]:
        """Drafts with someone approved whose email has not gone out yet: what the
        daemon's tick sends (one query, so a tick does not read every draft ever held)."""
        ids = [r[0] for r in self.conn.execute(
            "SELECT DISTINCT d.id FROM drafts d JOIN draft_recipients r ON r.draft_id = d.id "
            "WHERE d.status != 'dropped' AND r.excluded = 0 "
            "AND (r.status = 'approved' OR (d.status = 'approved' AND r.created <= d.decided)) "
            "AND NOT EXISTS (SELECT 1 FROM deliveries x WHERE x.send_id = d.send_id "
            "AND lower(x.email) = r.email AND x.status IN ('sent', 'pending')) ORDER BY d.id")]
        return [d for i in ids for d in self.drafts(draft_id=i)]

    def decide_draft(self, draft_id: int, status: DraftStatus, now: dt.datetime) -> None:
        """Approve or drop a whole draft."""
        with self.transaction() as tx:
            tx.execute("UPDATE drafts SET status=?, decided=? WHERE id=?",
                       (status, _iso(now), draft_id))

    def decide_draft_recipient(self, draft_id: int, email: str, now: dt.datetime, *,
                               approve: bool = False, exclude: bool = False,
                               note: str | None = None) -> bool:
        """Approve one person (optionally with a personal note for this send) or drop
        them from it; False if they are not in the draft."""
        with self.transaction() as tx:
            cur = tx.execute(
                "UPDATE draft_recipients SET status=CASE WHEN ? THEN 'approved' ELSE status "
                "END, excluded=CASE WHEN ? THEN 1 ELSE excluded END, note=coalesce(?, note), "
                "decided=? WHERE draft_id=? AND email=?",
                (approve, exclude, note, _iso(now), draft_id, email_key(email)))
        return cur.rowcount > 0

    def drop_draft_item(self, draft_id: int, email: str, key: str,
                        picks: Sequence[DraftPick] | None = None) -> bool:
        """Drop one story from one person's email in a draft; `picks`, when given,
        replace the held ones. False if the person is not in the draft."""
        with self.transaction() as tx:
            row = tx.execute("SELECT dropped_items FROM draft_recipients WHERE draft_id=? "
                             "AND email=?", (draft_id, email_key(email))).fetchone()
            if row is None:
                return False
            dropped = list(dict.fromkeys([*json.loads(row[0]), key]))
            tx.execute("UPDATE draft_recipients SET dropped_items=?, picks=coalesce(?, picks) "
                       "WHERE draft_id=? AND email=?",
                       (json.dumps(dropped), _picks_json(picks) if picks is not None else None,
                        draft_id, email_key(email)))
        return True

    def replan_draft_recipient(self, draft_id: int, email: str,
                               picks: Sequence[DraftPick]) -> bool:
        """Replace the held stories of one person still waiting for a decision; False
        if they are not waiting in the draft."""
        with self.transaction() as tx:
            cur = tx.execute("UPDATE draft_recipients SET picks=? WHERE draft_id=? AND "
                             "email=? AND status='pending' AND excluded=0 AND draft_id IN "
                             "(SELECT id FROM drafts WHERE status='pending')",
                             (_picks_json(picks), draft_id, email_key(email)))
        return cur.rowcount > 0

    def declined(self) -> dict[str, frozenset[str]]:
        """email -> every story dropped from that person's email in review."""
        out: dict[str, set[str]] = {}
        for email, items in self.conn.execute(
                "SELECT email, dropped_items FROM draft_recipients "
                "WHERE dropped_items != '[]'"):
            out.setdefault(email, set()).update(json.loads(items))
        return {k: frozenset(v) for k, v in out.items()}

    def draft_notes(self, email: str) -> list[DraftNote]:
        """The personal notes written for this person in drafts' sends."""
        return [DraftNote(*r) for r in self.conn.execute(
            "SELECT d.send_id, r.note, coalesce(r.decided, r.created) FROM draft_recipients r "
            "JOIN drafts d ON d.id = r.draft_id WHERE r.email=? AND r.note != ''",
            (email_key(email),))]
