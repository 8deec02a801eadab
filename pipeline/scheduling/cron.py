"""Crontab lines with crontab(5)'s meaning, as APScheduler triggers.

APScheduler's own `CronTrigger.from_crontab` counts weekday 0 as Monday (so "1-5" is
Tuesday to Saturday and "7" is refused) and needs day-of-month AND day-of-week to match
when both are restricted. crontab(5) says 0 and 7 are Sunday, names work, and a line with
both fields restricted fires when EITHER matches. `trigger()` is the one place a schedule
becomes a trigger: config validation, the calendar, period ids and SendGrid's send_at all
call it.
"""
from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

# crontab(5) weekday numbers: 0 (or 7) is Sunday.
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_APS_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # APScheduler knows names
_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
           "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
           "@hourly": "0 * * * *"}
_PART = re.compile(r"^(?:(\*)|([0-9a-z]+)(?:-([0-9a-z]+))?)(?:/([0-9]+))?$")


class CronError(ValueError):
    """A schedule that is not a valid crontab(5) line."""


def _weekday(token: str) -> int:
    if token.isdigit():
        n = int(token)
        if not 0 <= n <= 7:
            raise CronError(f"weekday {n} is out of range (0-7; 0 and 7 are Sunday)")
        return n
    name = token[:3]
    if token not in _DAY_NAMES and token not in ("sunday", "monday", "tuesday", "wednesday",
                                                 "thursday", "friday", "saturday"):
        raise CronError(f"unknown weekday {token!r} (use sun, mon, tue, wed, thu, fri, sat "
                        "or 0-7)")
    return _DAY_NAMES.index(name)


def weekdays(field: str) -> frozenset[int]:
    """The weekdays a crontab day-of-week field names, 0 = Sunday ... 6 = Saturday."""
    days: set[int] = set()
    for part in field.lower().split(","):
        m = _PART.match(part)
        if not m:
            raise CronError(f"bad day-of-week {part!r}")
        star, first, last, step = m.groups()
        lo, hi = (0, 7) if star else (_weekday(first), _weekday(last) if last else None)
        if hi is None:
            hi = 7 if step else lo  # "mon/2" means from Monday on, every other day
        if lo > hi:
            raise CronError(f"day-of-week range {part!r} runs backwards (write e.g. "
                            "\"fri-sat,sun\" for Friday to Sunday)")
        if step is not None and int(step) < 1:
            raise CronError(f"day-of-week step in {part!r} must be at least 1")
        days.update(n % 7 for n in range(lo, hi + 1, int(step or 1)))
    return frozenset(days)


def fields(line: str) -> list[str]:
    """The five fields of a crontab line (macros such as @daily expanded)."""
    text = line.strip().lower()
    text = _MACROS.get(text, text)
    if text.startswith("@"):
        raise CronError(f"unknown macro {line.strip()!r} (use @yearly, @monthly, @weekly, "
                        "@daily or @hourly)")
    parts = text.split()
    if len(parts) != 5:
        raise CronError(f"{line!r} has {len(parts)} fields; a crontab line has five: "
                        "minute hour day-of-month month day-of-week")
    return parts


@lru_cache(maxsize=256)
def trigger(line: str, timezone: dt.tzinfo) -> BaseTrigger:
    """The APScheduler trigger for a crontab(5) line in `timezone` (CronError if invalid)."""
    minute, hour, dom, month, dow = fields(line)
    days = weekdays(dow)
    aps_dow = "*" if len(days) == 7 else ",".join(_APS_DAYS[d] for d in sorted(days))

    def cron(day: str, day_of_week: str) -> CronTrigger:
        try:
            return CronTrigger(minute=minute, hour=hour, day=day, month=month,
                               day_of_week=day_of_week, timezone=timezone)
        except ValueError as exc:
            raise CronError(str(exc)) from None

    # crontab(5): "If both fields are restricted (i.e., do not start with *), the command
    # will be run when either field matches the current time."
    if not dom.startswith("*") and not dow.startswith("*"):
        return OrTrigger([cron(dom, "*"), cron("*", aps_dow)])
    return cron(dom, aps_dow)


def next_fire(line: str, timezone: dt.tzinfo, after: dt.datetime) -> dt.datetime | None:
    """The first firing strictly after `after`, local to `timezone`; None if it never fires."""
    return trigger(line, timezone).get_next_fire_time(
        None, after.astimezone(timezone) + dt.timedelta(microseconds=1))


def fires(line: str, timezone: dt.tzinfo, start: dt.datetime, end: dt.datetime
          ) -> list[dt.datetime]:
    """Every firing in (start, end], local to `timezone`."""
    out = []
    fire = next_fire(line, timezone, start)
    while fire is not None and fire <= end:
        out.append(fire)
        fire = next_fire(line, timezone, fire)
    return out
