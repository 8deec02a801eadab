"""The runner's delivery loop: concurrent sends with an exactly-once ledger, the pause
after many failures in a row and the resume, the second suppression guard, and pending
rows settled by Event Webhook evidence."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import SendGridSettings
from pipeline.delivery.deliver import OutboxTransport
from pipeline.delivery.dispatch import SUPPRESSED
from pipeline.delivery.sendgrid_api import SendGridTransport
from pipeline.runner import MAX_CONSECUTIVE_FAILURES, deliver_plan
from pipeline.state.store import StoredEvent
from tests.conftest import NOW
from tests.deliver_support import FAST, sample
from tests.sendgrid_standin import KEY, Fault, StandIn


def _sendgrid(standin: StandIn, sender, workers: int = 4) -> SendGridTransport:
    return SendGridTransport(SendGridSettings(timeout=2, workers=workers), sender, KEY,
                             host=standin.url, retry=FAST)


def test_many_failures_in_a_row_pause_the_run_and_a_rerun_resumes(project: Path) -> None:
    s = sample(project)
    standin = StandIn().start()
    try:
        standin.fail(*[Fault(503)] * 200)  # SendGrid is down for the first requests
        first = deliver_plan(s.store, s.renderer, _sendgrid(standin, s.config.sender, 2),
                             s.prepared, lambda: NOW, False)
        assert first.sent == 0 and first.paused.startswith(
            f"paused after {MAX_CONSECUTIVE_FAILURES} failed requests in a row")
        assert "SendGrid 503" in first.paused and "run the same command again" in first.paused
        # It stopped early: it did not burn through the whole list.
        assert first.failed < 28 and not standin.delivered
        assert standin.requests <= MAX_CONSECUTIVE_FAILURES + 2 - 1
        standin.faults.clear()  # SendGrid is back
        second = deliver_plan(s.store, s.renderer, _sendgrid(standin, s.config.sender),
                              s.prepared, lambda: NOW, False)
    finally:
        standin.stop()
    assert second.sent == 28 and not second.paused
    assert standin.delivered == {e.contact.email.lower(): 1 for e in s.emails}
    assert s.store.send_counts()[0].outcome == "done"


def test_a_permanent_failure_does_not_block_the_others(project: Path) -> None:
    s = sample(project)
    standin = StandIn().start()
    try:
        for e in s.emails[:MAX_CONSECUTIVE_FAILURES + 2:2]:  # six refusals, spread out
            standin.refuse[e.contact.email.lower()] = (400, "Invalid recipient")
        summary = deliver_plan(s.store, s.renderer, _sendgrid(standin, s.config.sender),
                               s.prepared, lambda: NOW, False)
    finally:
        standin.stop()
    assert summary.failed == 6 and summary.sent == 22 and not summary.paused


def test_an_address_suppressed_after_planning_is_not_sent(project: Path) -> None:
    s = sample(project)
    late = s.emails[4].contact.email
    s.store.suppress(late, "unsubscribed", "one-click", NOW)  # after the plan was made
    outbox = project / "var" / "outbox"
    summary = deliver_plan(s.store, s.renderer, OutboxTransport(outbox), s.prepared,
                           lambda: NOW, False)
    assert summary.sent == 27
    assert [(k.email, k.reason) for k in summary.skipped if k.reason == SUPPRESSED] == \
        [(late, SUPPRESSED)]
    assert not any(late.split("@")[0] in p.name for p in outbox.iterdir())
    assert late not in s.store.ledger_status(s.prepared.plan.send_id)


def test_a_pending_row_is_settled_by_webhook_evidence_not_resent(project: Path) -> None:
    s = sample(project)
    send_id = s.prepared.plan.send_id
    a, b = s.emails[0], s.emails[1]
    # A crash left two rows pending; SendGrid's webhook has since reported one of them.
    s.store.start_send(send_id, "monthly-sphere", s.prepared.plan.period, NOW)
    s.store.begin_many(send_id, "sendgrid", [a, b], NOW)
    s.store.record_events([StoredEvent("ev1", "delivered", a.contact.email, 1, "m1", send_id)],
                          [], NOW)
    standin = StandIn().start()
    try:
        summary = deliver_plan(s.store, s.renderer, _sendgrid(standin, s.config.sender),
                               s.prepared, lambda: NOW, False)
    finally:
        standin.stop()
    ledger = s.store.ledger_status(send_id)
    assert ledger[a.contact.email] == "sent"  # confirmed by the event, not re-sent
    assert ledger[b.contact.email] == "pending"  # still unknown: listed, never guessed
    assert summary.sent == 26 and summary.already_sent == 1 and summary.unknown == 1
    assert a.contact.email.lower() not in standin.delivered
    assert b.contact.email.lower() not in standin.delivered
    assert [r.email for r in s.store.pending_deliveries()] == [b.contact.email]


@pytest.mark.parametrize("workers", [1, 4, 16])
def test_every_request_failing_pauses_after_n_failed_requests_across_workers(
        project: Path, workers: int) -> None:
    # Issue 13.8: with every request answered 500, 28 addresses x 5 tries = 140 requests
    # went out before the pause. Now each failed request counts, retries too, across
    # workers, and none starts after the N-th. Slow start (one request in flight until
    # one succeeds) makes that exactly N, however many workers.
    s = sample(project)
    standin = StandIn().start()
    try:
        standin.fail(*[Fault(500)] * 1000)
        summary = deliver_plan(s.store, s.renderer, _sendgrid(standin, s.config.sender,
                                                             workers),
                               s.prepared, lambda: NOW, False)
    finally:
        standin.stop()
    n = MAX_CONSECUTIVE_FAILURES
    assert summary.paused.startswith(f"paused after {n} failed requests in a row")
    assert standin.requests == n, standin.requests
    assert summary.sent == 0 and not standin.delivered
    # Messages never tried are not failures; their rows let the next run send them.
    ledger = s.store.ledger_status(s.prepared.plan.send_id)
    assert set(ledger.values()) == {"failed"} and summary.failed <= standin.requests


def test_a_success_resets_the_count_so_scattered_failures_do_not_pause(
        project: Path) -> None:
    s = sample(project)
    standin = StandIn().start()
    try:
        # 27 failed requests in all, never more than 3 in a row: each message's retry
        # succeeds, so the run never pauses and everyone gets exactly one email.
        for _ in range(9):  # None: answered as usual
            standin.faults.extend([Fault(503), Fault(503), Fault(503), None])
        summary = deliver_plan(s.store, s.renderer, _sendgrid(standin, s.config.sender, 1),
                               s.prepared, lambda: NOW, False)
    finally:
        standin.stop()
    assert not summary.paused and summary.sent == 28
    assert standin.delivered == {e.contact.email.lower(): 1 for e in s.emails}


@pytest.mark.parametrize("workers", [1, 4, 16])
def test_a_bad_key_stops_at_the_first_401_across_workers(project: Path,
                                                         workers: int) -> None:
    # Issue 13.8: a 401 let 20 more requests go. The first request is a probe the other
    # workers wait for, so the bad key costs exactly one request.
    s = sample(project)
    standin = StandIn(key="SG.the-right-key").start()
    try:
        summary = deliver_plan(s.store, s.renderer, _sendgrid(standin, s.config.sender,
                                                             workers),
                               s.prepared, lambda: NOW, False)
    finally:
        standin.stop()
    assert summary.paused.startswith("stopped: SendGrid 401")
    assert standin.requests == 1, standin.requests
    assert summary.sent == 0 and summary.failed <= 1


def test_an_interruption_while_rendering_settles_what_the_relay_already_took(
        project: Path) -> None:
    """Ctrl-C (or any crash) while the next message renders: the messages the relay has
    already answered for are recorded as sent, none is left 'unknown' to resolve."""
    import pytest

    from pipeline.config import SmtpSettings
    from pipeline.delivery.smtp import SmtpTransport
    from pipeline.rendering.render import Renderer
    from tests.deliver_support import Recorder, smtp_server

    s = sample(project)
    fourth = s.prepared.plan.emails[3].contact.email

    class Interrupted(Renderer):
        def render(self, plan, planned, now, extra=None, template=""):
            if planned.contact.email == fourth:
                raise KeyboardInterrupt
            return super().render(plan, planned, now, extra, template)

    recorder = Recorder()
    server = smtp_server(recorder)
    renderer = Interrupted(s.config.project, s.config.sender, s.store.secret())
    transport = SmtpTransport(SmtpSettings(host="127.0.0.1", port=server.port,
                                           security="none", timeout=5, workers=1),
                              s.config.sender, retry=FAST)
    try:
        with pytest.raises(KeyboardInterrupt):
            deliver_plan(s.store, renderer, transport, s.prepared, lambda: NOW, False)
    finally:
        transport.close()
        server.stop()
    ledger = s.store.ledger_status(s.prepared.plan.send_id)
    took = {to[0] for _, to, _ in recorder.messages}
    assert took and {e for e, st in ledger.items() if st == "sent"} == took
    # Begun but never handed to the relay: certainly not sent, so the next run sends them.
    assert set(ledger.values()) <= {"sent", "failed"} and not s.store.pending_deliveries()


def test_sendgrid_keeps_at_most_its_window_begun_and_unsettled(project: Path) -> None:
    # Each ledger commit covers up to `window` messages (twice the connections), and a
    # crash leaves at most that many 'unknown': counted in the ledger itself each time a
    # request starts.
    import sqlite3
    s = sample(project)
    standin = StandIn().start()
    seen: list[int] = []
    try:
        transport = _sendgrid(standin, s.config.sender, workers=4)
        assert transport.window == 8
        real = transport.send

        def counting(email):
            with sqlite3.connect(s.store.path) as db:
                seen.append(db.execute("SELECT count(*) FROM deliveries "
                                       "WHERE status='pending'").fetchone()[0])
            return real(email)
        transport.send = counting
        summary = deliver_plan(s.store, s.renderer, transport, s.prepared, lambda: NOW,
                               False)
    finally:
        standin.stop()
    assert summary.sent == 28 and len(seen) == 28
    assert max(seen) == transport.window  # the first turn begins a whole window
