"""The whole pipeline on a temp copy of the bundled sample, through the real CLI."""
from __future__ import annotations

import csv
import email
import hashlib
import json
import os
import subprocess
import sys
from email import policy
from email.message import EmailMessage
from pathlib import Path

from tests.conftest import NOW, REPO


def _messages(project: Path) -> dict[str, EmailMessage]:
    out = {}
    for path in sorted((project / "var/outbox").glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        out[msg["To"].addresses[0].addr_spec.lower()] = msg
    return out


def _contacts(project: Path) -> dict[str, dict]:
    with open(project / "audiences/sphere.csv", encoding="utf-8") as fh:
        return {r["email"].lower(): r for r in csv.DictReader(fh)}


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_send_writes_one_personal_email_per_subscribed_contact(project: Path, cli) -> None:
    result = cli("send", "monthly-sphere", project=project)
    assert result.exit_code == 0, result.output
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("Done: Sent 28, 1 skipped (1 unsubscribed in the audience file)")
    assert "harold.example.com" in result.stderr  # the malformed address is reported
    messages = _messages(project)
    contacts = _contacts(project)
    subscribed = {e for e, r in contacts.items() if r["status"] == "subscribed" and "@" in e}
    assert set(messages) == subscribed
    ids = set()
    for addr, msg in messages.items():
        c = contacts[addr]
        # Addressing and headers
        assert msg["To"].addresses[0].display_name == f"{c['first_name']} {c['last_name']}"
        assert c["first_name"] in msg["Subject"] and "November" in msg["Subject"]
        assert msg.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
        assert msg["List-Unsubscribe"].startswith("<https://")
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg["Message-ID"] not in ids
        ids.add(msg["Message-ID"])
        html = msg.get_body(("html",)).get_content()
        text = msg.get_body(("plain",)).get_content()
        for body in (html, text):
            assert f"Hi {c['first_name']}," in body
            assert "what caught my eye around Riverton" in body  # the campaign intro
            assert "214 Alder Street" in body  # postal address
            assert "Dana Whitfield" in body  # signature
        assert ">Unsubscribe</a>" in html and "Unsubscribe: https://" in text
        if c["note"]:
            assert c["note"].split(".")[0].split("!")[0][:30].replace("'", "&#39;") in html \
                or c["note"][:30] in text
        # Sections follow the person: their neighbourhood, the market, their interests.
        assert "The economy and the housing market" in html
        if c["neighbourhood"]:
            assert "Around your neighbourhood" in html
            assert f"from your neighbourhood, {c['neighbourhood']}" in text
        for _interest in filter(None, c["interests"].split(";")):
            pass  # not every interest has a story every month
        if c["interests"]:
            assert "For your interests" in html
            reasons = [ln for ln in text.splitlines() if "matches your interest" in ln]
            assert reasons and all(any(f"'{i}'" in r for i in c["interests"].split(";"))
                                   for r in reasons)
        assert len(html.encode()) < 100 * 1024


def test_second_send_for_the_same_period_sends_nothing(project: Path, cli) -> None:
    assert cli("send", "monthly-sphere", project=project).exit_code == 0
    before = _tree_digest(project / "var/outbox")
    second = cli("send", "monthly-sphere", project=project)
    assert second.exit_code == 0
    assert "Done: Sent 0, 28 already sent for monthly-sphere@2026-11-01T09:00" in second.stdout
    assert _tree_digest(project / "var/outbox") == before


def test_dry_run_changes_nothing(project: Path, cli) -> None:
    assert cli("send", "monthly-sphere", "--dry-run", project=project).exit_code == 0
    assert not (project / "var").exists()  # no database, no outbox
    assert cli("send", "monthly-sphere", project=project).exit_code == 0
    state = _tree_digest(project / "var")
    result = cli("send", "monthly-sphere", "--dry-run", project=project)
    assert "Would send 0, 28 already sent" in result.stdout
    assert _tree_digest(project / "var") == state


def test_no_article_twice_to_the_same_person_across_sends(project: Path, cli,
                                                          monkeypatch) -> None:
    assert cli("send", "monthly-sphere", project=project).exit_code == 0
    first = {a: {ln.strip() for ln in m.get_body(("plain",)).get_content().splitlines()
                 if ln.strip().startswith("https://")} for a, m in _messages(project).items()}
    # A month later, the same stored articles: nobody may get a story they already had.
    monkeypatch.setenv("SPHERE_NOW", "2026-12-02T18:00:00+00:00")
    result = cli("send", "monthly-sphere", project=project)
    assert result.exit_code == 0, result.output
    december = list((project / "var/outbox").glob("*2026-12-01*.eml"))
    assert december
    for path in december:
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        addr = msg["To"].addresses[0].addr_spec.lower()
        links = {ln.strip() for ln in msg.get_body(("plain",)).get_content().splitlines()
                 if ln.strip().startswith("https://") and "unsubscribe" not in ln}
        assert not links & first[addr], addr


def test_plan_json_lists_picks_with_reasons(project: Path, cli) -> None:
    result = cli("plan", "monthly-sphere", "--json", project=project)
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["send_id"] == "monthly-sphere@2026-11-01T09:00"
    assert len(doc["emails"]) == 28
    for e in doc["emails"]:
        assert e["picks"]
        for pick in e["picks"]:
            assert pick["reason"] and pick["section"] and pick["title"]
            if pick["section"] != "tip":
                assert pick["url"].startswith("https://")
    assert not (project / "var").exists()  # planning writes nothing


def test_preview_writes_emails_and_gallery(project: Path, cli, tmp_path: Path) -> None:
    out = tmp_path / "preview"
    result = cli("preview", "monthly-sphere", "--out", str(out), project=project)
    assert result.exit_code == 0, result.output
    index = (out / "index.html").read_text()
    assert index.count("<tr><td><a href=") == 28
    assert "Zoë Hartmann" in index and "matches your interest" in index
    assert (out / "zoe.hartmann_example.com.html").exists()


def test_check_reports_broken_files(project: Path, cli) -> None:
    assert cli("check", project=project).exit_code == 0
    with open(project / "audiences/sphere.csv", "a", encoding="utf-8") as fh:
        fh.write('broken@example.com,Bro,,,,sphere,2026-02-30,,,subscribed\n')
    result = cli("check", project=project)
    assert result.exit_code == 1
    assert "audiences/sphere.csv:32: closing_date: '2026-02-30' is not a date " \
           "(write it as YYYY-MM-DD)" in result.stderr


def test_init_scaffolds_a_working_project(tmp_path: Path, cli) -> None:
    target = tmp_path / "starter"
    assert cli("init", str(target)).exit_code == 0
    assert cli("check", project=target).exit_code == 0
    result = cli("send", "monthly-sphere", project=target)
    assert result.exit_code == 0 and "Sent 28" in result.stdout
    again = cli("init", str(target))
    assert again.exit_code == 1 and "already holds a Sphere project" in again.stderr


def test_one_off_note_used_once(project: Path, cli, monkeypatch) -> None:
    result = cli("note", "add", "zoe.hartmann@example.com",
                 "Congratulations on the **new studio**!", project=project)
    assert result.exit_code == 0
    assert cli("send", "monthly-sphere", project=project).exit_code == 0
    msg = _messages(project)["zoe.hartmann@example.com"]
    assert "<strong>new studio</strong>" in msg.get_body(("html",)).get_content()
    monkeypatch.setenv("SPHERE_NOW", "2026-12-02T18:00:00+00:00")
    assert cli("send", "monthly-sphere", project=project).exit_code == 0
    dec = next((project / "var/outbox").glob("*2026-12-01*zoe.hartmann*.eml"))
    assert b"new studio" not in dec.read_bytes()


def test_notes_can_be_listed_edited_and_removed_until_used(project: Path, cli) -> None:
    zoe, ann = "zoe.hartmann@example.com", "Congratulations on the new stduio!"
    assert cli("note", "add", zoe, ann, project=project).exit_code == 0
    assert cli("note", "add", zoe, "Say hi to Max.", project=project).exit_code == 0
    listed = cli("note", "list", zoe, project=project)
    assert listed.exit_code == 0 and "new stduio" in listed.stdout
    assert "waiting for the next email" in listed.stdout
    edited = cli("note", "edit", "1", "Congratulations on the **new studio**!",
                 project=project)
    assert edited.exit_code == 0, edited.output
    assert cli("note", "remove", "2", project=project).exit_code == 0
    assert "Say hi to Max" not in cli("note", "list", project=project).stdout
    assert cli("send", "monthly-sphere", project=project).exit_code == 0
    body = _messages(project)[zoe].get_body(("html",)).get_content()
    assert "<strong>new studio</strong>" in body and "stduio" not in body
    assert "Say hi to Max" not in body
    used = cli("note", "list", project=project)
    assert "used in monthly-sphere@2026-11-01T09:00" in used.stdout
    again = cli("note", "edit", "1", "too late", project=project)
    assert again.exit_code == 1 and "already sent in monthly-sphere@" in again.stderr
    gone = cli("note", "remove", "1", project=project)
    assert gone.exit_code == 1 and "cannot be changed" in gone.stderr
    assert cli("note", "remove", "9", project=project).exit_code == 1


def test_console_script_runs(project: Path) -> None:
    env = {**os.environ, "SPHERE_NOW": NOW.isoformat()}
    exe = Path(sys.executable).parent / "sphere"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "pipeline"]
    done = subprocess.run([*cmd, "send", "monthly-sphere", "-q"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Done: Sent 28")


def test_check_compiles_every_template_in_use(project: Path, cli) -> None:
    path = project / "campaigns.yaml"
    path.write_text(path.read_text().replace("template: settling_in", "template: setling_in"))
    (project / "templates/partials").mkdir(parents=True, exist_ok=True)
    (project / "templates/newsletter.mjml").write_text(
        (REPO / "templates/newsletter.mjml").read_text().replace("</mj-body>", ""))
    result = cli("check", project=project)
    assert result.exit_code == 1
    assert "drips.after-closing.steps[1].template: template 'setling_in.mjml' not found" \
        in result.stderr
    assert "campaigns.monthly-sphere: templates/newsletter.mjml: MJML error" in result.stderr


def test_preview_of_someone_not_mailed_says_why(project: Path, cli, tmp_path: Path) -> None:
    result = cli("preview", "monthly-sphere", "--contact", "emily.tran@example.org",
                 "--out", str(tmp_path / "p"), project=project)
    assert result.exit_code == 1
    assert "emily.tran@example.org gets no email in this send: unsubscribed" in result.stderr
    result = cli("preview", "monthly-sphere", "--contact", "nobody@example.com",
                 "--out", str(tmp_path / "p"), project=project)
    assert result.exit_code == 1 and "not in the campaign's audience" in result.stderr


def test_plan_agrees_with_send_after_a_period_was_sent(project: Path, cli) -> None:
    assert cli("send", "monthly-sphere", project=project).exit_code == 0
    text = cli("plan", "monthly-sphere", project=project).stdout
    assert "0 emails to send for monthly-sphere@2026-11-01T09:00, 28 already sent" in text
    doc = json.loads(cli("plan", "monthly-sphere", "--json", project=project).stdout)
    assert all(e["already_sent"] for e in doc["emails"])


def test_plan_and_dry_run_see_an_unsubscribe_still_in_the_webhook_services_wal(
        project: Path, cli) -> None:
    import sqlite3
    assert cli("ingest", project=project).exit_code == 0
    db = project / "var/sphere.db"
    # `sphere webhook serve` has the database open and has just recorded an unsubscribe;
    # nothing has checkpointed it into the main file yet.
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("PRAGMA wal_autocheckpoint=0")
        who = next(iter(e for e, r in _contacts(project).items()
                        if r["status"] == "subscribed" and "@" in e))
        other.execute("INSERT INTO suppressions VALUES (?, 'unsubscribed', 'link', ?)",
                      (who, NOW.isoformat()))
        plan = cli("plan", "monthly-sphere", "--json", project=project)
        skipped = {s["email"].lower(): s["reason"] for s in json.loads(plan.stdout)["skipped"]}
        assert skipped.get(who, "").startswith("suppressed"), skipped
        dry = cli("send", "monthly-sphere", "--dry-run", "--no-ingest", project=project)
        assert "Would send 27," in dry.stdout, dry.stdout
    finally:
        other.close()


def test_check_warns_when_a_neighbourhood_gets_nothing(project: Path, cli) -> None:
    """Issue 12.11: a misspelled neighbourhood silently got no neighbourhood news, and a
    sales file with no sale near any contact went unnoticed."""
    audience = project / "audiences/sphere.csv"
    lines = audience.read_text(encoding="utf-8").splitlines()
    row = next(i for i, line in enumerate(lines) if ",Old Mill District," in line)
    lines[row] = lines[row].replace(",Old Mill District,", ",Old Mill Distrct,")
    audience.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (project / "samples/sales.csv").write_text(
        "address,neighbourhood,price,sold_date\n"
        "9 Fern Way,Juniper Hollow,700000,2026-10-01\n"
        "4 Elm Court,Ceder Grove,650000,2026-09-12\n", encoding="utf-8")
    result = cli("check", project=project)
    assert result.exit_code == 0, result.output  # warnings only
    assert f"warning: audiences/sphere.csv:{row + 1}: neighbourhood: 'Old Mill Distrct' " \
           "matches no neighbourhood feed: no neighbourhood news for them (did you mean " \
           "'Old Mill District'? spell it as content_sources.yaml does" in result.output
    assert "warning: samples/sales.csv: neighbourhood: no sale is in any contact's " \
           "neighbourhood (sales in Ceder Grove, Juniper Hollow), so every recent-sales " \
           "email shows only sales from elsewhere (did you mean 'Cedar Grove'?" \
           in result.output
