"""Schedule: a pure function from campaigns, drips, contacts and a time window to what is
due for whom and when. `sphere schedule` prints it; the daemon runs it, so a test can
simulate a year in seconds with an injected clock."""
from __future__ import annotations

import datetime as dt
import heapq
import zoneinfo
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from pipeline import names
from pipeline.config import Config, Drip, DripStep, Scheduling
from pipeline.contacts.audience import email_key
from pipeline.models import (
    Campaign,
    CampaignKind,
    Contact,
    DripExtra,
    DueKind,
    ReferralInfo,
)
from pipeline.scheduling import cron

# The store's record; named here too, where callers have long imported it from.
from pipeline.state.records import Referral

PRIORITY_DRIP = 0  # drips and personal one-offs go first and are never capped
PRIORITY_CAMPAIGN = 1
# A capped send may wait this long for room under the cap; longer, and it is skipped so a
# monthly newsletter never slides into the next month's.
MAX_WAIT = dt.timedelta(days=7)

REFERRAL_UPDATES = names.REFERRAL_UPDATES


def referral_update_due(referral: Referral, contact: Contact, sender_tz: str,
                        rules: Scheduling, changed: dt.datetime) -> Due:
    """The update to the referrer about a status change made at `changed` (the referral's
    recorded time, or now at the edge that changes it): at once, unless that is inside
    their quiet hours (then at the end of them). One per status, by its send id."""
    zone = contact_zone(contact, sender_tz)
    at = changed.astimezone(zone)
    local, note = _out_of_quiet_hours(at, rules.quiet_hours)
    return Due(at=local.astimezone(dt.UTC), local=local, period=at, kind=DueKind.DRIP,
               name="referral-update", template="referral_update",
               send_id=f"referral-update/r{referral.id}/{referral.status}",
               email=contact.email, priority=PRIORITY_DRIP, note=note,
               extra=DripExtra(ReferralInfo(referral.id, referral.name, referral.status)))


@dataclass(frozen=True)
class Due:
    """One message due to one contact at one moment."""

    at: dt.datetime  # the instant, UTC
    local: dt.datetime  # the same instant in the contact's time zone
    period: dt.datetime  # the scheduled local time that names the send (before any move)
    kind: DueKind
    name: str  # campaign or drip name
    template: str  # drip step template; '' for a campaign (its kind's template)
    send_id: str  # the ledger key: the same for everyone in one send
    email: str
    priority: int = PRIORITY_CAMPAIGN
    note: str = ""  # why it moved or was held back
    extra: DripExtra | None = None  # a drip step's referral, years or times
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
                ) -> Iterable[tuple[dt.date, dict[str, int]]]:
    if step.after_days is not None:
        day = anchor + dt.timedelta(days=step.after_days)
        if first <= day <= last:
            yield day, {}
        return
    every = step.every_days or 365
    # Start just before the window, not at the anchor: a 2016 closing has ten
    # anniversaries before this year's.
    before = first.year - anchor.year - 1 if every == 365 else (first - anchor).days // every
    k = max(1, before)
    while True:
        day = _anniversary(anchor, k) if every == 365 else anchor + dt.timedelta(days=every * k)
        if day > last:
            return
        if day >= first:
            yield day, {"years": k} if every == 365 else {"times": k}
        k += 1


def _cap_person(items: list[Due], rules: Scheduling, history: Iterable[dt.datetime]
                ) -> tuple[list[Due], list[Due]]:
    """The frequency cap for one person's items (none of them alert looks)."""
    if not rules.cap_max:
        return items, []
    window = dt.timedelta(days=rules.cap_days)
    sent = sorted(history)
    if _never_crowded(sorted([d.at for d in items] + sent), window, rules.cap_max):
        return items, []  # no window ever holds more than the cap: nothing to hold back
    kept, capped = [], []
    # A heap, not a sorted list popped from the front: a waited send goes back in at its
    # new time. The index breaks ties (a Due is not orderable).
    queue = [(d.at, d.priority, d.send_id, i, d) for i, d in enumerate(items)]
    heapq.heapify(queue)
    tie = len(queue)
    while queue:
        d = heapq.heappop(queue)[-1]
        in_window = [t for t in sent if d.at - window < t <= d.at]
        if d.priority == PRIORITY_CAMPAIGN and len(in_window) >= rules.cap_max:
            room_at = min(in_window) + window  # when the oldest leaves the window
            if rules.cap_policy == "wait" and room_at - d.at <= MAX_WAIT:
                waited = replace(d, at=room_at, local=room_at.astimezone(d.local.tzinfo),
                                 note=f"waited for the frequency cap ({rules.cap_max} per "
                                      f"{rules.cap_days} days)")
                tie += 1
                heapq.heappush(queue, (waited.at, waited.priority, waited.send_id, tie,
                                       waited))
                continue
            capped.append(replace(d, note=f"frequency cap: {len(in_window)} emails in the "
                                          f"last {rules.cap_days} days"))
            continue
        sent.append(d.at)
        kept.append(d)
    return kept, capped


