"""The clock is passed in (issue #14): library functions that need `now` take it as a
parameter; each test here gives a moment far from the real clock, so a function that read
the real clock instead would give a different answer."""
from __future__ import annotations

import datetime as dt

from pipeline.models import Sender
from pipeline.rendering.strings import check_subject

SENDER = Sender(name="Dana", email="dana@example.com", postal_address="1 Main St")


def test_check_subject_renders_at_the_moment_it_is_given() -> None:
    # Divides by zero only in 1999: the real clock's year would render fine.
    subject = "{{ first_name }}, {{ 1 // (now.year - 1999) }} {{ month }} notes"
    assert check_subject(subject, SENDER, dt.datetime(1999, 3, 1)) == \
        "ZeroDivisionError: integer division or modulo by zero"
    assert check_subject(subject, SENDER, dt.datetime(2026, 3, 1)) is None


def test_month_and_year_of_a_checked_subject_come_from_the_moment() -> None:
    # `month` is the moment's: comparing it to a constant fails for any other month.
    subject = "{{ 1 // ((month == 'February') and year == 1999) }}"
    assert check_subject(subject, SENDER, dt.datetime(1999, 2, 10)) is None
    assert check_subject(subject, SENDER, dt.datetime(1999, 3, 10)) is not None
