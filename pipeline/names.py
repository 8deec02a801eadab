"""Names and defaults that the CLI and the library both use, each written once.

Cheap on purpose: the standard library only, so `sphere --help` can import it (its
options list these choices) without loading any stage.
"""
from __future__ import annotations

import datetime as dt
from enum import StrEnum

# The transports a send can use; campaigns.yaml's `transport:` default is the first.
TRANSPORTS: tuple[str, ...] = ("outbox", "smtp", "sendgrid")
DEFAULT_TRANSPORT = TRANSPORTS[0]
# How often the scheduler daemon looks for due sends, in seconds.
TICK_SECONDS = 60
# The folder of a project's audiences (audiences/NAME.csv).
AUDIENCES_DIR = "audiences"
# A project-level neighbourhood mapping `contacts import` reads when none is named.
DEFAULT_NEIGHBOURHOODS = "neighbourhoods.yaml"


class ReferralStatus(StrEnum):
    """Where a referral stands; each step after `received` emails the referrer."""

    RECEIVED = "received"
    MET = "met"
    LISTED = "listed"
    CLOSED = "closed"


# The referral statuses `sphere referral update` sets, each with an email to the referrer.
# Plain strings: click.Choice given enum members would offer their names (MET), not values.
REFERRAL_UPDATES: tuple[str, ...] = (
    ReferralStatus.MET.value, ReferralStatus.LISTED.value, ReferralStatus.CLOSED.value)
# An audience file's columns.
CONTACT_FIELDS: tuple[str, ...] = (
    "email", "first_name", "last_name", "neighbourhood", "interests", "relationship",
    "closing_date", "timezone", "note", "private_note", "status")
# Fields a column of an export can feed: the audience's own, plus the parts we derive
# them from.
IMPORT_TARGETS: tuple[str, ...] = (*CONTACT_FIELDS, "name", "street", "zip", "opt_out",
                                   "subscribed", "ignore")


def one_of(names: tuple[str, ...]) -> str:
    """`a, b or c`: choices as a fix names them."""
    return f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]


def utc_now() -> dt.datetime:
    """The real time, in UTC: the default clock wherever one is not passed in."""
    return dt.datetime.now(dt.UTC)
