"""The fast send path (issue 18): rendering ahead in worker processes gives the same
messages as rendering in the dispatcher; the outbox makes each batch durable before the
ledger records it sent; a suppression that arrives mid-run is honoured; the ledger is
settled per batch, not per message."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.delivery.deliver import DryRunTransport, OutboxTransport
from pipeline.delivery.dispatch import SUPPRESSED
from pipeline.models import Delivery, RenderedEmail
from pipeline.rendering import pool as render_pool
from pipeline.rendering.render import Renderer
from pipeline.resources import bundled
from pipeline.runner import deliver_plan
from pipeline.state.store import Store
from tests.conftest import NOW
from tests.deliver_support import sample


def _parts(email: RenderedEmail) -> tuple:
    return (email.contact.email, email.message_id, email.subject, email.html, email.text,
            email.pick_keys, email.clusters, email.note_ids)


def test_rendering_ahead_in_processes_gives_the_same_messages(project: Path,
                                                              monkeypatch) -> None:
    s = sample(project)
    monkeypatch.setattr(render_pool, "POOL_FROM", 1)  # 28 emails: use the pool anyway
    monkeypatch.setattr(render_pool, "CHUNK", 5)  # several chunks, the last one short
    assert render_pool.pool_size(len(s.emails)) >= 1
    transport = DryRunTransport()
    summary = deliver_plan(s.store, s.renderer, transport, s.prepared, lambda: NOW, True)
    assert summary.sent == len(s.emails) == 28
    assert [_parts(m) for m in transport.messages] == [_parts(e) for e in s.emails]


def test_a_render_error_in_a_worker_is_the_dispatcher_s_own(project: Path,
                                                            monkeypatch) -> None:
    # A template that fails for one contact only: the worker hands the message back
    # unrendered, the dispatcher renders it itself, so the real error is what that
    # contact's ledger row records (issue 12.7: one contact's failure, nobody else's).
    s = sample(project)
    bad = s.emails[7].contact
    (project / "templates").mkdir(exist_ok=True)
    source = (bundled("templates") / "newsletter.txt").read_text(encoding="utf-8")
    (project / "templates" / "newsletter.txt").write_text(
        f"{{% if contact.email == '{bad.email}' %}}{{{{ 1 // 0 }}}}{{% endif %}}" + source,
        encoding="utf-8")
    renderer = Renderer(s.config.project, s.config.sender, s.store.secret())
    monkeypatch.setattr(render_pool, "POOL_FROM", 1)
    monkeypatch.setattr(render_pool, "CHUNK", 3)
    summary = deliver_plan(s.store, renderer, OutboxTransport(project / "var" / "outbox"),
                           s.prepared, lambda: NOW, False)
    assert summary.sent == 27 and summary.failed == 1
    assert any(bad.email in f and "ZeroDivisionError" in f for f in summary.failures)
    assert s.store.ledger_status(s.prepared.plan.send_id)[bad.email] == "failed"


class _FlushWatch(OutboxTransport):
    """An outbox that notes which files each flush made durable."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.written: set[str] = set()
        self.durable: set[str] = set()
        self.flushes = 0

    def send(self, email: RenderedEmail) -> Delivery:
        result = super().send(email)
        self.written.add(email.contact.email)
        return result

    def flush(self) -> None:
        self.durable |= self.written
        self.flushes += 1
        super().flush()


def test_the_outbox_is_durable_before_the_ledger_says_sent(project: Path,
                                                           monkeypatch) -> None:
    s = sample(project)
    transport = _FlushWatch(project / "var" / "outbox")
    settled: list[str] = []
    real = Store.settle_and_begin

    def watch(self, send_id, name, outcomes, emails, now):  # type: ignore[no-untyped-def]
        for email, status, _pid, _err in outcomes:
            if status == "sent":
                assert email in transport.durable, f"{email} recorded sent before a flush"
                settled.append(email)
        return real(self, send_id, name, outcomes, emails, now)

    monkeypatch.setattr(Store, "settle_and_begin", watch)
    monkeypatch.setattr(Store, "settle_many", lambda self, sid, rows, now: watch(
        self, sid, "", rows, (), now))
    summary = deliver_plan(s.store, s.renderer, transport, s.prepared, lambda: NOW, False)
    assert summary.sent == 28 and sorted(settled) == sorted(e.contact.email for e in s.emails)
    # One flush per settling commit, not one per message.
    assert 1 <= transport.flushes < 28


