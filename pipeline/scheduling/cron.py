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
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # APScheduler is imported when a trigger is built, not to check a line
    from apscheduler.triggers.base import BaseTrigger

# crontab(5) weekday numbers: 0 (or 7) is Sunday.
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_APS_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # APScheduler knows names
_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
           "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
           "@hourly": "0 * * * *"}
_PART = re.compile(r"^(?:(\*)|([0-9a-z]+)(?:-([0-9a-z]+))?)(?:/([0-9]+))?$")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
# (name, lowest, highest) of the first four fields, as APScheduler names and bounds them.
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12))
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # 29 February: leap years


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


def _value(token: str, name: str, lo: int, hi: int) -> int:
    """One number (or month name) of a field, with APScheduler's wording when it is bad."""
    if name == "month" and token in _MONTHS:
        return _MONTHS.index(token) + 1
    if not token.isdigit():
        raise CronError(f'Unrecognized expression "{token}" for field "{name}"')
    n = int(token)
    if n > hi:
        raise CronError(f"Error validating expression '{token}': the last value ({n}) is "
                        f"higher than the maximum value ({hi})")
    if n < lo:
        raise CronError(f"Error validating expression '{token}': the first value ({n}) is "
                        f"lower than the minimum value ({lo})")
    return n


def _values(field: str, name: str, lo: int, hi: int) -> frozenset[int]:
    """The numbers a minute, hour, day or month field names (CronError if it is bad)."""
    out: set[int] = set()
    for part in field.split(","):
        if name == "day" and part == "last":  # APScheduler's "last day of the month"
            out.update(range(28, 32))
            continue
        m = _PART.match(part)
        if not m:
            raise CronError(f'Unrecognized expression "{part}" for field "{name}"')
        star, first, last, step = m.groups()
        if step is not None and int(step) < 1:
            raise CronError("Increment must be higher than 0")
        start = lo if star else _value(first, name, lo, hi)
        end = hi if star or (last is None and step) else \
            _value(last, name, lo, hi) if last else start
        if start > end:
            raise CronError("The minimum value in a range must not be higher than the maximum")
        out.update(range(start, end + 1, int(step or 1)))
    return frozenset(out)


def check(line: str) -> str | None:
    """Why a crontab(5) line is refused (CronError), or a note when it parses but never
    fires (no such date, e.g. 31 February); None when it is a working schedule. Light:
    no APScheduler, so loading the configuration does not import it."""
    minute, hour, dom, month, dow = fields(line)
    weekdays(dow)
    found = [_values(f, name, lo, hi)
             for f, (name, lo, hi) in zip((minute, hour, dom, month), _FIELDS, strict=True)]
    days, months = found[2], found[3]
    if not dom.startswith("*") and not dow.startswith("*"):
        return None  # either field fires it: the weekday does, every week
    if any(d <= _MONTH_DAYS[m - 1] for d in days for m in months):
        return None
    return "never fires (no such date)"


@lru_cache(maxsize=256)
def trigger(line: str, timezone: dt.tzinfo) -> BaseTrigger:
    """The APScheduler trigger for a crontab(5) line in `timezone` (CronError if invalid)."""
    from apscheduler.triggers.combining import OrTrigger
    from apscheduler.triggers.cron import CronTrigger
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
