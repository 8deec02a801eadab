"""The library's front door (issue #14): a Project opened from a folder owns its config,
store and clock; the CLI's commands go through it; and its operations work without the
CLI, on real files with a clock passed in."""
from __future__ import annotations

import ast
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli.main import main
from pipeline.errors import SphereError
from pipeline.project import Project
from tests.conftest import NOW, REPO


def test_a_project_loads_its_config_once_and_opens_its_store_only_when_asked(
        project: Path) -> None:
    with Project.open(project, clock=lambda: NOW) as p:
        assert p._store is None and p._config is None  # opening reads nothing
        assert p.config is p.config
        assert p.now() == NOW
        store = p.store
        assert p.store is store
    assert p._store is None
    with pytest.raises(sqlite3.ProgrammingError):  # closed with the project
        store.article_count()


def test_plan_send_to_outbox_and_status_through_the_project(project: Path) -> None:
    with Project.open(project, clock=lambda: NOW, dry_run=True) as p:
        planned = p.plan("monthly-sphere")
    emails = planned.prepared.plan.emails
    assert emails and planned.done == frozenset()
    assert not (project / "var" / "outbox").exists()  # a dry-run project wrote nothing

    with Project.open(project, clock=lambda: NOW) as p:
        sent = p.send("monthly-sphere", "outbox")
        assert sent.summary.sent == len(emails) and sent.outbox == p.config.outbox_dir
        assert len(list(sent.outbox.glob("monthly-sphere*.eml"))) == len(emails)
        view = p.status()
    assert [row.send_id for row in view.sends] == [sent.summary.send_id]
    assert view.sends[0].sent == len(emails)
    assert view.articles > 0 and not view.pending

    with Project.open(project, clock=lambda: NOW) as p:
        again = p.send("monthly-sphere", "outbox", ingest=False)
        assert again.summary.sent == 0 and again.summary.already_sent == len(emails)
        assert p.plan("monthly-sphere", ingest=False).done == frozenset(
            e.contact.email for e in emails)


def test_referrals_through_the_project(project: Path) -> None:
    with Project.open(project, clock=lambda: NOW) as p:
        with pytest.raises(SphereError, match="in no audience file"):
            p.add_referral("nobody@example.com", "Sam Ortiz")
        added = p.add_referral("zoe.hartmann@example.com", "Sam Ortiz")
        assert added.id == 1 and "referral-thanks" in added.drips
        (row,) = p.referrals()
        assert row.by_email == "zoe.hartmann@example.com" and row.name == "Sam Ortiz"
        with pytest.raises(SphereError, match="no referral 7"):
            p.update_referral(7, "listed")
        first = p.update_referral(1, "listed", "outbox")
        assert first.sent or first.waits_until is not None
        if first.sent:
            assert p.update_referral(1, "listed", "outbox").already_sent


def test_notes_through_the_project(project: Path) -> None:
    with Project.open(project, clock=lambda: NOW) as p:
        note_id = p.add_note("zoe.hartmann@example.com", "Lovely to see you at the fair!")
        assert [n.id for n in p.notes("zoe.hartmann@example.com")] == [note_id]
        p.edit_note(note_id, "Edited.")
        assert p.notes()[0].text == "Edited."
        p.remove_note(note_id)
        assert p.notes() == []
        with pytest.raises(SphereError, match=f"no note {note_id}"):
            p.remove_note(note_id)


def test_check_schedule_backup_and_templates_through_the_project(project: Path,
                                                                tmp_path: Path) -> None:
    import datetime as dt
    with Project.open(project, clock=lambda: NOW) as p:
        checked = p.check()
        assert checked.errors == 0 and checked.contacts > 0
        assert checked.campaigns == len(p.config.campaigns)
        view = p.schedule(dt.date(2026, 12, 1), dt.date(2026, 12, 31))
        assert view.due and all(view.start <= d.at <= view.end for d in view.due)
        with pytest.raises(SphereError, match="--until must be after the start"):
            p.schedule(dt.date(2026, 12, 2), dt.date(2026, 12, 1))
        with pytest.raises(SphereError, match="is the database itself"):
            p.backup(p.config.db_path)
        assert p.backup(tmp_path / "copy.db") == (tmp_path / "copy.db").stat().st_size
        assert any(t.name == "newsletter.mjml" for t in p.templates())
        assert p.approval_queue().alerts == ()


