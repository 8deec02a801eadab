"""The SMTP transport against a real aiosmtpd server on loopback: STARTTLS with a
certificate made here, implicit TLS, AUTH, refusals, and the exact bytes on the wire."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from pipeline.config import SmtpSettings
from pipeline.errors import TransportError
from pipeline.runner import deliver_plan
from pipeline.smtp_transport import SmtpTransport, credentials_from_env
from tests.conftest import NOW
from tests.deliver_support import (
    FAST, Recorder, client_tls, sample, self_signed, server_tls, smtp_server,
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
    assert summary.failures == (f"{bad}: {bad} refused: 550 5.1.1 No such user",)
    assert recorder.by_rcpt().get(flaky) == 1 and bad not in recorder.by_rcpt()


def test_unreachable_relay_is_retried_then_failed(project: Path) -> None:
    s = sample(project)
    from tests.deliver_support import free_port
    transport = SmtpTransport(_settings(free_port(), "none"), s.config.sender, None, None,
                              FAST)
    result = transport.send(s.emails[0])
    assert result.status == "failed"
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
