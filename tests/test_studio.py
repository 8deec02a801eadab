"""Sphere Studio in-process (issue 15): the session and CSRF locks, escaping, and the
review loop (personal note, drop story, exclude, test, approve) and contact edits
through the library functions the pages call. Starlette's TestClient, real SQLite."""
from __future__ import annotations

import datetime as dt
import email
import re
from collections.abc import Iterator
from email.policy import default
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from pipeline.approval import drafts, review
from pipeline.config import load_config
from pipeline.contacts import directory as contacts
from pipeline.delivery.transports import choose_transport as _transport
from pipeline.project import Project
from pipeline.runner import prepare, run_ingest
from pipeline.scheduling import daemon
from pipeline.state.store import Store
from pipeline.studio.app import studio_app
from pipeline.studio.jobs import Worker
from pipeline.studio.security import COOKIE

NOW = dt.datetime(2026, 12, 1, 18, 0, tzinfo=dt.UTC)  # after the 1st's 09:00
TOKEN = "test-token-0123456789"
ZOE = "zoe.hartmann@example.com"


def approval_on(project: Path) -> Path:
    """The sample with `approval: true` on its newsletter."""
    path = project / "campaigns.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("    kind: newsletter\n",
                                 "    kind: newsletter\n    approval: true\n", 1),
                    encoding="utf-8")
    return project


def bodies(path: Path) -> str:
    """The decoded text and HTML parts of an .eml file."""
    msg = email.message_from_bytes(path.read_bytes(), policy=default)
    return "\n".join(part.get_content() for part in msg.walk()
                     if part.get_content_type() in ("text/plain", "text/html"))


@pytest.fixture
def studio(project: Path) -> Iterator[tuple[TestClient, Path]]:
    """A logged-out client of a studio on the sample (approval on), clock pinned."""
    approval_on(project)
    config = load_config(project)
    Store.open(config.db_path).close()
    worker = Worker(lambda: Project.open(project, lambda: NOW))
    app = studio_app(project, lambda: Store.open(config.db_path), worker, TOKEN, None,
                     ("/unsubscribe",), "Dana", lambda: NOW)
    with TestClient(app, follow_redirects=False) as client:
        yield client, project
    worker.stop()


def login(client: TestClient) -> str:
    """Log in; returns the page's CSRF token."""
    assert client.get(f"/login?token={TOKEN}").status_code == 303
    page = client.get("/review/monthly-sphere")
    assert page.status_code == 200, page.text
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


def draft_id(client: TestClient) -> str:
    page = client.get("/review/monthly-sphere")
    return re.search(r'name="draft" value="(\d+)"', page.text).group(1)  # type: ignore[union-attr]


def test_login_sets_a_strict_httponly_cookie_and_refuses_a_wrong_token(studio) -> None:
    client, _ = studio
    assert client.get("/login?token=wrong").status_code == 403
    assert client.get("/login").status_code == 403
    answer = client.get(f"/login?token={TOKEN}")
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert client.get("/").status_code == 200


@pytest.mark.parametrize("path", ["/", "/review", "/review/monthly-sphere",
                                  f"/review/monthly-sphere/email?to={ZOE}",
                                  f"/review/monthly-sphere/email.html?to={ZOE}",
                                  "/contacts", f"/contacts/person?email={ZOE}",
                                  "/contacts/import", "/calendar", "/report", "/report.html",
                                  "/approvals", "/feeds", "/progress",
                                  "/static/htmx.min.js"])
def test_every_page_needs_the_session(studio, path: str) -> None:
    client, _ = studio
    assert client.get(path).status_code == 401
    client.cookies.set(COOKIE, "forged-session")
    assert client.get(path).status_code == 401


POSTS = ["/review/monthly-sphere/note", "/review/monthly-sphere/approve",
         "/review/monthly-sphere/drop", "/review/monthly-sphere/exclude",
         "/review/monthly-sphere/test", "/contacts/person", "/contacts/import/apply",
         "/approvals/approve", "/approvals/drop"]


