"""Subjects and preheaders: the one Jinja environment they render in, and the check that
they do, apart from `render` so that validating campaigns.yaml needs Jinja but not MJML,
Markdown or HTML cleaning."""
from __future__ import annotations

import datetime as dt

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from pipeline.models import Contact, Extra, Sender, template_variables

# Sandboxed (they come from a file) and strict, so a misspelled name is an error in
# `sphere check`, not a blank in 10,000 inboxes.
STRINGS = ImmutableSandboxedEnvironment(autoescape=False, undefined=jinja2.StrictUndefined)
_SAMPLE_CONTACT = Contact(email="sample@example.com", first_name="Sam", last_name="Sample",
                          neighbourhood="Maple Heights", interests=("gardening",),
                          note="", audience="sample")
# The moment a subject is checked against, like the sample contact a sample: checking a
# file gives the same answer whenever it runs.
SAMPLE_NOW = dt.datetime(2026, 11, 1, 9, 0)


def check_subject(text: str, sender: Sender, now: dt.datetime,
                  extra: Extra | None = None) -> str | None:
    """Render a subject or preheader against a sample contact at `now`; the problem, or None."""
    ctx = {"contact": _SAMPLE_CONTACT, "first_name": "Sam", "sender": sender,
           "campaign": None, "month": now.strftime("%B"), "year": now.year, "now": now,
           "referral": {"name": "Alex", "status": "met", "id": 1}, "years": 1,
           **template_variables(extra)}
    try:
        STRINGS.from_string(text).render(ctx)
    except jinja2.TemplateSyntaxError as exc:
        return f"template syntax error: {exc.message}"
    except jinja2.UndefinedError as exc:
        message = str(exc.message).replace("'pipeline.models.Contact object'", "contact")
        return f"{message} (names you can use: contact.first_name, contact.last_name, " \
               "contact.neighbourhood, first_name, month, year, sender.name)"
    except Exception as exc:  # noqa: BLE001 - any failure is the template's
        return f"{type(exc).__name__}: {exc}"
    return None
