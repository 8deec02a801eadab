"""Drafts: with `approval: true`, a due send of any campaign kind or drip is prepared and
held until the professional approves it (`sphere approve`). Nothing held goes out
unapproved, what goes out is what was approved (the picks stored in the draft), and a
draft left undecided past its expiry is reported and never sent late.

A draft is one send (its ledger send id); each recipient row carries what a review page
edits: the person's own approval, a personal note for this send, an exclusion, and the
stories dropped from their email. Interest alerts keep their own per-story queue
(planning/alerts.py).
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pipeline.models import (
    Article,
    DraftStatus,
    DripExtra,
    DueKind,
    Note,
    Pick,
    Plan,
    PlannedEmail,
    Skipped,
    Tip,
    template_variables,
)
from pipeline.state.store import Store

HELD = "held for your approval: draft d{id} (sphere approve)"
DROPPED = "dropped from draft d{id} in review"
EXPIRED = "draft d{id} expired unapproved on {day}: not sent late"


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

    def state(self, r: DraftRecipient, now: dt.datetime) -> str:
        """dropped | approved | expired | held, for one recipient."""
        if r.excluded or self.status == DraftStatus.DROPPED:
            return "dropped"
        if self.approved(r):
            return "approved"
        return "expired" if now >= self.expires else "held"

    def recipient(self, email: str) -> DraftRecipient | None:
        """The row of one address, if it is in the draft."""
        key = email.lower()
        return next((r for r in self.recipients if r.email == key), None)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()


def _picks_json(picks: Iterable[Pick]) -> str:
    return json.dumps([{"section": p.section, "key": p.key, "reason": p.reason,
                        "score": p.score, "general": p.general} for p in picks])


# ---- storage ------------------------------------------------------------------------
def hold(store: Store, plan: Plan, kind: DueKind, expires_days: int, now: dt.datetime,
         drip_extra: bool = False, expires_from: dt.datetime | None = None) -> Draft:
    """Record `plan` as a draft, or add its new recipients to the draft of that send; a
    recipient already held keeps the content it was held (and maybe reviewed) with.
    `expires_from`: a draft made ahead of its time (in review) expires counting from
    that time, not from now."""
    stamp = _iso(now)
    start = max(now, expires_from) if expires_from else now
    with store.transaction() as tx:
        tx.execute("INSERT OR IGNORE INTO drafts (send_id, name, kind, period, created, "
                   "expires) VALUES (?,?,?,?,?,?)",
                   (plan.send_id, plan.campaign.name, kind, plan.period, stamp,
                    _iso(start + dt.timedelta(days=expires_days))))
        draft_id = tx.execute("SELECT id FROM drafts WHERE send_id=?",
                              (plan.send_id,)).fetchone()[0]
        tx.executemany(
            "INSERT OR IGNORE INTO draft_recipients (draft_id, email, picks, template, "
            "extra, created) VALUES (?,?,?,?,?,?)",
            [(draft_id, e.contact.email.lower(), _picks_json(e.picks), e.template,
              json.dumps(template_variables(e.extra) if drip_extra else {}, default=str),
              stamp)
             for e in plan.emails])
    found = load(store, send_id=plan.send_id)
    assert found  # just written
    return found[0]


def load(store: Store, draft_id: int | None = None, send_id: str | None = None
         ) -> list[Draft]:
    """Drafts (all, one by id, or the one of a send), oldest first, with their rows."""
    sql, args = "SELECT * FROM drafts", ()  # type: tuple[str, tuple]
    if draft_id is not None:
        sql, args = sql + " WHERE id=?", (draft_id,)
    elif send_id is not None:
        sql, args = sql + " WHERE send_id=?", (send_id,)
    out = []
    for d in store.conn.execute(sql + " ORDER BY id", args).fetchall():
        rows = store.conn.execute("SELECT * FROM draft_recipients WHERE draft_id=? "
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


def with_approved_unsent(store: Store) -> list[Draft]:
    """Drafts with someone approved whose email has not gone out yet: what the daemon's
    tick sends (one query, so a tick does not read every draft ever held)."""
    ids = [r[0] for r in store.conn.execute(
        "SELECT DISTINCT d.id FROM drafts d JOIN draft_recipients r ON r.draft_id = d.id "
        "WHERE d.status != 'dropped' AND r.excluded = 0 "
        "AND (r.status = 'approved' OR (d.status = 'approved' AND r.created <= d.decided)) "
        "AND NOT EXISTS (SELECT 1 FROM deliveries x WHERE x.send_id = d.send_id "
        "AND lower(x.email) = r.email AND x.status IN ('sent', 'pending')) ORDER BY d.id")]
    return [d for i in ids for d in load(store, draft_id=i)]


def sent_to(store: Store, draft: Draft) -> dict[str, str]:
    """email (lower-cased, as drafts keep it) -> ledger status, for one draft's send."""
    return {e.lower(): s for e, s in store.ledger_status(draft.send_id).items()}


def decide(store: Store, draft_id: int, status: str, now: dt.datetime) -> None:
    """Approve or drop a whole draft."""
    with store.transaction() as tx:
        tx.execute("UPDATE drafts SET status=?, decided=? WHERE id=?",
                   (status, _iso(now), draft_id))


