"""The studio's accounts (issue #17, point 4): the users table on both backends, scoped
by project; argon2 hashes; `sphere user add|list|passwd|remove` with the password from
a prompt, SPHERE_USER_PASSWORD or standard input, never an argument."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline import accounts
from pipeline.cli.main import main
from pipeline.errors import SphereError
from pipeline.models import Role
from pipeline.project import Project
from tests.conftest import NOW

PASSWORD = "correct horse battery staple"


def test_accounts_are_kept_per_project_on_both_backends(open_ledger) -> None:
    store = open_ledger()
    hashed = accounts.hash_password(PASSWORD)
    assert store.users() == [] and store.user("dana") is None
    assert store.add_user("dana", Role.AGENT, hashed, NOW)
    assert not store.add_user("dana", Role.ASSISTANT, "other", NOW)  # taken: unchanged
    assert store.add_user("sam", Role.ASSISTANT, hashed, NOW)
    assert [(u.login, u.role) for u in store.users()] == [("dana", Role.AGENT),
                                                         ("sam", Role.ASSISTANT)]
    dana = store.user("dana")
    assert dana is not None and dana.role is Role.AGENT and dana.password_hash == hashed
    later = NOW + dt.timedelta(hours=1)
    assert store.set_user_password("sam", "new-hash", later)
    sam = store.user("sam")
    assert sam is not None and sam.password_hash == "new-hash" and sam.updated > sam.created
    assert not store.set_user_password("nobody", "x", later)
    # Another agent's project in the same database sees none of these, and may reuse
    # the login.
    store.project_id = "other-agent"
    assert store.users() == [] and store.user("dana") is None
    assert not store.remove_user("dana")
    assert store.add_user("dana", Role.ASSISTANT, hashed, NOW)
    store.project_id = ""
    assert store.user("dana").role is Role.AGENT  # type: ignore[union-attr]
    assert store.remove_user("sam") and not store.remove_user("sam")
    assert [u.login for u in store.users()] == ["dana"]


def test_passwords_are_argon2_hashes_checked_without_telling_which_part_was_wrong() -> None:
    hashed = accounts.hash_password(PASSWORD)
    assert hashed.startswith("$argon2id$") and PASSWORD not in hashed
    assert accounts.verify_password(hashed, PASSWORD)
    assert not accounts.verify_password(hashed, PASSWORD + "!")
    assert not accounts.verify_password(hashed, "")
    assert not accounts.verify_password(None, PASSWORD)  # no account: a decoy is checked
    assert not accounts.verify_password("not a hash", PASSWORD)
    with pytest.raises(SphereError, match="shorter than 10"):
        accounts.hash_password("short")
    assert accounts.login_name(" Dana.Lee@Example ") == "dana.lee@example"
    with pytest.raises(SphereError, match="login 'a b'"):
        accounts.login_name("a b")
    with pytest.raises(SphereError, match="use one of agent, assistant"):
        accounts.role_of("owner")


def _sphere(*args: str, project: Path, stdin: str | None = None):
    return CliRunner().invoke(main, [*args, "--project", str(project)], input=stdin,
                              catch_exceptions=False)


def test_user_commands_add_list_passwd_and_remove(project: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPHERE_NOW", NOW.isoformat())
    monkeypatch.delenv("SPHERE_USER_PASSWORD", raising=False)
    # A prompt asked twice (hidden), for a person at a terminal.
    added = _sphere("user", "add", "Dana", "--role", "agent", project=project,
                    stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert added.exit_code == 0, added.output
    assert "Account dana (agent) added." in added.stdout and PASSWORD not in added.output
    # Standard input's first line, for a script.
    piped = _sphere("user", "add", "sam", "--role", "assistant", "--password-stdin",
                    project=project, stdin=f"{PASSWORD} two\n")
    assert piped.exit_code == 0, piped.output
    # The environment, for a script too.
    monkeypatch.setenv("SPHERE_USER_PASSWORD", "a third long password")
    assert _sphere("user", "add", "kim", "--role", "assistant",
                   project=project).exit_code == 0
    taken = _sphere("user", "add", "kim", "--role", "agent", project=project)
    assert taken.exit_code == 1 and "there is already an account 'kim'" in taken.stderr
    listing = _sphere("user", "list", project=project)
    created = "created 2026-11-22 18:00 UTC"
    assert listing.stdout.splitlines() == [f"dana  agent  {created}",
                                           f"kim  assistant  {created}",
                                           f"sam  assistant  {created}"]
    assert _sphere("user", "passwd", "sam", project=project).exit_code == 0
    assert _sphere("user", "remove", "kim", project=project).exit_code == 0
    gone = _sphere("user", "remove", "kim", project=project)
    assert gone.exit_code == 1 and "no account 'kim'" in gone.stderr
    with Project.open(project, clock=lambda: NOW) as p:
        assert [u.login for u in p.users()] == ["dana", "sam"]
        assert p.check_login("DANA", PASSWORD) is not None
        assert p.check_login("sam", "a third long password") is not None  # passwd's
        assert p.check_login("sam", PASSWORD + " two") is None
        assert p.check_login("nobody", PASSWORD) is None
    short = _sphere("user", "add", "lee", "--role", "agent", "--password-stdin",
                    project=project, stdin="short\n")
    assert short.exit_code == 1 and "shorter than 10 characters" in short.stderr
    empty = _sphere("user", "add", "lee", "--role", "agent", "--password-stdin",
                    project=project, stdin="")
    assert empty.exit_code == 1 and "no password on standard input" in empty.stderr


def test_no_user_command_takes_the_password_as_an_argument() -> None:
    group = main.commands["user"]
    for command in group.commands.values():  # type: ignore[attr-defined]
        names = [o for p in command.params for o in getattr(p, "opts", [])]
        assert not [n for n in names if n in ("--password", "-p")], command.name
        assert "password" not in [p.name for p in command.params]


@pytest.mark.parametrize(("args", "method"), [
    (["user", "add", "dana", "--role", "agent"], "add_user"),
    (["user", "passwd", "dana"], "set_password"),
    (["user", "list"], "users"), (["user", "remove", "dana"], "remove_user")])
def test_each_user_command_goes_through_the_project(project: Path, args: list[str],
                                                    method: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def refuse(self: Project, *a: object, **k: object) -> None:
        calls.append(self.folder)
        raise SphereError(f"{method} was called")
    monkeypatch.setattr(Project, method, refuse)
    monkeypatch.setenv("SPHERE_USER_PASSWORD", PASSWORD)
    result = CliRunner().invoke(main, [*args, "--project", str(project)])
    assert calls == [project], result.output
    assert result.exit_code == 1 and f"Error: {method} was called" in result.stderr


def test_the_studio_refuses_to_start_in_team_mode_without_an_agent(
        project: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPHERE_DATABASE_URL", pg_url)
    monkeypatch.setenv("SPHERE_USER_PASSWORD", PASSWORD)
    refused = _sphere("studio", "--port", "0", "--no-daemon", project=project)
    assert refused.exit_code == 1
    assert "there is no agent account yet" in refused.stderr
    assert "sphere user add LOGIN --role agent" in refused.stderr
    assert _sphere("user", "add", "sam", "--role", "assistant", project=project
                   ).exit_code == 0
    still = _sphere("studio", "--port", "0", "--no-daemon", project=project)
    assert still.exit_code == 1 and "no agent account" in still.stderr
    with Project.open(project, clock=lambda: NOW) as p:
        assert p.team_mode()
        p.add_user("dana", "agent", PASSWORD)
        assert p.studio_logins()  # now it starts, asking for passwords
    monkeypatch.delenv("SPHERE_DATABASE_URL")
    with Project.open(project, clock=lambda: NOW) as p:
        assert not p.team_mode() and not p.studio_logins()  # SQLite: the token
