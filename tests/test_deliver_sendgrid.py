"""The SendGrid transport against the loopback v3 stand-in: the payload SendGrid's rules
accept, retries on 429/5xx, no retry on other 4xx, timeouts left unknown, the key kept
secret."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from pathlib import Path

import pytest

from pipeline.config import SendGridSettings
from pipeline.delivery.sendgrid_api import SendGridTransport, build_payload
from pipeline.runner import deliver_plan
from tests.conftest import NOW, REPO
from tests.deliver_support import FAST, free_port, sample
from tests.sendgrid_standin import KEY, TOP_KEYS, Fault, Invalid, StandIn, validate_mail

SPEC = REPO.parent / "shared" / "reference" / "sendgrid" / "tsg_mail_v3.json"


@pytest.fixture
def standin():
    server = StandIn().start()
    yield server
    server.stop()


def _transport(standin: StandIn, sender, **settings) -> SendGridTransport:
    chosen = SendGridSettings(api_host="https://api.sendgrid.invalid", timeout=2, workers=4,
                              **settings)
    return SendGridTransport(chosen, sender, KEY, host=standin.url, retry=FAST)


def test_run_delivers_everyone_once_with_our_ids_headers_and_categories(
        project: Path, standin: StandIn) -> None:
    s = sample(project)
    transport = _transport(standin, s.config.sender, asm_group_id=4242)
    summary = deliver_plan(s.store, s.renderer, transport, s.prepared, lambda: NOW, False)
    transport.close()
    assert summary.sent == 28 and not summary.failed and not standin.rejected
    assert standin.delivered == {e.contact.email.lower(): 1 for e in s.emails}
    send_id = s.prepared.plan.send_id
    for body in standin.accepted:
        p = body["personalizations"][0]
        to = p["to"][0]["email"]
        assert p["custom_args"] == {"sphere_send_id": send_id, "sphere_email": to}
        assert sorted(body["categories"]) == ["monthly-sphere", "sphere"]
        assert body["asm"] == {"group_id": 4242}
        assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
        assert body["from"] == {"email": s.config.sender.email, "name": "Dana Whitfield"}
        assert body["reply_to"]["email"] == s.config.sender.reply_to
        headers = body["headers"]
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert headers["List-Unsubscribe"].startswith("<https://")
        assert headers["Message-ID"] == s.renderer.message_id(send_id, to)
        assert "mail_settings" not in body and "send_at" not in body
    ledger = s.store.ledger_status(send_id)
    assert set(ledger.values()) == {"sent"}
    # Run again: the ledger says everyone has it; SendGrid sees nothing new.
    again = deliver_plan(s.store, s.renderer, _transport(standin, s.config.sender),
                         s.prepared, lambda: NOW, False)
    assert again.sent == 0 and again.already_sent == 28 and len(standin.accepted) == 28


def test_sandbox_mode_and_scheduled_send(project: Path, standin: StandIn) -> None:
    s = sample(project)
    email = s.emails[0]
    now = dt.datetime.now(dt.UTC)
    transport = SendGridTransport(
        SendGridSettings(sandbox_mode=True, timeout=2, workers=1), s.config.sender, KEY,
        host=standin.url, send_at=lambda e: now + dt.timedelta(hours=10), retry=FAST)
    result = transport.send(email)
    assert result.status == "sent"  # sandbox mode answers 200: valid, delivered nowhere
    assert not standin.accepted and standin.requests == 1
    payload = build_payload(email, s.config.sender, SendGridSettings(sandbox_mode=True),
                            send_at=int(now.timestamp()))
    assert payload["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert payload["send_at"] == int(now.timestamp())
    far = SendGridTransport(SendGridSettings(timeout=2, workers=1), s.config.sender, KEY,
                            host=standin.url, send_at=lambda e: now + dt.timedelta(days=4))
    refused = far.send(email)
    assert refused.status == "failed" and "more than 72 hours" in refused.error


def test_429_waits_for_the_rate_limit_reset_then_sends(project: Path,
                                                      standin: StandIn) -> None:
    s = sample(project)
    reset = int(time.time()) + 2
    standin.fail(Fault(429, {"X-RateLimit-Reset": str(reset), "X-RateLimit-Remaining": "0"}))
    transport = _transport(standin, s.config.sender)
    result = transport.send(s.emails[0])
    assert result.status == "sent" and result.provider_id
    assert time.time() >= reset - 0.05  # it waited for the window, not a blind backoff
    assert standin.requests == 2


def test_5xx_is_retried_with_backoff_until_it_gives_up(project: Path,
                                                       standin: StandIn) -> None:
    s = sample(project)
    standin.fail(Fault(500), Fault(503))
    transport = _transport(standin, s.config.sender)
    assert transport.send(s.emails[0]).status == "sent" and standin.requests == 3
    standin.fail(*[Fault(502)] * FAST.attempts)
    result = transport.send(s.emails[1])
    assert result.status == "failed"
    assert result.error == "SendGrid 502: injected failure (gave up after 4 attempt(s))"


def test_other_4xx_is_not_retried_and_keeps_sendgrids_message(project: Path,
                                                              standin: StandIn) -> None:
    s = sample(project)
    bad = s.emails[2].contact.email
    standin.refuse[bad] = (400, "The email address is invalid.")
    transport = _transport(standin, s.config.sender)
    summary = deliver_plan(s.store, s.renderer, transport, s.prepared, lambda: NOW, False)
    assert summary.sent == 27 and summary.failed == 1
    assert summary.failures == ((f"{bad}: SendGrid 400: The email address is invalid. "
                                "(personalizations.0.to.0.email)"),)
    assert standin.rejected == [(400, standin.rejected[0][1])]  # asked once, not again
    assert s.store.ledger_status(s.prepared.plan.send_id)[bad] == "failed"


def test_timeout_leaves_the_outcome_unknown_instead_of_sending_twice(
        project: Path, standin: StandIn) -> None:
    s = sample(project)
    standin.fail(Fault(0, hang=1.5, accept=True))  # SendGrid took it; the answer is lost
    transport = SendGridTransport(SendGridSettings(timeout=1, workers=4), s.config.sender,
                                  KEY, host=standin.url, retry=FAST)
    summary = deliver_plan(s.store, s.renderer, transport, s.prepared, lambda: NOW, False)
    transport.close()
    assert summary.unknown == 1 and summary.sent == 27
    assert sum(standin.delivered.values()) == 28 and max(standin.delivered.values()) == 1
    pending = s.store.pending_deliveries()
    assert len(pending) == 1 and "no answer from" in summary.failures[0]
    # The next run does not send it again; it stays listed for `sphere resolve`.
    again = deliver_plan(s.store, s.renderer, _transport(standin, s.config.sender),
                         s.prepared, lambda: NOW, False)
    assert again.sent == 0 and again.unknown == 1 and sum(standin.delivered.values()) == 28


def test_bad_key_stops_the_run_and_is_never_shown(project: Path, standin: StandIn,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    s = sample(project)
    secret = "SG.wrong-key-do-not-print"
    transport = SendGridTransport(SendGridSettings(timeout=2, workers=4), s.config.sender,
                                  secret, host=standin.url, retry=FAST)
    summary = deliver_plan(s.store, s.renderer, transport, s.prepared, lambda: NOW, False)
    assert summary.sent == 0 and summary.paused.startswith("stopped: SendGrid 401")
    assert "SENDGRID_API_KEY" in summary.paused
    assert standin.requests <= 8  # stopped at once, not after 28 refusals
    seen = summary.paused + "".join(summary.failures) + caplog.text
    assert secret not in seen and "wrong-key" not in seen


def test_unreachable_api_is_retried_then_failed(project: Path) -> None:
    s = sample(project)
    transport = SendGridTransport(SendGridSettings(timeout=1, workers=1), s.config.sender,
                                  KEY, host=f"http://127.0.0.1:{free_port()}", retry=FAST)
    result = transport.send(s.emails[0])
    assert result.status == "failed" and "cannot reach" in result.error
    assert "gave up after 4 attempt(s)" in result.error


def test_cli_names_the_missing_key_and_the_fix(project: Path, cli,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    result = cli("send", "monthly-sphere", "--transport", "sendgrid", project=project)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == \
        "Error: SENDGRID_API_KEY is not set (export it, or use --transport outbox)"


def test_cli_sends_through_sendgrid_with_host_from_env(project: Path, cli, standin,
                                                       monkeypatch) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    monkeypatch.setenv("SENDGRID_API_HOST", standin.url)
    result = cli("send", "monthly-sphere", "--transport", "sendgrid", project=project)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1].startswith("Done: Sent 28,")
    assert len(standin.delivered) == 28


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b["content"].reverse(), "text/plain content must be first"),
    (lambda b: b["headers"].update({"Reply-To": "x@y.z"}), "header Reply-To is reserved"),
    (lambda b: b.update(categories=[f"c{i}" for i in range(11)]), "more than 10 categories"),
    (lambda b: b["personalizations"][0]["custom_args"].update(n=1), "must be strings"),
    (lambda b: b["personalizations"][0].pop("to"), "to array is required"),
    (lambda b: b["from"].pop("email"), "email parameter is required"),
    (lambda b: b.update(subjekt="typo"), "Unknown field"),
])
def test_standin_refuses_what_sendgrid_refuses(project: Path, mutate, message) -> None:
    s = sample(project)
    body = build_payload(s.emails[0], s.config.sender, SendGridSettings())
    validate_mail(body)  # as built: accepted
    mutate(body)
    with pytest.raises(Invalid, match=message):
        validate_mail(body)


def _check(schema: dict, value, spec: dict, where: str = "$") -> list[str]:
    """A small JSON-schema walker: type, required, properties, items, bounds, $ref."""
    if "$ref" in schema:
        node = spec
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        return _check(node, value, spec, where)
    types = {"object": dict, "array": list, "string": str, "integer": int,
             "boolean": bool, "number": (int, float)}
    expected = schema.get("type")
    if expected and not isinstance(value, types[expected]):
        return [f"{where}: expected {expected}"]
    problems = []
    if isinstance(value, dict):
        problems += [f"{where}.{k}: required" for k in schema.get("required", [])
                     if k not in value]
        for k, v in value.items():
            if k in schema.get("properties", {}):
                problems += _check(schema["properties"][k], v, spec, f"{where}.{k}")
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", 1 << 30):
            problems.append(f"{where}: too many items")
        for i, item in enumerate(value):
            problems += _check(schema.get("items", {}), item, spec, f"{where}[{i}]")
    if isinstance(value, str) and (len(value) < schema.get("minLength", 0)
                                   or len(value) > schema.get("maxLength", 1 << 30)):
        problems.append(f"{where}: bad length")
    return problems


@pytest.mark.skipif(not SPEC.exists(), reason="SendGrid's OpenAPI spec is not checked out "
                    "beside the repository (../shared/reference)")
def test_payload_and_standin_agree_with_sendgrids_openapi_spec(project: Path) -> None:
    spec = json.loads(SPEC.read_text(encoding="utf-8"))
    schema = spec["components"]["requestBodies"]["PostMailSend"]["content"][
        "application/json"]["schema"]
    assert set(schema["properties"]) == TOP_KEYS
    s = sample(project)
    settings = dataclasses.replace(SendGridSettings(), asm_group_id=7, sandbox_mode=True)
    body = build_payload(s.emails[0], s.config.sender, settings, send_at=1_900_000_000)
    assert _check(schema, body, spec) == []
    assert _check(schema, {"from": {}}, spec)  # the walker itself can fail
