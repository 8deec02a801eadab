"""Review of a campaign's send before it goes: the draft of the period to review, each
person's email exactly as it will go, and what review changes (a personal note, a dropped
story, an exclusion, an approval, a test to oneself). The studio's Review page and
`sphere approve` call these; they print nothing."""
from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

from pipeline.approval import drafts, notes
from pipeline.approval.drafts import Draft, DraftRecipient
from pipeline.config import Config
from pipeline.contacts.audience import email_key, load_audiences
from pipeline.delivery.deliver import OutboxTransport, Transport
from pipeline.errors import SphereError
from pipeline.models import (
    Campaign,
    CampaignKind,
    Contact,
    Delivery,
    DraftStatus,
    DueKind,
    LedgerStatus,
    Note,
    Plan,
    PlannedEmail,
    RenderedEmail,
    ReviewState,
    RunSummary,
)
from pipeline.planning.plan import period_for, send_id_for
from pipeline.rendering.mime import address, build_alternative
from pipeline.rendering.render import Renderer
from pipeline.runner import Progress, approved_items, prepare, run_due, run_ingest
from pipeline.state.interface import Ledger

TEST_FOLDER = "test-sends"  # under var/: a test is never in the outbox of real sends


@dataclass(frozen=True)
class ReviewPick:
    """One story (or tip) of a person's email, as review shows it."""

    section: str
    key: str
    title: str
    reason: str
    dropped: bool


@dataclass(frozen=True)
class ReviewRecipient:
    """One person of a draft, as review shows them."""

    email: str
    name: str  # full name, else the address
    state: ReviewState
    note: str
    excluded: bool
    approved_alone: bool
    picks: tuple[ReviewPick, ...]


@dataclass(frozen=True)
class CampaignReview:
    """A campaign's send under review: its draft and everyone in it."""

    campaign: Campaign
    draft: Draft
    due: bool  # its time has come: approving sends it at once
    recipients: tuple[ReviewRecipient, ...]

    def count(self, state: str) -> int:
        """How many people are in `state`."""
        return sum(1 for r in self.recipients if r.state == state)


def reviewable(config: Config) -> tuple[Campaign, ...]:
    """Campaigns whose sends are held as drafts for review (`approval: true`; interest
    alerts queue each alert instead: the Approvals page)."""
    return tuple(c for c in config.campaigns
                 if c.approval and c.kind != CampaignKind.INTEREST_ALERT)


def next_fire(schedule: str, now: dt.datetime, timezone: str) -> dt.datetime:
    """The first time after `now` the cron schedule fires, in `timezone`."""
    zone = zoneinfo.ZoneInfo(timezone)
    trigger = CronTrigger.from_crontab(schedule, timezone=zone)
    fire = trigger.get_next_fire_time(None, now.astimezone(zone) + dt.timedelta(seconds=1))
    assert fire is not None  # a crontab always fires again
    return fire


def _live(store: Ledger, draft: Draft, now: dt.datetime) -> bool:
    """Still to decide or still to send."""
    if draft.status == DraftStatus.DROPPED or draft.expired(now):
        return False
    ledger = drafts.sent_to(store, draft)
    return any(ledger.get(r.email) != LedgerStatus.SENT
               and draft.state(r, now) in ("held", "approved") for r in draft.recipients)


def open_draft(config: Config, store: Ledger, campaign: Campaign, now: dt.datetime,
               do_ingest: bool = True) -> Draft:
    """The draft to review for `campaign`: the current period's while it is live (held,
    or approved and not all sent); else the next period's, drafted now (ahead of its time
    it is sent on schedule once approved). Ingests the feeds first when it drafts."""
    tz = config.sender.timezone
    current = period_for(campaign.schedule, now, tz)
    found = drafts.load(store, send_id=send_id_for(campaign, current))
    if found and _live(store, found[0], now):
        return found[0]
    period = current
    current_id = send_id_for(campaign, current)
    if found or any(row.send_id == current_id for row in store.send_rows()):
        period = next_fire(campaign.schedule, now, tz)
        ahead = drafts.load(store, send_id=send_id_for(campaign, period))
        if ahead:
            return ahead[0]
    if do_ingest:
        run_ingest(config, store, now)
    plan = prepare(config, store, campaign, now, period=period).plan
    return drafts.hold(store, plan, DueKind.CAMPAIGN, campaign.approval_expires_days, now,
                       expires_from=period)


