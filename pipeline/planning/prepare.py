"""Stages 2-3 for one send: load its contacts, read the ledger's view once, call the
campaign kind's planner, apply the post-plan holds. A new campaign kind is one planner
function (pure: campaign, contacts, inputs, ledger view, now -> Plan) and one line in
PLANNERS."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pipeline.approval import drafts
from pipeline.config import Config
from pipeline.contacts.audience import AudienceLoad, email_key, load_audiences
from pipeline.contacts.sales import load_sales
from pipeline.models import (
    Campaign,
    CampaignKind,
    Contact,
    Plan,
    PlannedEmail,
    Sale,
    Skipped,
)
from pipeline.planning.alerts import (
    ALERT_NEW_WITHIN,
    plan_alerts,
    queue_new,
    queued_alerts,
    reconcile_alerts,
)
from pipeline.planning.holds import apply_holds, post_plan_holds
from pipeline.planning.inputs import LedgerView, PlanInputs
from pipeline.planning.plan import plan_newsletter, skipped_for
from pipeline.planning.sends import plan_recent_sales
from pipeline.rendering.templatecheck import drip_campaign
from pipeline.scheduling.calendar import Due
from pipeline.state.interface import Ledger

Planner = Callable[[Campaign, tuple[Contact, ...], PlanInputs, LedgerView, dt.datetime], Plan]

PLANNERS: Mapping[CampaignKind, Planner] = {
    CampaignKind.NEWSLETTER: plan_newsletter,
    CampaignKind.RECENT_SALES: plan_recent_sales,
    CampaignKind.INTEREST_ALERT: plan_alerts,
}


@dataclass(frozen=True)
class Prepared:
    """A plan and what loading its audience reported."""

    plan: Plan
    audience: AudienceLoad


def history(store: Ledger) -> dict[str, frozenset[str]]:
    """What each person received, plus the stories dropped from their email in review
    (never offered to them again)."""
    return drafts.with_declined(store.history(), drafts.declined(store))


def read_ledger(store: Ledger, campaign: Campaign, now: dt.datetime) -> LedgerView:
    """The ledger's view one send plans against (an interest alert's queue is settled
    against what people received first)."""
    view = LedgerView(history=history(store), suppressed=store.suppressed(),
                      notes=store.pending_notes(), tip_last_seen=store.tip_last_seen())
    if campaign.kind != CampaignKind.INTEREST_ALERT:
        return view
    # "New" is by ingestion time, not a checkpoint, so a crash mid-send loses nothing:
    # the rerun finds the same stories and the ledger sends each at most once.
    fresh = store.article_ids_since(now - ALERT_NEW_WITHIN)
    reconcile_alerts(store, campaign.name, now,
                     dt.timedelta(days=campaign.approval_expires_days))
    return LedgerView(history=view.history, suppressed=view.suppressed, notes=view.notes,
                      tip_last_seen=view.tip_last_seen, fresh=fresh,
                      last_alert=store.last_sent(campaign.name),
                      alerts=queued_alerts(store, campaign.name))


def plan_inputs(config: Config, store: Ledger, campaign: Campaign, period: dt.datetime | None,
                explain: bool, partial: bool) -> tuple[PlanInputs, AudienceLoad | None]:
    """The send's inputs from the config and the stored articles; for the recent-sales
    mailer its sales CSV (re-read each run: the user keeps it), whose problems are
    returned as an AudienceLoad of problems."""
    sales: tuple[Sale, ...] = ()
    problems = None
    if campaign.kind == CampaignKind.RECENT_SALES:
        sales, found = load_sales(config.project / campaign.sales_file, campaign.sales_file)
        problems = AudienceLoad((), found)
    articles = store.articles() if campaign.kind != CampaignKind.RECENT_SALES else []
    return PlanInputs(articles=articles, tips=config.tips,
                      sender_tz=config.sender.timezone, synonyms=dict(config.synonyms),
                      source_topics={s.name: s.topics for s in config.sources},
                      period=period, sales=sales, explain=explain,
                      partial=partial), problems


def prepare(config: Config, store: Ledger, campaign: Campaign, now: dt.datetime,
            period: dt.datetime | None = None, explain: bool = False,
            only: frozenset[str] | None = None) -> Prepared:
    """Stages 2-3: load the campaign's contacts and plan who gets what (with `explain`,
    also what each contact did not get and why; with `only`, for those addresses)."""
    audience = load_audiences(config.audience_files, campaign.audiences, config.project)
    if only is not None:
        audience = AudienceLoad(tuple(c for c in audience.contacts
                                      if email_key(c.email) in only), audience.problems)
    inputs, more = plan_inputs(config, store, campaign, period, explain, only is not None)
    if more is not None:
        audience = AudienceLoad(audience.contacts, audience.problems + more.problems)
    ledger = read_ledger(store, campaign, now)
    plan = PLANNERS[campaign.kind](campaign, audience.contacts, inputs, ledger, now)
    queue_new(store, plan, now)
    # The daemon's calendar applied the frequency cap already to a group (`only`).
    plan = apply_holds(plan, post_plan_holds(config, store, campaign, now,
                                             capped=only is None))
    return Prepared(plan, audience)


def drip_plan(config: Config, store: Ledger, send_id: str, group: list[Due],
              everyone: dict[str, Contact]) -> Prepared:
    """A plan for one drip step's recipients: their own template, no article picks."""
    first = group[0]
    # A configured drip, or an event message with no drip of its own (a referral update).
    drip = next((d for d in config.drips if d.name == first.name), None)
    step = next((s for s in drip.steps if s.template == first.template), None) if drip \
        else None
    campaign = drip_campaign(first.name, drip.audiences if drip else (), first.template,
                             step.subject if step else "")
    suppressed, notes = store.suppressed(), store.pending_notes()
    emails: list[PlannedEmail] = []
    skipped: list[Skipped] = []
    for d in group:
        contact = everyone.get(email_key(d.email))
        skip = skipped_for(d.email, contact, suppressed)
        if contact is None or skip is not None:
            skipped.append(skip or Skipped(d.email, "no longer in an audience file"))
            continue
        emails.append(PlannedEmail(contact, (), notes.get(email_key(d.email), ()),
                                   template=d.template, extra=d.extra))
    plan = Plan(campaign=campaign, send_id=send_id, period=first.period.isoformat(),
                emails=tuple(emails), skipped=tuple(skipped))
    return Prepared(plan, AudienceLoad((), ()))