def decide_recipient(store: Store, draft_id: int, email: str, now: dt.datetime, *,
                     approve: bool = False, exclude: bool = False,
                     note: str | None = None) -> bool:
    """Approve one person (optionally with a personal note for this send) or drop them
    from it; False if they are not in the draft."""
    with store.transaction() as tx:
        cur = tx.execute(
            "UPDATE draft_recipients SET status=CASE WHEN ? THEN 'approved' ELSE status END, "
            "excluded=CASE WHEN ? THEN 1 ELSE excluded END, note=coalesce(?, note), "
            "decided=? WHERE draft_id=? AND email=?",
            (approve, exclude, note, _iso(now), draft_id, email.lower()))
    return cur.rowcount > 0


def drop_item(store: Store, draft_id: int, email: str, key: str,
              picks: Iterable[Pick] | None = None) -> bool:
    """Drop one story from one person's email in a draft (it is never offered to them
    again: see `declined`); `picks`, when given, replace the held ones (the story's
    replacement). False if the person is not in the draft."""
    with store.transaction() as tx:
        row = tx.execute("SELECT dropped_items FROM draft_recipients WHERE draft_id=? AND "
                         "email=?", (draft_id, email.lower())).fetchone()
        if row is None:
            return False
        dropped = list(dict.fromkeys([*json.loads(row[0]), key]))
        tx.execute("UPDATE draft_recipients SET dropped_items=?, picks=coalesce(?, picks) "
                   "WHERE draft_id=? AND email=?",
                   (json.dumps(dropped), _picks_json(picks) if picks is not None else None,
                    draft_id, email.lower()))
    return True


def replan(store: Store, draft_id: int, email: str, picks: Iterable[Pick]) -> bool:
    """Replace the held stories of one person still waiting for a decision (their
    contact changed); False if they are not waiting in the draft."""
    with store.transaction() as tx:
        cur = tx.execute("UPDATE draft_recipients SET picks=? WHERE draft_id=? AND email=? "
                         "AND status='pending' AND excluded=0 AND draft_id IN (SELECT id "
                         "FROM drafts WHERE status='pending')",
                         (_picks_json(picks), draft_id, email.lower()))
    return cur.rowcount > 0


def declined(store: Store) -> dict[str, frozenset[str]]:
    """email -> every story dropped from that person's email in review: planning treats
    them as received, so a dropped story is never offered to that person again."""
    out: dict[str, set[str]] = {}
    for email, items in store.conn.execute(
            "SELECT email, dropped_items FROM draft_recipients WHERE dropped_items != '[]'"):
        out.setdefault(email, set()).update(json.loads(items))
    return {k: frozenset(v) for k, v in out.items()}


def with_declined(history: Mapping[str, frozenset[str]],
                  dropped: Mapping[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    """History plus the stories dropped in review, per person."""
    merged = dict(history)
    for email, items in dropped.items():
        merged[email] = merged.get(email, frozenset()) | items
    return merged


# ---- planning -----------------------------------------------------------------------
def rebuild(r: DraftRecipient, articles: Mapping[str, Article],
             tips: Mapping[str, Tip]) -> tuple[Pick, ...] | None:
    """The picks the draft holds, minus those dropped in review; None if a story is no
    longer stored (the email would not be what was approved)."""
    picks = []
    for p in r.picks:
        if p.key in r.dropped_items:
            continue
        if p.key.startswith("tip:"):
            tip = tips.get(p.key[4:])
            if tip is None:
                return None
            picks.append(Pick(p.section, p.reason, p.score, tip=tip, general=p.general))
        elif p.key in articles:
            picks.append(Pick(p.section, p.reason, p.score, article=articles[p.key],
                              general=p.general))
        else:
            return None
    return tuple(picks)


def held_plan(draft: Draft, plan: Plan, now: dt.datetime, articles: Mapping[str, Article],
              tips: Mapping[str, Tip]) -> Plan:
    """What of `plan` may go now: each approved recipient with the content they were
    approved with (and their personal note); everyone else skipped with the reason, so
    every contact still has exactly one outcome."""
    emails, skipped = [], list(plan.skipped)
    for e in plan.emails:
        r = draft.recipient(e.contact.email)
        state = draft.state(r, now) if r else "held"
        if r is None or state != "approved":
            why = {"dropped": DROPPED, "expired": EXPIRED}.get(state, HELD)
            skipped.append(Skipped(e.contact.email, why.format(
                id=draft.id, day=f"{draft.expires:%Y-%m-%d}")))
            continue
        picks = rebuild(r, articles, tips)
        if picks is None:
            skipped.append(Skipped(e.contact.email, f"draft d{draft.id}: a story in the "
                                   "approved email is no longer stored; not sent"))
            continue
        # Note id 0 is no stored one-off note: nothing is marked used by it.
        personal = (Note(0, r.email, r.note),) if r.note else ()
        emails.append(PlannedEmail(e.contact, picks, e.notes + personal,
                                   template=r.template or e.template, extra=e.extra))
    return Plan(plan.campaign, plan.send_id, plan.period, tuple(emails), tuple(skipped))
