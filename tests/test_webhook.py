"""`sphere webhook serve` on loopback: SendGrid's signed Event Webhook (verified with a key
pair made here), the one-click unsubscribe page, and `sphere suppressions sync`."""
from __future__ import annotations

import base64
import datetime as dt
import json
import time
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pipeline.config import load_config
from pipeline.delivery.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    load_public_key,
    unsubscribe_paths,
    webhook_app,
)
from pipeline.rendering.links import make_token
from pipeline.state.store import Store
from pipeline.web.server import Server, bind
from tests.conftest import NOW
from tests.sendgrid_standin import KEY, StandIn

SEND_ID = "monthly-sphere@2026-11-01T09:00"


@pytest.fixture
def keys() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A P-256 key pair; the public half as SendGrid shows it (base64 DER)."""
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, base64.b64encode(der).decode()


def serve(project: Path, public_key: str, deadline: float | None = None) -> Server:
    """The service of `sphere webhook serve` on a free loopback port, in a thread."""
    config = load_config(project)
    Store.open(config.db_path).close()
    app = webhook_app(lambda: Store.open(config.db_path), load_public_key(public_key),
                      unsubscribe_paths(config.sender.unsubscribe_url), lambda: NOW,
                      config.sender.name)
    sock = bind("127.0.0.1", 0)
    return (Server(app, sock, deadline) if deadline else Server(app, sock)).start()


@pytest.fixture
def hook(project: Path, keys):
    """The service on a free loopback port, in a thread; yields (base URL, db path)."""
    server = serve(project, keys[1])
    yield server.url, load_config(project).db_path
    server.stop()


def _signed(private: ec.EllipticCurvePrivateKey, body: bytes,
            when: dt.datetime = NOW) -> dict[str, str]:
    stamp = str(int(when.timestamp()))
    signature = private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {SIGNATURE_HEADER: base64.b64encode(signature).decode(), TIMESTAMP_HEADER: stamp,
            "Content-Type": "application/json"}


def _event(kind: str, email: str, n: int, **extra) -> dict:
    return {"email": email, "timestamp": int(NOW.timestamp()) - 60, "event": kind,
            "sg_event_id": f"ev-{n}", "sg_message_id": f"msg-{n}.filter",
            "sphere_send_id": SEND_ID, "sphere_email": email, **extra}


EVENTS = [
    _event("processed", "ana@example.com", 1),
    _event("delivered", "ana@example.com", 2),
    _event("click", "ana@example.com", 3, url="https://example.org/story"),
    _event("bounce", "gone@example.com", 4, type="bounce", reason="550 no such user"),
    _event("bounce", "busy@example.com", 5, type="blocked", reason="421 try later"),
    _event("spamreport", "angry@example.com", 6),
    _event("unsubscribe", "bye@example.com", 7),
    _event("group_unsubscribe", "Group@Example.com", 8, asm_group_id=42),
]


def test_signed_events_are_stored_once_and_suppress(hook, keys) -> None:
    url, db = hook
    body = json.dumps(EVENTS).encode()
    first = httpx.post(f"{url}/sendgrid/events", content=body, headers=_signed(keys[0], body))
    assert first.status_code == 200 and first.text.strip() == "ok: 8 new event(s)"
    again = httpx.post(f"{url}/sendgrid/events", content=body, headers=_signed(keys[0], body))
    assert again.text.strip() == "ok: 0 new event(s)"  # SendGrid retries; we dedupe
    store = Store.open(db)
    events = store.events()
    assert len(events) == 8 and {e.send_id for e in events} == {SEND_ID}
    click = next(e for e in events if e.event == "click")
    assert (click.url, click.sg_message_id, click.email) == \
        ("https://example.org/story", "msg-3.filter", "ana@example.com")
    assert store.suppressed() == {"gone@example.com", "angry@example.com", "bye@example.com",
                                  "group@example.com"}  # a 'blocked' bounce is temporary
    assert store.suppression_counts() == {"bounced": 1, "complained": 1, "unsubscribed": 2}
    assert store.provider_took(SEND_ID, "ana@example.com")
    store.close()


@pytest.mark.parametrize("tamper", ["body", "signature", "stale", "future", "missing",
                                    "other key"])
def test_unproven_or_stale_requests_are_refused(hook, keys, tamper: str) -> None:
    url, db = hook
    body = json.dumps(EVENTS[:1]).encode()
    headers = _signed(keys[0], body)
    if tamper == "body":
        body = body.replace(b"ana@", b"eve@")
    elif tamper == "signature":
        headers[SIGNATURE_HEADER] = base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01"
                                                     ).decode()
    elif tamper == "stale":
        headers = _signed(keys[0], body, NOW - dt.timedelta(minutes=11))
    elif tamper == "future":
        headers = _signed(keys[0], body, NOW + dt.timedelta(minutes=11))
    elif tamper == "missing":
        headers = {"Content-Type": "application/json"}
    else:
        headers = _signed(ec.generate_private_key(ec.SECP256R1()), body)
    response = httpx.post(f"{url}/sendgrid/events", content=body, headers=headers)
    assert response.status_code == 403
    store = Store.open(db)
    assert store.events() == []
    store.close()


def test_a_fresh_signature_within_ten_minutes_is_accepted(hook, keys) -> None:
    url, _ = hook
    body = json.dumps(EVENTS[:1]).encode()
    headers = _signed(keys[0], body, NOW - dt.timedelta(minutes=9))
    assert httpx.post(f"{url}/sendgrid/events", content=body,
                      headers=headers).status_code == 200


def _unsubscribe_url(db: Path, email: str) -> str:
    store = Store.open(db)
    token = make_token(store.secret(), email)
    store.close()
    return f"/sphere/unsubscribe?t={token}"


def test_get_only_asks_post_unsubscribes(hook) -> None:
    url, db = hook
    path = _unsubscribe_url(db, "Maria.Santos@example.com")
    page = httpx.get(url + path)
    assert page.status_code == 200 and "<form method=post>" in page.text
    assert "m***@example.com" in page.text and "Maria" not in page.text
    store = Store.open(db)
    assert store.suppressed() == frozenset()  # a link scanner's GET changes nothing
    store.close()
    confirm = httpx.post(url + path, data={"confirm": "yes"})
    assert confirm.status_code == 200 and "unsubscribed" in confirm.text
    store = Store.open(db)
    assert store.suppressed() == {"maria.santos@example.com"}
    store.close()


def test_rfc8058_one_click_post(hook) -> None:
    url, db = hook
    path = _unsubscribe_url(db, "wei.chen@example.com")
    response = httpx.post(url + path, content=b"List-Unsubscribe=One-Click",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200
    store = Store.open(db)
    assert store.is_suppressed("wei.chen@example.com")
    store.close()
    # An empty or foreign POST body is not an unsubscribe.
    assert httpx.post(url + _unsubscribe_url(db, "x@example.com"),
                      content=b"hello").status_code == 400


@pytest.mark.parametrize("token, status", [
    ("", 400), ("garbage", 400), ("a.b.c", 400), (".", 400),
    # Well formed, signed with another key: forged.
    (make_token("not-the-project-key", "victim@example.com"), 403),
])
def test_forged_or_garbled_tokens_are_refused_without_naming_anyone(hook, token,
                                                                     status) -> None:
    url, db = hook
    for response in (httpx.get(f"{url}/sphere/unsubscribe?t={token}"),
                     httpx.post(f"{url}/sphere/unsubscribe?t={token}",
                                content=b"List-Unsubscribe=One-Click")):
        assert response.status_code == status
        assert "victim" not in response.text and "@" not in response.text
    store = Store.open(db)
    assert store.suppressed() == frozenset()
    store.close()


def test_an_unsubscribe_is_honoured_by_the_next_send(hook, project: Path, cli) -> None:
    url, db = hook
    httpx.post(url + _unsubscribe_url(db, "wei.chen@example.com"),
               content=b"List-Unsubscribe=One-Click")
    result = cli("send", "monthly-sphere", project=project)
    assert result.exit_code == 0, result.output
    outbox = {p.name for p in (project / "var/outbox").glob("*.eml")}
    assert len(outbox) == 27 and not any("wei.chen" in n for n in outbox)
    status = cli("status", project=project)
    assert "1 suppressed address(es) (1 unsubscribed)" in status.stdout


def test_suppressions_sync_follows_pages(project: Path, cli,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    standin = StandIn().start()
    try:
        standin.suppressions["unsubscribes"] = [
            {"email": f"u{i}@example.com", "created": 1700000000} for i in range(1203)]
        standin.suppressions["bounces"] = [
            {"email": "wei.chen@example.com", "created": 1700000000, "reason": "550",
             "status": "5.1.1"}]
        standin.suppressions["spam_reports"] = [
            {"email": "ana@example.com", "created": 1700000000, "ip": "10.0.0.1"}]
        standin.groups[77] = ["group-left@example.com"]
        (project / "campaigns.yaml").write_text(
            (project / "campaigns.yaml").read_text().replace(
                "sendgrid:", "sendgrid:\n  asm_group_id: 77", 1))
        monkeypatch.setenv("SENDGRID_API_KEY", KEY)
        monkeypatch.setenv("SENDGRID_API_HOST", standin.url)
        result = cli("suppressions", "sync", project=project)
    finally:
        standin.stop()
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == ("Done: unsubscribes 1203, bounces 1, spam_reports 1, "
                                     "group 77 1; 1206 newly suppressed; 1206 suppressed "
                                     "in all.")
    offsets = [p for p in standin.pages if "unsubscribes" in p]
    assert offsets == [f"/v3/suppression/unsubscribes?limit=500&offset={o}"
                       for o in (0, 500, 1000)]
    config = load_config(project)
    store = Store.open(config.db_path)
    assert store.is_suppressed("u1202@example.com") and store.is_suppressed("wei.chen@example.com")
    store.close()
    # The bounced contact is never planned again.
    send = cli("send", "monthly-sphere", "--dry-run", project=project)
    assert "Would send 27," in send.stdout


def test_cli_serve_starts_and_answers(project: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    env = {**os.environ, "SPHERE_NOW": NOW.isoformat()}
    env.pop("SENDGRID_WEBHOOK_PUBLIC_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "webhook", "serve",
                             "--project", str(project), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=Path(__file__).resolve().parent.parent)
    try:
        line = proc.stdout.readline()
        assert line.startswith("Listening on http://127.0.0.1:"), proc.stderr.read()
        base = line.split()[2]
        assert httpx.get(f"{base}/health").text.strip() == "ok"
        refused = httpx.post(f"{base}/sendgrid/events", content=b"[]")
        assert refused.status_code == 403 and "SENDGRID_WEBHOOK_PUBLIC_KEY" in refused.text
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert "SENDGRID_WEBHOOK_PUBLIC_KEY is not set" in proc.stderr.read()
    time.sleep(0)
