"""The recent-sales mailer's planner (pure): recent sales near the contact, with an advice
tip. The newsletter's planner is plan.plan_newsletter, interest alerts' alerts.plan_alerts."""
from __future__ import annotations

import datetime as dt

from pipeline.contacts.sales import sales_for
from pipeline.matching.match import choose_tip, tip_pick
from pipeline.models import Campaign, Contact, Plan, PlannedEmail, SalesExtra, Skipped
from pipeline.planning.inputs import LedgerView, PlanInputs
from pipeline.planning.plan import mailable, send_id_for, send_period


def plan_recent_sales(campaign: Campaign, contacts: tuple[Contact, ...], inputs: PlanInputs,
                      ledger: LedgerView, now: dt.datetime) -> Plan:
    """Recent sales (the contact's neighbourhood first), always with an advice tip that
    person has not had yet."""
    period = send_period(campaign, inputs, now)
    since = (now - dt.timedelta(days=campaign.sales_window_days)).date() \
        if campaign.sales_window_days else dt.date.min
    emails: list[PlannedEmail] = []
    skipped: list[Skipped] = []
    empty: frozenset[str] = frozenset()
    for key, contact in mailable(contacts, ledger.suppressed, skipped):
        shown = sales_for(contact.neighbourhood, inputs.sales, since, campaign.sales_limit)
        if not shown:
            skipped.append(Skipped(contact.email, "no sales in the window to show"))
            continue
        tip = choose_tip(contact, inputs.tips, ledger.history.get(key, empty), now,
                         ledger.tip_last_seen.get(key))
        if tip is None:  # config refuses a sales mailer without tips; guard anyway
            skipped.append(Skipped(contact.email, "no advice tip to pair with the sales"))
            continue
        own = sum(1 for s in shown if s.neighbourhood.lower() == contact.neighbourhood.lower())
        emails.append(PlannedEmail(contact, (tip_pick(tip),), ledger.notes.get(key, ()),
                                   extra=SalesExtra(tuple(shown), own)))
    return Plan(campaign=campaign, send_id=send_id_for(campaign, period),
                period=period.isoformat(), emails=tuple(emails), skipped=tuple(skipped))