class _SuppressMidRun(OutboxTransport):
    """Sends one at a time; while sending the first message an unsubscribe for a later
    contact arrives through another connection (as from `sphere webhook serve`)."""

    workers = 1
    window = 0  # the default window: a few messages in flight

    def __init__(self, folder: Path, db: Path, late: str) -> None:
        super().__init__(folder)
        self.db, self.late, self.sent = db, late, 0

    def send(self, email: RenderedEmail) -> Delivery:
        if self.sent == 0:
            other = Store.open(self.db)
            other.suppress(self.late, "unsubscribed", "one-click", NOW)
            other.close()
        self.sent += 1
        return super().send(email)


def test_a_suppression_that_arrives_during_the_run_is_honoured(project: Path) -> None:
    s = sample(project)
    late = s.emails[20].contact.email
    transport = _SuppressMidRun(project / "var" / "outbox", s.config.db_path, late)
    summary = deliver_plan(s.store, s.renderer, transport, s.prepared, lambda: NOW, False)
    assert [(k.email, k.reason) for k in summary.skipped if k.reason == SUPPRESSED] == \
        [(late, SUPPRESSED)]
    assert summary.sent == 27 and late not in s.store.ledger_status(s.prepared.plan.send_id)


def test_the_suppression_guard_is_one_query_per_batch(project: Path, monkeypatch) -> None:
    s = sample(project)
    calls: list[int] = []
    real = Store.suppressed_among

    def count(self, emails):  # type: ignore[no-untyped-def]
        calls.append(len(emails))
        return real(self, emails)

    monkeypatch.setattr(Store, "suppressed_among", count)
    monkeypatch.setattr(Store, "is_suppressed", lambda *a: pytest.fail("a query per message"))
    summary = deliver_plan(s.store, s.renderer, OutboxTransport(project / "var" / "outbox"),
                           s.prepared, lambda: NOW, False)
    assert summary.sent == 28 and sum(calls) == 28 and len(calls) < 28


def test_smtp_dot_stuffing_still_happens_when_a_line_starts_with_a_dot(project: Path
                                                                       ) -> None:
    # The transport skips the dot-stuffing regex when no line starts with '.'; one that
    # does must still arrive intact (the relay removes the stuffed dot).
    import dataclasses

    from pipeline.config import SmtpSettings
    from pipeline.delivery.smtp import SmtpTransport
    from tests.deliver_support import FAST, Recorder, smtp_server
    s = sample(project)
    plain, dotted = s.emails[0], s.emails[1]
    dotted = dataclasses.replace(dotted, raw=dotted.raw.replace(
        b"\r\n\r\n", b"\r\n\r\n.a line that starts with a dot\r\n..and two\r\n", 1))
    recorder = Recorder()
    server = smtp_server(recorder)
    try:
        transport = SmtpTransport(SmtpSettings(host="127.0.0.1", port=server.port,
                                               security="none", timeout=5, workers=1),
                                  s.config.sender, None, None, FAST)
        assert transport.send(plain).status == "sent"
        assert transport.send(dotted).status == "sent"
        transport.close()
    finally:
        server.stop()
    assert [data for _, _, data in recorder.messages] == [plain.raw, dotted.raw]