def _never_crowded(times: list[dt.datetime], window: dt.timedelta, cap: int) -> bool:
    """True if no `window`-long span ending at one of the (sorted) times holds more than
    `cap` of them."""
    oldest = 0
    for newest, t in enumerate(times):
        while times[oldest] <= t - window:
            oldest += 1
        if newest - oldest + 1 > cap:
            return False
    return True


def _order(d: Due) -> tuple:
    return d.at, d.priority, d.send_id, d.email


def apply_frequency_cap(items: list[Due], rules: Scheduling,
                        recent: Mapping[str, list[dt.datetime]]) -> tuple[list[Due], list[Due]]:
    """Keep at most `cap_max` emails per contact in any `cap_days` window; drips are never
    held back but count; alert looks neither count nor wait. Returns (kept, capped)."""
    people: dict[str, list[Due]] = {}
    kept, capped = [], []
    for d in items:
        if d.check:
            kept.append(d)
        else:
            people.setdefault(email_key(d.email), []).append(d)
    for key, mine in people.items():
        k, c = _cap_person(mine, rules, recent.get(key, ()))
        kept += k
        capped += c
    return sorted(kept, key=_order), sorted(capped, key=_order)


class _Walk:
    """The calendar's work for one person at a time, shared by the detailed calendar (the
    daemon's, one item per person) and the compact one (one item per send)."""

    def __init__(self, config: Config, referrals: Iterable[Referral], start: dt.datetime,
                 end: dt.datetime, recent: Mapping[str, list[dt.datetime]]) -> None:
        self.config, self.rules, self.tz = config, config.scheduling, config.sender.timezone
        self.start, self.end, self.recent = start, end, recent
        self.drips = config.drips
        self.updates = True  # referral updates are people's own items too
        self.by_referrer: dict[str, list[Referral]] = {}
        for r in referrals:
            self.by_referrer.setdefault(email_key(r.by_email), []).append(r)
        self._slots: dict[tuple[str, str], tuple[Due, ...]] = {}
        self._days: dict[str, tuple[dt.date, dt.date]] = {}
        self._capped: dict[tuple, tuple[list[Due], list[Due]]] = {}

    def slots(self, campaign: Campaign, zone: str) -> tuple[Due, ...]:
        """A campaign's firings in one zone, shared by everyone there (email '')."""
        key = (campaign.name, zone)
        if key not in self._slots:
            out = []
            for fire in cron.fires(campaign.schedule, zoneinfo.ZoneInfo(zone), self.start,
                                   self.end):
                local, note = _out_of_quiet_hours(fire, self.rules.quiet_hours)
                out.append(Due(at=local.astimezone(dt.UTC), local=local, period=fire,
                               kind=DueKind.CAMPAIGN,
                               check=campaign.kind == CampaignKind.INTEREST_ALERT,
                               name=campaign.name, template="", email="", note=note,
                               send_id=f"{campaign.name}@{fire:%Y-%m-%dT%H:%M}"))
            self._slots[key] = tuple(out)
        return self._slots[key]

    def person(self, key: str, entries: list[Contact]
               ) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...], list[Due]]:
        """(campaigns as (name, zone), alert looks as (name, zone), own items: drip steps
        and referral updates) of one person, however many audience rows they have."""
        seen: set[str] = set()
        campaigns: list[tuple[str, str]] = []
        looks: list[tuple[str, str]] = []
        for c in entries:
            if not c.subscribed:
                continue
            zone = c.timezone or self.tz
            for campaign in self.config.campaigns:
                # A person in two audiences of one campaign is one recipient of each send.
                if c.audience in campaign.audiences and campaign.name not in seen:
                    seen.add(campaign.name)
                    (looks if campaign.kind == CampaignKind.INTEREST_ALERT else campaigns).append(
                        (campaign.name, zone))
        return tuple(campaigns), tuple(looks), self.own(key, entries)

    def own(self, key: str, entries: list[Contact]) -> list[Due]:
        """One person's own items: drip steps and referral updates."""
        own = self._drips(key, entries)
        for r in self.by_referrer.get(key, ()) if self.updates else ():
            contact = entries[-1]
            if r.status in REFERRAL_UPDATES and r.updated and contact.subscribed:
                update = referral_update_due(r, contact, self.tz, self.rules, r.updated)
                if self.start < update.at <= self.end:
                    own.append(update)
        if len(own) < 2:
            return own
        return list({d.send_id: d for d in own}.values())  # two audience rows, one step

    def capped(self, key: str, campaigns: tuple[tuple[str, str], ...], own: list[Due]
               ) -> tuple[list[Due], list[Due]]:
        """(kept, held back) of one person's campaign sends and own items; people with
        the same campaigns and zones and nothing of their own share one answer."""
        history = self.recent.get(key, ())
        shared = not own and not history
        if shared and campaigns in self._capped:
            return self._capped[campaigns]
        items = [s for name, zone in campaigns
                 for s in self.slots(self.config.campaign(name), zone)] + own
        result = _cap_person(items, self.rules, history)
        if shared:
            self._capped[campaigns] = result
        return result

    def _window_days(self, zone: str) -> tuple[dt.date, dt.date]:
        if zone not in self._days:
            tz = zoneinfo.ZoneInfo(zone)
            self._days[zone] = (self.start.astimezone(tz).date() - dt.timedelta(days=1),
                                self.end.astimezone(tz).date())
        return self._days[zone]

    def _drips(self, key: str, entries: list[Contact]) -> list[Due]:
        out: list[Due] = []
        for drip in self.drips:
            if drip.anchor == "referral_received":
                for r in self.by_referrer.get(key, ()):
                    referral = ReferralInfo(r.id, r.name, r.status)
                    # A referral recorded after its step's time is due when recorded.
                    out += self._steps(drip, entries[-1], r.received, referral, f"/r{r.id}",
                                       r.recorded)
                continue
            for c in entries:
                if drip.audiences and c.audience not in drip.audiences:
                    continue
                anchor = getattr(c, drip.anchor, None)
                if isinstance(anchor, dt.date):
                    out += self._steps(drip, c, anchor, None, "", None)
        return out

    def _steps(self, drip: Drip, contact: Contact, anchor: dt.date,
               referral: ReferralInfo | None, suffix: str, known: dt.datetime | None
               ) -> list[Due]:
        """A drip's steps for one anchor: each due at the first allowed time (quiet hours)
        at or after its day's drip time, and never before Sphere knew of the anchor."""
        if not contact.subscribed:
            return []
        zone_name = contact.timezone or self.tz
        zone = zoneinfo.ZoneInfo(zone_name)
        first, last = self._window_days(zone_name)
        if known is not None:
            first = min(first, anchor)  # recorded late: its first steps may still be due
        out = []
        for step in drip.steps:
            for day, more in _step_dates(anchor, step, first, last):
                scheduled = _at(day, self.rules.drip_time, zone)
                wanted, late = scheduled, ""
                if known is not None and known > scheduled:
                    if step.after_days is None:
                        continue  # a repeat that fell before the referral was recorded
                    wanted = known.astimezone(zone)
                    late = f"recorded at {wanted:%Y-%m-%d %H:%M}, after the drip time"
                local, note = _out_of_quiet_hours(wanted, self.rules.quiet_hours)
                at = local.astimezone(dt.UTC)
                if not self.start < at <= self.end:
                    continue
                out.append(Due(at=at, local=local, period=scheduled, kind=DueKind.DRIP,
                               name=drip.name, template=step.template, email=contact.email,
                               send_id=f"{drip.name}/{step.template}{suffix}@{day.isoformat()}",
                               priority=PRIORITY_DRIP, note=note or late,
                               extra=DripExtra(referral, **more)))
        return out