# Each command and the Project method it must call.
COMMANDS = [
    (["check"], "check"), (["ingest"], "ingest"), (["plan", "monthly-sphere"], "plan"),
    (["preview", "monthly-sphere"], "preview"), (["send", "monthly-sphere"], "send"),
    (["status"], "status"), (["resolve", "s", "e@example.com", "--sent"], "resolve"),
    (["note", "add", "e@example.com", "hi"], "add_note"), (["note", "list"], "notes"),
    (["note", "edit", "1", "x"], "edit_note"), (["note", "remove", "1"], "remove_note"),
    (["approve"], "approval_queue"), (["approve", "--show", "d1"], "draft"),
    (["referral", "add", "--by", "e@example.com", "--name", "N"], "add_referral"),
    (["referral", "update", "1", "--status", "met"], "update_referral"),
    (["schedule"], "schedule"), (["run", "--once"], "tick"), (["report"], "report"),
    (["contacts", "import", "x.csv", "--audience", "a"], "import_contacts"),
    (["backup", "copy.db"], "backup"), (["templates"], "templates"),
    (["suppressions", "sync"], "sync_suppressions"),
    (["db", "status"], "schema_status"), (["db", "upgrade"], "upgrade_schema"),
    (["db", "migrate-to", "postgresql://h/d"], "migrate_to"),
]


@pytest.mark.parametrize(("args", "method"), COMMANDS, ids=[m for _, m in COMMANDS])
def test_each_command_goes_through_the_project(project: Path, args: list[str], method: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def refuse(self: Project, *a: object, **k: object) -> None:
        calls.append(self.folder)
        raise SphereError(f"{method} was called")
    monkeypatch.setattr(Project, method, refuse)
    monkeypatch.setenv("SPHERE_NOW", NOW.isoformat())
    result = CliRunner().invoke(main, [*args, "--project", str(project)])
    assert calls == [project], result.output
    assert result.exit_code == 1 and f"Error: {method} was called" in result.stderr


def _imported(tree: ast.AST) -> list[str]:
    """Modules imported from, leaving out `if TYPE_CHECKING:` blocks (names for types)."""
    found = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            continue
        if isinstance(node, ast.ImportFrom):
            found.append(node.module or "")
        found += _imported(node)
    return found


def test_the_cli_opens_no_store_and_loads_no_config_itself() -> None:
    # Only the Project (pipeline/project.py) opens the database, loads the config, picks
    # the transport or runs the scheduler; a command opens the Project and prints.
    banned = {"pipeline.state.store", "pipeline.config", "pipeline.scheduling.daemon",
              "pipeline.delivery.transports"}
    for path in sorted((REPO / "pipeline" / "cli").glob("*.py")):
        used = set(_imported(ast.parse(path.read_text(encoding="utf-8"))))
        assert not used & banned, f"{path.name} imports {used & banned}"
    assert "pipeline.config" in _imported(ast.parse("def f():\n    from pipeline.config "
                                                    "import load_config\n"))


def _hold_newsletter(project: Path) -> None:
    """`approval: true` on the sample's newsletter: a send holds draft d1."""
    path = project / "campaigns.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("    kind: newsletter\n",
                                 "    kind: newsletter\n    approval: true\n", 1),
                    encoding="utf-8")