def test_workers_exit_when_a_sigkilled_sender_cannot_stop_them(tmp_path: Path) -> None:
    # A SIGKILLed `sphere send` cannot shut its pools down; its workers (and the fork
    # server, which lives while they do) must not wait for work forever.
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO
    script = tmp_path / "sender.py"
    script.write_text(
        "import os, sys, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from pipeline.workers import context, exit_with\n"
        "if __name__ == '__main__':\n"
        "    pool = ProcessPoolExecutor(1, mp_context=context('os'), initializer=exit_with,\n"
        "                               initargs=(os.getpid(),))\n"
        "    print(pool.submit(os.getpid).result(), flush=True)\n"
        "    time.sleep(60)\n", encoding="utf-8")
    sender = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                              text=True, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    assert sender.stdout is not None
    worker = int(sender.stdout.readline())
    os.kill(sender.pid, signal.SIGKILL)
    sender.wait(10)

    def running(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
        except (FileNotFoundError, IndexError):
            return False
        return state != "Z"

    deadline = time.monotonic() + 15
    while running(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    if running(worker):
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the worker outlived its sender")


class _OneByOne(OutboxTransport):
    """The outbox with a narrow window, so a stop request lands mid-run."""

    workers = 1
    window = 0


def test_a_resumed_send_renders_ahead_only_what_is_left(project: Path, monkeypatch) -> None:
    from concurrent.futures import ProcessPoolExecutor
    s = sample(project)
    monkeypatch.setattr(render_pool, "POOL_FROM", 1)
    monkeypatch.setattr(render_pool, "CHUNK", 4)
    outbox = project / "var" / "outbox"
    seen: list[int] = []
    first = deliver_plan(s.store, s.renderer, _OneByOne(outbox), s.prepared, lambda: NOW,
                         False, progress=lambda done, total, e: seen.append(done),
                         should_stop=lambda: len(seen) >= 10)
    assert 0 < first.sent < 28 and first.paused
    submitted: list[str] = []
    real = ProcessPoolExecutor.submit

    def counting(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        if fn is render_pool._render_chunk:
            submitted.extend(p.contact.email for p in args[1])
        return real(self, fn, *args, **kwargs)

    monkeypatch.setattr(ProcessPoolExecutor, "submit", counting)
    second = deliver_plan(s.store, s.renderer, OutboxTransport(outbox), s.prepared,
                          lambda: NOW, False)
    assert second.already_sent == first.sent and first.sent + second.sent == 28
    assert len(list(outbox.glob("*.eml"))) == 28
    sent_first = {e for e, st in s.store.ledger_status(s.prepared.plan.send_id).items()
                  if st == "sent"} - set(submitted)
    assert len(sent_first) == first.sent and len(submitted) == 28 - first.sent


def test_a_lost_render_worker_costs_speed_not_messages(project: Path, monkeypatch) -> None:
    # A worker killed mid-send (the OOM killer, say) breaks the pool: what it had not
    # rendered is rendered by the dispatcher itself, and the send completes.
    import os
    import signal
    s = sample(project)
    monkeypatch.setattr(render_pool, "CHUNK", 2)
    monkeypatch.setattr(render_pool, "AHEAD", 1)
    with render_pool.RenderAhead(s.renderer, 1) as ahead:
        jobs = list(ahead.jobs(s.prepared.plan, lambda: NOW))
        first = jobs[0].render()
        for pid in list(ahead._pool._processes):  # type: ignore[union-attr]
            os.kill(pid, signal.SIGKILL)
        rest = [job.render() for job in jobs[1:]]
    assert [_parts(m) for m in [first, *rest]] == [_parts(e) for e in s.emails]


def test_a_raw_only_transport_gets_the_same_bytes_without_the_parts(project: Path,
                                                                    monkeypatch) -> None:
    s = sample(project)
    monkeypatch.setattr(render_pool, "CHUNK", 5)
    with render_pool.RenderAhead(s.renderer, 1, raw_only=True) as ahead:
        got = [job.render() for job in ahead.jobs(s.prepared.plan, lambda: NOW)]
    assert all(m.html == m.text == "" for m in got)
    strip = re.compile(rb"=_sphere_[0-9a-f]+")  # each render draws a fresh boundary
    assert [strip.sub(b"", m.raw) for m in got] == [strip.sub(b"", e.raw) for e in s.emails]
    assert [(m.message_id, m.pick_keys, m.clusters, m.note_ids) for m in got] == \
        [(e.message_id, e.pick_keys, e.clusters, e.note_ids) for e in s.emails]
    assert OutboxTransport.raw_only and not DryRunTransport.__dict__.get("raw_only")


def test_sendgrid_request_bodies_are_built_in_the_render_workers(project: Path,
                                                                 monkeypatch) -> None:
    # The dispatcher's process builds no SendGrid payload (the workers do, beside the
    # rendering), and SendGrid receives the very bodies the transport would have built.
    from pipeline.config import SendGridSettings
    from pipeline.delivery import sendgrid_api as sendgrid_transport
    from pipeline.delivery.sendgrid_api import SendGridTransport, build_payload
    from tests.sendgrid_standin import KEY, StandIn

    s = sample(project)
    monkeypatch.setattr(render_pool, "POOL_FROM", 1)
    monkeypatch.setattr(render_pool, "CHUNK", 5)
    built: list[str] = []
    real = sendgrid_transport.build_payload
    monkeypatch.setattr(sendgrid_transport, "build_payload",
                        lambda email, *a, **k: built.append(email.contact.email) or
                        real(email, *a, **k))
    standin = StandIn().start()
    try:
        transport = SendGridTransport(SendGridSettings(timeout=5, workers=4),
                                      s.config.sender, KEY, host=standin.url)
        summary = deliver_plan(s.store, s.renderer, transport, s.prepared, lambda: NOW,
                               False)
    finally:
        standin.stop()
    assert summary.sent == 28 and built == []
    strip = re.compile(r"=_sphere_[0-9a-f]+")

    def key(body: dict) -> str:
        return body["personalizations"][0]["to"][0]["email"]
    want = sorted((build_payload(e, s.config.sender, transport.settings) for e in s.emails),
                  key=key)
    got = sorted(standin.accepted, key=key)
    assert [strip.sub("", repr(b)) for b in got] == [strip.sub("", repr(b)) for b in want]
