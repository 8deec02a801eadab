"""The runner: calls the stages in their fixed order (ingest -> contacts -> match/plan ->
render -> deliver) and keeps the ledger so every send is exactly once."""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from pipeline.approval.gate import approved_items, drafted, held
from pipeline.config import Config
from pipeline.contacts.audience import email_key, load_audiences
from pipeline.delivery.deliver import MAX_CONSECUTIVE_FAILURES, Transport
from pipeline.delivery.dispatch import dispatch
from pipeline.delivery.sendlock import send_lock
from pipeline.errors import ConfigError
from pipeline.feeds.ingest import IngestSummary, ingest
from pipeline.models import Contact, DueKind, LedgerStatus, RunSummary, SendOutcome
from pipeline.planning.alerts import reconcile_alerts
from pipeline.planning.output import skipped_line
from pipeline.planning.prepare import Prepared, drip_plan, prepare
from pipeline.rendering.pool import RenderAhead, pool_size
from pipeline.rendering.render import Renderer
from pipeline.rendering.templatecheck import check_templates
from pipeline.scheduling.calendar import Due
from pipeline.state.interface import Ledger

Progress = Callable[[int, int, str], None]  # (done, total, email)
# Stages' own functions that callers have long imported from here.
__all__ = ["Prepared", "approved_items", "held", "prepare", "reconcile_alerts",
           "skipped_line"]


def run_ingest(config: Config, store: Ledger, now: dt.datetime,
               on_done: Callable | None = None, retry_failed: bool = False
               ) -> IngestSummary:
    """Stage 1: bring every source up to date (failing feeds too with `retry_failed`)."""
    return ingest(config.sources, store, now, on_done, retry_failed=retry_failed)


def deliver_plan(store: Ledger, renderer: Renderer, transport: Transport, prepared: Prepared,
                 now: Callable[[], dt.datetime], dry_run: bool,
                 progress: Progress | None = None,
                 max_failures: int = MAX_CONSECUTIVE_FAILURES,
                 should_stop: Callable[[], bool] | None = None) -> RunSummary:
    """Stages 4-5: render and deliver each planned email, recording each in the ledger
    (concurrently, `transport.workers` at a time; see dispatch.py). One process at a
    time delivers a send: another holding it raises LockedError (sendlock.py)."""
    # PostgreSQL has no file to lock: its store holds an advisory lock per send instead.
    hold = getattr(store, "hold_send", None)
    with hold(prepared.plan.send_id) if hold else send_lock(store.path, prepared.plan.send_id,
                                                            now()):
        return _deliver_plan(store, renderer, transport, prepared, now, dry_run, progress,
                             max_failures, should_stop)


def _deliver_plan(store: Ledger, renderer: Renderer, transport: Transport,
                  prepared: Prepared, now: Callable[[], dt.datetime], dry_run: bool,
                  progress: Progress | None, max_failures: int,
                  should_stop: Callable[[], bool] | None) -> RunSummary:
    started = time.monotonic()
    plan = prepared.plan
    store.start_send(plan.send_id, plan.campaign.name, plan.period, now())
    sent = {e for e, status in store.ledger_status(plan.send_id).items()
            if status == LedgerStatus.SENT}
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
    outcome = SendOutcome.PAUSED if result.paused else (
        SendOutcome.FAILED if result.failed and not result.sent else SendOutcome.DONE)
    if not dry_run:
        store.finish_send(plan.send_id, now(), outcome)
    problems = tuple(str(p) for p in prepared.audience.problems)
    return replace(result, campaign=plan.campaign.name, dry_run=dry_run,
                   skipped=plan.skipped + result.skipped, problems=problems,
                   seconds=time.monotonic() - started)


def run_send(config: Config, store: Ledger, transport: Transport, campaign_name: str,
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


def run_due(config: Config, store: Ledger, transport: Transport, items: Sequence[Due],
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
        f"campaigns.{g[0].name}" if g[0].kind == DueKind.CAMPAIGN else g[0].template
        for g in groups.values()])
    everyone: dict[str, Contact] | None = None  # read only if a drip is due
    summaries = []
    for send_id, group in groups.items():
        if should_stop is not None and should_stop():
            break  # the checkpoint stays put: the next start sends the rest
        first = group[0]
        emails = frozenset(email_key(d.email) for d in group)
        if first.kind == DueKind.CAMPAIGN:
            campaign = config.campaign(first.name)
            # A send held for approval is drafted whole when it first falls due, so the
            # review covers everyone in it, whatever their time zone.
            only = None if drafted(campaign) else emails
            prepared = held(config, store, prepare(config, store, campaign, now(),
                                                   period=first.period, only=only), now())
        else:
            if everyone is None:
                everyone = {email_key(c.email): c for c in load_audiences(
                    config.audience_files, config.audience_names, config.project).contacts}
            prepared = held(config, store, drip_plan(config, store, send_id, group,
                                                     everyone), now())
        summaries.append(deliver_plan(store, renderer, transport, prepared, now, dry_run,
                                      progress, should_stop=should_stop))
    return summaries
