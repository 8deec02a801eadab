"""Contacts from CSV/YAML: bad rows are reported with file:line and skipped."""
from __future__ import annotations

from pathlib import Path

from pipeline.contacts.audience import load_audience

HEADER = "email,first_name,last_name,neighbourhood,interests,relationship,closing_date," \
         "timezone,note,status\n"


def _write(project: Path, text: str, name: str = "test.csv") -> Path:
    path = project / "audiences" / name
    path.write_text(text, encoding="utf-8")
    return path


def test_sample_audience(project: Path) -> None:
    loaded = load_audience(project / "audiences/sphere.csv", project)
    assert len(loaded.contacts) == 29
    assert not loaded.errors
    (bad,) = loaded.problems
    assert bad.severity == "warning" and bad.line == 6 and "harold.example.com" in bad.problem
    zoe = next(c for c in loaded.contacts if c.first_name == "Zoë")
    assert zoe.interests == ("gardening", "houseplants", "art")
    assert sum(1 for c in loaded.contacts if not c.subscribed) == 1


def test_unclosed_quote_is_an_error_with_line(project: Path) -> None:
    path = _write(project, HEADER + 'a@example.com,Ann,,,,sphere,,,"note without end,subscribed\n'
                  'b@example.com,Bob,,,,sphere,,,,subscribed\n')
    loaded = load_audience(path, project)
    assert loaded.errors
    assert str(loaded.errors[0]).startswith("audiences/test.csv:")
    assert "CSV syntax error" in str(loaded.errors[0])


def test_row_errors_name_line_key_and_fix(project: Path) -> None:
    path = _write(project, HEADER +
                  "a@example.com,Ann,,,,sphere,2024-13-01,,,subscribed\n"
                  "b@example.com,Bob,,,,sphere,,Mars/Olympus,,subscribed\n"
                  "c@example.com,Cy,,,,sphere,,,,subscrbed\n"
                  "d@example.com,Di,,,,friend,,,,subscribed\n"
                  "e@example.com,Eve,,,gardening;Golf,sphere,,,,subscribed\n"
                  "E@Example.com,Eve again,,,,sphere,,,,subscribed\n")
    loaded = load_audience(path, project)
    text = [str(p) for p in loaded.problems]
    assert text[0] == ("audiences/test.csv:2: closing_date: '2024-13-01' is not a date "
                       "(write it as YYYY-MM-DD)")
    assert text[1].startswith("audiences/test.csv:3: timezone: unknown time zone 'Mars/Olympus'")
    assert text[2].startswith("audiences/test.csv:4: status: unknown status 'subscrbed'")
    assert text[3].startswith("audiences/test.csv:5: relationship:")
    assert text[4].startswith("audiences/test.csv:7: email: duplicate of line 6")
    assert [c.email for c in loaded.contacts] == ["e@example.com"]
    assert loaded.contacts[0].interests == ("gardening", "golf")


def test_missing_email_column(project: Path) -> None:
    path = _write(project, "mail,name\nx@example.com,X\n")
    loaded = load_audience(path, project)
    assert "no `email` column" in str(loaded.errors[0])


def test_yaml_audience(project: Path) -> None:
    path = _write(project, "contacts:\n  - email: ann@example.com\n    first_name: Ann\n"
                  "    interests: [golf, wine]\n  - email: not-an-email\n", "friends.yaml")
    loaded = load_audience(path, project)
    assert [c.email for c in loaded.contacts] == ["ann@example.com"]
    assert loaded.contacts[0].interests == ("golf", "wine")
    assert loaded.problems[0].line == 5
