"""Config loading: the sample is valid; broken files name file, line, key and a fix."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_config, parse_duration_days
from pipeline.errors import ConfigError


def test_sample_config_loads(project: Path) -> None:
    config = load_config(project)
    assert len(config.sources) == 10
    assert {s.kind for s in config.sources} >= {"neighbourhood", "market", "economy", "hobby"}
    assert config.campaign("monthly-sphere").audiences == ("sphere",)
    assert len(config.tips) >= 24
    assert config.sender.postal_address


def _errors(project: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(project)
    return [str(p) for p in info.value.problems]


def test_yaml_syntax_error_names_file_and_line(project: Path) -> None:
    path = project / "campaigns.yaml"
    lines = path.read_text().splitlines()
    lines[5] = "  email dana@example.com: : :"  # hand-broken line 6
    path.write_text("\n".join(lines))
    errors = _errors(project)
    assert len(errors) == 1
    assert errors[0].startswith("campaigns.yaml:6:") or errors[0].startswith("campaigns.yaml:7:")
    assert "YAML syntax error" in errors[0] and "(" in errors[0]


def test_unknown_audience_names_line_key_and_fix(project: Path) -> None:
    path = project / "campaigns.yaml"
    head, _, campaigns = path.read_text().partition("\ncampaigns:\n")
    text = head + "\ncampaigns:\n" + campaigns.replace("audience: sphere", "audience: spheer", 1)
    path.write_text(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "audience: spheer" in ln)
    errors = _errors(project)
    assert errors == [(f"campaigns.yaml:{line}: campaigns.monthly-sphere.audience: unknown "
                      "audience 'spheer' (use one of: sphere)")]


def test_missing_postal_address_and_bad_cron(project: Path) -> None:
    path = project / "campaigns.yaml"
    text = path.read_text()
    text = "\n".join(ln for ln in text.splitlines() if "postal_address:" not in ln)
    text = text.replace('"0 9 1 * *"', '"0 9 32 * *"')
    path.write_text(text)
    errors = _errors(project)
    assert any("sender.postal_address: is required" in e and "anti-spam" in e for e in errors)
    assert any("campaigns.monthly-sphere.schedule: bad cron expression" in e for e in errors)


def test_source_errors_point_at_the_entry(project: Path) -> None:
    path = project / "content_sources.yaml"
    text = path.read_text().replace("kind: economy", "kind: economics")
    path.write_text(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "kind: economics" in ln)
    errors = _errors(project)
    assert len(errors) == 1
    assert errors[0].startswith(f"content_sources.yaml:{line}: sources[")
    assert "unknown value 'economics'" in errors[0] and "neighbourhood | economy" in errors[0]


def test_missing_local_feed_file(project: Path) -> None:
    (project / "samples/feeds/fairway-weekly.xml").unlink()
    errors = _errors(project)
    assert len(errors) == 1 and "no such file" in errors[0]


@pytest.mark.parametrize("text,days", [("3d", 3), ("2w", 14), ("1y", 365), ("30 d", 30),
                                       ("x", None), ("3", None)])
def test_durations(text: str, days: int | None) -> None:
    assert parse_duration_days(text) == days


@pytest.mark.parametrize("subject,problem", [
    ("{{ contact.frist_name }} notes", "contact has no attribute 'frist_name'"),
    ("{{ montth }} notes", "'montth' is undefined"),
    ("{{ contact.first_name|upper(1) }}", "TypeError"),
    ("{{ contact.first_name or }}", "template syntax error"),
])
def test_a_broken_subject_fails_check_with_its_line(project: Path, subject: str,
                                                    problem: str) -> None:
    path = project / "campaigns.yaml"
    text = path.read_text()
    old = next(ln for ln in text.splitlines() if ln.strip().startswith("subject:"))
    path.write_text(text.replace(old, f'    subject: "{subject}"', 1))
    line = text.splitlines().index(old) + 1
    # Jinja is checked with the templates (`sphere check`, and before every send), so
    # loading the configuration needs no template engine (issue #14.5).
    from pipeline.rendering.templatecheck import check_templates
    errors = [str(p) for p in check_templates(load_config(project))]
    assert len(errors) == 1
    assert errors[0].startswith(f"campaigns.yaml:{line}: campaigns.monthly-sphere.subject: ")
    assert problem in errors[0]


def test_misspelled_keys_are_errors_with_a_suggestion(project: Path) -> None:
    path = project / "campaigns.yaml"
    text = path.read_text().replace("  quiet_hours: ", "  quiet_hour: ")
    text = text.replace("    max_per_source: 2", "    max_per_sorce: 2", 1)
    path.write_text(text)
    sources = project / "content_sources.yaml"
    sources.write_text(sources.read_text().replace("    topics: [golf]", "    topic: [golf]"))
    errors = _errors(project)
    lines = text.splitlines()
    quiet = next(i for i, ln in enumerate(lines, 1) if "quiet_hour:" in ln)
    assert f"campaigns.yaml:{quiet}: scheduling.quiet_hour: unknown key 'quiet_hour' " \
           "(did you mean 'quiet_hours'?)" in errors
    assert any("campaigns.monthly-sphere.max_per_sorce: unknown key" in e and
               "'max_per_source'" in e for e in errors)
    assert any(e.startswith("content_sources.yaml:") and ".topic: unknown key 'topic'" in e
               for e in errors)


def test_a_schedule_that_never_fires_is_an_error(project: Path) -> None:
    path = project / "campaigns.yaml"
    path.write_text(path.read_text().replace('schedule: "0 9 1 * *"', 'schedule: "0 9 31 2 *"'))
    errors = _errors(project)
    assert len(errors) == 1 and "never fires (no such date)" in errors[0]
