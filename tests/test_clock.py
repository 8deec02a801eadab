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


def test_a_referral_update_is_due_when_the_change_was_made() -> None:
    from pipeline.config import Scheduling
    from pipeline.models import Contact
    from pipeline.scheduling.calendar import Referral, referral_update_due
    # No recorded change time: the moment comes from the caller, not from the clock.
    referral = Referral(7, "ruth@example.com", "Alex", dt.date(2001, 5, 1), "met")
    contact = Contact(email="ruth@example.com", first_name="Ruth", timezone="Europe/Paris")
    changed = dt.datetime(2001, 5, 3, 12, 0, tzinfo=dt.UTC)
    quiet = Scheduling(quiet_hours=(dt.time(21, 0), dt.time(8, 0)))
    due = referral_update_due(referral, contact, "UTC", Scheduling(), changed)
    assert due.at == changed and due.send_id == "referral-update/r7/met"
    # 23:30 in Paris is inside quiet hours: the update waits for 08:00 their time.
    late = dt.datetime(2001, 5, 3, 21, 30, tzinfo=dt.UTC)
    due = referral_update_due(referral, contact, "UTC", quiet, late)
    assert due.local == dt.datetime(2001, 5, 4, 8, 0, tzinfo=due.local.tzinfo)


def test_the_rate_limit_wait_is_measured_from_the_moment_given() -> None:
    import httpx

    from pipeline.delivery.sendgrid_api import _reset_in
    response = httpx.Response(429, headers={"X-RateLimit-Reset": "1000000030"})
    assert _reset_in(response, 1_000_000_000.0) == 30.0
    assert _reset_in(response, 1_000_000_040.0) == 0.0
    assert _reset_in(httpx.Response(429), 1_000_000_000.0) is None
