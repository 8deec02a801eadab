"""International addresses (an IDNA domain, a UTF-8 local part) go out correctly through
every transport, and one contact whose message cannot be built or sent never stops the
others: outbox, SMTP (aiosmtpd, with and without SMTPUTF8) and the SendGrid stand-in."""
from __future__ import annotations

import email
import sqlite3
from email import policy
from pathlib import Path

import pytest

from pipeline.rendering.render import Renderer
from tests.deliver_support import Recorder, smtp_server
from tests.sendgrid_standin import KEY, StandIn

IDN = "grace@exämple.org"  # ASCII before the @: the domain travels as IDNA
UTF8 = "dänïel@example.com"  # non-ASCII before the @: needs SMTPUTF8 (RFC 6531)
SEND = "monthly-sphere@2026-11-01T09:00"


def _international(project: Path) -> None:
    """Two contacts in the middle of the audience get international addresses."""
    path = project / "audiences/sphere.csv"
    text = path.read_text(encoding="utf-8")
    text = text.replace("grace.lindqvist@example.org", IDN)
    text = text.replace("daniel.achterberg@example.com", UTF8)
    path.write_text(text, encoding="utf-8")


def _smtp(project: Path, port: int) -> None:
    path = project / "campaigns.yaml"
    path.write_text(path.read_text().replace(
        "  host: localhost\n  port: 587\n  security: starttls",
        f"  host: 127.0.0.1\n  port: {port}\n  security: none"))


def _ledger(project: Path) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(project / "var/sphere.db") as db:
        return {e: (s, err) for e, s, err in db.execute(
            "SELECT email, status, error FROM deliveries WHERE send_id=?", (SEND,))}


def test_check_accepts_and_the_outbox_writes_international_addresses(project: Path,
                                                                     cli) -> None:
    _international(project)
    assert cli("check", project=project).exit_code == 0
    result = cli("send", "monthly-sphere", project=project)
    assert result.exit_code == 0, result.output
    assert "Sent 28," in result.stdout
    found = {}
    for path in (project / "var/outbox").glob("*.eml"):
        # RFC 6532 headers are UTF-8: read them as text (the bytes parser assumes ASCII).
        msg = email.message_from_string(path.read_bytes().decode("utf-8"),
                                        policy=policy.default)
        found[msg["To"].addresses[0].addr_spec] = msg
    assert "grace@xn--exmple-cua.org" in found  # IDNA domain
    assert "dänïel@example.com" in found  # RFC 6532: the address as UTF-8
    assert found["grace@xn--exmple-cua.org"]["To"].addresses[0].display_name == \
        "Grace Lindqvist"


def test_smtp_with_smtputf8_delivers_both(project: Path, cli) -> None:
    _international(project)
    recorder = Recorder()
    server = smtp_server(recorder, smtputf8=True)
    try:
        _smtp(project, server.port)
        result = cli("send", "monthly-sphere", "--transport", "smtp", project=project)
    finally:
        server.stop()
    assert result.exit_code == 0, result.output
    assert "Sent 28," in result.stdout
    rcpts = recorder.by_rcpt()
    assert rcpts["grace@xn--exmple-cua.org"] == 1 and rcpts[UTF8] == 1
    raw = next(m for _, to, m in recorder.messages if to == [UTF8])
    assert f"<{UTF8}>".encode() in raw.split(b"\r\n\r\n")[0]


def test_smtp_without_smtputf8_fails_that_contact_only(project: Path, cli) -> None:
    _international(project)
    recorder = Recorder()
    server = smtp_server(recorder)
    try:
        _smtp(project, server.port)
        result = cli("send", "monthly-sphere", "--transport", "smtp", project=project)
        again = cli("send", "monthly-sphere", "--transport", "smtp", project=project)
    finally:
        server.stop()
    assert result.exit_code == 1  # a failure is reported, after everyone else was sent
    assert "Sent 27, 1 failed" in result.stdout, result.output
    assert f"failed: {UTF8}: 127.0.0.1 does not offer SMTPUTF8" in result.stderr
    assert recorder.by_rcpt()["grace@xn--exmple-cua.org"] == 1
    assert UTF8 not in recorder.by_rcpt() and len(recorder.messages) == 27
    status, error = _ledger(project)[UTF8]
    assert status == "failed" and "SMTPUTF8" in error
    assert "Sent 0, 27 already sent" in again.stdout and "1 failed" in again.stdout
    assert "outcome unknown" not in result.stdout + again.stdout