def test_approve_checks_every_draft_before_deciding_any_and_says_what_sends_it(
        project: Path) -> None:
    from pipeline.models import DraftStatus
    from pipeline.outcomes import RecipientState, summary_line
    _hold_newsletter(project)
    with Project.open(project, clock=lambda: NOW) as p:
        assert p.send("monthly-sphere", "outbox").summary.sent == 0
        listing = p.approve([], [])
        assert listing.listed and not listing.drafts and len(listing.queue.drafts) == 1
        assert p.pending_alerts() == {}
        with pytest.raises(SphereError, match="no draft d99"):
            p.approve([], [1, 99])
        assert p.draft(1).status == DraftStatus.PENDING  # d1 was not decided either
        with pytest.raises(SphereError, match="--contact decides for one person"):
            p.approve([], [1, 1], contact="zoe.hartmann@example.com")
        states = p.recipient_states(p.draft(1))
        assert states and all(isinstance(s, RecipientState) and s.state == "held"
                              for s in states)
        done = p.approve([], [], every=True)
        assert not done.listed and [d.draft.id for d in done.drafts] == [1]
        assert "sphere send monthly-sphere" in done.drafts[0].when_sent
        assert p.draft(1).status == DraftStatus.APPROVED
        assert p.approve([], [], every=True).nothing_waiting
        summaries = p.send_draft(1)
    assert sum(s.sent for s in summaries) == len(states)
    assert summary_line(summaries).startswith(f"Sent {len(states)}, ")
    assert len(list((project / "var" / "outbox").glob("monthly-sphere*.eml"))) == len(states)


def test_a_tick_takes_the_project_lock_unless_its_caller_holds_it(project: Path) -> None:
    from pipeline.errors import LockedError
    from pipeline.scheduling.daemon import ProjectLock
    with Project.open(project, clock=lambda: NOW) as p:
        lock = ProjectLock(p.config.state_dir)
        lock.acquire()
        try:
            with pytest.raises(LockedError):
                p.tick()
            report = p.tick(locked=True, should_stop=lambda: True)
        finally:
            lock.release()
        assert report.summaries == ()  # told to stop before its first send
        p.tick()  # the lock is free again


def test_recorded_events_and_synced_counts_are_named(project: Path, tmp_path: Path) -> None:
    from pipeline.outcomes import EventsRecorded
    batch = tmp_path / "events.json"
    batch.write_text('[{"event": "delivered", "email": "zoe.hartmann@example.com", '
                     '"timestamp": 1764579600, "sg_event_id": "e1", "sg_message_id": "m1", '
                     '"send_id": "monthly-sphere@2026-11-01T09:00"}]', encoding="utf-8")
    with Project.open(project, clock=lambda: NOW) as p:
        assert p.record_events(batch) == EventsRecorded(added=1, total=1)
        assert p.record_events(batch) == EventsRecorded(added=0, total=1)  # a redelivery


def test_what_fell_due_and_did_not_go_out_says_its_kind_address_and_count(
        project: Path) -> None:
    import datetime as dt

    from pipeline.models import DueKind
    with (project / "audiences/sphere.csv").open("a", encoding="utf-8") as fh:
        fh.write("late@example.com,Ann,Late,Maple Heights,golf,past_client,2026-11-17,"
                 "America/Los_Angeles,,subscribed\n")
    at = dt.datetime(2026, 11, 24, 2, 10, tzinfo=dt.UTC)
    with Project.open(project, clock=lambda: at) as p:
        late = p.status().late
        (drip,) = [u for u in late if u.email == "late@example.com"]
        campaigns = [u for u in late if u.kind == DueKind.CAMPAIGN]
    assert drip.kind == DueKind.DRIP and drip.count == 1 and drip.who == drip.email
    assert campaigns and all(u.email == "" and u.count > 0 and
                             u.who == f"{u.count} {'person' if u.count == 1 else 'people'}"
                             for u in campaigns)


