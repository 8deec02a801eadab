"""Sphere Studio end to end in a real browser (issue 15, point 8): `sphere studio` as a
subprocess on the sample with `approval: true` on the newsletter and the clock after the
send's time; Playwright drives Debian's chromium by the names of point 7."""
from __future__ import annotations

import email
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from email.policy import default
from pathlib import Path

import pytest

from tests.conftest import REPO, copy_sample
from tests.test_studio import approval_on

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
NOW = "2026-12-01T18:00:00+00:00"  # after the newsletter's 09:00 on the 1st
NOTE = "So glad the peonies made it through the move, Zoë!"

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("chromium is missing; .ci/run installs it (apt-get install chromium)")
    pytest.skip("chromium not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


def _studio_url(proc: subprocess.Popen, timeout: float = 60.0) -> str:
    """The login address the studio prints on its own line of stdout."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if line.startswith("Studio: "):
                return line.removeprefix("Studio: ").strip()
    proc.kill()
    raise AssertionError(f"no Studio: line; stdout {seen}; stderr "
                         f"{proc.stderr.read() if proc.stderr else ''}")


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`sphere studio --port 0` on a copy of the sample; yields (login URL, project)."""
    project = approval_on(copy_sample(tmp_path_factory.mktemp("studio") / "project"))
    env = {**os.environ, "SPHERE_NOW": NOW, "PYTHONPATH": str(REPO)}
    env.pop("SPHERE_STUDIO_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "studio", "--project",
                             str(project), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        yield _studio_url(proc), project
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Debian chromium through Playwright (never a downloaded browser)."""
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield chromium
        chromium.close()


def _page(browser, url: str, width: int = 1280):
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    expect(page.get_by_role("heading", name="Home")).to_be_visible()
    return page


def _bodies(path: Path) -> str:
    msg = email.message_from_bytes(path.read_bytes(), policy=default)
    return "\n".join(part.get_content() for part in msg.walk()
                     if part.get_content_type() in ("text/plain", "text/html"))


def _no_overflow(page, name: str, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.wait_for_timeout(200)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"studio-{name}-{width}.png"), full_page=True)
    scroll, inner = page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll <= inner, f"{name} at {width}px: {scroll}px wide"


def test_review_note_and_approve_sends_the_note_once(studio, browser) -> None:
    url, project = studio
    page = _page(browser, url)
    expect(page.get_by_role("heading", name="Home")).to_be_visible()
    page.get_by_role("link", name="Review", exact=True).click()
    page.get_by_role("link", name="monthly-sphere").click()
    page.get_by_role("link", name="Zoë Hartmann").click()
    expect(page.get_by_role("heading", name="Zoë Hartmann")).to_be_visible()
    expect(page.get_by_role("link", name="Text version")).to_be_visible()
    page.get_by_label("Personal note").fill(NOTE)
    page.get_by_role("button", name="Save note").click()
    expect(page.get_by_role("status").first).to_contain_text("Note saved")
    expect(page.get_by_label("Personal note")).to_have_value(NOTE)
    for width in (375, 1280):
        _no_overflow(page, "review", width)
    page.get_by_role("button", name="Approve send").click()
    expect(page.locator("#progress")).to_contain_text("Send finished", timeout=120_000)
    outbox = sorted((project / "var" / "outbox").glob("monthly-sphere*.eml"))
    assert len(outbox) == 28
    with_note = [p.name for p in outbox if NOTE in _bodies(p)]
    assert with_note == ["monthly-sphere_2026-12-01T09_00--zoe.hartmann_example.com.eml"]
    page.context.close()


def test_editing_interests_changes_the_picks(studio, browser) -> None:
    url, project = studio
    page = _page(browser, url)
    page.get_by_role("link", name="Contacts", exact=True).click()
    page.get_by_label("Search").fill("Alvarez")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="José Alvarez").click()
    picks = page.locator("ol.picks").first
    before = picks.inner_text()
    page.get_by_label("Interests").fill("golf, wine")
    page.get_by_label("Note", exact=True).fill("Hope the new deck is holding up!")
    page.get_by_label("Private note").fill("Prefers a call to email.")
    page.get_by_role("button", name="Save contact").click()
    expect(page.get_by_role("status").first).to_contain_text("Contact saved")
    after = page.locator("ol.picks").first.inner_text()
    assert after != before and "golf" in after.lower()
    row = next(line for line in (project / "audiences" / "sphere.csv").read_text(
        encoding="utf-8").splitlines() if line.startswith("jose.alvarez@"))
    assert ",golf;wine," in row and row.endswith("Prefers a call to email.")
    for width in (375, 1280):
        _no_overflow(page, "contact", width)
    page.get_by_role("link", name="Contacts", exact=True).click()
    for width in (375, 1280):
        _no_overflow(page, "contacts", width)
    page.context.close()


def test_refused_without_session_or_csrf_token(studio, browser) -> None:
    url, _ = studio
    base = re.match(r"https?://[^/]+", url).group(0)  # type: ignore[union-attr]
    stranger = browser.new_context()
    answer = stranger.request.get(f"{base}/review")
    assert answer.status == 401
    assert stranger.request.post(f"{base}/contacts/person", form={
        "email": "zoe.hartmann@example.com", "interests": "x"}).status == 401
    stranger.close()
    page = _page(browser, url)
    # Logged in, but a POST without the CSRF token is refused.
    answer = page.context.request.post(f"{base}/contacts/person", form={
        "email": "zoe.hartmann@example.com", "interests": "hacked"})
    assert answer.status == 403
    for width in (375, 1280):
        for name in ("calendar", "feeds", "approvals", "report"):
            page.goto(f"{base}/{name}")
            _no_overflow(page, name, width)
    page.context.close()