_grouped: list[tuple[object, dict[str, list[Contact]]]] = []  # the last answer of _people


def _people(contacts: Iterable[Contact]) -> dict[str, list[Contact]]:
    """Audience rows by person (one entry per address, in file order). The same tuple of
    contacts is grouped once (status asks three times); the cache holds it, so its
    identity cannot be reused by another object while cached."""
    if _grouped and _grouped[0][0] is contacts and isinstance(contacts, tuple):
        return _grouped[0][1]
    people: dict[str, list[Contact]] = {}
    for c in contacts:
        people.setdefault(email_key(c.email), []).append(c)
    _grouped[:] = [(contacts, people)]
    return people


def calendar(config: Config, contacts: tuple[Contact, ...], referrals: tuple[Referral, ...],
             start: dt.datetime, end: dt.datetime,
             recent: Mapping[str, list[dt.datetime]] | None = None) -> Calendar:
    """Everything due in (start, end] for each person, in time order, after quiet hours
    and the cap: what the daemon sends (and `schedule --detail` lists)."""
    walk = _Walk(config, referrals, start, end, recent or {})
    due: list[Due] = []
    capped: list[Due] = []
    for key, entries in _people(contacts).items():
        campaigns, looks, own = walk.person(key, entries)
        if not (campaigns or looks or own):
            continue
        email = entries[0].email
        kept, held = walk.capped(key, campaigns, own)
        due += [d if d.email else replace(d, email=email) for d in kept]
        capped += [d if d.email else replace(d, email=email) for d in held]
        # An interest alert's schedule is when to look for new stories; each look mails
        # only people with a strong new match, so it neither counts against nor is held
        # by the cap (its sends count once they happen: the ledger feeds `recent`).
        due += [replace(s, email=email) for name, zone in looks
                for s in walk.slots(config.campaign(name), zone)]
    return Calendar(tuple(sorted(due, key=_order)), tuple(sorted(capped, key=_order)))