@pytest.mark.parametrize("path", POSTS)
def test_every_post_needs_the_session_and_the_csrf_token(studio, path: str) -> None:
    client, project = studio
    fields = {"to": ZOE, "note": "hello", "email": ZOE, "interests": "golf"}
    assert client.post(path, data=fields).status_code == 401
    csrf = login(client)
    fields["draft"] = draft_id(client)
    assert client.post(path, data=fields).status_code == 403
    assert client.post(path, data={**fields, "csrf": "wrong"}).status_code == 403
    assert client.post(path, data={**fields, "csrf": csrf},
                       headers={"Origin": "http://evil.example"}).status_code == 403
    # Nothing was changed by the refused requests.
    store = Store.open(project / "var" / "sphere.db")
    try:
        row = drafts.load(store)[0].recipient(ZOE)
        assert row is not None and row.note == "" and not row.excluded
        assert row.status == "pending" and drafts.load(store)[0].status == "pending"
    finally:
        store.close()
    assert "golf" not in contacts.read(load_config(project), ZOE).fields["interests"]


def test_the_upload_needs_the_csrf_token(studio) -> None:
    client, _ = studio
    login(client)
    files = {"file": ("export.csv", b"Name,Email\nAl Ng,al@example.com\n", "text/csv")}
    assert client.post("/contacts/import", data={"audience": "sphere"},
                       files=files).status_code == 403


def test_user_text_is_escaped_and_never_run_as_a_template(studio) -> None:
    client, project = studio
    csrf = login(client)
    hostile = "<script>alert(1)</script> {{ 7*7 }} {% if 1 %}x{% endif %}"
    answer = client.post("/review/monthly-sphere/note", data={
        "csrf": csrf, "draft": draft_id(client), "to": ZOE, "note": hostile})
    assert answer.status_code == 303
    page = client.get(f"/review/monthly-sphere/email?to={ZOE}").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; {{ 7*7 }}" in page
    html = client.get(f"/review/monthly-sphere/email.html?to={ZOE}").text
    text = client.get(f"/review/monthly-sphere/email.txt?to={ZOE}").text
    assert "{{ 7*7 }}" in text and "49" not in text.split("{{ 7*7 }}")[0][-5:]
    assert "<script>" not in html
    # A contact's name with markup is shown as text on the contacts list.
    contacts.save(load_config(project), ZOE, {"first_name": "<b>Zo</b>"})
    listing = client.get("/contacts").text
    assert "&lt;b&gt;Zo&lt;/b&gt;" in listing and "<b>Zo</b>" not in listing


def test_note_then_approve_sends_at_once_with_the_note_only_to_that_person(studio) -> None:
    client, project = studio
    csrf = login(client)
    draft = draft_id(client)
    note = "Congratulations on the new garden, Zoë!"
    client.post("/review/monthly-sphere/note",
                data={"csrf": csrf, "draft": draft, "to": ZOE, "note": note})
    answer = client.post("/review/monthly-sphere/approve", data={"csrf": csrf, "draft": draft})
    assert answer.status_code == 303
    page = client.get(answer.headers["location"]).text
    assert "Send finished: Sent 28" in page
    outbox = sorted((project / "var" / "outbox").glob("monthly-sphere*.eml"))
    assert len(outbox) == 28
    having = [p.name for p in outbox if note in bodies(p)]
    assert having == ["monthly-sphere_2026-12-01T09_00--zoe.hartmann_example.com.eml"]
    assert bodies(outbox[-1]).count(note) == 0 or "zoe" in outbox[-1].name
    assert sum(bodies(p).count(note) for p in outbox) == 2  # the text part and the HTML
    # Approving again sends nothing twice.
    client.post("/review/monthly-sphere/approve", data={"csrf": csrf, "draft": draft})
    assert len(list((project / "var" / "outbox").glob("monthly-sphere*.eml"))) == 28


def test_approve_one_person_sends_only_them(studio) -> None:
    client, project = studio
    csrf = login(client)
    client.post("/review/monthly-sphere/approve",
                data={"csrf": csrf, "draft": draft_id(client), "to": ZOE})
    sent = [p.name for p in (project / "var" / "outbox").glob("monthly-sphere*.eml")]
    assert sent == ["monthly-sphere_2026-12-01T09_00--zoe.hartmann_example.com.eml"]


