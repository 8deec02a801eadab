"""Interest alerts: the planner (pure: the best new story per contact above the threshold,
or the approved alert waiting for them) and the approval queue around it (reading it,
settling it against what people received)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pipeline.contacts.audience import email_key
from pipeline.matching.match import Matcher
from pipeline.models import (
    AlertExtra,
    AlertRequest,
    AlertStatus,
    Article,
    Campaign,
    Contact,
    Note,
    Pick,
    Plan,
    PlannedEmail,
    Skipped,
)
from pipeline.planning.inputs import LedgerView, PlanInputs, QueuedAlert
from pipeline.planning.plan import mailable, send_id_for, send_period, skipped_for
from pipeline.state.interface import Ledger

DEFAULT_ALERT_NOTE = "I saw this and thought of you."
# An article ingested this recently is "new" for interest alerts.
ALERT_NEW_WITHIN = dt.timedelta(days=3)
ALERT_EXPIRY = dt.timedelta(days=7)  # a pending alert older than this is stale news


@dataclass(frozen=True)
class AlertCandidate:
    """A newly ingested story that fits one contact's interests strongly enough."""

    contact: Contact
    article: Article
    score: float
    reason: str


def alert_candidates(campaign: Campaign, contacts: tuple[Contact, ...], matcher: Matcher,
                     ledger: LedgerView, held: frozenset[str], now: dt.datetime,
                     declined: Mapping[str, frozenset[str]] | None = None
                     ) -> tuple[list[AlertCandidate], list[Skipped]]:
    """The best new story per contact that scores above the threshold; nobody gets more
    than one alert per throttle window, nobody with one already waiting (`held`), and
    never a story the professional dropped for that person (`declined`)."""
    throttle = dt.timedelta(days=campaign.alert_throttle_days)
    found: list[AlertCandidate] = []
    skipped: list[Skipped] = []
    empty: frozenset[str] = frozenset()
    for key, contact in mailable(contacts, ledger.suppressed, skipped):
        if key in held:
            skipped.append(Skipped(contact.email, "an alert awaits your approval "
                                                  "(sphere approve)"))
            continue
        last = ledger.last_alert.get(key)
        if last is not None and now - last < throttle:
            skipped.append(Skipped(contact.email, f"throttled: had an alert on "
                                                  f"{last:%Y-%m-%d} (one per "
                                                  f"{campaign.alert_throttle_days} days)"))
            continue
        seen = ledger.history.get(key, empty) | (declined or {}).get(key, empty)
        best = _best(campaign, contact, matcher, ledger.fresh,
                     {matcher.story_of[k] for k in seen if k in matcher.story_of})
        if best is None:
            skipped.append(Skipped(contact.email, "no new story above the alert threshold"))
        else:
            found.append(best)
    return found, skipped


def _best(campaign: Campaign, contact: Contact, matcher: Matcher, fresh: frozenset[str],
          blocked: set[str]) -> AlertCandidate | None:
    """One contact's strongest fresh story above the threshold, not of a blocked story."""
    best: AlertCandidate | None = None
    for interest in contact.interests:
        for c in matcher.for_interest(interest):
            if c.score < campaign.alert_threshold:
                break  # lists are best first
            a = c.article
            if a.id not in fresh or c.story in blocked:
                continue
            if best is None or c.score > best.score:
                best = AlertCandidate(contact, a, c.score, c.reason)
            break
    return best


def alert_email(contact: Contact, article: Article, reason: str, score: float, note: str,
                notes: tuple[Note, ...] = ()) -> PlannedEmail:
    """One story, with the professional's short personal note as the opening."""
    pick = Pick("interests", reason, round(score, 4), article=article)
    return PlannedEmail(contact, (pick,), notes,
                        extra=AlertExtra(note or DEFAULT_ALERT_NOTE))


