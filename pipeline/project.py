"""The library's front door: a `Project` opened from a folder owns its config (loaded once,
when first needed), its store (opened when first needed, closed by `close()`) and its
clock, and offers the operations users run. The CLI, the studio and the daemon call these
methods; none of them prints. Errors a user can cause are raised as SphereError."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from pipeline.errors import SphereError
from pipeline.models import LedgerStatus, ReferralStatus
from pipeline.names import (
    DEFAULT_NEIGHBOURHOODS,
    REFERRAL_UPDATES,
    TICK_SECONDS,
    one_of,
    utc_now,
)
from pipeline.outcomes import (
    CheckResult,
    EventsRecorded,
    FeedHealth,
    PlanResult,
    PreviewWritten,
    ReferralAdded,
    ReferralUpdated,
    ScheduleView,
    SendResult,
    StatusView,
    SuppressionsSynced,
    WebhookService,
)
from pipeline.project_approval import ApprovalDesk
from pipeline.project_db import DatabaseDesk
from pipeline.project_users import UserDesk
from pipeline.project_views import ViewDesk

if TYPE_CHECKING:
    from pipeline.approval.notes import StoredNote
    from pipeline.config import Config
    from pipeline.contacts.importer import ImportReport
    from pipeline.delivery.deliver import Transport
    from pipeline.delivery.report import Report
    from pipeline.delivery.sendgrid_api import SendAtRule
    from pipeline.feeds.ingest import IngestSummary
    from pipeline.models import RunSummary
    from pipeline.rendering.templatecheck import TemplateFile
    from pipeline.runner import Progress
    from pipeline.scheduling.daemon import Daemon, TickReport
    from pipeline.state.interface import Ledger
    from pipeline.state.records import Referral

# Modules are imported inside the methods that use them: opening a project costs nothing,
# and `sphere --help` (which imports no operation) stays as fast as click itself.

Clock = Callable[[], dt.datetime]


class Project(ApprovalDesk, ViewDesk, DatabaseDesk, UserDesk):
    """A Sphere project folder: its config, its database and a clock, and the operations
    run on them. Use as a context manager (or call `close()`) to close the store."""

    def __init__(self, folder: Path, clock: Clock | None = None, *, dry_run: bool = False,
                 new_ledger: bool = False, verify: bool = False) -> None:
        self.folder = Path(folder)
        self.clock: Clock = clock or utc_now
        self.dry_run = dry_run  # the store is an in-memory copy: nothing is written
        self._store_options = {"dry_run": dry_run, "new_ledger": new_ledger,
                               "verify": verify}
        self._config: Config | None = None
        self._store: Ledger | None = None
        self._origin: Path | None = None
        self._owned = True  # close() closes the store

    @classmethod
    def open(cls, folder: Path, clock: Clock | None = None, **store_options: bool
             ) -> Project:
        """The project in `folder`; nothing is read until an operation needs it."""
        return cls(folder, clock, **store_options)

    @classmethod
    def on_store(cls, folder: Path, store: Ledger, clock: Clock | None = None) -> Project:
        """The project in `folder` over a store someone else opened and closes (the
        studio's store thread, the daemon's tick): `close()` leaves it open."""
        project = cls(folder, clock)
        project._store = store
        project._owned = False
        return project

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- what the project owns --------------------------------------------------------

    @property
    def config(self) -> Config:
        """The project's config, loaded on first use (ConfigError lists every problem)."""
        if self._config is None:
            from pipeline.config import load_config
            self._config = load_config(self.folder)
        return self._config

    @property
    def store(self) -> Ledger:
        """The project's database, opened (and migrated) on first use."""
        if self._store is None:
            from pipeline.state.interface import open_store
            self._store = open_store(self.config.db_path, **self._store_options,
                                     url=self.config.database_url)
            self._origin = self._store.origin  # named in an error after it is closed
        return self._store

    @property
    def origin(self) -> Path | None:
        """The database file this project opened, to name in an error about it."""
        return self._store.origin if self._store is not None else self._origin

    def now(self) -> dt.datetime:
        """The project's clock."""
        return self.clock()

    def close(self) -> None:
        """Close the store if it was opened."""
        if self._store is not None:
            store, self._store = self._store, None
            if self._owned:
                store.close()

    def open_store(self) -> Ledger:
        """A new connection to the project's database, for a thread or a process of its
        own (the daemon, the webhook service); the caller closes it."""
        from pipeline.state.interface import open_store
        return open_store(self.config.db_path, url=self.config.database_url)

    def transport(self, name: str | None = None, dry_run: bool | None = None,
                  send_at: SendAtRule | None = None) -> Transport:
        """The transport a send uses: `name`, else campaigns.yaml's."""
        from pipeline.delivery.transports import choose_transport
        return choose_transport(self.config, name, self.dry_run if dry_run is None
                                else dry_run, send_at, self.clock)

    def contacts_known(self, email: str) -> bool:
        """Whether `email` is in one of the project's audience files."""
        from pipeline.addresses import email_key
        from pipeline.scheduling.daemon import all_contacts
        return email_key(email) in {email_key(c.email) for c in all_contacts(self.config)}

    # -- check, ingest, plan, preview, send -------------------------------------------

    def check(self) -> CheckResult:
        """Validate every file: audiences, neighbourhood coverage, addresses, templates."""
        from pipeline.contacts.audience import load_audiences
        from pipeline.contacts.neighbourhoods import coverage_warnings
        from pipeline.rendering.mime import address_problem
        from pipeline.rendering.templatecheck import check_templates
        config = self.config
        loaded = load_audiences(config.audience_files, config.audience_names, config.project)
        problems = loaded.problems + tuple(coverage_warnings(config, loaded.contacts,
                                                             self.now()))
        addresses = []
        for c in loaded.contacts:  # an address the configured transport cannot carry
            problem = address_problem(c.email, config.transport)
            if problem:
                addresses.append(f"{c.origin}: email: {problem}")
        return CheckResult(problems=problems, address_warnings=tuple(addresses),
                           template_errors=tuple(str(p) for p in check_templates(config)),
                           audience_errors=len(loaded.errors), sources=len(config.sources),
                           campaigns=len(config.campaigns), contacts=len(loaded.contacts),
                           audiences=len(config.audience_names), tips=len(config.tips))

    def ingest(self, on_done: Callable[[Any], None] | None = None,
               retry_failed: bool = False) -> IngestSummary:
        """Fetch every feed and store new articles (failing feeds too with retry_failed)."""
        from pipeline.runner import run_ingest
        return run_ingest(self.config, self.store, self.now(), on_done, retry_failed)

    def plan(self, campaign: str, explain: bool = False, ingest: bool = True,
             on_ingest: Callable[[IngestSummary], None] | None = None) -> PlanResult:
        """Who would get what in `campaign`, held as a send would hold it."""
        from pipeline.runner import held, prepare
        store = self.store
        if ingest or store.article_count() == 0:
            # Like `send`: the plan is made from the articles the send would see. On a
            # dry-run project the fetch lands in the in-memory copy and changes nothing.
            ingested = self.ingest()
            if on_ingest is not None:
                on_ingest(ingested)
        config = self.config
        prepared = held(config, store, prepare(config, store, config.campaign(campaign),
                                               self.now(), explain=explain), self.now())
        # Agree with `send`: people this period already reached are not sent again.
        done = frozenset(e for e, status in store.ledger_status(prepared.plan.send_id).items()
                         if status == LedgerStatus.SENT)
        return PlanResult(prepared, done)

    def preview(self, campaign: str, contact: str | None = None, out_dir: Path | None = None,
                step: int | None = None) -> list[PreviewWritten]:
        """Write each email of `campaign` (or of a drip's steps) as HTML plus a gallery."""
        from pipeline.addresses import email_key
        from pipeline.rendering.preview import (
            REFERRAL_UPDATE,
            drip_plans,
            find_drip,
            write_preview,
        )
        from pipeline.rendering.render import Renderer
        from pipeline.runner import prepare
        config, store, now = self.config, self.store, self.now()
        renderer = Renderer(config.project, config.sender, store.secret())
        target = out_dir or config.state_dir / "preview" / campaign
        drip = find_drip(config, campaign) or (REFERRAL_UPDATE if campaign ==
                                               REFERRAL_UPDATE.name else None)
        if drip is not None:
            written = []
            for number, s, plan in drip_plans(config, store, drip, step, now):
                index = write_preview(plan, renderer, now,
                                      target / f"step-{number}-{s.template}", contact)
                written.append(PreviewWritten(index.count, index.path, number, s.template))
            return written
        if step is not None:
            raise SphereError(f"--step is for drips; {campaign} is a campaign")
        if store.article_count() == 0:
            self.ingest()
        prepared = prepare(config, store, config.campaign(campaign), now)
        if contact and not any(email_key(e.contact.email) == email_key(contact)
                               for e in prepared.plan.emails):
            why = next((s.reason for s in prepared.plan.skipped
                        if email_key(s.email) == email_key(contact)), "")
            raise SphereError(f"{contact} gets no email in this send" + (
                f": {why}" if why else " (not in the campaign's audience; check the spelling)"))
        index = write_preview(prepared.plan, renderer, now, target, contact)
        return [PreviewWritten(index.count, index.path)]

    def send(self, campaign: str, transport_name: str | None = None, ingest: bool = True,
             local_time: bool = False, progress: Progress | None = None) -> SendResult:
        """Send `campaign` now: one email per subscribed contact, once per period."""
        from pipeline.delivery.deliver import OutboxTransport
        from pipeline.runner import run_send
        store = self.store  # first: a damaged or locked database fails before anything
        period, rule = None, None
        if local_time:
            from pipeline.delivery.sendgrid_api import local_time_rule
            period, rule = local_time_rule(self.config, campaign, transport_name, self.now())
        transport = self.transport(transport_name, send_at=rule)
        outbox = self.config.outbox_dir if isinstance(transport, OutboxTransport) else None
        ingested, summary = run_send(self.config, store, transport, campaign, self.clock,
                                     dry_run=self.dry_run, do_ingest=ingest, period=period,
                                     progress=progress)
        return SendResult(ingested, summary, outbox)

    # -- notes, resolve, suppressions, backup, templates ------------------------------

    def add_note(self, email: str, text: str) -> int:
        """Queue a one-off note (Markdown) for the next email to `email`."""
        from pipeline.addresses import email_key
        from pipeline.contacts.audience import load_audiences
        config = self.config
        known = {email_key(c.email) for c in load_audiences(
            config.audience_files, config.audience_names, config.project).contacts}
        if email_key(email) not in known:
            raise SphereError(f"{email} is in no audience file; check the spelling "
                              f"(`sphere plan CAMPAIGN` lists contacts)")
        return self.store.add_note(email, text, self.now())

    def notes(self, email: str | None = None) -> list[StoredNote]:
        """One-off notes (of `email`, or everyone's), waiting or used."""
        from pipeline.approval import notes
        return notes.notes(self.store, email)

    def _unused_note(self, note_id: int) -> None:
        found = next((n for n in self.notes() if n.id == note_id), None)
        if found is None:
            raise SphereError(f"no note {note_id} (`sphere note list` shows them)")
        if found.used:
            raise SphereError(f"note {note_id} was already sent in {found.used_send_id}; a "
                              "sent note cannot be changed (add a new one with `sphere note "
                              "add`)")

    def edit_note(self, note_id: int, text: str) -> None:
        """Replace the text of a waiting note."""
        from pipeline.approval import notes
        self._unused_note(note_id)
        if not notes.edit_note(self.store, note_id, text):
            raise SphereError(f"note {note_id} was used meanwhile; it can no longer be "
                              "changed")

    def remove_note(self, note_id: int) -> None:
        """Delete a waiting note so no email carries it."""
        from pipeline.approval import notes
        self._unused_note(note_id)
        if not notes.remove_note(self.store, note_id):
            raise SphereError(f"note {note_id} was used meanwhile; it can no longer be "
                              "removed")

    def resolve(self, send_id: str, email: str, sent: bool) -> None:
        """Settle a message whose outcome is unknown after an interruption."""
        store = self.store
        if email not in {r.email for r in store.pending_deliveries() if r.send_id == send_id}:
            raise SphereError(f"no message with unknown outcome for {email} in {send_id} "
                              "(`sphere status` lists them)")
        status = LedgerStatus.SENT if sent else LedgerStatus.FAILED
        store.settle_delivery(send_id, email, status, self.now(), "resolved by hand",
                              "" if sent else "resolved as not sent")

    def sync_suppressions(self) -> SuppressionsSynced:
        """Fetch SendGrid's suppression lists: what was fetched, how many in all."""
        from pipeline.delivery.sendgrid_api import (
            SendGridClient,
            api_host,
            api_key_from_env,
        )
        from pipeline.delivery.suppressions import sync
        config, store = self.config, self.store
        client = SendGridClient(api_host(config.sendgrid), api_key_from_env(
                                    "export a key with Suppressions read access"),
                                config.sendgrid.timeout, pool=2)
        try:
            summary = sync(client, store, config.sendgrid.asm_group_id, self.now())
        finally:
            client.close()
        return SuppressionsSynced(summary, len(store.suppressed()))

    def webhook_server(self, host: str, port: int) -> WebhookService:
        """The HTTP service for SendGrid events and one-click unsubscribes, bound to
        host:port (a store of its own per request); run its server, close its sock."""
        from pipeline.delivery import webhook as hook
        from pipeline.web.server import Server, bind  # uvicorn: only when serving
        self.store  # noqa: B018 -- migrate now, and fail now if the folder is unusable
        self.close()
        config = self.config
        key = hook.public_key_from_env()
        paths = hook.unsubscribe_paths(config.sender.unsubscribe_url)
        try:
            sock = bind(host, port)
        except OSError as exc:
            raise SphereError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                              "choose another --port, or stop what is using it") from None
        server = Server(hook.webhook_app(self.open_store, key, paths, self.clock,
                                         config.sender.name), sock)
        return WebhookService(server, sock, tuple(paths), key is not None)

    def backup(self, target: Path) -> int:
        """Copy the database to `target`, safely while sends run; returns its size."""
        config = self.config
        if target.resolve() == config.db_path.resolve():
            example = config.state_dir / "backups" / "sphere-YYYY-MM-DD.db"
            raise SphereError(f"{target} is the database itself; give another file name "
                              f"(for example {example})")
        return self.store.backup(target)

    def templates(self) -> list[TemplateFile]:
        """The built-in templates, the project's overrides, and who uses each."""
        from pipeline.rendering.templatecheck import template_listing
        return template_listing(self.config)

    # -- contacts and the report ------------------------------------------------------

    def import_contacts(self, file: Path, audience: str, overrides: dict[str, str],
                        neighbourhoods: Path | None = None, dry_run: bool = False,
                        progress: Callable[[str, int, int], None] | None = None,
                        shown: str | None = None) -> ImportReport:
        """Merge a CSV or vCard export into audiences/AUDIENCE.csv (nothing with dry_run)."""
        from pipeline.config import AUDIENCES_DIR
        from pipeline.contacts.importer import import_contacts
        from pipeline.contacts.neighbourhoods import load_neighbourhoods
        config = self.config
        if not audience.replace("-", "").replace("_", "").isalnum():
            raise SphereError(f"--audience {audience!r}: use letters, digits, '-' or '_' (it "
                              f"becomes {AUDIENCES_DIR}/NAME.csv)")
        hoods_path = neighbourhoods or (config.project / DEFAULT_NEIGHBOURHOODS)
        hoods = None
        if neighbourhoods is not None or hoods_path.is_file():
            hoods = load_neighbourhoods(hoods_path)
        return import_contacts(file, config.project / AUDIENCES_DIR, audience,
                               overrides=overrides, neighbourhoods=hoods,
                               suppressed=self.store.suppressed(), dry_run=dry_run,
                               shown=str(file) if shown is None else shown,
                               progress=progress,
                               known_hoods=tuple(sorted({s.neighbourhood for s in
                                                         config.sources if s.neighbourhood})))

    def record_events(self, file: Path) -> EventsRecorded:
        """Record a saved SendGrid Event Webhook batch: new events, events in the file."""
        from pipeline.delivery.webhook import parse_events
        try:
            events, suppress = parse_events(file.read_bytes())
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            raise SphereError(f"{file}: not a SendGrid event batch ({exc}); give the JSON "
                              "array the Event Webhook posts") from None
        return EventsRecorded(self.store.record_events(events, suppress, self.now()),
                              len(events))

    def report(self, campaign: str = "", html_file: Path | None = None) -> Report:
        """Per send: sent, delivered, opened, clicked, bounced, unsubscribed, complained."""
        from pipeline.delivery import report as reports
        config, store = self.config, self.store
        known = {c.name for c in config.campaigns} | {s.campaign for s in store.send_rows()}
        if campaign and campaign not in known:
            raise SphereError(f"no campaign {campaign!r}; known: "
                              f"{', '.join(sorted(known)) or 'none'}")
        result = reports.report_from_store(store, campaign, config.engagement.cold_after_sends)
        if html_file is not None:
            html_file.parent.mkdir(parents=True, exist_ok=True)
            html_file.write_text(reports.render_html(result, self.now()), encoding="utf-8")
        return result

    def report_html(self, campaign: str = "") -> str:
        """The report as a self-contained HTML page with a chart per campaign."""
        from pipeline.delivery.report import render_html
        return render_html(self.report(campaign), self.now())

    def cold_contacts(self) -> list[str]:
        """Addresses with no open or click in the last `cold_after_sends` sends."""
        from pipeline.contacts.engagement import cold_contacts
        store = self.store
        return sorted(cold_contacts(store.ledger_rows(), store.events(),
                                    self.config.engagement.cold_after_sends))

    # -- the schedule, status, referrals, the daemon ----------------------------------

    def schedule(self, start_day: dt.date | None = None, end_day: dt.date | None = None,
                 detail: bool = False) -> ScheduleView:
        """The calendar of what is due for whom and when (the daemon's own computation)."""
        from pipeline.scheduling.calendar import summary
        from pipeline.scheduling.daemon import (
            all_contacts,
            project_calendar,
            recent,
            referrals,
            unsent,
        )
        config, store, now = self.config, self.store, self.now()
        start = dt.datetime.combine(start_day, dt.time(), dt.UTC) if start_day \
            else now
        end = dt.datetime.combine(end_day, dt.time(23, 59), dt.UTC) if end_day \
            else start + dt.timedelta(days=31)
        if end <= start:
            raise SphereError("--until must be after the start")
        contacts = all_contacts(config)
        late = [] if start_day else unsent(config, store, now, contacts, upcoming=False)[0]
        if detail:
            cal = project_calendar(config, store, start, end, contacts)
            due: Sequence[Any] = cal.due
            held: Sequence[Any] = cal.capped
        else:
            compact = summary(config, contacts, referrals(store), start, end,
                              recent(config, store, start))
            due, held = compact.firings, compact.held_back
        return ScheduleView(start, end, tuple(late), tuple(due), tuple(held))

    def status(self) -> StatusView:
        """Feeds' health, recent sends, unknown outcomes, what is next, who is cold."""
        from pipeline.scheduling.daemon import unsent
        config, store = self.config, self.store
        late, nexts = unsent(config, store, self.now())
        return StatusView(feeds={s.source: s for s in store.feed_states()},
                          sends=tuple(store.send_counts()[:20]),
                          pending=tuple(store.pending_deliveries()),
                          late=tuple(late), nexts=tuple(nexts),
                          last_tick=store.meta("scheduler.last_tick"),
                          cold=tuple(self.cold_contacts()), drafts=self.draft_states(),
                          suppressed=len(store.suppressed()),
                          suppression_counts=store.suppression_counts(),
                          articles=store.article_count(), health=self.feed_health())

    def feed_health(self) -> tuple[FeedHealth, ...]:
        """Each configured feed's state, whether it is failing, when ingest tries it
        again (a url edited since it failed is tried at once), and where it moved."""
        from pipeline.feeds.fetch import retry_after
        states = {s.source: s for s in self.store.feed_states()}
        found = []
        for src in self.config.sources:
            s = states.get(src.name)
            same = s is not None and s.url == src.url
            retry = retry_after(s) if s is not None and same and src.is_remote else None
            moved = s.permanent_url if s is not None and same and s.permanent_url and \
                s.permanent_url != src.url else ""
            found.append(FeedHealth(src, s, retry, moved or ""))
        return tuple(found)

    def referrals(self) -> list[Referral]:
        """Every referral recorded."""
        return self.store.referrals()

    def add_referral(self, by_email: str, name: str, day: dt.date | None = None
                     ) -> ReferralAdded:
        """Record a referral; the referral drips thank the referrer on their schedule."""
        import zoneinfo
        config = self.config
        if not self.contacts_known(by_email):
            raise SphereError(f"{by_email} is in no audience file; add them first (or check "
                              "the spelling)")
        now = self.now()
        day = day or now.astimezone(zoneinfo.ZoneInfo(config.sender.timezone)).date()
        ref_id = self.store.add_referral(by_email, name, day, now)
        return ReferralAdded(ref_id, tuple(d.name for d in config.drips
                                           if d.anchor == "referral_received"))

    def update_referral(self, referral_id: int, status: str,
                        transport_name: str | None = None) -> ReferralUpdated:
        """Set a referral's status and send the referrer an update (once per status)."""
        from pipeline.addresses import email_key
        from pipeline.scheduling.calendar import Referral, referral_update_due
        from pipeline.scheduling.daemon import all_contacts
        try:
            state = ReferralStatus(status)
        except ValueError:
            raise SphereError(f"unknown referral status {status!r}",
                              f"use {one_of(REFERRAL_UPDATES)}") from None
        config, store, now = self.config, self.store, self.now()
        rows = {r.id: r for r in store.referrals()}
        if referral_id not in rows:
            raise SphereError(f"no referral {referral_id}; `sphere referral add` records one")
        by_email, name, received = (rows[referral_id].by_email, rows[referral_id].name,
                                    rows[referral_id].received)
        store.update_referral(referral_id, state, now)
        contact = next((c for c in all_contacts(config)
                        if email_key(c.email) == email_key(by_email)), None)
        if contact is None:
            raise SphereError(f"{by_email} is no longer in an audience file; status saved, no "
                              "email sent")
        referral = Referral(referral_id, by_email, name, received, state, now)
        item = referral_update_due(referral, contact, config.sender.timezone,
                                   config.scheduling, now)
        if item.at > now:
            return ReferralUpdated(referral_id, state, by_email, sent=False,
                                   already_sent=False, waits_until=item.local,
                                   their_time=item.period)
        transport = self.transport(transport_name)
        try:
            from pipeline.runner import (
                run_due,  # the pipeline, only when something is sent
            )
            (summary,) = run_due(config, store, transport, [item], lambda: now, self.dry_run)
        finally:
            transport.close()
        return ReferralUpdated(referral_id, state, by_email, sent=not summary.already_sent,
                               already_sent=bool(summary.already_sent))

    def tick(self, transport_name: str | None = None, since: dt.date | None = None,
             should_stop: Callable[[], bool] | None = None, locked: bool = False
             ) -> TickReport:
        """One tick of the scheduler now (under the project's lock, unless the caller
        holds it: `locked`): what is due goes out; with `since`, drip steps due since that
        day that never went out too; `should_stop` ends the tick early between sends."""
        import zoneinfo

        from pipeline.scheduling.daemon import ProjectLock, tick
        config = self.config
        transport = self.transport(transport_name, dry_run=False)
        lock = None if locked else ProjectLock(config.state_dir)
        try:
            if lock is not None:
                lock.acquire()
            start = dt.datetime.combine(since, dt.time(), zoneinfo.ZoneInfo(
                config.sender.timezone)) if since else None
            return tick(config, self.store, transport, self.now(), since=start,
                        should_stop=should_stop or (lambda: False))
        finally:
            if lock is not None:
                lock.release()
            transport.close()

    def send_draft(self, draft_id: int, progress: Progress | None = None
                   ) -> list[RunSummary]:
        """Send the approved, unsent people of draft d`draft_id` whose time has come (what
        the daemon's next tick would do, now), with campaigns.yaml's transport."""
        from pipeline.approval import review
        return review.send_now(self.config, self.store, self.transport(dry_run=False),
                               self.draft(draft_id), self.clock, progress=progress)

    def daemon(self, transport_name: str | None = None, tick_seconds: int = TICK_SECONDS,
               on_tick: Callable[[TickReport], None] | None = None) -> Daemon:
        """The scheduler daemon over this project (its own store per tick); call run()."""
        from pipeline.scheduling.daemon import Daemon
        transport = self.transport(transport_name, dry_run=False)
        return Daemon(self.config, self.open_store, transport, self.clock, tick_seconds,
                      on_tick=on_tick)
