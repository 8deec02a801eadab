"""Post-plan holds: filters run in order over a finished plan, each moving some planned
emails to `skipped` with why (cold contacts, the frequency cap). `post_plan_holds` picks
those a send needs (reading what they need from the store); `apply_holds` runs them."""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from functools import partial

from pipeline.config import Config, Scheduling
from pipeline.contacts.audience import email_key
from pipeline.contacts.engagement import allow_send, cold_contacts
from pipeline.models import Campaign, Plan, Skipped
from pipeline.state.interface import Ledger

Hold = Callable[[Plan], Plan]


def hold_cold(plan: Plan, policy: str, cold: set[str] | frozenset[str]) -> Plan:
    """The plan with cold contacts moved to `skipped` when the policy says so."""
    if not cold or allow_send(policy, plan.period):
        return plan
    reason = ("cold contact: quarterly cadence" if policy == "quarterly"
              else "cold contact: skipped by cold_contacts: skip")
    keep = tuple(e for e in plan.emails if email_key(e.contact.email) not in cold)
    held = tuple(Skipped(e.contact.email, reason) for e in plan.emails
                 if email_key(e.contact.email) in cold)
    if not held:
        return plan
    return dataclasses.replace(plan, emails=keep, skipped=plan.skipped + held)


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
    return dataclasses.replace(plan, emails=tuple(kept), skipped=tuple(skipped))


def _hold_capped_send(plan: Plan, store: Ledger, recent: Mapping[str, list[dt.datetime]],
                      rules: Scheduling, now: dt.datetime) -> Plan:
    """hold_capped, exempting whoever this send already has a ledger row for."""
    return hold_capped(plan, recent, rules, now, frozenset(store.ledger_status(plan.send_id)))


def post_plan_holds(config: Config, store: Ledger, campaign: Campaign, now: dt.datetime,
                    capped: bool = True) -> list[Hold]:
    """The holds one send applies, in order: cold contacts (engagement feeds back, issue
    #9: fewer emails to cold contacts), then the frequency cap (`capped`: false when the
    daemon's calendar applied it already)."""
    holds: list[Hold] = []
    policy = config.cold_policy(campaign.name)
    if policy != "normal":
        cold = cold_contacts(store.ledger_rows(), store.events(),
                             config.engagement.cold_after_sends)
        holds.append(partial(hold_cold, policy=policy, cold=cold))
    rules = config.scheduling
    if rules.cap_max and capped:
        recent = store.recent_sends(now - dt.timedelta(days=rules.cap_days))
        holds.append(partial(_hold_capped_send, store=store, recent=recent, rules=rules,
                             now=now))
    return holds


def apply_holds(plan: Plan, holds: Iterable[Hold]) -> Plan:
    """The plan after each hold in turn."""
    for hold in holds:
        plan = hold(plan)
    return plan
