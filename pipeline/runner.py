"""The runner: calls the stages in their fixed order (ingest -> contacts -> match/plan ->
render -> deliver) and keeps the ledger so every send is exactly once."""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .audience import AudienceLoad, load_audiences
from .config import Config
from .deliver import Transport
from .dispatch import Job, dispatch
from .engagement import cold_contacts, hold_cold
from .ingest import IngestSummary, ingest
from .models import Campaign, Contact, Plan, PlannedEmail, RunSummary, Skipped
from .plan import build_plan
from .render import DRIP_SUBJECTS, Renderer
from .schedule import Due, hold_capped
from .store import Store

# listmonk pauses a campaign after this many errors in a row rather than burning
# through the whole list against a broken transport.
MAX_CONSECUTIVE_FAILURES = 10

Progress = Callable[[int, int, str], None]  # (done, total, email)


@dataclass(frozen=True)
class Prepared:
    """A plan and what loading its audience reported."""

    plan: Plan
    audience: AudienceLoad


def run_ingest(config: Config, store: Store, now: dt.datetime,
               on_done: Callable | None = None) -> IngestSummary:
    """Stage 1: bring every source up to date."""
    return ingest(config.sources, store, now, on_done)


def prepare(config: Config, store: Store, campaign: Campaign, now: dt.datetime,
            period: dt.datetime | None = None, explain: bool = False,
            only: frozenset[str] | None = None) -> Prepared:
    """Stages 2-3: load the campaign's contacts and plan who gets what (with `explain`,
    also what each contact did not get and why; with `only`, for those addresses)."""
    audience = load_audiences(config.audience_files, campaign.audiences, config.project)
    if only is not None:
        audience = AudienceLoad(tuple(c for c in audience.contacts
                                      if c.email.lower() in only), audience.problems)
    plan = build_plan(campaign, audience.contacts, store.articles(), config.tips,
                      store.history(), store.suppressed(), store.pending_notes(),
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
                 max_failures: int = MAX_CONSECUTIVE_FAILURES) -> RunSummary:
    """Stages 4-5: render and deliver each planned email, recording each in the ledger
    (concurrently, `transport.workers` at a time; see dispatch.py)."""
    started = time.monotonic()
    plan = prepared.plan
    store.start_send(plan.send_id, plan.campaign.name, plan.period, now())
    jobs = (Job(planned.contact.email,
                lambda planned=planned: renderer.render(plan, planned, now()))
            for planned in plan.emails)
    result = dispatch(store, transport, plan.send_id, jobs, len(plan.emails), now,
                      max_failures, lambda email: renderer.message_id(plan.send_id, email),
                      progress)
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
    ingested = run_ingest(config, store, now()) if do_ingest else None
    prepared = prepare(config, store, campaign, now(), period)
    renderer = Renderer(config.project, config.sender, store.secret())
    try:
        summary = deliver_plan(store, renderer, transport, prepared, now, dry_run, progress)
    finally:
        transport.close()
    return ingested, summary


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
            progress: Progress | None = None) -> list[RunSummary]:
    """Deliver calendar items (from schedule.calendar), one ledger send per send_id, so a
    catch-up after downtime or a second daemon tick can never send anything twice."""
    groups: dict[str, list[Due]] = {}
    for d in sorted(items, key=lambda d: (d.at, d.send_id)):
        groups.setdefault(d.send_id, []).append(d)
    if not groups:
        return []
    renderer = Renderer(config.project, config.sender, store.secret())
    everyone = {c.email.lower(): c for c in load_audiences(
        config.audience_files, config.audience_names, config.project).contacts}
    summaries = []
    for send_id, group in groups.items():
        first = group[0]
        emails = frozenset(d.email.lower() for d in group)
        if first.kind == "campaign":
            prepared = prepare(config, store, config.campaign(first.name), now(),
                               period=first.period, only=emails)
        else:
            prepared = _drip_plan(config, store, send_id, group, everyone)
        summaries.append(deliver_plan(store, renderer, transport, prepared, now, dry_run,
                                      progress))
    return summaries


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