def _titles(config: Config, store: Ledger) -> dict[str, str]:
    titles = {a.id: a.title for a in store.articles()}
    titles.update({f"tip:{t.id}": f"Tip: {t.title}" for t in config.tips})
    return titles


def contacts_by_email(config: Config, campaign: Campaign) -> dict[str, Contact]:
    """The campaign's contacts by lower-cased address (audience problems ignored)."""
    audience = load_audiences(config.audience_files, campaign.audiences, config.project)
    return {email_key(c.email): c for c in audience.contacts}


def review(config: Config, store: Ledger, campaign: Campaign, draft: Draft,
           now: dt.datetime) -> CampaignReview:
    """Everyone in the draft, with where they stand and their stories and reasons."""
    titles = _titles(config, store)
    people = contacts_by_email(config, campaign)
    ledger = drafts.sent_to(store, draft)
    rows = []
    for r in draft.recipients:
        contact = people.get(r.email)
        sent = ledger.get(r.email)
        state = ReviewState(sent) if sent else draft.state(r, now)
        picks = tuple(ReviewPick(p.section, p.key, titles.get(p.key, p.key), p.reason,
                                 p.key in r.dropped_items) for p in r.picks)
        rows.append(ReviewRecipient(r.email, (contact.name if contact else "") or r.email,
                                    state, r.note, r.excluded, r.status == DraftStatus.APPROVED,
                                    picks))
    due = dt.datetime.fromisoformat(draft.period) <= now
    return CampaignReview(campaign, draft, due, tuple(rows))


def _row(draft: Draft, email: str) -> DraftRecipient:
    row = draft.recipient(email)
    if row is None:
        raise SphereError(f"{email} is not in draft d{draft.id}",
                          "open the review again: the draft lists who is in it")
    return row


def planned_email(config: Config, store: Ledger, campaign: Campaign, draft: Draft,
                  email: str) -> tuple[Plan, PlannedEmail]:
    """One person's email as it will go: the held stories minus those dropped, their
    waiting one-off notes and this send's personal note."""
    row = _row(draft, email)
    contact = contacts_by_email(config, campaign).get(row.email)
    if contact is None:
        raise SphereError(f"{email} is no longer in the audience of {campaign.name}",
                          "they are skipped in this send")
    picks = drafts.rebuild(row, {a.id: a for a in store.articles()},
                           {t.id: t for t in config.tips})
    if picks is None:
        raise SphereError(f"a story held for {email} is no longer stored",
                          "drop it, or exclude the person from this send")
    notes = store.pending_notes().get(row.email, ())
    personal = (Note(0, row.email, row.note),) if row.note else ()
    planned = PlannedEmail(contact, picks, notes + personal, template=row.template,
                           extra=row.extra)
    return Plan(campaign, draft.send_id, draft.period, (planned,), ()), planned


def render_email(config: Config, store: Ledger, campaign: Campaign, draft: Draft, email: str,
                 now: dt.datetime) -> RenderedEmail:
    """The finished message for one person of a draft (HTML, text, subject)."""
    plan, planned = planned_email(config, store, campaign, draft, email)
    renderer = Renderer(config.project, config.sender, store.secret())
    return renderer.render(plan, planned, now)


def save_note(store: Ledger, draft: Draft, email: str, text: str, now: dt.datetime) -> None:
    """Set one person's personal note for this send (empty text removes it)."""
    _row(draft, email)
    drafts.decide_recipient(store, draft.id, email, now, note=text.strip())


def exclude(store: Ledger, draft: Draft, email: str, now: dt.datetime) -> None:
    """Leave one person out of this send."""
    _row(draft, email)
    drafts.decide_recipient(store, draft.id, email, now, exclude=True)


def approve(store: Ledger, draft: Draft, now: dt.datetime, email: str | None = None) -> None:
    """Approve the whole send, or one person of it."""
    if draft.status == DraftStatus.DROPPED or draft.expired(now):
        raise SphereError(f"draft d{draft.id} can no longer be approved ({draft.status}"
                          f"{', expired' if draft.expired(now) else ''})",
                          "the next period makes a new draft")
    if email is None:
        drafts.decide(store, draft.id, DraftStatus.APPROVED, now)
    else:
        _row(draft, email)
        drafts.decide_recipient(store, draft.id, email, now, approve=True)