def test_send_me_a_test_goes_to_the_sender_and_is_not_recorded(studio) -> None:
    client, project = studio
    csrf = login(client)
    answer = client.post("/review/monthly-sphere/test",
                         data={"csrf": csrf, "draft": draft_id(client), "to": ZOE})
    assert answer.status_code == 303
    tests = list((project / "var" / "test-sends").glob("*.eml"))
    assert len(tests) == 1
    msg = email.message_from_bytes(tests[0].read_bytes(), policy=default)
    assert msg["To"].addresses[0].addr_spec == "dana@riverton-homes.example.com"
    assert msg["Subject"].startswith("[TEST for Zoë Hartmann]")
    assert msg["X-Sphere-Test"] == "yes"
    assert not list((project / "var" / "outbox").glob("monthly-sphere*.eml"))
    store = Store.open(project / "var" / "sphere.db")
    try:
        assert store.ledger_status("monthly-sphere@2026-12-01T09:00") == {}
    finally:
        store.close()


def test_exclude_leaves_the_person_out(studio) -> None:
    client, project = studio
    csrf = login(client)
    draft = draft_id(client)
    client.post("/review/monthly-sphere/exclude", data={"csrf": csrf, "draft": draft, "to": ZOE})
    client.post("/review/monthly-sphere/approve", data={"csrf": csrf, "draft": draft})
    sent = [p.name for p in (project / "var" / "outbox").glob("monthly-sphere*.eml")]
    assert len(sent) == 27 and not any("zoe" in s for s in sent)


def test_drop_story_replaces_it_and_it_is_never_offered_again(project: Path) -> None:
    approval_on(project)
    config = load_config(project)
    store = Store.open(config.db_path)
    try:
        campaign = config.campaign("monthly-sphere")
        draft = review.open_draft(config, store, campaign, NOW)
        before = draft.recipient(ZOE)
        assert before is not None
        dropped = next(p for p in before.picks if not p.key.startswith("tip:"))
        review.drop_story(config, store, campaign, draft, ZOE, dropped.key, NOW)
        after = drafts.load(store, draft_id=draft.id)[0].recipient(ZOE)
        assert after is not None
        keys = [p.key for p in after.picks]
        assert dropped.key not in keys and len(keys) == len(before.picks)
        _, planned = review.planned_email(config, store, campaign,
                                          drafts.load(store, draft_id=draft.id)[0], ZOE)
        assert dropped.key not in [p.key for p in planned.picks]
        # The next period's plan never offers it to Zoë again; others may still get it.
        later = prepare(config, store, campaign, NOW + dt.timedelta(days=31)).plan
        zoe = next(e for e in later.emails if e.contact.email == ZOE)
        assert dropped.key not in [p.key for p in zoe.picks]
    finally:
        store.close()


def test_approved_ahead_of_time_goes_on_schedule_not_before(project: Path) -> None:
    approval_on(project)
    config = load_config(project)
    store = Store.open(config.db_path)
    transport = _transport(config, None, False)
    try:
        campaign = config.campaign("monthly-sphere")
        early = dt.datetime(2026, 11, 20, 18, 0, tzinfo=dt.UTC)
        # The November send already went: review drafts December's, ahead of its time.
        store.start_send("monthly-sphere@2026-11-01T09:00", "monthly-sphere",
                         "2026-11-01T09:00:00-07:00", early)
        draft = review.open_draft(config, store, campaign, early)
        assert draft.send_id == "monthly-sphere@2026-12-01T09:00"
        assert draft.expires > dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
        review.approve(store, draft, early)
        assert not review.review(config, store, campaign, draft, early).due
        daemon.tick(config, store, transport, early)
        assert not list(config.outbox_dir.glob("monthly-sphere*.eml"))
        daemon.tick(config, store, transport, NOW)
        assert len(list(config.outbox_dir.glob("monthly-sphere*.eml"))) == 28
    finally:
        store.close()


