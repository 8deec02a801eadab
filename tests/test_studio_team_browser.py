"""Sphere Studio in team mode in a real browser (issue #17, point 4): `sphere studio` as
a subprocess on PostgreSQL, with an agent and an assistant made by `sphere user add`;
Playwright drives Debian's chromium. The assistant logs in, writes a personal note and
finds no approve button; the agent logs in and approves, and the send goes."""
from __future__ import annotations

import email
import os
import subprocess
import sys
from collections.abc import Iterator
from email.policy import default
from pathlib import Path

import pytest

from tests.conftest import REPO, copy_sample
from tests.test_studio import approval_on
from tests.test_studio_browser import NOW, _studio_url, browser, expect  # noqa: F401

NOTE = "Lovely to see the garden in bloom, Zoë!"
AGENT_PASSWORD = "the agent's long password"
ASSISTANT_PASSWORD = "the assistant's long password"


def _bodies(path: Path) -> str:
    msg = email.message_from_bytes(path.read_bytes(), policy=default)
    return "\n".join(part.get_content() for part in msg.walk()
                     if part.get_content_type() in ("text/plain", "text/html"))


@pytest.fixture(scope="module")
def team_studio(tmp_path_factory: pytest.TempPathFactory, pg_server
                ) -> Iterator[tuple[str, Path]]:
    """`sphere studio --port 0` on PostgreSQL; yields (the printed address, project)."""
    project = approval_on(copy_sample(tmp_path_factory.mktemp("team") / "project"))
    env = {**os.environ, "SPHERE_NOW": NOW, "PYTHONPATH": str(REPO),
           "SPHERE_DATABASE_URL": pg_server.create_database("team")}
    env.pop("SPHERE_STUDIO_TOKEN", None)
    env.pop("SPHERE_USER_PASSWORD", None)
    sphere = [sys.executable, "-m", "pipeline"]
    for login, role, password in (("dana", "agent", AGENT_PASSWORD),
                                  ("sam", "assistant", ASSISTANT_PASSWORD)):
        subprocess.run([*sphere, "user", "add", login, "--role", role, "--password-stdin",
                        "--project", str(project)], input=password + "\n", text=True,
                       env=env, check=True, capture_output=True)
    proc = subprocess.Popen([*sphere, "studio", "--project", str(project), "--port", "0",
                             "--no-daemon"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        yield _studio_url(proc), project
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _log_in(browser, url: str, login: str, password: str):  # noqa: F811
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("Login").fill(login)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Home")).to_be_visible()
    return page


def test_an_assistant_writes_a_note_and_an_agent_approves(team_studio, browser  # noqa: F811
                                                          ) -> None:
    url, project = team_studio
    assert url.endswith("/login") and "token=" not in url
    page = _log_in(browser, url, "sam", ASSISTANT_PASSWORD)
    expect(page.get_by_text("sam (assistant)")).to_be_visible()
    page.get_by_role("link", name="Review", exact=True).click()
    page.get_by_role("link", name="monthly-sphere").click()
    expect(page.get_by_text("Only an agent can approve this send")).to_be_visible()
    page.get_by_role("link", name="Zoë Hartmann").click()
    page.get_by_label("Personal note").fill(NOTE)
    page.get_by_role("button", name="Save note").click()
    expect(page.get_by_role("status").first).to_contain_text("Note saved")
    expect(page.get_by_role("button", name="Approve send")).to_have_count(0)
    expect(page.get_by_role("button", name="Approve only this person")).to_have_count(0)
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.context.close()
    assert not list((project / "var").glob("outbox/*.eml"))

    page = _log_in(browser, url, "dana", AGENT_PASSWORD)
    page.get_by_role("link", name="Review", exact=True).click()
    page.get_by_role("link", name="monthly-sphere").click()
    page.get_by_role("button", name="Approve send").click()
    expect(page.locator("#progress")).to_contain_text("Send finished", timeout=120_000)
    outbox = sorted((project / "var" / "outbox").glob("monthly-sphere*.eml"))
    assert len(outbox) == 28
    with_note = [p.name for p in outbox if NOTE in _bodies(p)]
    assert with_note == ["monthly-sphere_2026-12-01T09_00--zoe.hartmann_example.com.eml"]
    page.context.close()
