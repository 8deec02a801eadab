"""Secrets (issue 13.9): credentials in URLs are never printed, a key that cannot be sent
is a clear error, and SPHERE_SECRET signs unsubscribe links with rotation."""
from __future__ import annotations

import email
import re
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.errors import redact, redact_url
from pipeline.rendering.links import make_token, read_token
from pipeline.state.store import Store
from tests.conftest import NOW
from tests.deliver_support import free_port

KEY_A = "first-key-0123456789abcdef"
KEY_B = "second-key-0123456789abcdef"


@pytest.mark.parametrize("url, shown", [
    ("http://user:KEY@host/v3", "http://***@host/v3"),
    ("https://KEY@host:8443/", "https://***@host:8443/"),
    ("https://host/feed.xml?key=KEY&page=2", "https://host/feed.xml?key=***&page=2"),
    ("https://host/f?api_key=KEY&access_token=KEY&token=KEY",
     "https://host/f?api_key=***&access_token=***&token=***"),
    ("https://host/feed.xml?page=2", "https://host/feed.xml?page=2"),
])
def test_redact_url_hides_userinfo_and_secret_parameters(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact(f"cannot reach {url}: refused") == f"cannot reach {shown}: refused"


def test_credentials_in_the_api_host_are_never_printed(project: Path, cli,
                                                       monkeypatch) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.a-fine-key")
    monkeypatch.setenv("SENDGRID_API_HOST", f"http://user:HOSTPW@127.0.0.1:{free_port()}")
    result = cli("send", "monthly-sphere", "--transport", "sendgrid", project=project)
    assert result.exit_code == 1
    assert "cannot reach http://***@127.0.0.1" in result.stderr
    assert "HOSTPW" not in result.output and "user:" not in result.output


def test_credentials_in_feed_urls_are_never_stored_or_printed(project: Path, cli) -> None:
    sources = project / "content_sources.yaml"
    sources.write_text(sources.read_text(encoding="utf-8").replace(
        "url: samples/feeds/maple-heights-gazette.xml",
        f"url: http://reader:FEEDPW@127.0.0.1:{free_port()}/feed.xml?token=TOKPW",
        1), encoding="utf-8")
    printed = cli("ingest", project=project).output
    store = Store.open(project / "var" / "sphere.db")
    stored = " ".join(s.last_error or "" for s in store.feed_states())
    # What status shows of a feed that moved to a URL with credentials, and of an error
    # that quotes one (as a server's answer or an older Sphere may have stored it).
    moved = "https://reader:FEEDPW@feeds.example/new.xml?api_key=TOKPW"
    store.record_feed_success("harbor-point-herald", NOW, url=_url_of(project,
                              "harbor-point-herald"), etag=None, last_modified=None,
                              permanent_url=moved)
    store.record_feed_failure("cedar-grove-notes", NOW, f"HTTP 500 from {moved}")
    store.record_feed_failure("cedar-grove-notes", NOW, f"HTTP 500 from {moved}")
    store.record_feed_failure("cedar-grove-notes", NOW, f"HTTP 500 from {moved}")
    store.close()
    status = cli("status", project=project).output
    assert "moved permanently" in status and "https://***@feeds.example/new.xml?api_key=***" \
        in status
    for text in (printed, stored, status):
        assert "FEEDPW" not in text and "TOKPW" not in text


def _url_of(project: Path, name: str) -> str:
    return next(s.url for s in load_config(project).sources if s.name == name)


@pytest.mark.parametrize("variable, value, what", [
    ("SENDGRID_API_KEY", "SG.cl\u00e9-secr\u00e8te", ("a character that is not ASCII at "
                                                    "position 6")),
    ("SENDGRID_API_KEY", "SG.two words", "a space at position 7"),
])
def test_a_key_that_cannot_be_sent_is_a_clear_error(project: Path, cli, monkeypatch,
                                                    variable: str, value: str,
                                                    what: str) -> None:
    monkeypatch.setenv(variable, value)
    result = cli("send", "monthly-sphere", "--transport", "sendgrid", project=project)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"Error: {variable} holds {what} (copy the value again")
    assert value not in result.output


def test_a_non_ascii_smtp_password_is_a_clear_error(project: Path, cli,
                                                    monkeypatch) -> None:
    monkeypatch.setenv("SMTP_USERNAME", "dana")
    monkeypatch.setenv("SMTP_PASSWORD", "pass w\u00f6rd")  # a space is fine, the ö is not
    result = cli("send", "monthly-sphere", "--transport", "smtp", project=project)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Error: SMTP_PASSWORD holds a character that is not ASCII at position 7" in \
        result.stderr


def _link_token(outbox: Path) -> tuple[str, str]:
    """(address, token) of the one-click link in one email of the outbox."""
    message = email.message_from_bytes(sorted(outbox.glob("*.eml"))[0].read_bytes())
    found = re.search(r"[?&]t=([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)", message["List-Unsubscribe"])
    assert found, message["List-Unsubscribe"]
    return message["To"], found.group(1)


def test_sphere_secret_signs_links_and_a_listed_previous_key_keeps_them_working(
        project: Path, cli, monkeypatch) -> None:
    monkeypatch.setenv("SPHERE_SECRET", KEY_A)
    assert cli("send", "monthly-sphere", project=project).exit_code == 0
    to, token = _link_token(project / "var" / "outbox")
    address = make_token(KEY_A, "x@example.com") and read_token([KEY_A], token)
    assert address and address in to.lower()  # signed with SPHERE_SECRET itself
    db = project / "var" / "sphere.db"

    def accepted() -> str | None:
        store = Store.open(db)
        try:
            return read_token(store.secrets(), token)  # what the webhook service checks
        finally:
            store.close()

    assert accepted() == address
    # Rotation: a new key signs; the old one, listed as previous, still verifies.
    monkeypatch.setenv("SPHERE_SECRET", KEY_B)
    monkeypatch.setenv("SPHERE_SECRET_PREVIOUS", f"unrelated-old-key-0123456789,{KEY_A}")
    assert accepted() == address
    store = Store.open(db)
    assert store.secret() == KEY_B and store.secrets()[0] == KEY_B
    store.close()
    # Once the old key is no longer listed, its links stop working.
    monkeypatch.delenv("SPHERE_SECRET_PREVIOUS")
    assert accepted() is None


def test_moving_from_the_project_key_to_sphere_secret(project: Path, cli,
                                                      monkeypatch) -> None:
    assert cli("send", "monthly-sphere", project=project).exit_code == 0
    _to, token = _link_token(project / "var" / "outbox")
    db = project / "var" / "sphere.db"
    monkeypatch.setenv("SPHERE_SECRET", KEY_A)
    store = Store.open(db)
    assert read_token(store.secrets(), token) is None  # the project key is retired...
    monkeypatch.setenv("SPHERE_SECRET_PREVIOUS", "project")
    assert read_token(store.secrets(), token) is not None  # ...unless listed
    store.close()


def test_a_short_sphere_secret_is_refused_with_how_to_make_one(project: Path, cli,
                                                               monkeypatch) -> None:
    monkeypatch.setenv("SPHERE_SECRET", "hunter2")
    result = cli("send", "monthly-sphere", project=project)
    assert result.exit_code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: SPHERE_SECRET holds a key of 7 characters; a key needs "
                           "at least 16 (make one with: python3 -c")
    assert "hunter2" not in result.output
