"""Schedule: a pure function from campaigns, drips, contacts and a time window to what is
due for whom and when. `sphere schedule` prints it; the daemon runs it, so a test can
simulate a year in seconds with an injected clock."""
from __future__ import annotations

import datetime as dt
import heapq
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache

from apscheduler.triggers.cron import CronTrigger

from .audience import email_key
from .config import Config, Drip, DripStep, Scheduling
from .models import Campaign, Contact, Plan, Skipped

PRIORITY_DRIP = 0  # drips and personal one-offs go first and are never capped
PRIORITY_CAMPAIGN = 1
# A capped send may wait this long for room under the cap; longer, and it is skipped so a
# monthly newsletter never slides into the next month's.
MAX_WAIT = dt.timedelta(days=7)


@dataclass(frozen=True)
class Referral:
    """Someone a contact referred to the professional."""

    id: int
    by_email: str
    name: str
    received: dt.date
    status: str = "received"
    updated: dt.datetime | None = None  # when the status last changed


REFERRAL_UPDATES = ("met", "listed", "closed")


def referral_update_due(referral: Referral, contact: Contact, sender_tz: str,
                        rules: Scheduling) -> Due:
    """The update to the referrer about a status change: at once, unless that is inside
    their quiet hours (then at the end of them). One per status, by its send id."""
    zone = contact_zone(contact, sender_tz)
    at = (referral.updated or dt.datetime.now(dt.timezone.utc)).astimezone(zone)
    local, note = _out_of_quiet_hours(at, rules.quiet_hours)
    return Due(at=local.astimezone(dt.timezone.utc), local=local, period=at, kind="drip",
               name="referral-update", template="referral_update",
               send_id=f"referral-update/r{referral.id}/{referral.status}",
               email=contact.email, priority=PRIORITY_DRIP, note=note,
               extra={"referral": {"id": referral.id, "name": referral.name,
                                   "status": referral.status}})


@dataclass(frozen=True)
class Due:
    """One message due to one contact at one moment."""

    at: dt.datetime  # the instant, UTC
    local: dt.datetime  # the same instant in the contact's time zone
    period: dt.datetime  # the scheduled local time that names the send (before any move)
    kind: str  # "campaign" | "drip"
    name: str  # campaign or drip name
    template: str  # drip step template; '' for a campaign (its kind's template)
    send_id: str  # the ledger key: the same for everyone in one send
    email: str
    priority: int = PRIORITY_CAMPAIGN
    note: str = ""  # why it moved or was held back
    extra: Mapping[str, object] = field(default_factory=dict)  # years, referral, ...
    # An interest-alert look: mails only people with a strong new story (throttled), so
    # it neither counts against nor is held by the frequency cap; its sends still count
    # once they happen (the ledger feeds `recent`).
    check: bool = False


@dataclass(frozen=True)
class Calendar:
    """What is due in a window, and what the frequency cap held back."""

    due: tuple[Due, ...]
    capped: tuple[Due, ...] = ()


def contact_zone(contact: Contact, default: str) -> zoneinfo.ZoneInfo:
    """The contact's own time zone, else the sender's."""
    return zoneinfo.ZoneInfo(contact.timezone or default)


@lru_cache(maxsize=512)
def _fires(schedule: str, zone: str, start: dt.datetime, end: dt.datetime
           ) -> tuple[dt.datetime, ...]:
    """Cron fire times in (start, end], local to `zone`; cached per zone, not per person."""
    trigger = CronTrigger.from_crontab(schedule, timezone=zoneinfo.ZoneInfo(zone))
    out = []
    fire = trigger.get_next_fire_time(None, start + dt.timedelta(microseconds=1))
    while fire is not None and fire <= end:
        out.append(fire)
        fire = trigger.get_next_fire_time(fire, fire + dt.timedelta(seconds=1))
    return tuple(out)


def _out_of_quiet_hours(local: dt.datetime, quiet: tuple[dt.time, dt.time] | None
                        ) -> tuple[dt.datetime, str]:
    """Move a local time that falls in quiet hours to when they end."""
    if not quiet:
        return local, ""
    begin, end = quiet
    t = local.timetz().replace(tzinfo=None)
    inside = (begin <= t or t < end) if begin > end else (begin <= t < end)
    if not inside:
        return local, ""
    day = local.date() if t < end else local.date() + dt.timedelta(days=1)
    moved = dt.datetime.combine(day, end, tzinfo=local.tzinfo)
    return moved, f"moved out of quiet hours from {local:%H:%M}"


