"""The runner: calls the stages in their fixed order (ingest -> contacts -> match/plan ->
render -> deliver) and keeps the ledger so every send is exactly once."""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipeline.approval import drafts
from pipeline.contacts.audience import AudienceLoad, email_key, load_audiences
from pipeline.config import Config
from pipeline.delivery.deliver import MAX_CONSECUTIVE_FAILURES, Transport
from pipeline.delivery.dispatch import dispatch
from pipeline.contacts.engagement import cold_contacts, hold_cold
from pipeline.feeds.ingest import IngestSummary, ingest
from pipeline.models import Campaign, Contact, Plan, PlannedEmail, RunSummary, Skipped
from pipeline.errors import ConfigError, Problem
from pipeline.matching.match import Matcher
from pipeline.planning.plan import build_plan, period_for, send_id_for, skip_reason
from pipeline.contacts.sales import load_sales
from pipeline.planning.sends import QueuedAlert, alert_candidates, alert_email, plan_recent_sales
from pipeline.rendering.render import DRIP_SUBJECTS, Renderer
from pipeline.rendering.pool import RenderAhead, pool_size
from pipeline.scheduling.calendar import Due, hold_capped
from pipeline.delivery.sendlock import send_lock
from pipeline.state.store import Store
from pipeline.rendering.templatecheck import check_templates

# An article ingested this recently is "new" for interest alerts.
ALERT_NEW_WITHIN = dt.timedelta(days=3)
ALERT_EXPIRY = dt.timedelta(days=7)  # a pending alert older than this is stale news

Progress = Callable[[int, int, str], None]  # (done, total, email)


@dataclass(frozen=True)
class Prepared:
    """A plan and what loading its audience reported."""

    plan: Plan
    audience: AudienceLoad


def _history(store: Store) -> dict[str, frozenset[str]]:
    """What each person received, plus the stories dropped from their email in review
    (never offered to them again)."""
    return drafts.with_declined(store.history(), drafts.declined(store))


def run_ingest(config: Config, store: Store, now: dt.datetime,
               on_done: Callable | None = None, retry_failed: bool = False
               ) -> IngestSummary:
    """Stage 1: bring every source up to date (failing feeds too with `retry_failed`)."""
    return ingest(config.sources, store, now, on_done, retry_failed=retry_failed)


def prepare(config: Config, store: Store, campaign: Campaign, now: dt.datetime,
            period: dt.datetime | None = None, explain: bool = False,
            only: frozenset[str] | None = None) -> Prepared:
    """Stages 2-3: load the campaign's contacts and plan who gets what (with `explain`,
    also what each contact did not get and why; with `only`, for those addresses)."""
    audience = load_audiences(config.audience_files, campaign.audiences, config.project)
    if only is not None:
        audience = AudienceLoad(tuple(c for c in audience.contacts
                                      if c.email.lower() in only), audience.problems)
    if campaign.kind == "recent_sales":
        plan, sales_problems = _sales_plan(config, store, campaign, audience.contacts, now,
                                           period)
        audience = AudienceLoad(audience.contacts, audience.problems + sales_problems)
    elif campaign.kind == "interest_alert":
        plan = _alert_plan(config, store, campaign, audience.contacts, now, period,
                           partial=only is not None)
    else:
        plan = build_plan(campaign, audience.contacts, store.articles(), config.tips,
                          _history(store), store.suppressed(), store.pending_notes(),
                          dict(config.synonyms), now, config.sender.timezone, period,
                          {s.name: s.topics for s in config.sources},
                          tip_last_seen=store.tip_last_seen(), explain=explain)
    policy = config.cold_policy(campaign.name)
    if policy != "normal":  # engagement feeds back (issue #9): fewer emails to cold contacts
        plan = hold_cold(plan, policy, cold_contacts(
            store.ledger_rows(), store.events(), config.engagement.cold_after_sends))
    rules = config.scheduling
    if rules.cap_max and only is None:  # the daemon's calendar applied the cap already
        plan = hold_capped(plan, store.recent_sends(now - dt.timedelta(days=rules.cap_days)),
                           rules, now, frozenset(store.ledger_status(plan.send_id)))
    return Prepared(plan, audience)


def deliver_plan(store: Store, renderer: Renderer, transport: Transport, prepared: Prepared,
                 now: Callable[[], dt.datetime], dry_run: bool,
                 progress: Progress | None = None,
                 max_failures: int = MAX_CONSECUTIVE_FAILURES,
                 should_stop: Callable[[], bool] | None = None) -> RunSummary:
    """Stages 4-5: render and deliver each planned email, recording each in the ledger
    (concurrently, `transport.workers` at a time; see dispatch.py). One process at a
    time delivers a send: another holding it raises LockedError (sendlock.py)."""
    with send_lock(store.path, prepared.plan.send_id):
        return _deliver_plan(store, renderer, transport, prepared, now, dry_run, progress,
                             max_failures, should_stop)