def plan_alerts(campaign: Campaign, contacts: tuple[Contact, ...], inputs: PlanInputs,
                ledger: LedgerView, now: dt.datetime) -> Plan:
    """Interest alerts: new stories above the threshold; with `approval`, each new one is
    returned in `Plan.queue` for review and those approved are sent. Every contact gets
    exactly one outcome: an approved alert is that person's email (never also "awaits
    approval"), a pending one holds them, the rest are matched."""
    period = send_period(campaign, inputs, now)
    send_id, label = send_id_for(campaign, period), period.isoformat()
    matcher = Matcher(inputs.articles, now, campaign.max_age_days, inputs.synonyms,
                      inputs.source_topics)
    queue = ledger.alerts
    approved = {q.email: q for q in queue if q.status == AlertStatus.APPROVED}
    pending = frozenset(q.email for q in queue if q.status == AlertStatus.PENDING)
    declined: dict[str, frozenset[str]] = {}
    for q in queue:
        if q.status == AlertStatus.DROPPED:
            declined[q.email] = declined.get(q.email, frozenset()) | {q.article_id}
    candidates, skipped = alert_candidates(
        campaign, tuple(c for c in contacts if email_key(c.email) not in approved), matcher,
        ledger, pending, now, declined)
    notes = ledger.notes
    if not campaign.approval:
        emails = [alert_email(c.contact, c.article, c.reason, c.score, "",
                              notes.get(email_key(c.contact.email), ())) for c in candidates]
        return Plan(campaign, send_id, label, tuple(emails), tuple(skipped))
    emails = _approved_emails(approved.values(), contacts, inputs, ledger, skipped)
    for c in candidates:
        skipped.append(Skipped(c.contact.email, "new alert queued for approval "
                                                "(sphere approve)"))
    return Plan(campaign, send_id, label, tuple(emails), tuple(skipped),
                queue=tuple(AlertRequest(c.contact.email, c.article.id, c.score, c.reason)
                            for c in candidates))


def _approved_emails(approved: Iterable[QueuedAlert], contacts: tuple[Contact, ...],
                     inputs: PlanInputs, ledger: LedgerView, skipped: list[Skipped]
                     ) -> list[PlannedEmail]:
    """The emails of approved alerts whose person and story are still there."""
    by_email = {email_key(c.email): c for c in contacts}
    articles = {a.id: a for a in inputs.articles}
    emails = []
    for q in approved:
        contact = by_email.get(q.email)
        if contact is None and inputs.partial:
            continue  # not in this group: their own group's send takes it
        if contact is None or q.article_id not in articles:
            skipped.append(Skipped(q.email, f"alert {q.id}: contact or story no longer "
                                            "available"))
            continue
        skip = skipped_for(q.email, contact, ledger.suppressed)
        if skip is not None:
            skipped.append(skip)
        else:
            emails.append(alert_email(contact, articles[q.article_id], q.reason, 0.0,
                                      q.note, ledger.notes.get(q.email, ())))
    return emails


# ---- the approval queue (reads and writes the store) --------------------------------
def queued_alerts(store: Ledger, campaign: str) -> tuple[QueuedAlert, ...]:
    """The campaign's approval queue, oldest first."""
    return tuple(store.alerts(campaign))


def queue_new(store: Ledger, plan: Plan, now: dt.datetime) -> None:
    """Queue the new alerts a plan asks approval for."""
    if plan.queue:
        store.queue_alerts(plan.campaign.name, [(q.email, q.article_id, q.score, q.reason)
                                                for q in plan.queue], now)


def reconcile_alerts(store: Ledger, campaign: str, now: dt.datetime,
                     expiry: dt.timedelta = ALERT_EXPIRY) -> list[str]:
    """Settle the queue against what people received: an approved alert whose story this
    campaign delivered is sent; one whose story reached the person in another send first,
    or that waited over a week for approval, is dropped. Returns a line per drop."""
    received = store.received_in()
    notices = []
    for alert in store.alerts(campaign):
        if alert.status not in (AlertStatus.PENDING, AlertStatus.APPROVED):
            continue
        send_id = received.get((alert.email, alert.article_id))
        if send_id and send_id.startswith(f"{campaign}@") and \
                alert.status == AlertStatus.APPROVED:
            store.decide_alert(alert.id, AlertStatus.SENT, now)
        elif send_id:
            store.decide_alert(alert.id, AlertStatus.DROPPED, now)
            notices.append(f"alert {alert.id} for {alert.email} dropped: they already "
                           f"received that story in {send_id}")
        elif alert.status == AlertStatus.PENDING and alert.created is not None and \
                alert.created < now - expiry:
            store.decide_alert(alert.id, AlertStatus.DROPPED, now)
            notices.append(f"alert {alert.id} for {alert.email} dropped: it waited more than "
                           f"{expiry.days} days for approval and is no longer news")
    return notices
