"""One source for each default (issue #14): what campaigns.yaml leaves out takes the
default written on the dataclass field, and nothing in the loader restates it. A minimal
project is loaded and every defaulted field compared with its dataclass default, so a
default changed on the field but restated differently in the loader fails here."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from pipeline.config import (
    Config,
    Drip,
    DripStep,
    Engagement,
    Scheduling,
    SendGridSettings,
    SmtpSettings,
    load_config,
)
from pipeline.models import Brand, Campaign, SectionSizes, Sender, Source

MINIMAL_CAMPAIGNS = """\
sender:
  name: Dana
  email: dana@example.com
  postal_address: 1 Main St
campaigns:
  monthly:
    kind: newsletter
    audience: sphere
    subject: "Hello {{ first_name }}"
drips:
  welcome:
    audience: sphere
    anchor: closing_date
    steps:
      - {after: 3d, template: thank_you}
"""


def _minimal(tmp_path: Path) -> Config:
    (tmp_path / "audiences").mkdir()
    (tmp_path / "audiences" / "sphere.csv").write_text("email\n", encoding="utf-8")
    (tmp_path / "feed.xml").write_text("<rss/>", encoding="utf-8")
    (tmp_path / "content_sources.yaml").write_text(
        "sources:\n  - {name: news, url: feed.xml, kind: market}\n", encoding="utf-8")
    (tmp_path / "campaigns.yaml").write_text(MINIMAL_CAMPAIGNS, encoding="utf-8")
    return load_config(tmp_path)


def _not_given(obj: object, given: set[str]) -> dict[str, tuple[object, object]]:
    """Fields the file did not set whose loaded value differs from the field's default."""
    out = {}
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        if f.name in given:
            continue
        if f.default is not dataclasses.MISSING:
            expected = f.default
        elif f.default_factory is not dataclasses.MISSING:
            expected = f.default_factory()
        else:
            continue
        if getattr(obj, f.name) != expected:
            out[f.name] = (getattr(obj, f.name), expected)
    return out


def test_a_minimal_config_takes_every_default_from_its_dataclass(tmp_path: Path) -> None:
    config = _minimal(tmp_path)
    assert _not_given(config, {"warnings", "strings"}) == {}  # strings: what was read
    assert _not_given(config.smtp, set()) == {}
    assert _not_given(config.sendgrid, set()) == {}
    assert _not_given(config.scheduling, set()) == {}
    assert _not_given(config.engagement, set()) == {}
    assert _not_given(config.sender, set()) == {}
    assert _not_given(config.sender.brand, set()) == {}
    campaign = config.campaign("monthly")
    assert _not_given(campaign, {"line"}) == {}
    assert _not_given(campaign.sections, set()) == {}
    (drip,) = config.drips
    assert _not_given(drip, {"line"}) == {}
    assert _not_given(drip.steps[0], {"after_days"}) == {}
    (source,) = config.sources
    assert _not_given(source, {"line", "root"}) == {}


def test_every_settings_class_is_compared() -> None:
    # A new settings class with defaults must join the test above.
    compared = {Config, SmtpSettings, SendGridSettings, Scheduling, Engagement, Sender, Brand,
                Campaign, SectionSizes, Drip, DripStep, Source}
    import pipeline.config as config_module
    declared = {v for v in vars(config_module).values()
                if dataclasses.is_dataclass(v) and isinstance(v, type)
                and v.__module__.startswith("pipeline.config")}
    assert declared <= compared