def _deliver_plan(store: Store, renderer: Renderer, transport: Transport,
                  prepared: Prepared, now: Callable[[], dt.datetime], dry_run: bool,
                  progress: Progress | None, max_failures: int,
                  should_stop: Callable[[], bool] | None) -> RunSummary:
    started = time.monotonic()
    plan = prepared.plan
    store.start_send(plan.send_id, plan.campaign.name, plan.period, now())
    sent = {e for e, status in store.ledger_status(plan.send_id).items() if status == "sent"}
    # A large send renders ahead in worker processes (render_pool.py); this thread keeps
    # the ledger and feeds the transport.
    with RenderAhead(renderer, pool_size(len(plan.emails) - len(sent)),
                     raw_only=getattr(transport, "raw_only", False),
                     prepare=getattr(transport, "prepare", None)) as ahead:
        result = dispatch(store, transport, plan.send_id,
                          ahead.jobs(plan, now, skip=sent.__contains__), len(plan.emails),
                          now, max_failures,
                          lambda email: renderer.message_id(plan.send_id, email),
                          progress, should_stop)
    outcome = "paused" if result.paused else (
        "failed" if result.failed and not result.sent else "done")
    if not dry_run:
        store.finish_send(plan.send_id, now(), outcome)
    problems = tuple(str(p) for p in prepared.audience.problems)
    return RunSummary(campaign=plan.campaign.name, send_id=plan.send_id, dry_run=dry_run,
                      sent=result.sent, already_sent=result.already, failed=result.failed,
                      unknown=result.unknown, skipped=plan.skipped + result.skipped,
                      problems=problems, failures=result.failures, paused=result.paused,
                      seconds=time.monotonic() - started)


def run_send(config: Config, store: Store, transport: Transport, campaign_name: str,
             now: Callable[[], dt.datetime], dry_run: bool = False, do_ingest: bool = True,
             period: dt.datetime | None = None, progress: Progress | None = None
             ) -> tuple[IngestSummary | None, RunSummary]:
    """The whole pipeline for one campaign, in order."""
    campaign = config.campaign(campaign_name)
    renderer = Renderer(config.project, config.sender, store.secret())
    try:
        refuse_bad_templates(config, renderer, [f"campaigns.{campaign.name}"])  # first
        ingested = run_ingest(config, store, now()) if do_ingest else None
        prepared = held(config, store, prepare(config, store, campaign, now(), period),
                        now())
        summary = deliver_plan(store, renderer, transport, prepared, now, dry_run, progress)
    finally:
        transport.close()
    return ingested, summary


def refuse_bad_templates(config: Config, renderer: Renderer, uses: list[str]) -> None:
    """Send nothing when a template in use is broken: an undefined name, or an email
    without its unsubscribe link or postal address (the same check as `sphere check`)."""
    problems = check_templates(config, renderer, uses)
    if problems:
        raise ConfigError(problems)


def skipped_line(skipped: tuple[Skipped, ...]) -> str:
    """'2 skipped (1 unsubscribed in the audience file, 1 nothing new worth sending)'."""
    if not skipped:
        return ""
    reasons: dict[str, int] = {}
    for s in skipped:
        reasons[s.reason] = reasons.get(s.reason, 0) + 1
    return f"{len(skipped)} skipped (" + ", ".join(f"{n} {r}" for r, n in reasons.items()) + ")"


def run_due(config: Config, store: Store, transport: Transport, items: Sequence[Due],
            now: Callable[[], dt.datetime], dry_run: bool = False,
            progress: Progress | None = None,
            should_stop: Callable[[], bool] | None = None) -> list[RunSummary]:
    """Deliver calendar items (from schedule.calendar), one ledger send per send_id, so a
    catch-up after downtime or a second daemon tick can never send anything twice."""
    groups: dict[str, list[Due]] = {}
    for d in sorted(items, key=lambda d: (d.at, d.send_id)):
        groups.setdefault(d.send_id, []).append(d)
    if not groups:
        return []
    renderer = Renderer(config.project, config.sender, store.secret())
    refuse_bad_templates(config, renderer, [
        f"campaigns.{g[0].name}" if g[0].kind == "campaign" else g[0].template
        for g in groups.values()])
    everyone: dict[str, Contact] | None = None  # read only if a drip is due
    summaries = []
    for send_id, group in groups.items():
        if should_stop is not None and should_stop():
            break  # the checkpoint stays put: the next start sends the rest
        first = group[0]
        emails = frozenset(d.email.lower() for d in group)
        if first.kind == "campaign":
            campaign = config.campaign(first.name)
            # A send held for approval is drafted whole when it first falls due, so the
            # review covers everyone in it, whatever their time zone.
            only = None if _drafted(campaign) else emails
            prepared = held(config, store, prepare(config, store, campaign, now(),
                                                   period=first.period, only=only), now())
        else:
            if everyone is None:
                everyone = {c.email.lower(): c for c in load_audiences(
                    config.audience_files, config.audience_names, config.project).contacts}
            prepared = held(config, store, _drip_plan(config, store, send_id, group,
                                                      everyone), now())
        summaries.append(deliver_plan(store, renderer, transport, prepared, now, dry_run,
                                      progress, should_stop=should_stop))
    return summaries