def test_check_warns_with_file_and_line_when_the_transport_cannot_deliver(
        project: Path, cli) -> None:
    _international(project)
    path = project / "campaigns.yaml"
    path.write_text(path.read_text().replace("transport: outbox", "transport: sendgrid"))
    result = cli("check", project=project)
    assert result.exit_code == 0, result.output
    line = next(i for i, row in enumerate((project / "audiences/sphere.csv").read_text(
        encoding="utf-8").splitlines(), 1) if row.startswith(UTF8))
    assert f"warning: audiences/sphere.csv:{line}: email: '{UTF8}' has non-ASCII " \
           "characters before the @, which SendGrid does not deliver" in result.stdout
    assert IDN not in result.stdout  # an IDNA domain travels everywhere


def test_sendgrid_gets_the_idna_domain_and_refuses_no_one_else(project: Path, cli,
                                                              monkeypatch) -> None:
    _international(project)
    standin = StandIn().start()
    try:
        monkeypatch.setenv("SENDGRID_API_KEY", KEY)
        monkeypatch.setenv("SENDGRID_API_HOST", standin.url)
        result = cli("send", "monthly-sphere", "--transport", "sendgrid", project=project)
    finally:
        standin.stop()
    assert "Sent 27, 1 failed" in result.stdout, result.output
    assert f"failed: {UTF8}: SendGrid does not deliver to an address with non-ASCII" \
        in result.stderr
    assert standin.delivered.get("grace@xn--exmple-cua.org") == 1
    assert not standin.rejected and sum(standin.delivered.values()) == 27


@pytest.mark.parametrize("transport", ["outbox", "smtp", "sendgrid"])
def test_a_message_that_cannot_be_built_fails_its_contact_and_no_one_else(
        project: Path, cli, monkeypatch, transport: str) -> None:
    broken = "marcus.bell@example.com"  # the fourth row: in the middle of the audience
    mime = Renderer.mime

    def failing(self, campaign, planned, *args):
        if planned.contact.email == broken:
            "Marcus Bell <märcus@example.com>".encode("ascii")  # the old header writer
        return mime(self, campaign, planned, *args)

    monkeypatch.setattr(Renderer, "mime", failing)
    recorder, server, standin = Recorder(), None, None
    if transport == "smtp":
        server = smtp_server(recorder)
        _smtp(project, server.port)
    if transport == "sendgrid":
        standin = StandIn().start()
        monkeypatch.setenv("SENDGRID_API_KEY", KEY)
        monkeypatch.setenv("SENDGRID_API_HOST", standin.url)
    try:
        result = cli("send", "monthly-sphere", "--transport", transport, project=project)
    finally:
        if server:
            server.stop()
        if standin:
            standin.stop()
    assert result.exit_code == 1
    assert "Sent 27, 1 failed" in result.stdout, result.output
    assert f"failed: {broken}: not sent: the message could not be built: " \
           "UnicodeEncodeError" in result.stderr
    ledger = _ledger(project)
    assert ledger[broken][0] == "failed"
    assert sorted(s for s, _ in ledger.values()) == ["failed"] + ["sent"] * 27
    if transport == "outbox":
        assert len(list((project / "var/outbox").glob("*.eml"))) == 27
    if transport == "smtp":
        assert len(recorder.messages) == 27 and broken not in recorder.by_rcpt()
    if transport == "sendgrid":
        assert standin and sum(standin.delivered.values()) == 27


def test_addresses_that_differ_only_in_unsafe_characters_get_their_own_outbox_files(
        project: Path, cli) -> None:
    """`dana+news@` and `dana_news@`, or two accented names, used to share one file
    name: the second message overwrote the first, one person's mail was lost, and a
    crash recovery could take the file for the other person's delivery."""
    path = project / "audiences/sphere.csv"
    text = path.read_text(encoding="utf-8")
    for old, new in (("grace.lindqvist@example.org", "dana+news@example.org"),
                     ("daniel.achterberg@example.com", "dana_news@example.org"),
                     ("ben.whitaker@example.net", "üser@exämple.com"),
                     ("helen.varga@example.com", "øser@exämple.com")):
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    result = cli("send", "monthly-sphere", project=project)
    assert result.exit_code == 0, result.output
    assert "Sent 28," in result.stdout
    files = list((project / "var/outbox").glob("*.eml"))
    assert len(files) == 28
    to = {email.message_from_string(p.read_bytes().decode("utf-8"), policy=policy.default)
          ["To"].addresses[0].addr_spec for p in files}
    assert {"dana+news@example.org", "dana_news@example.org", "üser@xn--exmple-cua.com",
            "øser@xn--exmple-cua.com"} <= to
