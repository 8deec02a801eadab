"""The three sends end to end on the sample: monthly newsletter, recent-sales mailer with a
tip, and interest alerts with approval; every transport; schedule/plan/preview/status."""
from __future__ import annotations

import email
import json
from collections import defaultdict
from email import policy
from pathlib import Path

import pytest

from tests.deliver_support import Recorder, smtp_server
from tests.sendgrid_standin import KEY, StandIn

SENDS = ("monthly-sphere", "recent-sales", "interest-alerts")


def _outbox(project: Path, prefix: str) -> dict[str, email.message.EmailMessage]:
    out = {}
    for path in sorted((project / "var/outbox").glob(f"{prefix}*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        out.setdefault(msg["To"].addresses[0].addr_spec.lower(), []).append(msg)
    return out


def _text(msg) -> str:
    return msg.get_body(("plain",)).get_content()


def _no_approval(project: Path) -> None:
    path = project / "campaigns.yaml"
    path.write_text(path.read_text().replace("approval: true", "approval: false"))


def test_recent_sales_mailer(project: Path, cli) -> None:
    result = cli("send", "recent-sales", project=project)
    assert result.exit_code == 0, result.output
    assert "Sent 28" in result.stdout
    mails = _outbox(project, "recent-sales")
    assert len(mails) == 28
    hoods = {"zoe.hartmann@example.com": "Maple Heights",
             "jose.alvarez@example.net": "Harbor Point",
             "marcus.bell@example.com": "Old Mill District"}
    for addr, hood in hoods.items():
        text = _text(mails[addr][0])
        assert f"Recently sold, starting with {hood}" in text
        first = text.split("== Recently sold")[1].split("\n* ")[1]
        assert f"({hood})" in first.splitlines()[0]  # their own neighbourhood first
        assert "== A useful tip:" in text  # always paired with advice
        assert "$" in text and "days" in text
    amara = _text(mails["amara.nwosu@example.org"][0])  # no neighbourhood: still useful
    assert "== Recently sold ==" in amara and "A useful tip" in amara


def test_tips_never_repeat_across_three_sends(project: Path, cli, monkeypatch) -> None:
    tips: dict[str, list[str]] = defaultdict(list)
    for when in ("2026-11-20T18:00:00+00:00", "2027-01-20T18:00:00+00:00",
                 "2027-03-20T18:00:00+00:00"):
        monkeypatch.setenv("SPHERE_NOW", when)
        result = cli("send", "recent-sales", project=project)
        assert result.exit_code == 0 and "Sent 28" in result.stdout, result.output
    for addr, msgs in _outbox(project, "recent-sales").items():
        assert len(msgs) == 3
        for msg in msgs:
            tips[addr].append(_text(msg).split("== A useful tip: ")[1].split(" ==")[0])
    for addr, seen in tips.items():
        assert len(set(seen)) == 3, (addr, seen)


def test_interest_alerts_wait_for_approval(project: Path, cli) -> None:
    first = cli("send", "interest-alerts", project=project)
    assert first.exit_code == 0 and "Sent 0" in first.stdout
    assert "queued for approval" in first.stdout
    listing = cli("approve", project=project)
    assert "Alerts waiting for your approval" in listing.stdout
    assert not list((project / "var/outbox").glob("interest-alerts*"))  # nothing unapproved
    assert cli("approve", "1", "--note", "Zoë, this one made me think of your **garden**!",
               project=project).exit_code == 0
    assert cli("approve", "--drop", "2", project=project).exit_code == 0
    second = cli("send", "interest-alerts", project=project)
    assert "Sent 1" in second.stdout
    mails = _outbox(project, "interest-alerts")
    assert list(mails) == ["zoe.hartmann@example.com"]
    msg = mails["zoe.hartmann@example.com"][0]
    assert msg["Subject"] == "Saw this and thought of you, Zoë"
    html = msg.get_body(("html",)).get_content()
    # The email greets Zoë already: the note loses its own "Zoë," (issue 12.13).
    assert "<p>This one made me think of your <strong>garden</strong>!</p>" in html
    assert "Zoë, this" not in html and "<p>Hi Zoë,</p>" in html
    assert html.count("<h3>") == 1  # one story
    third = cli("send", "interest-alerts", project=project)
    assert "Sent 0" in third.stdout  # approved alert sent exactly once
    assert len(_outbox(project, "interest-alerts")) == 1
    after = cli("approve", project=project)
    assert "2 " not in after.stdout.split("waiting")[0]
    # The dropped story is never offered to that person again.
    jose = [line for line in cli("approve", project=project).stdout.splitlines()
            if "jose.alvarez" in line]
    assert all("Craft beer collaboration" not in line for line in jose)


def _outcomes(line: str) -> tuple[int, dict[str, int]]:
    """(sent, {skip reason: count}) from a send's 'Done: Sent N, M skipped (...)' line."""
    sent = int(line.split("Sent ")[1].split(",")[0].split()[0])
    reasons: dict[str, int] = {}
    if " skipped (" in line:
        rest, depth, end = line.split(" skipped (", 1)[1], 1, 0
        # `end` is read after the loop: where the closing parenthesis was found.
        for end, ch in enumerate(rest):  # noqa: B007
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0:
                break
        for part in rest[:end].split(", "):
            count, reason = part.split(" ", 1)
            reasons[reason] = int(count)
    return sent, reasons


def test_every_contact_gets_exactly_one_outcome_after_approving_and_dropping(
        project: Path, cli) -> None:
    first = cli("send", "interest-alerts", project=project)
    contacts = sum(_outcomes(first.stdout.splitlines()[-1])[1].values())
    queued = _outcomes(first.stdout.splitlines()[-1])[1]["new alert queued for approval "
                                                         "(sphere approve)"]
    assert cli("approve", "1", project=project).exit_code == 0
    assert cli("approve", "--drop", "2", project=project).exit_code == 0
    second = cli("send", "interest-alerts", project=project)
    sent, reasons = _outcomes(second.stdout.splitlines()[-1])
    assert sent == 1
    assert sent + sum(reasons.values()) == contacts, second.stdout
    # Only the alerts neither approved nor dropped are waiting.
    assert reasons["an alert awaits your approval (sphere approve)"] == queued - 2
    third = cli("send", "interest-alerts", project=project)
    sent, reasons = _outcomes(third.stdout.splitlines()[-1])
    assert sent + sum(reasons.values()) == contacts, third.stdout


def test_plan_ingests_first_like_send(project: Path, cli, monkeypatch) -> None:
    monkeypatch.setenv("SPHERE_NOW", "2026-11-10T18:00:00+00:00")
    assert cli("ingest", project=project).exit_code == 0  # old news by the 22nd
    feed = project / "samples/feeds/backyard-gardener.xml"
    feed.write_text(feed.read_text(encoding="utf-8").replace("<item>", """<item>
      <title>Winter mulch keeps garden beds alive</title>
      <link>https://backyard-gardener.example/2026/11/winter-mulch</link>
      <guid isPermaLink="false">backyard-gardener-2026-item-99</guid>
      <pubDate>Sun, 22 Nov 2026 06:00:00 -0800</pubDate>
      <category>Gardening</category>
      <description>Mulch garden beds before the first hard frost.</description>
    </item>
    <item>""", 1), encoding="utf-8")
    monkeypatch.setenv("SPHERE_NOW", "2026-11-22T18:00:00+00:00")
    stale = cli("plan", "interest-alerts", "--json", "--no-ingest", project=project)
    assert "Winter mulch" not in stale.stdout
    fresh = cli("plan", "interest-alerts", "--json", project=project)
    assert fresh.exit_code == 0, fresh.output
    reasons = [s["reason"] for s in json.loads(fresh.stdout)["skipped"]]
    assert any("queued for approval" in r for r in reasons), reasons
    _no_approval(project)
    titles = {p["title"] for e in json.loads(cli("plan", "interest-alerts", "--json",
                                                 project=project).stdout)["emails"]
              for p in e["picks"]}
    assert "Winter mulch keeps garden beds alive" in titles
    # plan changed nothing: the send still finds the story new.
    sent = cli("send", "interest-alerts", project=project)
    assert "Winter mulch" in "".join(m.get_body(("plain",)).get_content() for msgs in
                                     _outbox(project, "interest-alerts").values()
                                     for m in msgs), sent.output


def test_interest_alerts_without_approval_are_throttled(project: Path, cli,
                                                        monkeypatch) -> None:
    _no_approval(project)
    first = cli("send", "interest-alerts", project=project)
    assert first.exit_code == 0
    sent = int(first.stdout.split("Sent ")[1].split(",")[0].split()[0])
    assert sent >= 20
    for _addr, msgs in _outbox(project, "interest-alerts").items():
        assert len(msgs) == 1
        assert _text(msgs[0]).count("https://") == 2  # the story and the unsubscribe link
    monkeypatch.setenv("SPHERE_NOW", "2026-11-23T18:00:00+00:00")
    second = cli("send", "interest-alerts", project=project)
    assert "Sent 0" in second.stdout and "throttled" in second.stdout


@pytest.mark.parametrize("send", SENDS)
def test_every_send_over_smtp(project: Path, cli, send: str) -> None:
    _no_approval(project)
    recorder = Recorder()
    server = smtp_server(recorder)
    try:
        path = project / "campaigns.yaml"
        path.write_text(path.read_text().replace(
            "  host: localhost\n  port: 587\n  security: starttls",
            f"  host: 127.0.0.1\n  port: {server.port}\n  security: none"))
        result = cli("send", send, "--transport", "smtp", project=project)
    finally:
        server.stop()
    assert result.exit_code == 0, result.output
    sent = int(result.stdout.split("Sent ")[1].split(",")[0].split()[0])
    assert sent >= 20 and sum(recorder.by_rcpt().values()) == sent
    assert all(n == 1 for n in recorder.by_rcpt().values())


@pytest.mark.parametrize("send", SENDS)
def test_every_send_over_sendgrid(project: Path, cli, send: str, monkeypatch) -> None:
    _no_approval(project)
    standin = StandIn().start()
    try:
        monkeypatch.setenv("SENDGRID_API_KEY", KEY)
        monkeypatch.setenv("SENDGRID_API_HOST", standin.url)
        result = cli("send", send, "--transport", "sendgrid", project=project)
    finally:
        standin.stop()
    assert result.exit_code == 0, result.output
    sent = int(result.stdout.split("Sent ")[1].split(",")[0].split()[0])
    assert sent >= 20 and not standin.rejected
    assert sum(standin.delivered.values()) == sent
    assert all(b["categories"][0] == send or send in b["categories"] for b in standin.accepted)


def test_sends_appear_in_schedule_plan_preview_and_status(project: Path, cli,
                                                          tmp_path: Path) -> None:
    doc = json.loads(cli("schedule", "--until", "2027-01-31", "--json",
                         project=project).stdout)
    names = {d["name"] for d in doc["due"]}
    assert {"monthly-sphere", "recent-sales", "interest-alerts"} <= names
    for send in SENDS:
        plan = json.loads(cli("plan", send, "--json", project=project).stdout)
        assert plan["campaign"] == send
    sales_plan = json.loads(cli("plan", "recent-sales", "--json", project=project).stdout)
    zoe = next(e for e in sales_plan["emails"] if e["email"] == "zoe.hartmann@example.com")
    assert zoe["sales"][0]["neighbourhood"] == "Maple Heights"
    assert [p["section"] for p in zoe["picks"]] == ["tip"]
    assert "sale          1412 Birch Lane" in cli("plan", "recent-sales",
                                                  project=project).stdout
    preview = cli("preview", "recent-sales", "--out", str(tmp_path / "p"), project=project)
    assert preview.exit_code == 0 and "wrote 28 email(s)" in preview.stdout
    assert "Recently sold" in (tmp_path / "p" / "zoe.hartmann_example.com.html").read_text()
    for send in SENDS:
        cli("send", send, project=project)
    status = cli("status", project=project).stdout
    for send in SENDS:
        assert send in status


def test_send_ahead_with_local_time_delivery(project: Path, cli, monkeypatch) -> None:
    """`send --local-time` the day before: SendGrid holds each email until 09:00 in the
    contact's own zone (send_at), and the send is named for that time. The stand-in
    checks send_at against the real clock, as SendGrid does, so the test runs on it."""
    import datetime as dt
    import zoneinfo
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    la = zoneinfo.ZoneInfo("America/Los_Angeles")
    day = (now.astimezone(la) + dt.timedelta(days=1)).date()
    path = project / "campaigns.yaml"
    path.write_text(path.read_text().replace('schedule: "0 9 1 * *"',
                                             f'schedule: "0 9 {day.day} {day.month} *"'))
    standin = StandIn().start()
    try:
        monkeypatch.setenv("SENDGRID_API_KEY", KEY)
        monkeypatch.setenv("SENDGRID_API_HOST", standin.url)
        monkeypatch.setenv("SPHERE_NOW", now.isoformat())
        result = cli("send", "monthly-sphere", "--transport", "sendgrid", "--local-time",
                     project=project)
    finally:
        standin.stop()
    assert result.exit_code == 0, result.output
    assert f"monthly-sphere@{day.isoformat()}T09:00" in result.stdout
    at = {b["personalizations"][0]["to"][0]["email"]: b["send_at"] for b in standin.accepted}
    zones = {"zoe.hartmann@example.com": "America/Los_Angeles",
             "tom.nakamura@example.net": "America/Denver",
             "amara.nwosu@example.org": "America/New_York",
             "oliver.grant@example.org": "Europe/London"}
    for addr, zone in zones.items():
        local = dt.datetime.fromtimestamp(at[addr], zoneinfo.ZoneInfo(zone))
        assert (local.date(), local.hour, local.minute) == (day, 9, 0), (addr, local)
    outbox = cli("send", "monthly-sphere", "--local-time", project=project)
    assert outbox.exit_code == 1 and "--transport sendgrid" in outbox.stderr


def test_an_alert_whose_story_arrived_another_way_is_dropped_not_marked_sent(
        project: Path, cli, monkeypatch) -> None:
    assert cli("send", "interest-alerts", project=project).exit_code == 0  # queues alerts
    listing = cli("approve", project=project).stdout
    assert "Seed-swap party" in listing  # Zoë's alert (id 1) is this story
    # The monthly digest delivers that very story to Zoë first.
    monkeypatch.setenv("SPHERE_NOW", "2026-12-01T18:00:00+00:00")
    assert cli("send", "monthly-sphere", project=project).exit_code == 0
    zoe = _text(_outbox(project, "monthly-sphere")["zoe.hartmann@example.com"][0])
    if "Seed-swap party" not in zoe:
        pytest.skip("the digest did not pick the alert's story this time")
    result = cli("approve", "1", "--note", "Thought of you!", project=project)
    assert result.exit_code == 1
    assert "alert 1 for zoe.hartmann@example.com dropped: they already received that " \
           "story in monthly-sphere@2026-12-01T09:00" in result.stderr


def test_pending_alerts_expire_after_a_week(project: Path, cli, monkeypatch) -> None:
    assert cli("send", "interest-alerts", project=project).exit_code == 0
    monkeypatch.setenv("SPHERE_NOW", "2026-12-01T18:00:00+00:00")
    result = cli("approve", project=project)
    assert "waited more than 7 days for approval" in result.stderr
    assert "No alerts waiting for approval" in result.stdout
