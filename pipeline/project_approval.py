"""The approval operations of a `Project` (project.py): interest alerts and drafts of
sends held with `approval: true`, listed, shown and decided."""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from pipeline.errors import SphereError
from pipeline.models import (
    AlertStatus,
    CampaignKind,
    DraftStatus,
    DueKind,
    LedgerStatus,
    ReviewState,
)
from pipeline.outcomes import (
    ApprovalQueue,
    Approved,
    ContactPreview,
    DraftDecided,
    DraftState,
    RecipientState,
)

if TYPE_CHECKING:
    from pipeline.approval.drafts import Draft
    from pipeline.config import Config
    from pipeline.models import Campaign, RenderedEmail
    from pipeline.state.interface import Ledger
    from pipeline.state.records import QueuedAlert


class ApprovalDesk:
    """Approval, for a Project: it supplies the config, the store and the clock."""

    if TYPE_CHECKING:
        @property
        def config(self) -> Config: ...

        @property
        def store(self) -> Ledger: ...

        def now(self) -> dt.datetime: ...

    def draft_states(self) -> tuple[DraftState, ...]:
        """Every draft with how many of its people are in each state."""
        from pipeline.approval import drafts
        store, now = self.store, self.now()
        found = []
        for draft in drafts.load(store):
            ledger = drafts.sent_to(store, draft)
            counts: dict[ReviewState, int] = {}
            for r in draft.recipients:
                state = ReviewState.SENT if ledger.get(r.email) == LedgerStatus.SENT \
                    else draft.state(r, now)
                counts[state] = counts.get(state, 0) + 1
            found.append(DraftState(draft, counts))
        return tuple(found)

    def titles(self) -> dict[str, str]:
        """Article id (and `tip:ID`) -> title, to show what a pick is."""
        titles = {a.id: a.title for a in self.store.articles()}
        titles.update({f"tip:{t.id}": f"tip: {t.title}" for t in self.config.tips})
        return titles

    def recipient_states(self, draft: Draft) -> list[RecipientState]:
        """Each person of `draft` and where they stand (`sent` from the ledger)."""
        from pipeline.approval import drafts
        ledger, now = drafts.sent_to(self.store, draft), self.now()
        return [RecipientState(r, ReviewState.SENT if ledger.get(r.email) == LedgerStatus.SENT
                               else draft.state(r, now)) for r in draft.recipients]

    def approval_queue(self) -> ApprovalQueue:
        """Interest alerts (stale ones retired first) and drafts waiting for a decision."""
        from pipeline.runner import reconcile_alerts
        store, now = self.store, self.now()
        campaigns = {c.name: c for c in self.config.campaigns
                     if c.kind == CampaignKind.INTEREST_ALERT}
        notices = []
        for name, campaign in campaigns.items():
            notices += reconcile_alerts(store, name, now,
                                        dt.timedelta(days=campaign.approval_expires_days))
        return ApprovalQueue(tuple(r for r in store.alerts() if r.campaign in campaigns),
                             self.draft_states(), tuple(notices))

    def pending_alerts(self, queue: ApprovalQueue | None = None) -> dict[int, QueuedAlert]:
        """Interest alerts waiting for a decision, by id (of `queue`, else every one)."""
        alerts = queue.alerts if queue is not None else tuple(self.store.alerts())
        return {r.id: r for r in alerts if r.status == AlertStatus.PENDING}

    def approve(self, alert_ids: list[int], draft_ids: list[int], every: bool = False,
                drop: bool = False, note: str | None = None, contact: str | None = None,
                queue: ApprovalQueue | None = None) -> Approved:
        """`sphere approve`: decide the given alerts and drafts (`every`: all pending ones
        not expired); with none given, the queue to list. Arguments are checked, and every
        draft found, before anything is decided. `queue`: the approval_queue() the caller
        has shown the notices of."""
        queue = queue if queue is not None else self.approval_queue()
        pending = self.pending_alerts(queue)
        if every:
            now = self.now()
            alert_ids = list(pending)
            draft_ids = [s.draft.id for s in queue.drafts
                         if s.draft.status == DraftStatus.PENDING and not s.draft.expired(now)]
        if not alert_ids and not draft_ids:
            return Approved(queue, listed=not every, nothing_waiting=every)
        if contact and (alert_ids or len(draft_ids) != 1):
            raise SphereError("--contact decides for one person of one draft: give exactly "
                              "one draft id")
        if note is not None and not contact and (drop or draft_ids or len(alert_ids) != 1):
            raise SphereError("--note edits one alert (one id, without --drop) or, with "
                              "--contact, one person's email in a draft")
        decided = []
        for draft in [self.draft(i) for i in draft_ids]:
            self.decide_draft(draft, drop, contact, note)
            decided.append(DraftDecided(draft, "" if drop else self.when_sent(draft)))
        if alert_ids:
            self.decide_alerts(alert_ids, pending, drop, note)
        return Approved(queue, drafts=tuple(decided),
                        alerts=tuple(pending[i] for i in alert_ids))

    def campaign(self, name: str) -> Campaign:
        """The campaign called `name`."""
        found = next((c for c in self.config.campaigns if c.name == name), None)
        if found is None:
            raise SphereError(f"no campaign {name!r}", "pick one on the Review page")
        return found

    def email_preview(self, name: str, email: str) -> RenderedEmail:
        """The email `email` gets from campaign `name`: the draft under review's, or (sent
        without approval) as planned now."""
        from pipeline.approval import review
        from pipeline.rendering.render import Renderer
        config, store, now = self.config, self.store, self.now()
        campaign = self.campaign(name)
        if campaign not in review.reviewable(config):
            plan, planned = review.upcoming_email(config, store, campaign, email, now)
            return Renderer(config.project, config.sender, store.secret()).render(
                plan, planned, now)
        draft = review.open_draft(config, store, campaign, now)
        return review.render_email(config, store, campaign, draft, email, now)

    def contact_preview(self, email: str) -> tuple[ContactPreview, ...]:
        """What `email` would get now from each newsletter of their audience."""
        from pipeline.addresses import email_key
        from pipeline.contacts import directory
        from pipeline.runner import prepare
        config, now = self.config, self.now()
        person = directory.find(config, email)
        found = []
        for campaign in config.campaigns:
            if campaign.kind != CampaignKind.NEWSLETTER or person is None or \
                    not set(campaign.audiences) & {person.audience}:
                continue
            plan = prepare(config, self.store, campaign, now,
                           only=frozenset({email_key(email)})).plan
            found.append(ContactPreview(campaign, tuple(plan.emails[0].picks)
                                        if plan.emails else ()))
        return tuple(found)

    def draft(self, draft_id: int) -> Draft:
        """Draft d`draft_id`."""
        from pipeline.approval import drafts
        found = drafts.load(self.store, draft_id=draft_id)
        if not found:
            raise SphereError(f"no draft d{draft_id} (`sphere approve` lists the drafts)")
        return found[0]

    def decide_alerts(self, alert_ids: list[int], pending: dict[int, QueuedAlert], drop: bool,
                      note: str | None) -> None:
        """Approve (or drop) pending interest alerts; `note` opens an approved one."""
        unknown = [i for i in alert_ids if i not in pending]
        if unknown:
            raise SphereError(f"not pending: {', '.join(map(str, unknown))} (`sphere "
                              "approve` lists the pending ones)")
        for alert_id in alert_ids:
            status = AlertStatus.DROPPED if drop else AlertStatus.APPROVED
            self.store.decide_alert(alert_id, status, self.now(), note)

    def decide_draft(self, draft: Draft, drop: bool, contact: str | None = None,
                     note: str | None = None) -> None:
        """Approve or drop a whole draft, or (with `contact`) one person of it."""
        from pipeline.approval import drafts, review
        store, now = self.store, self.now()
        if draft.status == DraftStatus.DROPPED:
            raise SphereError(f"draft d{draft.id} ({draft.send_id}) was dropped; nothing of "
                              "it is sent")
        if not drop and draft.expired(now):
            raise SphereError(f"draft d{draft.id} ({draft.send_id}) expired unapproved on "
                              f"{draft.expires:%Y-%m-%d %H:%M} UTC; it is not sent late (the "
                              "next period makes a new draft)")
        if contact:
            if draft.recipient(contact) is None:
                raise SphereError(f"{contact} is not in draft d{draft.id} (`sphere approve "
                                  f"--show d{draft.id}` lists who is)")
            # The same operations as the studio's Review page (review.py).
            if note is not None:
                review.save_note(store, draft, contact, note, now)
            if drop:
                review.exclude(store, draft, contact, now)
            else:
                review.approve(store, draft, now, contact)
        elif drop:
            drafts.decide(store, draft.id, DraftStatus.DROPPED, now)
        else:
            review.approve(store, draft, now)

    def when_sent(self, draft: Draft) -> str:
        """What sends an approved draft: `sphere send` reaches only its campaign's current
        period; the daemon's tick sends any approved draft."""
        from pipeline.planning.plan import period_for, send_id_for
        config = self.config
        tick = "the daemon's next tick (`sphere run`, or `sphere run --once` now)"
        campaign = next((c for c in config.campaigns if c.name == draft.name), None)
        if draft.kind == DueKind.DRIP or campaign is None:
            return tick
        current = send_id_for(campaign, period_for(campaign.schedule, self.now(),
                                                   config.sender.timezone))
        if current != draft.send_id:
            return tick
        return f"the next `sphere send {draft.name}` or the daemon's next tick"