def test_saving_a_contact_keeps_the_file_and_changes_their_picks(project: Path) -> None:
    config = load_config(project)
    path = project / "audiences" / "sphere.csv"
    # An extra column of the user's own and a CRLF file: both are kept.
    lines = path.read_text(encoding="utf-8").splitlines()
    lines = [lines[0] + ",crm_id"] + [f"{line},id{i}" for i, line in enumerate(lines[1:])]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
    before = path.read_bytes().split(b"\r\n")
    store = Store.open(config.db_path)
    try:
        run_ingest(config, store, NOW)
        campaign = config.campaign("monthly-sphere")
        old = prepare(config, store, campaign, NOW, only=frozenset({ZOE})).plan.emails[0]
        contacts.save(config, ZOE, {"interests": "golf, Wine", "private_note": "likes tea",
                                    "neighbourhood": "Maple Heights"})
        after = path.read_bytes().split(b"\r\n")
        new = prepare(config, store, campaign, NOW, only=frozenset({ZOE})).plan.emails[0]
    finally:
        store.close()
    assert after[0] == before[0] + b",private_note"
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b]
    assert changed == [0, 1] and len(after) == len(before)
    assert b"golf;wine" in after[1] and after[1].endswith(b",id0,likes tea")
    assert {p.key for p in old.picks} != {p.key for p in new.picks}
    assert any("golf" in p.reason or "wine" in p.reason for p in new.picks)
    assert contacts.read(config, ZOE).fields["private_note"] == "likes tea"
    # The private note is never in the email.
    assert "likes tea" not in str(new.contact)


def test_saving_an_invalid_contact_changes_nothing(project: Path) -> None:
    config = load_config(project)
    path = project / "audiences" / "sphere.csv"
    before = path.read_bytes()
    with pytest.raises(Exception, match="time zone"):
        contacts.save(config, ZOE, {"timezone": "Mars/Olympus"})
    assert path.read_bytes() == before


def test_contact_page_saves_and_shows_new_picks(studio) -> None:
    client, project = studio
    csrf = login(client)
    page = client.get(f"/contacts/person?email={ZOE}").text
    assert 'for="interests">Interests</label>' in page and "Save contact" in page
    answer = client.post("/contacts/person", data={"csrf": csrf, "email": ZOE,
                                                   "interests": "golf", "note": "Hi!"})
    assert answer.status_code == 303
    page = client.get(answer.headers["location"]).text
    assert "Contact saved" in page and "golf" in page
    row = contacts.read(load_config(project), ZOE).fields
    assert row["interests"] == "golf" and row["note"] == "Hi!"


def test_import_shows_the_report_before_applying(studio) -> None:
    client, project = studio
    csrf = login(client)
    files = {"file": ("export.csv", b"Name,Email,Tags\nAl Ng,al@example.com,golf\n",
                      "text/csv")}
    page = client.post("/contacts/import", data={"csrf": csrf, "audience": "sphere"},
                       files=files)
    assert page.status_code == 200 and "imported 1" in page.text
    assert "al@example.com" not in (project / "audiences" / "sphere.csv").read_text()
    upload = re.search(r'name="upload" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    page = client.post("/contacts/import/apply", data={"csrf": csrf, "upload": upload,
                                                       "audience": "sphere"})
    assert page.status_code == 200 and "Imported" in page.text
    assert "al@example.com" in (project / "audiences" / "sphere.csv").read_text()


@pytest.mark.parametrize("path", ["/", "/review", "/contacts", "/calendar", "/report",
                                  "/report.html", "/approvals", "/feeds", "/contacts/import"])
def test_pages_render(studio, path: str) -> None:
    client, _ = studio
    login(client)
    answer = client.get(path)
    assert answer.status_code == 200, answer.text
    if path != "/report.html":
        for name in ("Review", "Contacts", "Calendar", "Report", "Approvals", "Feeds"):
            assert f">{name}</a>" in answer.text


def test_the_webhook_endpoints_need_no_session(studio) -> None:
    client, _ = studio
    assert client.get("/health").status_code == 200
    # Not the session but SendGrid's key guards the events (unset here: refused).
    assert client.post("/sendgrid/events", content=b"[]").status_code == 403
    assert client.get("/unsubscribe?t=bad").status_code in (400, 403)