def _drafted(campaign: Campaign) -> bool:
    """Held as a draft for approval (interest alerts queue each alert instead)."""
    return campaign.approval and campaign.kind != "interest_alert"


def held(config: Config, store: Store, prepared: Prepared, now: dt.datetime) -> Prepared:
    """With `approval: true` (a campaign's, or a drip's), hold the plan as a draft and
    keep only what was approved; otherwise the plan as it is."""
    plan = prepared.plan
    if plan.campaign.schedule:  # a campaign
        if not _drafted(plan.campaign):
            return prepared
        draft = drafts.hold(store, plan, "campaign", plan.campaign.approval_expires_days,
                            now)
    else:  # a drip step (a referral update is asked for by hand: never held)
        drip = next((d for d in config.drips if d.name == plan.campaign.name), None)
        if drip is None or not drip.approval:
            return prepared
        draft = drafts.hold(store, plan, "drip", drip.approval_expires_days, now, True)
    articles = {a.id: a for a in store.articles()}
    tips = {t.id: t for t in config.tips}
    return Prepared(drafts.held_plan(draft, plan, now, articles, tips), prepared.audience)


def approved_items(config: Config, store: Store, now: dt.datetime) -> list[Due]:
    """Calendar items for approved people of live drafts not yet sent: approving a send
    whose time has come sends it at the next tick (`run_due` delivers them)."""
    items = []
    for draft in drafts.with_approved_unsent(store):
        if dt.datetime.fromisoformat(draft.period) > now:
            continue  # approved ahead of its time (in review): it goes on schedule
        ledger = drafts.sent_to(store, draft)
        waiting = [r for r in draft.recipients if draft.approved(r)
                   and ledger.get(r.email) not in ("sent", "pending")]
        known = draft.kind == "drip" or any(c.name == draft.name for c in config.campaigns)
        if not waiting or not known:
            continue
        period = dt.datetime.fromisoformat(draft.period)
        items += [Due(at=now, local=now, period=period, kind=draft.kind, name=draft.name,
                      template=r.template, send_id=draft.send_id, email=r.email,
                      extra=dict(r.extra)) for r in waiting]
    return items


def _drip_plan(config: Config, store: Store, send_id: str, group: list[Due],
               everyone: dict[str, Contact]) -> Prepared:
    """A plan for one drip step's recipients: their own template, no article picks."""
    first = group[0]
    # A configured drip, or an event message with no drip of its own (a referral update).
    drip = next((d for d in config.drips if d.name == first.name), None)
    step = next((s for s in drip.steps if s.template == first.template), None) if drip \
        else None
    subject = (step.subject if step and step.subject else "") or \
        DRIP_SUBJECTS.get(first.template, "A note from {{ sender.name }}")
    campaign = Campaign(name=first.name, kind="newsletter",
                        audiences=drip.audiences if drip else (), schedule="",
                        subject=subject, skip_empty=False)
    suppressed, notes = store.suppressed(), store.pending_notes()
    emails, skipped = [], []
    for d in group:
        contact = everyone.get(d.email.lower())
        if contact is None or not contact.subscribed or d.email.lower() in suppressed:
            skipped.append(Skipped(d.email, "unsubscribed, suppressed or no longer in an "
                                            "audience file"))
            continue
        emails.append(PlannedEmail(contact, (), notes.get(d.email.lower(), ()),
                                   template=d.template, extra=dict(d.extra)))
    plan = Plan(campaign=campaign, send_id=send_id, period=first.period.isoformat(),
                emails=tuple(emails), skipped=tuple(skipped))
    return Prepared(plan, AudienceLoad((), ()))


def _period(config: Config, campaign: Campaign, now: dt.datetime,
            period: dt.datetime | None) -> tuple[str, str]:
    at = period or period_for(campaign.schedule, now, config.sender.timezone)
    return send_id_for(campaign, at), at.isoformat()


