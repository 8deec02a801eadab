"""Fast where users wait (issue #18): the calendar is one item per send with a count,
`status` needs only the next firing of each campaign and drip, and audience files are
parsed once per change. Counted, not timed (timings: bench/schedule.py)."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.contacts import audience
from pipeline.contacts import cache as audience_cache
from pipeline.scheduling.calendar import calendar, summary
from pipeline.scheduling.daemon import all_contacts

UTC = dt.UTC
HEADER = "email,first_name,last_name,neighbourhood,interests,relationship,closing_date," \
         "timezone,note,status\n"


def _people(project: Path, n: int) -> None:
    zones = ("America/Los_Angeles", "", "America/New_York", "Europe/London")
    rows = [f"p{i}@example.com,P{i},Lee,Maple Heights,golf,past_client,"
            f"{f'2020-0{1 + i % 9}-1{i % 10}' if i % 3 else ''},{zones[i % 4]},,"
            f"{'unsubscribed' if i % 17 == 0 else 'subscribed'}" for i in range(n)]
    (project / "audiences/sphere.csv").write_text(HEADER + "\n".join(rows) + "\n")


@pytest.mark.parametrize("cap", [True, False])
def test_the_compact_calendar_counts_what_the_detailed_one_lists(project: Path, cap: bool
                                                                 ) -> None:
    _people(project, 300)
    if not cap:
        path = project / "campaigns.yaml"
        path.write_text(path.read_text().replace(
            "frequency_cap: {max: 4, days: 30, policy: wait}", "frequency_cap: {max: 0}"))
    config = load_config(project)
    contacts = all_contacts(config)
    start = dt.datetime(2026, 11, 22, 18, tzinfo=UTC)
    end = start + dt.timedelta(days=365)
    recent = {"p1@example.com": [start - dt.timedelta(days=3)]}
    detail = calendar(config, contacts, (), start, end, recent)
    compact = summary(config, contacts, (), start, end, recent)
    per_send: dict[str, int] = {}
    for d in detail.due:
        per_send[d.send_id] = per_send.get(d.send_id, 0) + 1
    assert {f.send_id: f.count for f in compact.firings} == per_send
    held: dict[str, int] = {}
    for d in detail.capped:
        held[d.send_id] = held.get(d.send_id, 0) + 1
    assert {f.send_id: f.count for f in compact.held_back} == held
    # A year of daily alert looks is 365 items, not one per person per day.
    looks = [f for f in compact.firings if f.check]
    assert len(looks) == 365 and len(compact.firings) < 600
    assert sum(f.count for f in compact.firings) == len(detail.due)
    assert all(sum(n for _z, n in f.zones) == f.count for f in compact.firings)


def test_schedule_json_is_one_item_per_send_unless_detail(project: Path, cli) -> None:
    _people(project, 200)
    doc = json.loads(cli("schedule", "--until", "2027-11-22", "--json",
                         project=project).stdout)
    ids = [d["send_id"] for d in doc["due"]]
    assert len(ids) == len(set(ids))  # one item per send
    monthly = next(d for d in doc["due"] if d["send_id"] == "monthly-sphere@2026-12-01T09:00")
    assert monthly["count"] > 100 and "email" not in monthly
    assert set(monthly["zones"]) == {"America/Los_Angeles", "America/New_York",
                                     "Europe/London"}
    detail = json.loads(cli("schedule", "--until", "2026-12-02", "--json", "--detail",
                            project=project).stdout)
    people = [d for d in detail["due"] if d["send_id"] == "monthly-sphere@2026-12-01T09:00"]
    assert len(people) == monthly["count"] and all(d["email"] for d in people)


def test_audience_files_are_parsed_once_per_change(project: Path, monkeypatch) -> None:
    parsed = []
    real = audience.load_audience

    def counting(path: Path, root: Path):
        parsed.append(path.name)
        return real(path, root)

    monkeypatch.setattr(audience, "load_audience", counting)
    monkeypatch.setattr(audience_cache, "_memory", {})
    config = load_config(project)
    first = all_contacts(config)
    assert parsed == ["sphere.csv"]
    assert all_contacts(config) == first and parsed == ["sphere.csv"]  # same process
    monkeypatch.setattr(audience_cache, "_memory", {})  # as a new process: from var/cache
    assert all_contacts(config) == first and parsed == ["sphere.csv"]
    # An edited file is read afresh.
    path = project / "audiences/sphere.csv"
    path.write_text(path.read_text() + "new@example.com,New,Person,Cedar Grove,,sphere,"
                    "2026-11-20,,,subscribed\n")
    again = all_contacts(config)
    assert parsed == ["sphere.csv", "sphere.csv"]
    assert again[-1].email == "new@example.com"
    assert again[-1].closing_date == dt.date(2026, 11, 20)
    # A damaged cache is ignored, never trusted.
    monkeypatch.setattr(audience_cache, "_memory", {})
    for file in (project / "var/cache").glob("audience-*.json"):
        file.write_text("{not json")
    assert all_contacts(config) == again and len(parsed) == 3