def _at(day: dt.date, time: dt.time, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    # zoneinfo resolves a wall time that falls in a DST gap or overlap by `fold`; fold=0
    # takes the first of two 01:30s and the standard-time reading of a missing 02:30.
    return dt.datetime.combine(day, time, tzinfo=zone)


def _anniversary(anchor: dt.date, years: int) -> dt.date:
    try:
        return anchor.replace(year=anchor.year + years)
    except ValueError:  # 29 February in a common year
        return anchor.replace(year=anchor.year + years, day=28)


def _step_dates(anchor: dt.date, step: DripStep, first: dt.date, last: dt.date
                ) -> Iterable[tuple[dt.date, dict]]:
    if step.after_days is not None:
        day = anchor + dt.timedelta(days=step.after_days)
        if first <= day <= last:
            yield day, {}
        return
    every = step.every_days or 365
    k = 1
    while True:
        day = _anniversary(anchor, k) if every == 365 else anchor + dt.timedelta(days=every * k)
        if day > last:
            return
        if day >= first:
            yield day, {"years": k} if every == 365 else {"times": k}
        k += 1


def campaign_due(campaign: Campaign, contacts: Iterable[Contact], sender_tz: str,
                 start: dt.datetime, end: dt.datetime, rules: Scheduling) -> list[Due]:
    """Every (contact, fire time) of a campaign in (start, end], at local time."""
    out = []
    for c in contacts:
        if not c.subscribed or c.audience not in campaign.audiences:
            continue
        zone = c.timezone or sender_tz
        for fire in _fires(campaign.schedule, zone, start, end):
            local, note = _out_of_quiet_hours(fire, rules.quiet_hours)
            out.append(Due(at=local.astimezone(dt.timezone.utc), local=local, period=fire,
                           kind="campaign", check=campaign.kind == "interest_alert",
                           name=campaign.name, template="", email=c.email,
                           send_id=f"{campaign.name}@{fire:%Y-%m-%dT%H:%M}", note=note))
    return out


def drip_due(drip: Drip, contacts: Iterable[Contact], referrals: Iterable[Referral],
             sender_tz: str, start: dt.datetime, end: dt.datetime, rules: Scheduling
             ) -> list[Due]:
    """Every drip step that falls in (start, end] for each contact (or referral)."""
    out = []
    anchors: list[tuple[Contact, dt.date, dict, str]] = []
    if drip.anchor == "referral_received":
        by_email = {email_key(c.email): c for c in contacts}
        for r in referrals:
            c = by_email.get(email_key(r.by_email))
            if c is not None:
                anchors.append((c, r.received, {"referral": {"name": r.name, "status":
                                                              r.status, "id": r.id}},
                                f"/r{r.id}"))
    else:
        for c in contacts:
            if drip.audiences and c.audience not in drip.audiences:
                continue
            anchor = getattr(c, drip.anchor, None)
            if isinstance(anchor, dt.date):
                anchors.append((c, anchor, {}, ""))
    for contact, anchor, extra, suffix in anchors:
        if not contact.subscribed:
            continue
        zone = contact_zone(contact, sender_tz)
        first = start.astimezone(zone).date() - dt.timedelta(days=1)
        last = end.astimezone(zone).date()
        for step in drip.steps:
            for day, more in _step_dates(anchor, step, first, last):
                scheduled = _at(day, rules.drip_time, zone)
                local, note = _out_of_quiet_hours(scheduled, rules.quiet_hours)
                at = local.astimezone(dt.timezone.utc)
                if not start < at <= end:
                    continue
                out.append(Due(at=at, local=local, period=scheduled, kind="drip",
                               name=drip.name,
                               template=step.template, email=contact.email,
                               send_id=f"{drip.name}/{step.template}{suffix}@{day.isoformat()}",
                               priority=PRIORITY_DRIP, note=note, extra={**extra, **more}))
    return out


def apply_frequency_cap(items: list[Due], rules: Scheduling,
                        recent: Mapping[str, list[dt.datetime]]) -> tuple[list[Due], list[Due]]:
    """Keep at most `cap_max` emails per contact in any `cap_days` window; drips are never
    held back but count. Returns (kept, capped)."""
    if not rules.cap_max:
        return sorted(items, key=lambda d: (d.at, d.priority, d.send_id, d.email)), []
    window = dt.timedelta(days=rules.cap_days)
    sent: dict[str, list[dt.datetime]] = {k: sorted(v) for k, v in recent.items()}
    kept, capped = [], []
    # A heap, not a sorted list popped from the front: a year for 100,000 people is over a
    # million items, and a waited send goes back in at its new time.
    queue = [(d.at, d.priority, d.send_id, d.email, d) for d in items]
    heapq.heapify(queue)
    while queue:
        d = heapq.heappop(queue)[-1]
        if d.check:
            kept.append(d)
            continue
        history = sent.setdefault(email_key(d.email), [])
        in_window = [t for t in history if d.at - window < t <= d.at]
        if d.priority == PRIORITY_CAMPAIGN and len(in_window) >= rules.cap_max:
            room_at = min(in_window) + window  # when the oldest leaves the window
            if rules.cap_policy == "wait" and room_at - d.at <= MAX_WAIT:
                waited = replace(d, at=room_at, local=room_at.astimezone(d.local.tzinfo),
                                 note=f"waited for the frequency cap ({rules.cap_max} per "
                                      f"{rules.cap_days} days)")
                heapq.heappush(queue, (waited.at, waited.priority, waited.send_id,
                                       waited.email, waited))
                continue
            capped.append(replace(d, note=f"frequency cap: {len(in_window)} emails in the "
                                          f"last {rules.cap_days} days"))
            continue
        history.append(d.at)
        kept.append(d)
    return kept, capped


def calendar(config: Config, contacts: tuple[Contact, ...], referrals: tuple[Referral, ...],
             start: dt.datetime, end: dt.datetime,
             recent: Mapping[str, list[dt.datetime]] | None = None) -> Calendar:
    """Everything due in (start, end], in time order, after quiet hours and the cap."""
    rules = config.scheduling
    sender_tz = config.sender.timezone
    items: list[Due] = []
    for campaign in config.campaigns:
        # An interest alert's schedule is when to look for new stories; each look sends
        # only to people with a strong new match, so it is on the calendar like the rest.
        items += campaign_due(campaign, contacts, sender_tz, start, end, rules)
    for drip in config.drips:
        items += drip_due(drip, contacts, referrals, sender_tz, start, end, rules)
    by_email = {email_key(c.email): c for c in contacts}
    for r in referrals:
        contact = by_email.get(email_key(r.by_email))
        if r.status in REFERRAL_UPDATES and r.updated and contact and contact.subscribed:
            update = referral_update_due(r, contact, sender_tz, rules)
            if start < update.at <= end:
                items.append(update)
    # A person in two audiences of one campaign is still one recipient of each send.
    unique = list({(d.send_id, email_key(d.email)): d for d in items}.values())
    kept, capped = apply_frequency_cap(unique, rules, recent or {})
    return Calendar(tuple(kept), tuple(capped))


def split_missed(items: Iterable[Due], now: dt.datetime, grace: dt.timedelta
                 ) -> tuple[list[Due], list[Due]]:
    """After downtime: (still worth sending, too old to send) by the grace window."""
    catch_up, missed = [], []
    for d in items:
        (catch_up if d.at >= now - grace else missed).append(d)
    return catch_up, missed


def hold_capped(plan: Plan, recent: Mapping[str, list[dt.datetime]], rules: Scheduling,
                now: dt.datetime, exempt: frozenset[str] = frozenset()) -> Plan:
    """A send started by hand obeys the frequency cap too: contacts at the cap are skipped
    with the reason and the date a slot frees up (`exempt`: already in this send)."""
    if not rules.cap_max:
        return plan
    window = dt.timedelta(days=rules.cap_days)
    kept, skipped = [], list(plan.skipped)
    for planned in plan.emails:
        key = email_key(planned.contact.email)
        times = sorted(t for t in recent.get(key, ()) if t > now - window)
        if key in exempt or len(times) < rules.cap_max:
            kept.append(planned)
            continue
        skipped.append(Skipped(planned.contact.email,
                               f"frequency cap: {len(times)} emails in the last "
                               f"{rules.cap_days} days (room again on "
                               f"{(times[0] + window):%Y-%m-%d})"))
    return replace(plan, emails=tuple(kept), skipped=tuple(skipped))
