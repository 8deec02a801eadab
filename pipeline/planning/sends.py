"""The recent-sales mailer and per-client interest alerts: pure planning for the two sends
that are not a newsletter (the newsletter's is plan.build_plan)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.contacts.audience import email_key
from pipeline.matching.match import Matcher, choose_tip, tip_pick
from pipeline.planning.plan import skip_reason
from pipeline.models import Article, Campaign, Contact, Note, Pick, Plan, PlannedEmail, Sale, Skipped, Tip
from pipeline.contacts.sales import sales_for

DEFAULT_ALERT_NOTE = "I saw this and thought of you."


@dataclass(frozen=True)
class AlertCandidate:
    """A newly ingested story that fits one contact's interests strongly enough."""

    contact: Contact
    article: Article
    score: float
    reason: str


@dataclass(frozen=True)
class QueuedAlert:
    """An alert waiting for, or given, the professional's approval."""

    id: int
    email: str
    article_id: str
    reason: str
    note: str
    status: str  # pending | approved | dropped | sent


def plan_recent_sales(campaign: Campaign, contacts: tuple[Contact, ...],
                      sales: tuple[Sale, ...], tips: tuple[Tip, ...],
                      history: Mapping[str, frozenset[str]], suppressed: frozenset[str],
                      notes: Mapping[str, tuple[Note, ...]], now: dt.datetime, send_id: str,
                      period: str, tip_last_seen: Mapping[str, Mapping[str, str]]
                      | None = None) -> Plan:
    """Recent sales (the contact's neighbourhood first), always with an advice tip that
    person has not had yet."""
    since = (now - dt.timedelta(days=campaign.sales_window_days)).date() \
        if campaign.sales_window_days else dt.date.min
    emails, skipped = [], []
    empty: frozenset[str] = frozenset()
    for contact in contacts:
        why = skip_reason(contact, suppressed)
        if why:
            skipped.append(Skipped(contact.email, why))
            continue
        shown = sales_for(contact.neighbourhood, sales, since, campaign.sales_limit)
        if not shown:
            skipped.append(Skipped(contact.email, "no sales in the window to show"))
            continue
        key = email_key(contact.email)
        tip = choose_tip(contact, tips, history.get(key, empty), now,
                         (tip_last_seen or {}).get(key))
        if tip is None:  # config refuses a sales mailer without tips; guard anyway
            skipped.append(Skipped(contact.email, "no advice tip to pair with the sales"))
            continue
        pick = tip_pick(tip)
        own = sum(1 for s in shown if s.neighbourhood.lower() == contact.neighbourhood.lower())
        emails.append(PlannedEmail(contact, (pick,), notes.get(key, ()),
                                   extra={"sales": shown, "own_sales": own}))
    return Plan(campaign=campaign, send_id=send_id, period=period, emails=tuple(emails),
                skipped=tuple(skipped))


def alert_candidates(campaign: Campaign, contacts: tuple[Contact, ...], matcher: Matcher,
                     fresh_ids: frozenset[str], history: Mapping[str, frozenset[str]],
                     suppressed: frozenset[str], last_alert: Mapping[str, dt.datetime],
                     held: frozenset[str], now: dt.datetime,
                     declined: Mapping[str, frozenset[str]] | None = None
                     ) -> tuple[list[AlertCandidate], list[Skipped]]:
    """The best new story per contact that scores above the threshold; nobody gets more
    than one alert per throttle window, nobody with one already waiting (`held`), and
    never a story the professional dropped for that person (`declined`)."""
    throttle = dt.timedelta(days=campaign.alert_throttle_days)
    found, skipped = [], []
    empty: frozenset[str] = frozenset()
    for contact in contacts:
        key = email_key(contact.email)
        why = skip_reason(contact, suppressed)
        if why:
            skipped.append(Skipped(contact.email, why))
            continue
        if key in held:
            skipped.append(Skipped(contact.email, "an alert awaits your approval "
                                                  "(sphere approve)"))
            continue
        last = last_alert.get(key)
        if last is not None and now - last < throttle:
            skipped.append(Skipped(contact.email, f"throttled: had an alert on "
                                                  f"{last:%Y-%m-%d} (one per "
                                                  f"{campaign.alert_throttle_days} days)"))
            continue
        seen = history.get(key, empty) | (declined or {}).get(key, empty)
        blocked = {matcher.story_of[k] for k in seen if k in matcher.story_of}
        best: AlertCandidate | None = None
        for interest in contact.interests:
            for c in matcher.for_interest(interest):
                if c.score < campaign.alert_threshold:
                    break  # lists are best first
                a = c.article
                if a.id not in fresh_ids or c.story in blocked:
                    continue
                if best is None or c.score > best.score:
                    best = AlertCandidate(contact, a, c.score, c.reason)
                break
        if best is None:
            skipped.append(Skipped(contact.email, "no new story above the alert threshold"))
        else:
            found.append(best)
    return found, skipped


def alert_email(contact: Contact, article: Article, reason: str, score: float, note: str,
                notes: tuple[Note, ...] = ()) -> PlannedEmail:
    """One story, with the professional's short personal note as the opening."""
    pick = Pick("interests", reason, round(score, 4), article=article)
    return PlannedEmail(contact, (pick,), notes, extra={"intro": note or DEFAULT_ALERT_NOTE})
