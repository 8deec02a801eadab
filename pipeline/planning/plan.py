"""The newsletter's planner, the skip rule every planner applies, and send periods: pure
functions of the campaign, its contacts, the inputs, the ledger's view and `now`."""
from __future__ import annotations

import datetime as dt
import gc
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping

from pipeline.contacts.audience import email_key
from pipeline.matching.explain import explain_contact
from pipeline.matching.match import Matcher
from pipeline.matching.walk import pick_for_contact
from pipeline.models import Campaign, Contact, Plan, PlannedEmail, Skipped
from pipeline.planning.inputs import LedgerView, PlanInputs
from pipeline.scheduling import cron

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


def skipped_for(email: str, contact: Contact | None, suppressed: frozenset[str]
                ) -> Skipped | None:
    """The one skip rule every send applies before planning anyone: the Skipped for an
    address no longer in an audience file, unsubscribed or suppressed; else None."""
    if contact is None:
        return Skipped(email, "no longer in an audience file")
    why = skip_reason(contact, suppressed)
    return Skipped(contact.email, why) if why else None


def mailable(contacts: Iterable[Contact], suppressed: frozenset[str],
             skipped: list[Skipped]) -> Iterator[tuple[str, Contact]]:
    """(email key, contact) of each contact who may be mailed; the others are added to
    `skipped` with why (skipped_for)."""
    for contact in contacts:
        skip = skipped_for(contact.email, contact, suppressed)
        if skip is not None:
            skipped.append(skip)
            continue
        yield email_key(contact.email), contact


def send_id_for(campaign: Campaign, period: dt.datetime) -> str:
    """The ledger key of one run of a campaign: '<campaign>@<period>'."""
    return f"{campaign.name}@{period:%Y-%m-%dT%H:%M}"


def send_period(campaign: Campaign, inputs: PlanInputs, now: dt.datetime) -> dt.datetime:
    """The period a send plans for: the one given, else the schedule's latest firing."""
    return inputs.period or period_for(campaign.schedule, now, inputs.sender_tz)


def plan_newsletter(campaign: Campaign, contacts: tuple[Contact, ...], inputs: PlanInputs,
                    ledger: LedgerView, now: dt.datetime) -> Plan:
    """Decide who gets what in one newsletter send, and who is skipped and why.

    The ledger's tip dates let a finished tip rotation restart with the least recently
    seen; `inputs.explain` adds each contact's best rejected candidates with the reason
    they lost, and how each interest was read.
    """
    # Planning makes millions of small objects and no reference cycles: the cyclic
    # collector would only walk them again and again (a fifth of the time at 1M contacts).
    paused = gc.isenabled()
    gc.disable()
    try:
        return _plan(campaign, contacts, inputs, ledger, now,
                     send_period(campaign, inputs, now))
    finally:
        if paused:
            gc.enable()


def _plan(campaign: Campaign, contacts: tuple[Contact, ...], inputs: PlanInputs,
          ledger: LedgerView, now: dt.datetime, period: dt.datetime) -> Plan:
    """plan_newsletter's work, with the period known."""
    matcher = Matcher(inputs.articles, now, campaign.max_age_days, inputs.synonyms,
                      inputs.source_topics)
    emails: list[PlannedEmail] = []
    skipped: list[Skipped] = []
    empty: frozenset[str] = frozenset()
    no_dates: Mapping[str, str] = {}
    tips, explain = inputs.tips, inputs.explain
    for key, contact in mailable(contacts, ledger.suppressed, skipped):
        seen = ledger.history.get(key, empty)
        last_seen = ledger.tip_last_seen.get(key, no_dates)
        picks = pick_for_contact(matcher, contact, campaign, tips, seen, last_seen)
        rejected = explain_contact(matcher, contact, campaign, tips, seen, last_seen) \
            if explain else ()
        if not picks:
            # Only reachable with skip_empty: otherwise the tip alone still goes out.
            skipped.append(Skipped(contact.email, "nothing new worth sending",
                                   rejected=rejected))
            continue
        emails.append(PlannedEmail(contact, picks, ledger.notes.get(key, ()),
                                   rejected=rejected))
    understood = {i: matcher.understood(i).label for c in contacts for i in c.interests} \
        if explain else {}
    return Plan(campaign=campaign, send_id=send_id_for(campaign, period),
                period=period.isoformat(), emails=tuple(emails), skipped=tuple(skipped),
                understood=understood)