def drips_due(config: Config, contacts: tuple[Contact, ...],
              referrals: tuple[Referral, ...], start: dt.datetime, end: dt.datetime,
              names: Iterable[str] | None = None) -> list[Due]:
    """Drip steps and referral updates due in (start, end] (the cap never holds these);
    with `names`, only those drips' steps."""
    walk = _Walk(config, referrals, start, end, {})
    if names is not None:
        wanted = set(names)
        walk.drips = tuple(d for d in config.drips if d.name in wanted)
        walk.updates = False
    out: list[Due] = []
    people = _people(contacts)
    if walk.drips and all(d.anchor == "referral_received" for d in walk.drips) \
            and not walk.updates:
        # Only referral drips: only referrers can have steps.
        people = {k: people[k] for k in walk.by_referrer if k in people}
    for key, entries in people.items():
        out += walk.own(key, entries)
    return sorted(out, key=_order)


@dataclass(frozen=True)
class Firing:
    """One send in the compact calendar: a campaign firing, an alert look or a drip step's
    day, with how many people it reaches, not a line per person."""

    at: dt.datetime  # the earliest recipient's instant, UTC
    local: dt.datetime  # that instant in its zone
    kind: DueKind
    name: str
    template: str
    send_id: str
    count: int  # people (a person in two audiences counts once)
    zones: tuple[tuple[str, int], ...]  # (time zone, people there)
    notes: tuple[tuple[str, int], ...] = ()  # (why some moved or were held, how many)
    check: bool = False


@dataclass(frozen=True)
class Summary:
    """The compact calendar: one Firing per send, and per send what the cap held back."""

    firings: tuple[Firing, ...]
    held_back: tuple[Firing, ...] = ()


class _Tally:
    """Adds calendar items into one Firing per send id. Most people share the same item
    objects (a campaign's firing in their zone), so items are counted by identity first
    and folded into firings once each."""

    def __init__(self) -> None:
        self.items: dict[int, Due] = {}  # keeps each counted item alive: ids stay unique
        self.times: Counter[int] = Counter()

    def add(self, d: Due, n: int = 1) -> None:
        self.items[id(d)] = d
        self.times[id(d)] += n

    def firings(self) -> tuple[Firing, ...]:
        first: dict[str, Due] = {}
        count: Counter[str] = Counter()
        zones: dict[str, Counter[str]] = {}
        notes: dict[str, Counter[str]] = {}
        for key, d in self.items.items():
            n = self.times[key]
            if d.send_id not in first or d.at < first[d.send_id].at:
                first[d.send_id] = d
            count[d.send_id] += n
            zones.setdefault(d.send_id, Counter())[str(d.local.tzinfo)] += n
            if d.note:
                # "moved out of quiet hours from 06:00" varies by the minute; the reason
                # does not.
                notes.setdefault(d.send_id, Counter())[d.note.split(" from ")[0]] += n
        out = [Firing(at=d.at, local=d.local, kind=d.kind, name=d.name, template=d.template,
                      send_id=sid, count=count[sid], check=d.check,
                      zones=tuple(sorted(zones[sid].items())),
                      notes=tuple(sorted(notes.get(sid, Counter()).items())))
               for sid, d in first.items()]
        return tuple(sorted(out, key=lambda f: (f.at, f.send_id)))


