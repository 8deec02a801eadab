"""Cron means cron (issue #12): every schedule follows crontab(5), whoever reads it."""
from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.delivery.sendgrid_api import local_time_rule
from pipeline.planning.plan import period_for
from pipeline.scheduling import cron
from pipeline.scheduling.calendar import calendar
from pipeline.scheduling.cron import CronError, next_fire, trigger
from pipeline.scheduling.daemon import all_contacts

LA = zoneinfo.ZoneInfo("America/Los_Angeles")
UTC = dt.UTC
WED = dt.datetime(2026, 11, 25, 12, 0, tzinfo=LA)  # Wednesday 25 November 2026, noon


def _at(y: int, m: int, d: int, hh: int = 9, mm: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=LA)


# Worked out by hand on a calendar: 29 Nov 2026 is a Sunday, 30 Nov a Monday.
TABLE = [
    ("0 9 * * 0", WED, _at(2026, 11, 29)),  # Sunday
    ("0 9 * * 7", WED, _at(2026, 11, 29)),  # 7 is Sunday too
    ("0 9 * * sun", WED, _at(2026, 11, 29)),
    ("0 9 * * SUN", WED, _at(2026, 11, 29)),
    ("0 9 * * 6", WED, _at(2026, 11, 28)),  # Saturday
    ("0 9 * * 1-5", WED, _at(2026, 11, 26)),  # weekdays: Thursday next
    ("0 9 * * 1-5", _at(2026, 11, 27, 12), _at(2026, 11, 30)),  # Friday noon -> Monday
    ("0 9 * * mon-fri", _at(2026, 11, 27, 12), _at(2026, 11, 30)),
    ("0 9 * * 1-5", _at(2026, 11, 28, 12), _at(2026, 11, 30)),  # not Saturday (0 = Sunday)
    ("30 8 * * 5-7", WED, _at(2026, 11, 27, 8, 30)),  # Friday to Sunday
    ("30 8 * * 5-7", _at(2026, 11, 29, 9), _at(2026, 12, 4, 8, 30)),  # after Sunday: Friday
    ("0 9 * * 0,3", WED, _at(2026, 11, 29)),
    ("0 9 * * */2", WED, _at(2026, 11, 26)),  # Sun, Tue, Thu, Sat
    # Both day fields restricted: either one matches.
    ("0 9 1 * mon", WED, _at(2026, 11, 30)),  # the next Monday, not 1 Feb 2027
    ("0 9 1 * mon", _at(2026, 11, 30, 10), _at(2026, 12, 1)),  # then the 1st (a Tuesday)
    ("0 9 15 * 5", WED, _at(2026, 11, 27)),
    # A day field starting with * is unrestricted in crontab(5): both must match.
    ("0 9 */2 * mon", WED, _at(2026, 12, 7)),  # an odd day that is a Monday
    ("0 9 1 * *", WED, _at(2026, 12, 1)),
    ("0 9 15 */2 *", WED, _at(2027, 1, 15)),
    ("0 9 1 jan *", WED, _at(2027, 1, 1)),
    ("0 9 29 2 *", WED, _at(2028, 2, 29)),
    ("@weekly", WED, _at(2026, 11, 29, 0)),
    ("@daily", WED, _at(2026, 11, 26, 0)),
]


@pytest.mark.parametrize(("line", "after", "expected"), TABLE)
def test_next_firing_follows_crontab(line: str, after: dt.datetime, expected: dt.datetime
                                     ) -> None:
    assert expected.strftime("%a") == next_fire(line, LA, after).strftime("%a")
    assert next_fire(line, LA, after) == expected


@pytest.mark.parametrize("line", ["0 9 * * 8", "0 9 * *", "0 9 * * fri-mon", "0 9 * * fri-",
                                  "0 9 * * tues", "61 9 * * *", "@reboot", "0 9 * 13 *"])
def test_bad_lines_are_refused(line: str) -> None:
    with pytest.raises(CronError):
        trigger(line, LA)


def _campaign_schedule(project: Path, line: str) -> None:
    path = project / "campaigns.yaml"
    path.write_text(path.read_text().replace('schedule: "0 9 1 * *"', f'schedule: "{line}"'))


def test_config_accepts_7_and_refuses_a_bad_weekday(project: Path) -> None:
    _campaign_schedule(project, "0 9 * * 7")
    assert load_config(project).campaign("monthly-sphere").schedule == "0 9 * * 7"
    _campaign_schedule(project, "0 9 * * 7")
    path = project / "campaigns.yaml"
    path.write_text(path.read_text().replace('"0 9 * * 7"', '"0 9 * * 9"'))
    with pytest.raises(Exception) as info:
        load_config(project)
    assert "campaigns.yaml:" in str(info.value) and "weekday 9" in str(info.value)


def test_calendar_period_ids_and_send_at_use_crontab_weekdays(project: Path) -> None:
    _campaign_schedule(project, "0 9 * * 0")  # Sundays
    config = load_config(project)
    start = dt.datetime(2026, 11, 23, tzinfo=UTC)
    cal = calendar(config, all_contacts(config), (), start, start + dt.timedelta(days=14))
    sundays = {d.local.strftime("%a %Y-%m-%d %H:%M") for d in cal.due
               if d.name == "monthly-sphere"}
    assert sundays == {"Sun 2026-11-29 09:00", "Sun 2026-12-06 09:00"}
    # The period (the send id) of a send started by hand on Tuesday is Sunday's.
    tuesday = dt.datetime(2026, 12, 1, 20, tzinfo=UTC)
    assert period_for("0 9 * * 0", tuesday, "America/Los_Angeles") == _at(2026, 11, 29)
    assert period_for("0 9 * * 1-5", dt.datetime(2026, 11, 29, 20, tzinfo=UTC),
                      "America/Los_Angeles") == _at(2026, 11, 27)  # Sunday -> Friday's
    # SendGrid's send_at for `send --local-time` on Saturday: Sunday 09:00, not Monday.
    saturday = dt.datetime(2026, 11, 28, 20, tzinfo=UTC)
    nxt, _rule = local_time_rule(config, "monthly-sphere", "sendgrid", saturday)
    assert nxt == _at(2026, 11, 29)


@pytest.mark.parametrize("line", [
    "61 9 * * *", "0 9 32 * *", "0 9 * 13 *", "0 25 * * *", "0 9 5-2 * *", "0 9 */0 * *",
    "x 9 * * *", "0 9 L * *", "0 9 0 * *", "0 9 * 0 *", "0 9 * * 8", "0 9 * *", "@reboot",
    "0 9 * jan-mar *", "0 9 last * *", "0,30 9 1,15 * *", "*/15 8-17 * * mon-fri",
    "0 9 31 2 *", "0 9 30 2 *", "0 9 29 2 *", "0 9 31 2 1", "0 9 31 4,6 *", "0 9 31 4-7 *",
    "0 9 */10 * *", "5/20 * * * *", "0 9 * dec *", "0 9 * * 7", "@daily"])
def test_the_light_check_agrees_with_apscheduler(line: str) -> None:
    # Config validates lines without APScheduler: the same lines refused, with the same
    # words, and the same lines found never to fire.
    try:
        built = trigger(line, LA)
    except CronError as exc:
        with pytest.raises(CronError) as info:
            cron.check(line)
        assert str(info.value) == str(exc)
        return
    start = dt.datetime(2026, 1, 1, tzinfo=UTC)
    never = built.get_next_fire_time(None, start) is None
    assert cron.check(line) == ("never fires (no such date)" if never else None)
