"""No send silently disappears (issue #12): a drip step recorded after its time is still
sent at the daemon's next tick, and whatever fell due and did not go out is in `schedule`
and `status` with what happens to it and the command that sends it now."""
from __future__ import annotations

import json
from pathlib import Path

THANKS = "referral-thanks/referral_thank_you/r1@2026-11-23"


def test_a_referral_recorded_after_the_drip_time_and_a_tick_is_still_thanked(
        project: Path, cli, monkeypatch) -> None:
    # 18:00 in Los Angeles (drip time 09:00 passed): an evening `run --once`.
    monkeypatch.setenv("SPHERE_NOW", "2026-11-24T02:00:00+00:00")
    assert cli("run", "--once", project=project).exit_code == 0
    # 18:51: the assistant records a referral.
    monkeypatch.setenv("SPHERE_NOW", "2026-11-24T02:51:00+00:00")
    added = cli("referral", "add", "--by", "zoe.hartmann@example.com", "--name", "Sam Ortiz",
                project=project)
    assert added.exit_code == 0, added.output
    # The calendar and status show it as due now, and say what sends it.
    monkeypatch.setenv("SPHERE_NOW", "2026-11-24T02:52:00+00:00")
    doc = json.loads(cli("schedule", "--json", project=project).stdout)
    (item,) = [d for d in doc["due"] if d["send_id"] == THANKS]
    assert item["to"] == "zoe.hartmann@example.com" and item["not_sent"]
    assert not item["missed"] and item["local"].startswith("2026-11-23T18:51")
    assert item["command"] == "sphere run --once"
    status = cli("status", project=project)
    assert status.exit_code == 0, status.output
    assert THANKS in status.stdout and "sphere run --once" in status.stdout
    # The next tick (18:55) thanks Zoë, once.
    monkeypatch.setenv("SPHERE_NOW", "2026-11-24T02:55:00+00:00")
    assert cli("run", "--once", project=project).exit_code == 0
    assert cli("run", "--once", project=project).exit_code == 0
    thanks = list((project / "var/outbox").glob("referral-thanks*zoe*.eml"))
    assert len(thanks) == 1 and b"Sam Ortiz" in thanks[0].read_bytes()
    doc = json.loads(cli("schedule", "--json", project=project).stdout)
    assert not [d for d in doc["due"] if d["send_id"] == THANKS]
    assert THANKS not in cli("status", project=project).stdout


def _add_contact(project: Path, email: str, closing: str) -> None:
    with (project / "audiences/sphere.csv").open("a", encoding="utf-8") as fh:
        fh.write(f"{email},Ann,Late,Maple Heights,golf,past_client,{closing},"
                 "America/Los_Angeles,,subscribed\n")


def test_a_drip_added_after_its_time_is_sent_or_listed_as_missed(project: Path, cli,
                                                                 monkeypatch) -> None:
    # The daemon ticked on 23 November at 18:00 Los Angeles time.
    monkeypatch.setenv("SPHERE_NOW", "2026-11-24T02:00:00+00:00")
    assert cli("run", "--once", project=project).exit_code == 0
    # Then two closings are entered whose 3-day thank-you is already past: one today at
    # 09:00 (within the 36 h catch-up window), one on the 20th (too old for the daemon).
    _add_contact(project, "today@example.com", "2026-11-20")
    _add_contact(project, "older@example.com", "2026-11-17")
    monkeypatch.setenv("SPHERE_NOW", "2026-11-24T02:10:00+00:00")
    status = cli("status", project=project).stdout
    assert "  after-closing/thank_you@2026-11-23 to today@example.com" in status
    assert "MISSED after-closing/thank_you@2026-11-20 to older@example.com" in status
    assert "sphere run --once --since 2026-11-20" in status
    doc = json.loads(cli("schedule", "--json", project=project).stdout)
    late = {d["to"]: d for d in doc["due"] if d.get("not_sent")}
    assert late["older@example.com"]["missed"] and not late["today@example.com"]["missed"]
    # The next tick sends the one within the window; the command status gives, the other.
    monkeypatch.setenv("SPHERE_NOW", "2026-11-24T02:11:00+00:00")
    assert cli("run", "--once", project=project).exit_code == 0
    outbox = project / "var/outbox"
    assert len(list(outbox.glob("after-closing*today*"))) == 1
    assert not list(outbox.glob("after-closing*older*"))
    result = cli("run", "--once", "--since", "2026-11-20", project=project)
    assert result.exit_code == 0, result.output
    assert len(list(outbox.glob("after-closing*older*"))) == 1
    assert len(list(outbox.glob("after-closing*today*"))) == 1  # not twice
    assert "after-closing/thank_you" not in cli("status", project=project).stdout


def test_a_tick_looks_for_late_drips_only_when_contacts_or_referrals_changed(
        project: Path, monkeypatch) -> None:
    import datetime as dt

    from pipeline.config import load_config
    from pipeline.delivery.deliver import OutboxTransport
    from pipeline.scheduling import daemon
    from pipeline.state.store import Store

    looks = []
    real = daemon.drips_due
    monkeypatch.setattr(daemon, "drips_due", lambda *a: looks.append(a[3:]) or real(*a))
    config = load_config(project)
    store = Store.open(config.db_path)
    transport = OutboxTransport(config.outbox_dir)
    at = dt.datetime(2026, 11, 24, 2, 0, tzinfo=dt.UTC)
    for minute in range(3):  # the first tick has nothing before it; then nothing changed
        daemon.tick(config, store, transport, at + dt.timedelta(minutes=minute))
    assert not looks
    _add_contact(project, "today@example.com", "2026-11-20")
    daemon.tick(config, store, transport, at + dt.timedelta(minutes=5))
    assert len(looks) == 1
    assert len(list(config.outbox_dir.glob("after-closing*today*"))) == 1