def test_create_project_makes_a_starter_once(tmp_path: Path) -> None:
    from pipeline.resources import create_project
    folder = tmp_path / "new"
    create_project(folder)
    assert (folder / "campaigns.yaml").is_file() and (folder / "audiences").is_dir()
    assert (folder / "templates" / "README.txt").is_file()
    with pytest.raises(SphereError, match="already holds a Sphere project"):
        create_project(folder)
    with Project.open(folder, clock=lambda: NOW) as p:
        assert p.config.campaigns


def test_the_webhook_service_is_bound_by_the_project(project: Path, monkeypatch) -> None:
    from pipeline.delivery.webhook import PUBLIC_KEY_ENV
    monkeypatch.delenv(PUBLIC_KEY_ENV, raising=False)
    with Project.open(project, clock=lambda: NOW) as p:
        service = p.webhook_server("127.0.0.1", 0)
        try:
            assert not service.signed and "/unsubscribe" in service.paths
            assert service.server.url.startswith("http://127.0.0.1:")
            port = service.sock.getsockname()[1]
            with pytest.raises(SphereError, match=f"cannot listen on 127.0.0.1:{port}"):
                p.webhook_server("127.0.0.1", port)
        finally:
            service.sock.close()
    assert (project / "var" / "sphere.db").is_file()  # migrated before serving


def test_previews_of_a_person_through_the_project(project: Path) -> None:
    zoe = "zoe.hartmann@example.com"
    with Project.open(project, clock=lambda: NOW) as p:
        p.ingest()
        previews = p.contact_preview(zoe)
        assert [c.campaign.name for c in previews] == ["monthly-sphere"]
        assert previews[0].picks  # her newsletter has stories for her
        assert p.contact_preview("nobody@example.com") == ()
        rendered = p.email_preview("monthly-sphere", zoe)
        assert rendered.contact.email == zoe and "<html" in rendered.html.lower()
        assert previews[0].picks[0].article is None or \
            previews[0].picks[0].article.title in rendered.text
        with pytest.raises(SphereError, match="no campaign 'nope'"):
            p.email_preview("nope", zoe)


def test_home_lists_held_drafts_and_the_coming_sends(project: Path) -> None:
    import datetime as dt
    _hold_newsletter(project)
    early = NOW - dt.timedelta(days=25)  # before the newsletter's 1 November send
    with Project.open(project, clock=lambda: early) as p:
        coming = p.coming_sends(14)
        assert [s.send_id for s in coming if s.name == "monthly-sphere"] == \
            ["monthly-sphere@2026-11-01T09:00"]
        assert list(coming) == sorted(coming, key=lambda s: (s.at, s.send_id))
        assert p.home().drafts == ()
    with Project.open(project, clock=lambda: NOW) as p:
        p.send("monthly-sphere", "outbox")
        view = p.home()
        (held,) = view.drafts
        assert held.draft.id == 1 and held.held == len(held.draft.recipients)
        assert view.alerts == () and view.failing_feeds == ()
        p.approve([], [1])
        assert p.home().drafts == ()  # approved: nobody held any more


def test_alerts_waiting_name_their_story_and_person(project: Path) -> None:
    zoe = "zoe.hartmann@example.com"
    with Project.open(project, clock=lambda: NOW) as p:
        p.ingest()
        article = p.store.articles()[0]
        p.store.queue_alerts("alerts", [(zoe, article.id, 0.9, "market"),
                                        ("gone@example.com", "no-such-story", 0.8, "golf")],
                             NOW)
        waiting = {w.alert.email: w for w in p.alerts_waiting()}
        assert waiting[zoe].title == article.title and waiting[zoe].contact is not None
        assert waiting[zoe].contact.email == zoe
        gone = waiting["gone@example.com"]
        assert gone.title == "no-such-story" and gone.contact is None
        p.decide_alerts([waiting[zoe].alert.id], p.pending_alerts(), True, None)
        assert [w.alert.email for w in p.alerts_waiting()] == ["gone@example.com"]
