"""Concurrent delivery with an exactly-once ledger.

One thread (the caller's) owns the database: it renders each message, writes its
'pending' ledger row, hands it to a worker, and settles the row when the worker reports.
Workers do network I/O only. Per message the order is always begin -> send -> settle,
so a crash at any moment leaves each message either settled or 'pending' (unknown,
never re-sent blindly). Rows begun or settled together share one transaction: under load
a commit covers many messages, which is what lets SQLite keep up with the network.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from pipeline.addresses import email_key
from pipeline.delivery.deliver import Transport
from pipeline.errors import TransportError
from pipeline.models import Delivery, LedgerStatus, RenderedEmail, RunSummary, Skipped
from pipeline.state.interface import Ledger

Progress = Callable[[int, int, str], None]  # (done, total, email)
SUPPRESSED = "suppressed since the plan was made (unsubscribed, bounced or complained)"
BOUNCED = ("suppressed as bounced, so no transport mails it again (if the address is "
           "mistyped, correct it in the audience file)")


@dataclass(frozen=True)
class Job:
    """One planned message: who it is for and how to render it (lazily, so a run
    streams instead of holding every rendered email)."""

    email: str
    render: Callable[[], RenderedEmail]


def _outcome(future: Future[Delivery], email: str, transport: str) -> Delivery:
    """The worker's Delivery; a crash inside a transport counts as unknown, because we
    cannot tell whether it happened before or after the provider took the message."""
    try:
        return future.result()
    except TransportError:
        raise
    # A bug in a transport must not lose the ledger's truth: any exception is an outcome.
    except Exception as exc:  # noqa: BLE001
        return Delivery(email, "unknown", transport, error=f"{type(exc).__name__}: {exc}")


def dispatch(store: Ledger, transport: Transport, send_id: str, jobs: Iterable[Job],
             total: int, now: Callable[[], dt.datetime], max_failures: int,
             message_id: Callable[[str], str], progress: Progress | None = None,
             should_stop: Callable[[], bool] | None = None) -> RunSummary:
    """Deliver every job at most once, `transport.workers` at a time; when `should_stop`
    turns true (SIGTERM to the daemon), hand out nothing more, settle what is in flight
    and return."""
    run = _Run(store, transport, send_id, jobs, total, now, message_id, progress)
    # Failures in a row are counted per request, across workers, by the transport's
    # breaker (deliver.Breaker): it stops new requests the moment it trips.
    run.breaker.rearm(max_failures)
    workers = max(1, transport.workers)
    # A few more messages begun than there are workers, so none waits for the database;
    # no more than that, because after a crash every begun row is 'unknown' to resolve.
    # A transport that can tell afterwards what it delivered (the outbox: the file is
    # there or not) leaves no unknowns, so it may keep more in flight: bigger commits.
    # SendGrid keeps two per connection: a commit (an fsync) then never idles them all.
    window = getattr(transport, "window", 0) or workers + max(2, workers // 4)
    pool = ThreadPoolExecutor(max_workers=workers,
                              thread_name_prefix=f"sphere-{transport.name}")
    try:
        run.loop(pool, window, should_stop)
    finally:
        run.finish(pool)
    return RunSummary(send_id=send_id, sent=run.sent, already_sent=run.already,
                      failed=run.failed, unknown=run.unknown, skipped=tuple(run.skipped),
                      failures=tuple(run.failures), paused=run.paused)


class _Run:
    """One dispatch in progress: its counters, the messages in flight, and the steps
    that move each message through begin -> send -> settle."""

    def __init__(self, store: Ledger, transport: Transport, send_id: str, jobs: Iterable[Job],
                 total: int, now: Callable[[], dt.datetime],
                 message_id: Callable[[str], str], progress: Progress | None) -> None:
        self.store, self.transport, self.send_id = store, transport, send_id
        self.total, self.now, self.message_id, self.progress = total, now, message_id, progress
        self.ledger = store.ledger_status(send_id)
        self.breaker = transport.breaker
        self.sent = self.already = self.failed = self.unknown = self.done = 0
        self.failures: list[str] = []
        self.skipped: list[Skipped] = []
        self.paused = ""
        self.inflight: dict[Future[Delivery], str] = {}
        self.jobs_left = iter(jobs)
        self.exhausted = False
        # A transport that defers durability (the outbox) makes a batch durable before
        # the ledger records it: once per commit, not once per message.
        self.flush: Callable[[], None] = getattr(transport, "flush", lambda: None)

    def loop(self, pool: ThreadPoolExecutor, window: int,
             should_stop: Callable[[], bool] | None) -> None:
        """Settle what finished and begin what comes next, until every job is handed
        out and back (or the run pauses)."""
        store, send_id, inflight = self.store, self.send_id, self.inflight
        while True:
            if should_stop is not None and not self.paused and should_stop():
                self.paused = "stopped on request; the rest goes out on the next run"
                self.breaker.trip(self.paused)  # a worker waiting to retry gives up now
            rows: list[tuple[str, str, str, str]] = []
            if inflight:
                # Wait only when there is nothing else to do: the window is full, or
                # every job has been handed out (or the run is stopping).
                idle = len(inflight) >= window or self.exhausted or bool(self.paused)
                finished, _ = wait(list(inflight), timeout=None if idle else 0,
                                   return_when=FIRST_COMPLETED)
                rows = self.outcomes(finished)
            try:
                batch = [] if self.paused else self.fill(window - len(inflight))
            except BaseException:
                # Ctrl-C or a store error while rendering: what already came back from
                # the network is settled first, never left 'unknown' to resolve by hand.
                if rows:
                    self.flush()
                    store.settle_many(send_id, rows, self.now())
                raise
            if rows:
                self.flush()
            if rows or batch:
                # One transaction settles what finished and begins what comes next;
                # each new message goes to a worker only after its row is committed.
                began = store.settle_and_begin(send_id, self.transport.name, rows, batch,
                                               self.now())
                for rendered, fresh in zip(batch, began, strict=True):
                    if fresh:
                        inflight[pool.submit(self.transport.send, rendered)] = \
                            rendered.contact.email
                    else:
                        self.already += 1
            if not inflight and (self.exhausted or self.paused):
                break

    def finish(self, pool: ThreadPoolExecutor) -> None:
        """Settle everything still in flight, whether the loop ended or was interrupted."""
        # On an interruption (Ctrl-C), messages not yet handed to the network are
        # certainly unsent: settle them 'failed' so the next run sends them. Those in
        # flight are waited for and settled like any other.
        store, inflight = self.store, self.inflight
        cancelled = [f for f in list(inflight) if f.cancel()]
        if cancelled:
            store.settle_many(self.send_id, [(inflight.pop(f), LedgerStatus.FAILED, "",
                                              "not sent: the run was interrupted")
                                             for f in cancelled], self.now())
        pool.shutdown(wait=True)
        if inflight:
            self.flush()
            store.settle_many(self.send_id, self.outcomes(list(inflight)), self.now())

    def outcomes(self, finished: Iterable[Future[Delivery]]
                 ) -> list[tuple[str, str, str, str]]:
        """Count finished sends; the ledger rows to settle for them."""
        rows: list[tuple[str, str, str, str]] = []
        fatal: TransportError | None = None
        name = self.transport.name
        for future in finished:
            email = self.inflight.pop(future)
            try:
                result = _outcome(future, email, name)
            except TransportError as exc:
                # Raised before the provider took anything (bad key, refused login).
                fatal = exc
                result = Delivery(email, "failed", name, error=str(exc))
            self._count(email, result, rows)
        if fatal is not None and not self.paused:
            self.paused = f"stopped: {fatal}; fix it and run the same command again to resume"
        self._pause_if_tripped()
        return rows

    def _count(self, email: str, result: Delivery, rows: list[tuple[str, str, str, str]]
               ) -> None:
        """Count one finished send and add its ledger row to `rows` (none if unknown)."""
        if result.status == "unknown":
            # Leave the row 'pending': `sphere status` lists it with the command
            # that settles it. Sending it again could deliver it twice.
            self.unknown += 1
            self.failures.append(f"{email}: outcome unknown: {result.error}")
            return
        ok = result.status == "sent"
        rows.append((email, LedgerStatus.SENT if ok else LedgerStatus.FAILED, result.provider_id,
                     result.error))
        if ok:
            self.sent += 1
        elif result.status == "skipped":
            pass  # never tried (the breaker had tripped): the next run sends it
        else:
            self.failed += 1
            self.failures.append(f"{email}: {result.error}")
            if result.bounced:
                # The address itself was refused for good: retrying it on every run
                # would only bounce again. Suppressed before its row is settled, so
                # no moment exists where the failure is recorded and the bounce not.
                self.store.suppress(email, "bounced", self.transport.name, self.now())
                self.failures[-1] += f"; {BOUNCED}"

    def _pause_if_tripped(self) -> None:
        if self.breaker.is_set() and not self.paused:
            self.paused = (f"{self.breaker.reason or 'stopped'}; fix the cause and run the "
                           "same command again to resume")

    def fill(self, room: int) -> list[RenderedEmail]:
        """Render up to `room` messages that still need sending, in plan order."""
        picked = self._pick(room)
        # Second guard, one query per batch: the plan skips suppressed addresses, but an
        # unsubscribe may have arrived since (the webhook service runs apart).
        suppressed = self.store.suppressed_among([j.email for j in picked]) if picked else ()
        batch: list[RenderedEmail] = []
        for job in picked:
            if email_key(job.email) in suppressed:
                self.skipped.append(Skipped(job.email, SUPPRESSED))
                continue
            rendered = _render(job, self.store, self.transport, self.send_id,
                               self.message_id, self.now)
            if isinstance(rendered, str):
                self.refused(job.email, rendered)
            else:
                batch.append(rendered)
        return batch

    def _pick(self, room: int) -> list[Job]:
        """The next jobs, up to `room`, whose ledger row does not say sent or pending."""
        picked: list[Job] = []
        ledger, progress = self.ledger, self.progress
        while not self.exhausted and len(picked) < room:
            job = next(self.jobs_left, None)
            if job is None:
                self.exhausted = True
                break
            self.done += 1
            email = job.email
            status = ledger.get(email)
            if status == LedgerStatus.PENDING:
                status = _settle_unknown(self.store, self.transport, self.send_id, email,
                                         self.message_id(email), self.now)
                if status == LedgerStatus.PENDING:
                    self.unknown += 1
            if status in (LedgerStatus.SENT, LedgerStatus.PENDING):
                self.already += status == LedgerStatus.SENT
            else:
                picked.append(job)
            if progress:
                progress(self.done, self.total, email)
        return picked

    def refused(self, email: str, error: str) -> None:
        """A message that could not even be built: that contact's failure, nobody else's
        (counted by the breaker like a failed request, so a template broken for everyone
        still pauses the run)."""
        self.failed += 1
        self.failures.append(f"{email}: {error}")
        self.breaker.failed(self.failures[-1])
        self._pause_if_tripped()


def _render(job: Job, store: Ledger, transport: Transport, send_id: str,
            message_id: Callable[[str], str], now: Callable[[], dt.datetime]
            ) -> RenderedEmail | str:
    """Render one message; when that fails (an address no header can carry, a template
    error with this contact's data), record the failure in this contact's ledger row, so
    it shows in `status` and the next run tries again, and return the reason."""
    try:
        return job.render()
    except Exception as exc:  # noqa: BLE001 - one contact's data must not stop the send
        error = f"not sent: the message could not be built: {type(exc).__name__}: {exc}"
        if store.begin_delivery(send_id, job.email, message_id(job.email), transport.name,
                                (), (), (), now()):
            store.settle_delivery(send_id, job.email, LedgerStatus.FAILED, now(), error=error)
        return error


def _settle_unknown(store: Ledger, transport: Transport, send_id: str, email: str,
                    message_id: str, now: Callable[[], dt.datetime]) -> LedgerStatus:
    """A row left 'pending' by an interruption: settle it when the evidence says what
    happened (a webhook event, the outbox file); otherwise it stays 'pending'."""
    if store.provider_took(send_id, email):
        store.settle_delivery(send_id, email, LedgerStatus.SENT, now(),
                              "confirmed by event webhook")
        return LedgerStatus.SENT
    outcome = transport.confirm(send_id, email, message_id)
    if outcome is True:
        store.settle_delivery(send_id, email, LedgerStatus.SENT, now(), "confirmed")
        return LedgerStatus.SENT
    if outcome is False:
        store.settle_delivery(send_id, email, LedgerStatus.FAILED, now(),
                              error="not delivered before an interruption")
        return LedgerStatus.FAILED
    return LedgerStatus.PENDING