def test_a_typed_formula_is_written_harmless_and_read_back_as_typed(project: Path) -> None:
    config = load_config(project)
    contacts.save(config, ZOE, {"private_note": "=HYPERLINK(\"http://x\")"})
    row = next(line for line in (project / "audiences" / "sphere.csv").read_text(
        encoding="utf-8").splitlines() if line.startswith(ZOE))
    assert row.endswith("'=HYPERLINK(\"\"http://x\"\")\"")
    assert contacts.read(config, ZOE).fields["private_note"] == "=HYPERLINK(\"http://x\")"


def test_a_contact_edit_repicks_their_email_still_under_review(studio) -> None:
    client, project = studio
    csrf = login(client)
    config = load_config(project)
    store = Store.open(config.db_path)
    try:
        held = drafts.load(store)[0].recipient(ZOE)
    finally:
        store.close()
    assert held is not None and not any("golf" in p.reason for p in held.picks)
    client.post("/contacts/person", data={"csrf": csrf, "email": ZOE, "interests": "golf"})
    store = Store.open(config.db_path)
    try:
        after = drafts.load(store)[0].recipient(ZOE)
    finally:
        store.close()
    assert after is not None and any("golf" in p.reason for p in after.picks)
    page = client.get(f"/review/monthly-sphere/email?to={ZOE}").text
    assert "golf" in page


def test_the_timeline_shows_what_they_received_and_their_notes(studio) -> None:
    client, _ = studio
    csrf = login(client)
    draft = draft_id(client)
    client.post("/review/monthly-sphere/note",
                data={"csrf": csrf, "draft": draft, "to": ZOE, "note": "See you Sunday"})
    client.post("/review/monthly-sphere/approve", data={"csrf": csrf, "draft": draft})
    page = client.get(f"/contacts/person?email={ZOE}").text
    timeline = page[page.index("Timeline"):]
    assert "received</strong> monthly-sphere@2026-12-01T09:00" in timeline
    assert "personal note</strong> See you Sunday (in monthly-sphere@2026-12-01T09:00)" \
        in timeline


def test_home_shows_checks_problems_with_file_and_line(studio) -> None:
    client, project = studio
    login(client)
    template = project / "templates" / "newsletter.txt"
    template.write_text(template.read_text(encoding="utf-8") + "\n{{ contact.frist_name }}\n",
                        encoding="utf-8")
    page = client.get("/").text
    assert "audiences/sphere.csv:6: email:" in page  # the sample's malformed address
    assert "templates/newsletter.txt:" in page and "frist_name" in page


def test_a_campaign_without_approval_shows_each_email_and_takes_a_note_for_the_next(
        studio) -> None:
    client, project = studio
    csrf = login(client)
    config = load_config(project)
    store = Store.open(config.db_path)
    try:
        run_ingest(config, store, NOW)
    finally:
        store.close()
    page = client.get("/review/recent-sales").text
    assert "without approval" in page
    assert f'href="/review/recent-sales/email?to={ZOE.replace("@", "%40")}">Zoë Hartmann</a>' \
        in page
    person = client.get(f"/review/recent-sales/email?to={ZOE}").text
    assert "Approve send" not in person and "Personal note" in person
    answer = client.post("/review/recent-sales/note",
                         data={"csrf": csrf, "to": ZOE, "note": "Coffee next week?"})
    assert answer.status_code == 303
    assert "Coffee next week?" in client.get(f"/review/recent-sales/email.txt?to={ZOE}").text
    store = Store.open(config.db_path)
    try:
        assert [n.text for n in store.pending_notes()[ZOE]] == ["Coffee next week?"]
        assert drafts.load(store, send_id="") == []  # nothing was drafted for it
        assert not any(d.name == "recent-sales" for d in drafts.load(store))
    finally:
        store.close()


def test_solo_mode_keeps_the_token_and_has_no_password_form(studio) -> None:
    # SQLite: the printed token logs in, as before; the password form is not there.
    client, _ = studio
    assert client.post("/login", data={"login": "dana", "password": "a long password"}
                       ).status_code == 405
    csrf = login(client)
    assert "Log out" not in client.get("/").text  # no accounts, no account menu
    assert "Approve send" in client.get("/review/monthly-sphere").text
    assert client.post("/logout", data={"csrf": csrf}).status_code == 200
    assert client.get("/").status_code == 401  # the session is over

