"""The SMTP transport against a real aiosmtpd server on loopback: STARTTLS with a
certificate made here, implicit TLS, AUTH, refusals, and the exact bytes on the wire."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import SmtpSettings
from pipeline.delivery.dispatch import BOUNCED, SUPPRESSED
from pipeline.delivery.smtp import SmtpTransport, credentials_from_env
from pipeline.errors import TransportError
from pipeline.models import RunSummary
from pipeline.runner import MAX_CONSECUTIVE_FAILURES, Prepared, deliver_plan, prepare
from tests.conftest import NOW
from tests.deliver_support import (
    FAST,
    Recorder,
    Sample,
    client_tls,
    sample,
    self_signed,
    server_tls,
    smtp_server,
)

AUTH = ("dana", "s3cret-pw")


def _unbound(raw: bytes) -> bytes:
    return re.sub(rb"=_sphere_[0-9a-f]+", b"BOUNDARY", raw)


@pytest.fixture
def certs(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path)


def _settings(port: int, security: str) -> SmtpSettings:
    return SmtpSettings(host="127.0.0.1", port=port, security=security, timeout=5, workers=3)


def test_starttls_auth_sends_the_rendered_bytes_exactly(project: Path, certs) -> None:
    s = sample(project)
    recorder = Recorder()
    server = smtp_server(recorder, server_tls(*certs), auth=AUTH)
    try:
        transport = SmtpTransport(_settings(server.port, "starttls"), s.config.sender, AUTH,
                                  client_tls(certs[0]), FAST)
        summary = deliver_plan(s.store, s.renderer, transport, s.prepared, lambda: NOW,
                               dry_run=False)
        transport.close()
    finally:
        server.stop()
    assert summary.sent == len(s.emails) == 28 and not summary.failed
    assert recorder.by_rcpt() == {e.contact.email.lower(): 1 for e in s.emails}
    wire = {rcpts[0]: (sender, data) for sender, rcpts, data in recorder.messages}
    for email in s.emails:
        sender, data = wire[email.contact.email]
        assert sender == s.config.sender.email
        # The very bytes rendered (each render draws a fresh MIME boundary).
        assert _unbound(data) == _unbound(email.raw)
    assert set(s.store.ledger_status(s.prepared.plan.send_id).values()) == {"sent"}


def test_implicit_tls(project: Path, certs) -> None:
    s = sample(project)
    recorder = Recorder()
    server = smtp_server(recorder, server_tls(*certs), implicit=True)
    try:
        transport = SmtpTransport(_settings(server.port, "ssl"), s.config.sender, None,
                                  client_tls(certs[0]), FAST)
        result = transport.send(s.emails[0])
        transport.close()
    finally:
        server.stop()
    assert result.status == "sent", result.error
    assert recorder.messages[0][2] == s.emails[0].raw  # sent as rendered, byte for byte


def test_untrusted_certificate_stops_the_run_with_a_fix(project: Path, certs) -> None:
    s = sample(project)
    server = smtp_server(Recorder(), server_tls(*certs))
    try:
        transport = SmtpTransport(_settings(server.port, "starttls"), s.config.sender,
                                  None, None, FAST)  # the system CAs do not know our cert
        summary = deliver_plan(s.store, s.renderer, transport, s.prepared, lambda: NOW,
                               dry_run=False)
        transport.close()
    finally:
        server.stop()
    assert summary.sent == 0 and "not trusted" in summary.paused
    assert "SSL_CERT_FILE" in summary.paused


def test_wrong_password_stops_the_run_without_printing_it(project: Path, certs) -> None:
    s = sample(project)
    recorder = Recorder()
    server = smtp_server(recorder, server_tls(*certs), auth=AUTH)
    try:
        transport = SmtpTransport(_settings(server.port, "starttls"), s.config.sender,
                                  ("dana", "wrong-pw-123"), client_tls(certs[0]), FAST)
        summary = deliver_plan(s.store, s.renderer, transport, s.prepared, lambda: NOW,
                               dry_run=False)
        transport.close()
    finally:
        server.stop()
    assert summary.sent == 0 and recorder.messages == []
    assert "refused the login" in summary.paused and "SMTP_PASSWORD" in summary.paused
    assert "wrong-pw-123" not in summary.paused + "".join(summary.failures)
    assert s.store.suppressed() == frozenset()  # a refused login bounces nobody
    # Nothing reached the relay, so nothing is left unknown: the next run sends all.
    assert set(s.store.ledger_status(s.prepared.plan.send_id).values()) == {"failed"}


def test_permanent_refusal_fails_one_and_transient_is_retried(project: Path) -> None:
    s = sample(project)
    bad, flaky = s.emails[3].contact.email, s.emails[5].contact.email
    recorder = Recorder(refuse={bad: "550 5.1.1 No such user"},
                        refuse_once={flaky: "451 4.3.0 Try again later"})
    server = smtp_server(recorder)
    try:
        transport = SmtpTransport(_settings(server.port, "none"), s.config.sender, None,
                                  None, FAST)
        summary = deliver_plan(s.store, s.renderer, transport, s.prepared, lambda: NOW,
                               dry_run=False)
        transport.close()
    finally:
        server.stop()
    assert summary.sent == 27 and summary.failed == 1
    assert summary.failures == (f"{bad}: {bad} refused: 550 5.1.1 No such user; {BOUNCED}",)
    assert recorder.by_rcpt().get(flaky) == 1 and bad not in recorder.by_rcpt()
    assert s.store.suppressed() == {bad.lower()}  # the 451 was only a delay


@dataclass
class Tally(Recorder):
    """A Recorder that also counts every RCPT TO it is asked, taken or refused, and can
    refuse a message after its DATA, as relays that check mailboxes late do."""

    asked: list[str] = field(default_factory=list)
    refuse_data: dict[str, str] = field(default_factory=dict)  # address -> reply

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        self.asked.append(address)
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for rcpt in envelope.rcpt_tos:
            if rcpt in self.refuse_data:
                return self.refuse_data[rcpt]
        return await super().handle_DATA(server, session, envelope)


def _deliver(s: Sample, recorder: Recorder, prepared: Prepared | None = None) -> RunSummary:
    """Deliver a plan (the sample's by default) through a fresh relay around `recorder`."""
    server = smtp_server(recorder)
    try:
        transport = SmtpTransport(_settings(server.port, "none"), s.config.sender, None,
                                  None, FAST)
        summary = deliver_plan(s.store, s.renderer, transport, prepared or s.prepared,
                               lambda: NOW, dry_run=False)
        transport.close()
    finally:
        server.stop()
    return summary


def test_a_hard_bounce_is_suppressed_and_never_sent_to_again(project: Path) -> None:
    s = sample(project)
    to = [e.contact.email for e in s.emails]
    # Refusals of the address itself, in the forms relays write them...
    bounces = {to[1]: "550 5.1.1 <x>: Recipient address rejected: User unknown",
               to[4]: "553 sorry, no mailbox here by that name. (#5.1.1)",  # qmail
               to[7]: "550 No such user here",  # no enhanced status code
               to[10]: "550 5.2.1 Mailbox disabled"}
    # ...and permanent refusals that are about the relay, our login or a full mailbox:
    # suppressing those would drop good people (a misconfigured relay, the whole list).
    not_bounces = {to[13]: "554 5.7.1 <x>: Relay access denied",
                   to[16]: "530 5.7.0 Authentication required",
                   to[19]: "550 Relaying denied",
                   to[22]: "552 5.2.2 Mailbox full",
                   to[25]: "550 5.1.8 Sender address rejected: domain not found"}
    first = Tally(refuse={**bounces, **not_bounces},
                  refuse_once={to[2]: "451 4.3.0 Try again later"})
    summary = _deliver(s, first)
    assert summary.failed == 9 and summary.sent == 19 and not summary.paused
    assert sorted(f for f in summary.failures if f.endswith(BOUNCED)) == \
        sorted(f"{a}: {a} refused: {r}; {BOUNCED}" for a, r in bounces.items())
    assert s.store.suppressed() == {a.lower() for a in bounces}
    assert s.store.suppression_counts() == {"bounced": 4}
    assert first.asked.count(to[2]) == 2  # the 451 is retried and never suppressed

    # Rerunning the same send retries the failed ones, but never asks about a bounce.
    second = Tally()
    again = _deliver(s, second)
    assert not set(second.asked) & set(bounces)
    assert sorted(second.asked) == sorted(not_bounces)
    assert again.sent == 5 and again.failed == 0 and again.already_sent == 19
    assert sorted(k.email for k in again.skipped if k.reason == SUPPRESSED) == sorted(bounces)
    ledger = s.store.ledger_status(s.prepared.plan.send_id)
    assert [ledger[a] for a in bounces] == ["failed"] * 4

    # A new plan leaves them out from the start.
    plan = prepare(s.config, s.store, s.config.campaign("monthly-sphere"), NOW)
    assert {k.email: k.reason for k in plan.plan.skipped if k.email in bounces} == \
        dict.fromkeys(bounces, "suppressed (unsubscribed, bounced or complained)")
    third = Tally()
    _deliver(s, third, plan)
    assert third.asked == []


def test_a_mailbox_refused_after_data_is_a_bounce_but_content_refusal_is_not(
        project: Path) -> None:
    s = sample(project)
    gone, spam, bare = (s.emails[i].contact.email for i in (3, 6, 9))
    recorder = Tally(refuse_data={gone: "550 5.1.1 Mailbox does not exist",
                                  spam: "554 5.7.1 Message rejected as spam",
                                  bare: "550 Message content rejected"})
    summary = _deliver(s, recorder)
    assert summary.sent == 25 and summary.failed == 3
    assert f"{gone}: SMTP 550 5.1.1 Mailbox does not exist; {BOUNCED}" in summary.failures
    assert s.store.suppressed() == {gone.lower()}


def test_unreachable_relay_is_retried_then_failed(project: Path) -> None:
    s = sample(project)
    from tests.deliver_support import free_port
    transport = SmtpTransport(_settings(free_port(), "none"), s.config.sender, None, None,
                              FAST)
    result = transport.send(s.emails[0])
    assert result.status == "failed" and not result.bounced
    assert "cannot reach 127.0.0.1" in result.error and "after 4 attempt(s)" in result.error


def test_credentials_only_from_env_and_never_in_clear(monkeypatch: pytest.MonkeyPatch,
                                                     project: Path) -> None:
    monkeypatch.setenv("SMTP_USERNAME", "dana")
    monkeypatch.delenv("SMTP_PASSWORD", raising=False)
    with pytest.raises(TransportError, match="SMTP_PASSWORD is not set"):
        credentials_from_env()
    s = sample(project)
    remote = dataclasses.replace(_settings(587, "none"), host="smtp.example.com")
    with pytest.raises(TransportError, match="in clear"):
        SmtpTransport(remote, s.config.sender, AUTH)


def test_a_refused_login_stops_every_worker_at_once(project: Path, certs) -> None:
    # Issue 13.8: no worker opens another connection after the relay refused the login;
    # the logins already under way (one per other worker at most) settle.
    s = sample(project)
    recorder, logins = Recorder(), []
    server = smtp_server(recorder, server_tls(*certs), auth=AUTH, logins=logins)
    workers = 3
    try:
        transport = SmtpTransport(_settings(server.port, "starttls"), s.config.sender,
                                  ("dana", "wrong-pw-123"), client_tls(certs[0]), FAST)
        summary = deliver_plan(s.store, s.renderer, transport, s.prepared, lambda: NOW,
                               dry_run=False)
        transport.close()
    finally:
        server.stop()
    assert "refused the login" in summary.paused
    assert 1 <= len(set(logins)) <= workers, logins  # connections that tried to log in
    assert summary.failed <= workers and recorder.messages == []


def test_a_relay_refusing_everything_pauses_after_n_failed_tries(project: Path) -> None:
    # Every RCPT answered 451 (try again later): each refused try counts, retries too,
    # across workers; none starts after the N-th, so at most N + workers - 1 are asked.
    s = sample(project)
    recorder = Tally(refuse={e.contact.email: "451 4.3.0 Try again later"
                             for e in s.emails})
    summary = _deliver(s, recorder)
    n, workers = MAX_CONSECUTIVE_FAILURES, 3
    assert summary.paused.startswith("paused after") and "451" in summary.paused
    assert n <= len(recorder.asked) <= n + workers - 1, len(recorder.asked)
    assert summary.sent == 0 and not recorder.messages


def test_each_connection_has_its_next_message_begun_while_the_ledger_commits(
        project: Path) -> None:
    # Messages begun and not yet settled, counted in the ledger itself each time a
    # transaction starts: twice the connections, so a connection that finishes finds
    # its next message already committed instead of idling for the ledger's fsync
    # (with workers + 2 the relay's connections waited on every commit: #18); never
    # more, since after a crash every one of them is 'unknown'.
    import sqlite3
    s = sample(project)
    server = smtp_server(Recorder())
    seen: list[int] = []
    try:
        transport = SmtpTransport(_settings(server.port, "none"), s.config.sender, None,
                                  None, FAST)
        real = transport._transaction

        def counting(*args: Any, **kwargs: Any) -> None:
            with sqlite3.connect(s.store.path) as db:
                seen.append(db.execute("SELECT count(*) FROM deliveries "
                                       "WHERE status='pending'").fetchone()[0])
            real(*args, **kwargs)
        transport._transaction = counting  # type: ignore[method-assign]
        summary = deliver_plan(s.store, s.renderer, transport, s.prepared, lambda: NOW,
                               dry_run=False)
        transport.close()
    finally:
        server.stop()
    assert summary.sent == 28 and len(seen) == 28
    assert max(seen) == 2 * transport.workers  # the first turn begins a whole window
