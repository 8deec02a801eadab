"""`approval: true` on every kind of send (issue 12.8): a due newsletter, recent-sales
mailer or drip step is held as a draft; `sphere approve` approves or drops the whole send
or one person (with a personal note); nothing held goes out unapproved; an undecided draft
expires and is reported, never sent late; `sphere send` and the daemon both respect it."""
from __future__ import annotations

import email
import sqlite3
from email import policy
from pathlib import Path

import pytest

from tests.test_sends import _outcomes

ZOE, JOSE = "zoe.hartmann@example.com", "jose.alvarez@example.net"
SEND = "monthly-sphere@2026-11-01T09:00"


def _approval(project: Path, block: str, extra: str = "") -> None:
    """Add `approval: true` (and `extra` lines) under one campaign or drip."""
    path = project / "campaigns.yaml"
    text = path.read_text(encoding="utf-8")
    head = f"  {block}:\n"
    assert head in text
    text = text.replace(head, head + "    approval: true\n" + extra, 1)
    path.write_text(text, encoding="utf-8")


def _outbox(project: Path, prefix: str) -> dict[str, email.message.EmailMessage]:
    out = {}
    for path in sorted((project / "var/outbox").glob(f"{prefix}*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        out[msg["To"].addresses[0].addr_spec.lower()] = msg
    return out


def _last(result) -> str:
    return result.stdout.strip().splitlines()[-1]


def test_a_newsletter_with_approval_is_held_then_sent_as_approved(project: Path,
                                                                  cli) -> None:
    _approval(project, "monthly-sphere")
    assert cli("check", project=project).exit_code == 0
    dry = cli("send", "monthly-sphere", "--dry-run", project=project)
    assert "Would send 0," in dry.stdout and "28 held for your approval" in dry.stdout
    first = cli("send", "monthly-sphere", project=project)
    assert first.exit_code == 0, first.output
    sent, reasons = _outcomes(_last(first))
    assert sent == 0 and reasons["held for your approval: draft d1 (sphere approve)"] == 28
    assert not _outbox(project, "monthly-sphere")  # nothing held goes out
    listing = cli("approve", project=project)
    assert f"d1  {SEND}  28 people (28 held)" in listing.stdout
    shown = cli("approve", "--show", "d1", project=project).stdout
    assert f"{ZOE}: held" in shown and "interests" in shown
    # One person, with a personal note for this send; one dropped.
    assert cli("approve", "d1", "--contact", ZOE, "--note", "Zoë, the **seed swap** is "
               "your kind of party!", project=project).exit_code == 0
    assert cli("approve", "d1", "--contact", JOSE, "--drop", project=project).exit_code == 0
    second = cli("send", "monthly-sphere", project=project)
    sent, reasons = _outcomes(_last(second))
    assert sent == 1 and sum(reasons.values()) == 28  # 29 contacts, one outcome each
    assert reasons["dropped from draft d1 in review"] == 1
    mails = _outbox(project, "monthly-sphere")
    assert list(mails) == [ZOE]
    html = mails[ZOE].get_body(("html",)).get_content()
    assert "<strong>seed swap</strong> is" in html
    # What goes out is what was held: the draft's stories, not a fresh pick.
    held = [line.strip().split(None, 1)[1] for line in shown.split(f"{ZOE}: held")[1]
            .split("@")[0].splitlines()[1:] if line.startswith("    ")]
    text = mails[ZOE].get_body(("plain",)).get_content()
    assert held and all(title.split(" ", 1)[1][:30] in text for title in held
                        if not title.startswith("tip"))
    # The whole send: everyone else but the dropped person.
    approved = cli("approve", "d1", project=project)
    assert "Approved d1" in approved.stdout and "sphere send monthly-sphere" in approved.stdout
    third = cli("send", "monthly-sphere", project=project)
    assert third.exit_code == 0
    assert "Sent 26, 1 already sent" in third.stdout
    mails = _outbox(project, "monthly-sphere")
    assert len(mails) == 27 and JOSE not in mails
    assert "seed swap" not in mails["marcus.bell@example.com"].get_body(
        ("html",)).get_content()  # the personal note was Zoë's alone
    assert "Sent 0, 27 already sent" in cli("send", "monthly-sphere", project=project).stdout


def test_recent_sales_with_approval_is_held_too(project: Path, cli) -> None:
    _approval(project, "recent-sales")
    dry = cli("send", "recent-sales", "--dry-run", project=project)
    assert "Would send 0," in dry.stdout and "28 held for your approval" in dry.stdout
    assert cli("send", "recent-sales", project=project).exit_code == 0
    assert not _outbox(project, "recent-sales")
    assert cli("approve", "d1", "--contact", ZOE, project=project).exit_code == 0
    assert "Sent 1," in cli("send", "recent-sales", project=project).stdout
    assert list(_outbox(project, "recent-sales")) == [ZOE]
    assert cli("approve", "--drop", "d1", project=project).exit_code == 0
    assert "Sent 0," in cli("send", "recent-sales", project=project).stdout
    assert list(_outbox(project, "recent-sales")) == [ZOE]


def test_an_undecided_draft_expires_and_is_reported_never_sent_late(project: Path, cli,
                                                                    monkeypatch) -> None:
    _approval(project, "monthly-sphere", "    approval_expires: 2d\n")
    assert cli("send", "monthly-sphere", project=project).exit_code == 0
    monkeypatch.setenv("SPHERE_NOW", "2026-11-25T18:00:00+00:00")
    late = cli("send", "monthly-sphere", project=project)
    assert "Sent 0," in late.stdout
    assert "28 draft d1 expired unapproved on 2026-11-24: not sent late" in late.stdout
    refused = cli("approve", "d1", project=project)
    assert refused.exit_code == 1 and "expired unapproved" in refused.stderr
    assert "EXPIRED unapproved on 2026-11-24: not sent" in cli("approve",
                                                             project=project).stdout
    assert "Draft d1 (monthly-sphere@2026-11-01T09:00) expired unapproved" in \
        cli("status", project=project).stdout
    assert not _outbox(project, "monthly-sphere")


def test_the_daemon_holds_a_due_send_and_sends_it_once_approved(project: Path, cli,
                                                               monkeypatch) -> None:
    _approval(project, "monthly-sphere")
    # 09:00 on 1 December in Los Angeles: most of the audience is due.
    monkeypatch.setenv("SPHERE_NOW", "2026-12-01T17:30:00+00:00")
    first = cli("run", "--once", project=project)
    assert first.exit_code == 0, first.output
    assert not _outbox(project, "monthly-sphere")
    assert "held for your approval: draft d1" in first.stdout
    monkeypatch.setenv("SPHERE_NOW", "2026-12-01T17:35:00+00:00")
    assert cli("run", "--once", project=project).exit_code == 0
    assert not _outbox(project, "monthly-sphere")  # still nothing unapproved
    assert cli("approve", "d1", project=project).exit_code == 0
    monkeypatch.setenv("SPHERE_NOW", "2026-12-01T17:40:00+00:00")
    assert cli("run", "--once", project=project).exit_code == 0
    assert len(_outbox(project, "monthly-sphere")) == 28  # every time zone: approved now
    monkeypatch.setenv("SPHERE_NOW", "2026-12-01T17:45:00+00:00")
    assert cli("run", "--once", project=project).exit_code == 0
    assert len(list((project / "var/outbox").glob("monthly-sphere*"))) == 28  # once


def test_a_drip_with_approval_is_held_then_sent_by_the_daemon(project: Path, cli) -> None:
    _approval(project, "referral-thanks")
    assert cli("referral", "add", "--by", ZOE, "--name", "Sam Ortiz",
               project=project).exit_code == 0
    held = cli("run", "--once", project=project)
    assert held.exit_code == 0, held.output
    assert not list((project / "var/outbox").glob("referral-thanks*"))
    listing = cli("approve", project=project).stdout
    assert "d1  referral-thanks/referral_thank_you/r1@" in listing
    assert cli("approve", "d1", project=project).exit_code == 0
    assert cli("run", "--once", project=project).exit_code == 0
    thanks = list((project / "var/outbox").glob("referral-thanks*zoe*.eml"))
    assert len(thanks) == 1 and b"Sam Ortiz" in thanks[0].read_bytes()
    assert cli("run", "--once", project=project).exit_code == 0
    assert len(list((project / "var/outbox").glob("referral-thanks*"))) == 1


def test_draft_storage_keeps_per_recipient_review_fields(project: Path, cli) -> None:
    _approval(project, "monthly-sphere")
    assert cli("send", "monthly-sphere", project=project).exit_code == 0
    with sqlite3.connect(project / "var/sphere.db") as db:
        columns = {r[1] for r in db.execute("PRAGMA table_info(draft_recipients)")}
        version = db.execute("PRAGMA user_version").fetchone()[0]
    assert {"note", "excluded", "dropped_items", "picks", "status"} <= columns
    assert version >= 6  # the drafts migration (later ones append)


@pytest.mark.parametrize("value", ["soon", "0d"])
def test_a_bad_approval_expiry_is_a_check_error(project: Path, cli, value: str) -> None:
    _approval(project, "monthly-sphere", f"    approval_expires: {value}\n")
    result = cli("check", project=project)
    assert result.exit_code == 1
    assert "campaigns.monthly-sphere.approval_expires: bad duration" in result.stderr


def test_plan_agrees_with_send_about_held_emails(project: Path, cli) -> None:
    _approval(project, "monthly-sphere")
    plan = cli("plan", "monthly-sphere", project=project)
    assert "0 emails to send" in plan.stdout
    assert "28 held for your approval" in plan.stdout
    assert not (project / "var/outbox").exists()  # plan changed nothing


def test_approve_all_covers_drafts_and_alerts(project: Path, cli) -> None:
    _approval(project, "monthly-sphere")
    assert cli("send", "monthly-sphere", project=project).exit_code == 0
    assert cli("send", "interest-alerts", project=project).exit_code == 0
    result = cli("approve", "--all", project=project)
    assert result.exit_code == 0, result.output
    assert "Approved d1" in result.stdout and "alert(s)" in result.stdout
    assert "Sent 28," in cli("send", "monthly-sphere", project=project).stdout
    assert "Nothing is waiting" in cli("approve", "--all", project=project).stdout
    bad = cli("approve", "x9", project=project)
    assert bad.exit_code == 1 and "neither an alert id" in bad.stderr
