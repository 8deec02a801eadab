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
from collections.abc import Iterable, Mapping

from pipeline.addresses import email_key
from pipeline.models import (
    Article,
    DraftStatus,
    DueKind,
    Note,
    Pick,
    Plan,
    PlannedEmail,
    Skipped,
    Tip,
    template_variables,
)
from pipeline.state.interface import Ledger

# The draft records live with the store that keeps them; re-exported for callers.
from pipeline.state.records import Draft, DraftPick, DraftRecipient

__all__ = [
    "Draft",
    "DraftPick",
    "DraftRecipient",
    "decide",
    "decide_recipient",
    "declined",
    "drop_item",
    "held_plan",
    "hold",
    "load",
    "rebuild",
    "replan",
    "sent_to",
    "with_approved_unsent",
    "with_declined",
]

HELD = "held for your approval: draft d{id} (sphere approve)"
DROPPED = "dropped from draft d{id} in review"
EXPIRED = "draft d{id} expired unapproved on {day}: not sent late"


def _stored(picks: Iterable[Pick]) -> tuple[DraftPick, ...]:
    """Picks as a draft keeps them: the key (an article id or 'tip:<id>') and reason."""
    return tuple(DraftPick(p.section, p.key, p.reason, p.score, p.general) for p in picks)


# ---- storage ------------------------------------------------------------------------
def hold(store: Ledger, plan: Plan, kind: DueKind, expires_days: int, now: dt.datetime,
         drip_extra: bool = False, expires_from: dt.datetime | None = None) -> Draft:
    """Record `plan` as a draft, or add its new recipients to the draft of that send; a
    recipient already held keeps the content it was held (and maybe reviewed) with.
    `expires_from`: a draft made ahead of its time (in review) expires counting from
    that time, not from now."""
    start = max(now, expires_from) if expires_from else now
    return store.hold_draft(
        plan.send_id, plan.campaign.name, kind, plan.period,
        [(e.contact.email, _stored(e.picks), e.template,
          template_variables(e.extra) if drip_extra else {})
         for e in plan.emails], now, start + dt.timedelta(days=expires_days))


def load(store: Ledger, draft_id: int | None = None, send_id: str | None = None
         ) -> list[Draft]:
    """Drafts (all, one by id, or the one of a send), oldest first, with their rows."""
    return store.drafts(draft_id, send_id)


def with_approved_unsent(store: Ledger) -> list[Draft]:
    """Drafts with someone approved whose email has not gone out yet: what the daemon's
    tick sends (one query, so a tick does not read every draft ever held)."""
    return store.drafts_approved_unsent()


def sent_to(store: Ledger, draft: Draft) -> dict[str, str]:
    """email (lower-cased, as drafts keep it) -> ledger status, for one draft's send."""
    return {email_key(e): s for e, s in store.ledger_status(draft.send_id).items()}


def decide(store: Ledger, draft_id: int, status: DraftStatus, now: dt.datetime) -> None:
    """Approve or drop a whole draft."""
    store.decide_draft(draft_id, status, now)


def decide_recipient(store: Ledger, draft_id: int, email: str, now: dt.datetime, *,
                     approve: bool = False, exclude: bool = False,
                     note: str | None = None) -> bool:
    """Approve one person (optionally with a personal note for this send) or drop them
    from it; False if they are not in the draft."""
    return store.decide_draft_recipient(draft_id, email, now, approve=approve,
                                        exclude=exclude, note=note)


def drop_item(store: Ledger, draft_id: int, email: str, key: str,
              picks: Iterable[Pick] | None = None) -> bool:
    """Drop one story from one person's email in a draft (it is never offered to them
    again: see `declined`); `picks`, when given, replace the held ones (the story's
    replacement). False if the person is not in the draft."""
    return store.drop_draft_item(draft_id, email, key,
                                 _stored(picks) if picks is not None else None)


def replan(store: Ledger, draft_id: int, email: str, picks: Iterable[Pick]) -> bool:
    """Replace the held stories of one person still waiting for a decision (their
    contact changed); False if they are not waiting in the draft."""
    return store.replan_draft_recipient(draft_id, email, _stored(picks))


def declined(store: Ledger) -> dict[str, frozenset[str]]:
    """email -> every story dropped from that person's email in review: planning treats
    them as received, so a dropped story is never offered to that person again."""
    return store.declined()


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
