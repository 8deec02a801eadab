"""Sphere Studio in team mode (issue #17, point 4), over HTTP with Starlette's
TestClient on a real PostgreSQL: login by account and password instead of the printed
token, the login form's locks, logout, and what an assistant may not do (approve a send,
approve an alert): refused server-side with a 403 page, the buttons not shown."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from pipeline.approval import drafts
from pipeline.project import Project
from pipeline.state.pgstore import PgStore
from pipeline.studio.app import studio_app
from pipeline.studio.jobs import Worker
from pipeline.studio.login import LOGIN_COOKIE
from pipeline.studio.security import COOKIE
from tests.test_studio import NOW, TOKEN, ZOE, approval_on

PASSWORD = "correct horse battery staple"
ASSISTANT_PASSWORD = "assistant's own long password"


@pytest.fixture
def team(project: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
         ) -> Iterator[tuple[TestClient, Path, str]]:
    """A logged-out client of a team-mode studio on the sample (approval on) with an
    agent (dana) and an assistant (sam) in PostgreSQL."""
    monkeypatch.setenv("SPHERE_DATABASE_URL", pg_url)
    approval_on(project)
    with Project.open(project, clock=lambda: NOW) as p:
        p.add_user("dana", "agent", PASSWORD)
        p.add_user("sam", "assistant", ASSISTANT_PASSWORD)
    worker = Worker(lambda: Project.open(project, lambda: NOW))
    app = studio_app(project, lambda: PgStore.open(pg_url), worker, TOKEN, None,
                     ("/unsubscribe",), "Dana", lambda: NOW, team=True)
    with TestClient(app, follow_redirects=False) as client:
        yield client, project, pg_url
    worker.stop()


def _form_csrf(client: TestClient) -> str:
    page = client.get("/login")
    assert page.status_code == 200
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


def log_in(client: TestClient, login: str, password: str) -> int:
    """POST the login form as a browser would; the status of the answer."""
    return client.post("/login", data={"csrf": _form_csrf(client), "login": login,
                                       "password": password}).status_code


def page_csrf(client: TestClient) -> str:
    page = client.get("/review/monthly-sphere")
    assert page.status_code == 200, page.text
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


def draft_id(client: TestClient) -> str:
    page = client.get(f"/review/monthly-sphere/email?to={ZOE}")
    return re.search(r'name="draft" value="(\d+)"', page.text).group(1)  # type: ignore[union-attr]


def _draft(pg_url: str) -> drafts.Draft:
    store = PgStore.open(pg_url)
    try:
        return drafts.load(store)[0]
    finally:
        store.close()


def test_team_mode_logs_in_by_password_and_never_by_the_token(team) -> None:
    client, _, _ = team
    form = client.get("/login")
    assert 'for="login"' in form.text and 'for="password"' in form.text  # labelled
    assert 'type="password"' in form.text
    login_cookie = form.headers["set-cookie"]
    assert login_cookie.startswith(f"{LOGIN_COOKIE}=") and "HttpOnly" in login_cookie
    # The printed token's address starts no session in team mode.
    with_token = client.get(f"/login?token={TOKEN}")
    assert with_token.status_code == 200 and f"{COOKIE}=" not in \
        with_token.headers.get("set-cookie", "")
    assert client.get("/").status_code == 303  # a browser is sent to the login page
    assert client.get("/").headers["location"] == "/login"
    assert client.post("/review/monthly-sphere/note", data={}).status_code == 401
    assert log_in(client, "dana", "wrong password!") == 401
    assert log_in(client, "nobody", PASSWORD) == 401
    assert client.get("/").status_code == 303
    csrf = _form_csrf(client)
    answer = client.post("/login", data={"csrf": csrf, "login": "Dana",
                                         "password": PASSWORD})
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    home = client.get("/")
    assert home.status_code == 200 and "dana (agent)" in home.text
    assert "Log out" in home.text


def test_the_login_form_needs_its_csrf_value_and_the_same_origin(team) -> None:
    client, _, _ = team
    fields = {"login": "dana", "password": PASSWORD}
    assert client.post("/login", data=fields).status_code == 403  # no form value
    csrf = _form_csrf(client)
    assert client.post("/login", data={**fields, "csrf": "forged"}).status_code == 403
    assert client.post("/login", data={**fields, "csrf": csrf},
                       headers={"Origin": "http://evil.example"}).status_code == 403
    client.cookies.delete(LOGIN_COOKIE, path="/login")
    assert client.post("/login", data={**fields, "csrf": csrf}).status_code == 403
    assert client.get("/").status_code == 303  # none of them logged in


def test_the_login_page_loads_its_styles_and_keeps_its_form_value(team) -> None:
    # A browser fetches the page's stylesheet and script while logged out; those must
    # not send it to /login again, whose new form value would void the form shown.
    client, _, _ = team
    csrf = _form_csrf(client)
    assert client.get("/static/studio.css").status_code == 200
    assert client.get("/static/htmx.min.js").status_code == 200
    assert _form_csrf(client) == csrf  # a second tab shows the same form value
    assert client.post("/login", data={"csrf": csrf, "login": "dana",
                                       "password": PASSWORD}).status_code == 303


def test_a_forged_or_altered_session_cookie_is_no_session(team) -> None:
    client, _, _ = team
    assert log_in(client, "dana", PASSWORD) == 303
    real = client.cookies.get(COOKIE)
    assert real and client.get("/").status_code == 200
    session_id, _, mac = real.partition(".")
    client.cookies.clear()
    client.cookies.set(COOKIE, f"{session_id}.{mac[::-1]}")
    assert client.get("/").status_code == 303
    client.cookies.set(COOKIE, session_id)
    assert client.get("/").status_code == 303


def test_repeated_failures_lock_the_login_out_for_a_while(team) -> None:
    client, _, _ = team
    studio = client.app.state.studio  # type: ignore[attr-defined]
    moment = [1000.0]
    studio.throttle.clock = lambda: moment[0]
    for _ in range(studio.throttle.limit):
        assert log_in(client, "dana", "not the password") == 401
    # Now even the right password is refused, without being checked ...
    assert log_in(client, "dana", PASSWORD) == 429
    assert "Too many failed logins" in client.post("/login", data={
        "csrf": _form_csrf(client), "login": "dana", "password": PASSWORD}).text
    assert client.get("/").status_code == 303
    # Another login from the same address is not locked out (behind a proxy, every
    # visitor has one address).
    assert log_in(client, "sam", ASSISTANT_PASSWORD) == 303
    client.cookies.delete(COOKIE)
    # ... until the window has passed.
    moment[0] += studio.throttle.window + 1
    assert log_in(client, "dana", PASSWORD) == 303
    assert client.get("/").status_code == 200


def test_logout_ends_the_session(team) -> None:
    client, _, _ = team
    assert log_in(client, "dana", PASSWORD) == 303
    csrf = page_csrf(client)
    kept = client.cookies.get(COOKIE)
    assert client.post("/logout", data={}).status_code == 403  # CSRF-checked
    answer = client.post("/logout", data={"csrf": csrf})
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    client.cookies.set(COOKIE, kept or "")  # the old cookie, replayed: no session
    assert client.get("/").status_code == 303


def test_a_removed_account_is_logged_out_and_a_new_role_counts_at_once(team) -> None:
    client, _, pg_url = team
    assert log_in(client, "dana", PASSWORD) == 303
    assert "Approve send" in client.get("/review/monthly-sphere").text
    store = PgStore.open(pg_url)
    try:
        from pipeline.models import Role
        hashed = store.user("dana").password_hash  # type: ignore[union-attr]
        store.remove_user("dana")
        assert client.get("/").status_code == 303  # logged out at the next request
        store.add_user("dana", Role.ASSISTANT, hashed, NOW)
        assert log_in(client, "dana", PASSWORD) == 303
        assert "Approve send" not in client.get("/review/monthly-sphere").text
    finally:
        store.close()


def test_an_assistant_personalises_and_reviews_but_sees_no_approve_button(team) -> None:
    client, _, pg_url = team
    assert log_in(client, "sam", ASSISTANT_PASSWORD) == 303
    csrf = page_csrf(client)
    review = client.get("/review/monthly-sphere").text
    assert "Approve send" not in review and "Only an agent can approve" in review
    person = client.get(f"/review/monthly-sphere/email?to={ZOE}").text
    assert "Approve send" not in person and "Approve only this person" not in person
    assert "Save note" in person and "Exclude from this send" in person
    saved = client.post("/review/monthly-sphere/note", data={
        "csrf": csrf, "draft": draft_id(client), "to": ZOE, "note": "See you Sunday!"})
    assert saved.status_code == 303
    assert _draft(pg_url).recipient(ZOE).note == "See you Sunday!"  # type: ignore[union-attr]
    assert "Approve alert" not in client.get("/approvals").text


@pytest.mark.parametrize(("path", "extra"), [
    ("/review/monthly-sphere/approve", {}),
    ("/review/monthly-sphere/approve", {"to": ZOE}),
    ("/approvals/approve", {"alert": "1", "note": "Thought of you"})],
    ids=["approve-send", "approve-one-person", "approve-alert"])
def test_an_assistant_may_not_approve(team, path: str, extra: dict[str, str]) -> None:
    client, project, pg_url = team
    assert log_in(client, "sam", ASSISTANT_PASSWORD) == 303
    csrf = page_csrf(client)
    answer = client.post(path, data={"csrf": csrf, "draft": draft_id(client), **extra})
    assert answer.status_code == 403
    assert "Not allowed for your role" in answer.text
    assert "sam is an assistant: only an agent may approve" in answer.text
    draft = _draft(pg_url)
    assert draft.status == "pending"
    assert all(r.status == "pending" for r in draft.recipients)
    assert not list((project / "var" / "outbox").glob("*.eml"))  # nothing was sent


def test_an_agent_approves_and_the_send_goes(team) -> None:
    client, project, _ = team
    assert log_in(client, "dana", PASSWORD) == 303
    csrf = page_csrf(client)
    answer = client.post("/review/monthly-sphere/approve",
                         data={"csrf": csrf, "draft": draft_id(client), "to": ZOE})
    assert answer.status_code == 303
    sent = [p.name for p in (project / "var" / "outbox").glob("monthly-sphere*.eml")]
    assert sent == ["monthly-sphere_2026-12-01T09_00--zoe.hartmann_example.com.eml"]


def test_an_account_record_never_shows_its_hash() -> None:
    from pipeline.models import Role
    from pipeline.state.records import UserAccount
    account = UserAccount("dana", Role.AGENT, "$argon2id$secret-hash", "t", "t")
    assert "secret-hash" not in repr(account) and "secret-hash" not in str(account)
