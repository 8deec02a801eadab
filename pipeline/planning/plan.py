"""Plan: a pure function from config, contacts, articles, history and `now` to a Plan."""
from __future__ import annotations

import datetime as dt
import gc
import zoneinfo
from collections.abc import Mapping

from pipeline.scheduling import cron
from pipeline.contacts.audience import email_key
from pipeline.matching.explain import explain_contact
from pipeline.matching.match import Matcher
from pipeline.models import Article, Campaign, Contact, Note, Plan, PlannedEmail, Skipped, Tip
from pipeline.matching.walk import pick_for_contact

# Look back this far for the latest scheduled run; growing steps keep a per-minute cron
# cheap and still find a yearly one.
_LOOKBACKS = (dt.timedelta(hours=2), dt.timedelta(days=2), dt.timedelta(days=40),
              dt.timedelta(days=400))


def period_for(schedule: str, now: dt.datetime, timezone: str) -> dt.datetime:
    """The latest time at or before `now` when the cron schedule fired, in `timezone`.

    Two sends in the same period are the same send: the ledger key is built from it.
    """
    tz = zoneinfo.ZoneInfo(timezone)
    trigger = cron.trigger(schedule, tz)
    local_now = now.astimezone(tz)
    for back in _LOOKBACKS:
        fire = trigger.get_next_fire_time(None, local_now - back)
        if fire is None or fire > local_now:
            continue
        while True:
            nxt = trigger.get_next_fire_time(fire, fire + dt.timedelta(seconds=1))
            if nxt is None or nxt > local_now:
                return fire
            fire = nxt
    return local_now.replace(second=0, microsecond=0)


def skip_reason(contact: Contact, suppressed: frozenset[str]) -> str:
    """Why this person may not be mailed at all (unsubscribed or suppressed), or ''."""
    if not contact.subscribed:
        return "unsubscribed in the audience file"
    if email_key(contact.email) in suppressed:
        return "suppressed (unsubscribed, bounced or complained)"
    return ""


def send_id_for(campaign: Campaign, period: dt.datetime) -> str:
    """The ledger key of one run of a campaign: '<campaign>@<period>'."""
    return f"{campaign.name}@{period:%Y-%m-%dT%H:%M}"


def build_plan(campaign: Campaign, contacts: tuple[Contact, ...], articles: list[Article],
               tips: tuple[Tip, ...], history: Mapping[str, frozenset[str]],
               suppressed: frozenset[str], notes: Mapping[str, tuple[Note, ...]],
               synonyms: Mapping[str, tuple[str, ...]], now: dt.datetime, sender_tz: str,
               period: dt.datetime | None = None,
               source_topics: Mapping[str, tuple[str, ...]] | None = None,
               tip_last_seen: Mapping[str, Mapping[str, str]] | None = None,
               explain: bool = False) -> Plan:
    """Decide who gets what in one send, and who is skipped and why.

    `tip_last_seen` (email -> tip id -> when last sent) lets a finished tip rotation
    restart with the least recently seen; `explain` adds each contact's best rejected
    candidates with the reason they lost, and how each interest was read.
    """
    period = period or period_for(campaign.schedule, now, sender_tz)
    # Planning makes millions of small objects and no reference cycles: the cyclic
    # collector would only walk them again and again (a fifth of the time at 1M contacts).
    paused = gc.isenabled()
    gc.disable()
    try:
        return _plan(campaign, contacts, articles, tips, history, suppressed, notes,
                     synonyms, now, period, source_topics, tip_last_seen, explain)
    finally:
        if paused:
            gc.enable()


def _plan(campaign: Campaign, contacts: tuple[Contact, ...], articles: list[Article],
          tips: tuple[Tip, ...], history: Mapping[str, frozenset[str]],
          suppressed: frozenset[str], notes: Mapping[str, tuple[Note, ...]],
          synonyms: Mapping[str, tuple[str, ...]], now: dt.datetime, period: dt.datetime,
          source_topics: Mapping[str, tuple[str, ...]] | None,
          tip_last_seen: Mapping[str, Mapping[str, str]] | None, explain: bool) -> Plan:
    """build_plan's work, with the period known."""
    matcher = Matcher(articles, now, campaign.max_age_days, synonyms, source_topics)
    emails: list[PlannedEmail] = []
    skipped: list[Skipped] = []
    empty: frozenset[str] = frozenset()
    no_dates: Mapping[str, str] = {}
    tip_dates = tip_last_seen or {}
    for contact in contacts:
        key = email_key(contact.email)
        why = skip_reason(contact, suppressed)
        if why:
            skipped.append(Skipped(contact.email, why))
            continue
        seen = history.get(key, empty)
        last_seen = tip_dates.get(key, no_dates)
        picks = pick_for_contact(matcher, contact, campaign, tips, seen, last_seen)
        rejected = explain_contact(matcher, contact, campaign, tips, seen, last_seen) \
            if explain else ()
        if not picks:
            # Only reachable with skip_empty: otherwise the tip alone still goes out.
            skipped.append(Skipped(contact.email, "nothing new worth sending",
                                   rejected=rejected))
            continue
        emails.append(PlannedEmail(contact, picks, notes.get(key, ()), rejected=rejected))
    understood = {i: matcher.understood(i).label for c in contacts for i in c.interests} \
        if explain else {}
    return Plan(campaign=campaign, send_id=send_id_for(campaign, period),
                period=period.isoformat(), emails=tuple(emails), skipped=tuple(skipped),
                understood=understood)