def _sales_plan(config: Config, store: Store, campaign: Campaign,
                contacts: tuple[Contact, ...], now: dt.datetime, period: dt.datetime | None
                ) -> tuple[Plan, tuple[Problem, ...]]:
    """The recent-sales mailer: the sales CSV (re-read each run: the user keeps it)."""
    sales, problems = load_sales(config.project / campaign.sales_file, campaign.sales_file)
    send_id, label = _period(config, campaign, now, period)
    plan = plan_recent_sales(campaign, contacts, sales, config.tips, _history(store),
                             store.suppressed(), store.pending_notes(), now, send_id, label,
                             store.tip_last_seen())
    return plan, problems


def _alert_plan(config: Config, store: Store, campaign: Campaign,
                contacts: tuple[Contact, ...], now: dt.datetime,
                period: dt.datetime | None, partial: bool = False) -> Plan:
    """Interest alerts: new stories above the threshold; with `approval`, queued for
    `sphere approve` and sent once approved. `partial`: `contacts` is part of the
    audience (the daemon's due group), so an approved alert of someone else waits."""
    send_id, label = _period(config, campaign, now, period)
    stored = store.articles()
    matcher = Matcher(stored, now, campaign.max_age_days, dict(config.synonyms),
                      {s.name: s.topics for s in config.sources})
    # "New" is by ingestion time, not a checkpoint, so a crash mid-send loses nothing:
    # the rerun finds the same stories and the ledger sends each at most once.
    fresh = store.article_ids_since(now - ALERT_NEW_WITHIN)
    history = _history(store)
    reconcile_alerts(store, campaign.name, now,
                     dt.timedelta(days=campaign.approval_expires_days))
    queue = [QueuedAlert(id=r[0], email=r[2], article_id=r[3], reason=r[5], note=r[6],
                         status=r[7]) for r in store.alerts(campaign.name)]
    # Every contact gets exactly one outcome: an approved alert is that person's email
    # (never also "awaits approval"), a pending one holds them, the rest are matched.
    approved = {q.email: q for q in queue if q.status == "approved"}
    pending = frozenset(q.email for q in queue if q.status == "pending")
    declined: dict[str, frozenset[str]] = {}
    for q in queue:
        if q.status == "dropped":
            declined[q.email] = declined.get(q.email, frozenset()) | {q.article_id}
    suppressed = store.suppressed()
    candidates, skipped = alert_candidates(
        campaign, tuple(c for c in contacts if email_key(c.email) not in approved), matcher,
        fresh, history, suppressed, store.last_sent(campaign.name), pending, now, declined)
    notes = store.pending_notes()
    by_email = {email_key(c.email): c for c in contacts}
    if not campaign.approval:
        emails = [alert_email(c.contact, c.article, c.reason, c.score, "",
                              notes.get(c.contact.email.lower(), ())) for c in candidates]
        return Plan(campaign, send_id, label, tuple(emails), tuple(skipped))
    store.queue_alerts(campaign.name, [(c.contact.email, c.article.id, c.score, c.reason)
                                       for c in candidates], now)
    articles = {a.id: a for a in stored}
    emails = []
    for q in approved.values():
        contact = by_email.get(q.email)
        why = skip_reason(contact, suppressed) if contact else ""
        if contact is None and partial:
            continue  # not in this group: their own group's send takes it
        if contact is None or q.article_id not in articles:
            skipped.append(Skipped(q.email, f"alert {q.id}: contact or story no longer "
                                            "available"))
        elif why:
            skipped.append(Skipped(contact.email, why))
        else:
            emails.append(alert_email(contact, articles[q.article_id], q.reason, 0.0,
                                      q.note, notes.get(q.email, ())))
    for c in candidates:
        skipped.append(Skipped(c.contact.email, "new alert queued for approval "
                                                "(sphere approve)"))
    return Plan(campaign, send_id, label, tuple(emails), tuple(skipped))


def reconcile_alerts(store: Store, campaign: str, now: dt.datetime,
                     expiry: dt.timedelta = ALERT_EXPIRY) -> list[str]:
    """Settle the queue against what people received: an approved alert whose story this
    campaign delivered is sent; one whose story reached the person in another send first,
    or that waited over a week for approval, is dropped. Returns a line per drop."""
    received = store.received_in()
    notices = []
    for alert_id, _c, email, article_id, *_rest, status, created in store.alerts(campaign):
        if status not in ("pending", "approved"):
            continue
        send_id = received.get((email, article_id))
        if send_id and send_id.startswith(f"{campaign}@") and status == "approved":
            store.decide_alert(alert_id, "sent", now)
        elif send_id:
            store.decide_alert(alert_id, "dropped", now)
            notices.append(f"alert {alert_id} for {email} dropped: they already received "
                           f"that story in {send_id}")
        elif status == "pending" and dt.datetime.fromisoformat(created) < now - expiry:
            store.decide_alert(alert_id, "dropped", now)
            notices.append(f"alert {alert_id} for {email} dropped: it waited more than "
                           f"{expiry.days} days for approval and is no longer news")
    return notices