def test_a_drip_step_is_due_at_the_first_allowed_time_after_it_was_recorded(
        project: Path) -> None:
    import datetime as dt
    import zoneinfo

    from pipeline.config import load_config
    from pipeline.scheduling.calendar import Referral, calendar
    from pipeline.scheduling.daemon import all_contacts

    la = zoneinfo.ZoneInfo("America/Los_Angeles")
    config = load_config(project)
    contacts = all_contacts(config)

    def thanks(received: dt.date, recorded: dt.datetime):
        ref = Referral(1, "zoe.hartmann@example.com", "Sam", received, updated=recorded,
                       recorded=recorded)
        start = recorded - dt.timedelta(minutes=1)
        cal = calendar(config, contacts, (ref,), start, start + dt.timedelta(days=2))
        return [d for d in cal.due if d.name == "referral-thanks"]

    # Recorded at 18:51, after the 09:00 drip time: due at once.
    (d,) = thanks(dt.date(2026, 11, 23), dt.datetime(2026, 11, 23, 18, 51, tzinfo=la))
    assert d.local == dt.datetime(2026, 11, 23, 18, 51, tzinfo=la)
    assert d.send_id == "referral-thanks/referral_thank_you/r1@2026-11-23"
    # Recorded at 22:30, inside quiet hours (21:00-08:00): due when they end.
    (d,) = thanks(dt.date(2026, 11, 23), dt.datetime(2026, 11, 23, 22, 30, tzinfo=la))
    assert d.local == dt.datetime(2026, 11, 24, 8, 0, tzinfo=la)
    # Recorded at 07:00 for that day: at the drip time, 09:00.
    (d,) = thanks(dt.date(2026, 11, 23), dt.datetime(2026, 11, 23, 7, 0, tzinfo=la))
    assert d.local == dt.datetime(2026, 11, 23, 9, 0, tzinfo=la)
    # Back-dated three days: due when recorded, still named by its own day.
    (d,) = thanks(dt.date(2026, 11, 20), dt.datetime(2026, 11, 23, 12, 0, tzinfo=la))
    assert d.local == dt.datetime(2026, 11, 23, 12, 0, tzinfo=la)
    assert d.send_id.endswith("@2026-11-20")


def test_a_failed_drip_is_listed_with_the_command_that_sends_it(project: Path, cli,
                                                                monkeypatch) -> None:
    import datetime as dt

    from pipeline.state.store import Store

    monkeypatch.setenv("SPHERE_NOW", "2026-11-24T02:00:00+00:00")
    assert cli("run", "--once", project=project).exit_code == 0
    _add_contact(project, "today@example.com", "2026-11-20")
    # The thank-you's delivery failed (a transport outage, say).
    store = Store.open(project / "var/sphere.db")
    send_id = "after-closing/thank_you@2026-11-23"
    at = dt.datetime(2026, 11, 24, 2, 5, tzinfo=dt.UTC)
    store.start_send(send_id, "after-closing", "2026-11-23T09:00:00-08:00", at)
    store.begin_delivery(send_id, "today@example.com", "<m@x>", "outbox", (), (), (), at)
    store.settle_delivery(send_id, "today@example.com", "failed", at, "", "refused")
    store.close()
    monkeypatch.setenv("SPHERE_NOW", "2026-11-24T02:10:00+00:00")
    status = cli("status", project=project).stdout
    line = next(x for x in status.splitlines() if send_id in x)
    assert "today@example.com" in line and "delivery failed" in line
    assert "sphere run --once --since 2026-11-23" in line
    # The daemon's tick does not retry it every minute; the command does, once.
    assert cli("run", "--once", project=project).exit_code == 0
    outbox = project / "var/outbox"
    assert not list(outbox.glob("after-closing*today*"))
    assert cli("run", "--once", "--since", "2026-11-23", project=project).exit_code == 0
    assert len(list(outbox.glob("after-closing*today*"))) == 1
    assert send_id not in cli("status", project=project).stdout


def test_a_send_held_for_approval_is_a_draft_not_a_missed_send(project: Path, cli,
                                                               monkeypatch) -> None:
    path = project / "campaigns.yaml"
    text = path.read_text(encoding="utf-8")
    for block in ("  after-closing:\n", "  monthly-sphere:\n"):
        text = text.replace(block, block + "    approval: true\n", 1)
    path.write_text(text, encoding="utf-8")
    _add_contact(project, "today@example.com", "2026-11-28")
    # 1 December, 09:30 in Los Angeles: the thank-you and the newsletter fell due.
    monkeypatch.setenv("SPHERE_NOW", "2026-12-01T17:30:00+00:00")
    assert cli("run", "--once", project=project).exit_code == 0
    assert not list((project / "var/outbox").glob("after-closing*today*"))
    monkeypatch.setenv("SPHERE_NOW", "2026-12-01T17:35:00+00:00")
    status = cli("status", project=project).stdout
    late = [x for x in status.splitlines() if x.startswith("  ") and "Send it now" in x]
    assert not [x for x in late if "after-closing/thank_you@2026-12-01" in x
                or "monthly-sphere@2026-12-01" in x], late