def summary(config: Config, contacts: tuple[Contact, ...], referrals: tuple[Referral, ...],
            start: dt.datetime, end: dt.datetime,
            recent: Mapping[str, list[dt.datetime]] | None = None) -> Summary:
    """The calendar of (start, end] with one item per send and a count: the same
    computation as calendar(), without a line per person (`sphere schedule`)."""
    walk = _Walk(config, referrals, start, end, recent or {})
    kept, held = _Tally(), _Tally()
    alike: Counter[tuple[tuple[str, str], ...]] = Counter()
    looks: Counter[tuple[str, str]] = Counter()
    for key, entries in _people(contacts).items():
        campaigns, person_looks, own = walk.person(key, entries)
        looks.update(person_looks)
        if not own and not walk.recent.get(key):
            alike[campaigns] += 1  # the same sends as everyone with these campaigns
            continue
        k, h = walk.capped(key, campaigns, own)
        for d in k:
            kept.add(d)
        for d in h:
            held.add(d)
    for campaigns, n in alike.items():
        k, h = walk.capped("", campaigns, [])
        for d in k:
            kept.add(d, n)
        for d in h:
            held.add(d, n)
    for (name, zone), n in looks.items():
        for s in walk.slots(config.campaign(name), zone):
            kept.add(s, n)
    return Summary(kept.firings(), held.firings())


def campaign_zones(config: Config, contacts: Iterable[Contact]) -> dict[str, Counter[str]]:
    """Per campaign, how many people it reaches in each time zone (a person in two of its
    audiences counts once)."""
    per: dict[str, Counter[str]] = {c.name: Counter() for c in config.campaigns}
    tz = config.sender.timezone
    # People with the same audience rows (audience, zone) count alike: tally those first.
    alike: Counter[tuple[tuple[str, str], ...]] = Counter()
    for entries in _people(contacts).values():
        alike[tuple((c.audience, c.timezone or tz) for c in entries if c.subscribed)] += 1
    for rows, n in alike.items():
        seen: set[str] = set()
        for audience, zone in rows:
            for campaign in config.campaigns:
                if audience in campaign.audiences and campaign.name not in seen:
                    seen.add(campaign.name)
                    per[campaign.name][zone] += n
    return per


def _firing(campaign: Campaign, fire: dt.datetime, rules: Scheduling, count: int,
            zones: Counter[str]) -> Firing:
    local, note = _out_of_quiet_hours(fire, rules.quiet_hours)
    return Firing(at=local.astimezone(dt.UTC), local=local, kind=DueKind.CAMPAIGN,
                  name=campaign.name, template="",
                  send_id=f"{campaign.name}@{fire:%Y-%m-%dT%H:%M}", count=count,
                  zones=tuple(sorted(zones.items())), notes=((note, count),) if note else (),
                  check=campaign.kind == CampaignKind.INTEREST_ALERT)


def campaign_firings(config: Config, zones: Mapping[str, Counter[str]], start: dt.datetime,
                     now: dt.datetime) -> tuple[dict[str, Firing], dict[str, Firing]]:
    """Per campaign, (its latest firing in (start, now], its next firing after now), in
    the zones of its people; each with how many people the campaign reaches."""
    latest: dict[str, Firing] = {}
    upcoming: dict[str, Firing] = {}
    for campaign in config.campaigns:
        people = zones.get(campaign.name, Counter())
        count = sum(people.values())
        for zone in sorted(people):
            tz = zoneinfo.ZoneInfo(zone)
            fired = cron.fires(campaign.schedule, tz, start, now)
            if fired:
                f = _firing(campaign, fired[-1], config.scheduling, count, people)
                if campaign.name not in latest or f.at > latest[campaign.name].at:
                    latest[campaign.name] = f
            fire = cron.next_fire(campaign.schedule, tz, now)
            if fire is not None:
                f = _firing(campaign, fire, config.scheduling, count, people)
                if campaign.name not in upcoming or f.at < upcoming[campaign.name].at:
                    upcoming[campaign.name] = f
    return latest, upcoming


def next_drips(drips: Iterable[Due], now: dt.datetime) -> dict[str, Due]:
    """Each drip's earliest step after `now` among `drips`."""
    out: dict[str, Due] = {}
    for d in drips:
        if d.at > now and (d.name not in out or _order(d) < _order(out[d.name])):
            out[d.name] = d
    return out


def drip_horizon(config: Config) -> dt.timedelta:
    """How far ahead a drip's next step can be: a year, or its longest `every`."""
    return dt.timedelta(days=max([365] + [s.every_days or 0 for d in config.drips
                                          for s in d.steps]) + 2)


def split_missed(items: Iterable[Due], now: dt.datetime, grace: dt.timedelta
                 ) -> tuple[list[Due], list[Due]]:
    """After downtime: (still worth sending, too old to send) by the grace window."""
    catch_up: list[Due] = []
    missed: list[Due] = []
    for d in items:
        (catch_up if d.at >= now - grace else missed).append(d)
    return catch_up, missed
