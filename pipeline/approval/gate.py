"""The approval gate between planning and delivery: a send held for `sphere approve` goes
out only as far as it was approved; approved sends whose time has come are due again."""
from __future__ import annotations

import datetime as dt

from pipeline.approval import drafts
from pipeline.config import Config
from pipeline.models import Campaign, CampaignKind, DueKind, LedgerStatus
from pipeline.planning.prepare import Prepared
from pipeline.scheduling.calendar import Due
from pipeline.state.interface import Ledger


def drafted(campaign: Campaign) -> bool:
    """Held as a draft for approval (interest alerts queue each alert instead)."""
    return campaign.approval and campaign.kind != CampaignKind.INTEREST_ALERT


def held(config: Config, store: Ledger, prepared: Prepared, now: dt.datetime) -> Prepared:
    """With `approval: true` (a campaign's, or a drip's), hold the plan as a draft and
    keep only what was approved; otherwise the plan as it is."""
    plan = prepared.plan
    if plan.campaign.schedule:  # a campaign
        if not drafted(plan.campaign):
            return prepared
        draft = drafts.hold(store, plan, DueKind.CAMPAIGN, plan.campaign.approval_expires_days,
                            now)
    else:  # a drip step (a referral update is asked for by hand: never held)
        drip = next((d for d in config.drips if d.name == plan.campaign.name), None)
        if drip is None or not drip.approval:
            return prepared
        draft = drafts.hold(store, plan, DueKind.DRIP, drip.approval_expires_days, now, True)
    articles = {a.id: a for a in store.articles()}
    tips = {t.id: t for t in config.tips}
    return Prepared(drafts.held_plan(draft, plan, now, articles, tips), prepared.audience)


def approved_items(config: Config, store: Ledger, now: dt.datetime) -> list[Due]:
    """Calendar items for approved people of live drafts not yet sent: approving a send
    whose time has come sends it at the next tick (`run_due` delivers them)."""
    items = []
    for draft in drafts.with_approved_unsent(store):
        if dt.datetime.fromisoformat(draft.period) > now:
            continue  # approved ahead of its time (in review): it goes on schedule
        ledger = drafts.sent_to(store, draft)
        waiting = [r for r in draft.recipients if draft.approved(r)
                   and ledger.get(r.email) not in (LedgerStatus.SENT, LedgerStatus.PENDING)]
        known = draft.kind == DueKind.DRIP or any(c.name == draft.name for c in config.campaigns)
        if not waiting or not known:
            continue
        period = dt.datetime.fromisoformat(draft.period)
        items += [Due(at=now, local=now, period=period, kind=DueKind(draft.kind), name=draft.name,
                      template=r.template, send_id=draft.send_id, email=r.email,
                      extra=r.extra) for r in waiting]
    return items