def drop_story(config: Config, store: Ledger, campaign: Campaign, draft: Draft, email: str,
               key: str, now: dt.datetime) -> None:
    """Drop one story from one person's email: it is replaced by the next best (their
    plan made again without it) and never offered to that person again."""
    row = _row(draft, email)
    if key not in {p.key for p in row.picks}:
        raise SphereError(f"that story is not in {email}'s email", "open the review again")
    drafts.drop_item(store, draft.id, email, key)  # first: the new plan then avoids it
    period = dt.datetime.fromisoformat(draft.period)
    fresh = prepare(config, store, campaign, now, period=period,
                    only=frozenset({row.email})).plan
    mine = next((e for e in fresh.emails if email_key(e.contact.email) == row.email), None)
    if mine is not None and mine.picks:
        drafts.drop_item(store, draft.id, email, key, mine.picks)


def refresh_person(config: Config, store: Ledger, email: str, now: dt.datetime) -> int:
    """After a contact's fields change: the stories held for them in drafts still waiting
    (and not yet sent to them) are picked again. Returns how many drafts changed."""
    changed = 0
    key = email_key(email)
    for campaign in reviewable(config):
        for draft in drafts.load(store):
            row = draft.recipient(key)
            if draft.name != campaign.name or row is None or draft.expired(now) or \
                    draft.state(row, now) != "held" or drafts.sent_to(store, draft).get(key):
                continue
            fresh = prepare(config, store, campaign, now,
                            period=dt.datetime.fromisoformat(draft.period),
                            only=frozenset({key})).plan
            mine = next((e for e in fresh.emails if email_key(e.contact.email) == key), None)
            if mine is not None and drafts.replan(store, draft.id, key, mine.picks):
                changed += 1
    return changed


def send_test(config: Config, store: Ledger, campaign: Campaign, draft: Draft, email: str,
              transport: Transport, now: dt.datetime) -> Delivery:
    """That person's email, marked as a test, to the sender's own address; never recorded
    in the ledger. With the outbox transport it is written to var/test-sends/."""
    real = render_email(config, store, campaign, draft, email, now)
    sender = config.sender
    subject = f"[TEST for {real.contact.name or real.contact.email}] {real.subject}"
    raw = build_alternative([("From", address(sender.name, sender.email)),
                             ("To", address(sender.name, sender.email)),
                             ("Subject", subject), ("X-Sphere-Test", "yes"),
                             ("Message-ID", f"<test.{now:%Y%m%d%H%M%S%f}.{real.message_id[1:]}")],
                            real.text, real.html)
    me = dataclasses.replace(real.contact, email=sender.email)
    test = dataclasses.replace(real, send_id=f"test-{draft.send_id}", contact=me,
                               subject=subject, raw=raw, note_ids=())
    if isinstance(transport, OutboxTransport):
        transport = OutboxTransport(config.state_dir / TEST_FOLDER)
    try:
        return transport.send(test)
    finally:
        transport.close()


def send_now(config: Config, store: Ledger, transport: Transport, draft: Draft,
             now: Callable[[], dt.datetime], progress: Progress | None = None
             ) -> list[RunSummary]:
    """Send the approved, unsent people of a draft whose time has come (what the daemon's
    next tick would do, now)."""
    items = [d for d in approved_items(config, store, now()) if d.send_id == draft.send_id]
    try:
        return run_due(config, store, transport, items, now, progress=progress)
    finally:
        transport.close()


def upcoming_email(config: Config, store: Ledger, campaign: Campaign, email: str,
                   now: dt.datetime) -> tuple[Plan, PlannedEmail]:
    """For a campaign sent without approval: what this person would get from its send of
    the current period, as planned now (their waiting one-off notes included)."""
    plan = prepare(config, store, campaign, now, only=frozenset({email_key(email)})).plan
    if not plan.emails:
        why = plan.skipped[0].reason if plan.skipped else "not in this campaign's audience"
        raise SphereError(f"{email} gets nothing from {campaign.name} now: {why}",
                          "pick someone on the list")
    return Plan(campaign, plan.send_id, plan.period, plan.emails[:1], ()), plan.emails[0]


def set_next_note(store: Ledger, email: str, text: str, now: dt.datetime) -> None:
    """The one-off note for the next email to this person (campaigns without approval):
    replaces their waiting one, or adds one; empty text removes it."""
    waiting = [n for n in notes.notes(store, email_key(email)) if not n.used]
    text = text.strip()
    if waiting:
        if text:
            notes.edit_note(store, waiting[-1].id, text)
        else:
            notes.remove_note(store, waiting[-1].id)
    elif text:
        store.add_note(email_key(email), text, now)


def test_folder(state_dir: Path) -> Path:
    """Where tests to oneself go with the outbox transport."""
    return state_dir / TEST_FOLDER
