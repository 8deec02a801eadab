"""Preview: write each planned email as HTML and an index.html gallery to review them."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config, Drip, DripStep
from pipeline.contacts.audience import email_key, load_audiences
from pipeline.errors import ConfigError, Problem
from pipeline.models import (
    Contact,
    DripExtra,
    Plan,
    PlannedEmail,
    ReferralInfo,
    ReferralStatus,
    Skipped,
)
from pipeline.planning.plan import skipped_for
from pipeline.rendering.render import Renderer, escape
from pipeline.rendering.templatecheck import drip_campaign
from pipeline.scheduling.calendar import _anniversary
from pipeline.state.interface import Ledger

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class PreviewIndex:
    """Where the gallery is and how many emails it shows."""

    path: Path
    count: int


def write_preview(plan: Plan, renderer: Renderer, now: dt.datetime, folder: Path,
                  only: str | None = None) -> PreviewIndex:
    """Render every email of the plan (or one contact's) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for planned in plan.emails:
        if only and email_key(planned.contact.email) != email_key(only):
            continue
        email = renderer.render(plan, planned, now)
        name = _UNSAFE.sub("_", email_key(planned.contact.email)) + ".html"
        (folder / name).write_text(email.html, encoding="utf-8")
        (folder / (name[:-5] + ".txt")).write_text(email.text, encoding="utf-8")
        reasons = "".join(
            f"<li><b>{escape(p.section)}</b>: "
            f"{escape(p.article.title if p.article else p.tip.title)}"  # type: ignore[union-attr]
            f" <i>({escape(p.reason)})</i></li>" for p in planned.picks)
        rows.append(
            f"<tr><td><a href=\"{escape(name)}\">{escape(email.subject)}</a></td>"
            f"<td>{escape(planned.contact.name)} &lt;{escape(planned.contact.email)}&gt;</td>"
            f"<td><ul>{reasons}</ul></td><td>{len(email.html.encode()) // 1024} KB</td></tr>")
    skipped = "".join(f"<li>{escape(s.email)}: {escape(s.reason)}</li>" for s in plan.skipped)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Preview: {escape(plan.send_id)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;margin:24px;color:#222}}
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;
padding:8px;vertical-align:top;text-align:left}}ul{{margin:0;padding-left:18px}}
i{{color:#666}}</style></head><body>
<h1>Preview of {escape(plan.campaign.name)}</h1>
<p>{len(rows)} email(s) for send <code>{escape(plan.send_id)}</code>. Nothing was sent.</p>
<table><thead><tr><th>Subject</th><th>To</th><th>What and why</th><th>HTML</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
{f'<h2>Skipped</h2><ul>{skipped}</ul>' if skipped else ''}
</body></html>
"""
    index = folder / "index.html"
    index.write_text(page, encoding="utf-8")
    return PreviewIndex(index, len(rows))


SAMPLE_REFERRAL = "Alex Sample"  # named in a referral drip's preview when none is recorded
# `sphere referral update` sends this one-step drip of its own.
REFERRAL_UPDATE = Drip(name="referral-update", audiences=(), anchor="referral_received",
                       steps=(DripStep(template="referral_update", after_days=0),))


def find_drip(config: Config, name: str) -> Drip | None:
    """The drip called `name`, if there is one."""
    return next((d for d in config.drips if d.name == name), None)


def drip_plans(config: Config, store: Ledger, drip: Drip, step: int | None,
               now: dt.datetime) -> list[tuple[int, DripStep, Plan]]:
    """(step number from 1, step, plan) for each step of a drip (or step `step` only):
    every contact the drip would reach, with the extras the daemon gives them (years,
    the referral). A referral drip with no referral recorded shows a sample one."""
    if step is not None and not 1 <= step <= len(drip.steps):
        raise ConfigError([Problem("campaigns.yaml", drip.line, f"drips.{drip.name}",
                                   f"no step {step}", f"steps are 1 to {len(drip.steps)}")])
    contacts = list(load_audiences(config.audience_files, drip.audiences or
                                   config.audience_names, config.project).contacts)
    notes, suppressed = store.pending_notes(), store.suppressed()
    out = []
    for number, s in enumerate(drip.steps, 1):
        if step is not None and number != step:
            continue
        emails: list[PlannedEmail] = []
        skipped: list[Skipped] = []
        for contact, extra in _recipients(drip, s, contacts, store, now):
            skip = skipped_for(contact.email, contact, suppressed)  # as the send would
            if skip is not None:
                skipped.append(skip)
                continue
            emails.append(PlannedEmail(contact, (), notes.get(email_key(contact.email), ()),
                                       template=s.template, extra=extra))
        campaign = drip_campaign(drip.name, drip.audiences, s.template, s.subject)
        out.append((number, s, Plan(campaign, f"{drip.name}/{s.template}@preview",
                                    now.isoformat(), tuple(emails), tuple(skipped))))
    return out


def _recipients(drip: Drip, step: DripStep, contacts: list[Contact], store: Ledger,
                now: dt.datetime) -> list[tuple[Contact, DripExtra | None]]:
    if drip.anchor == "referral_received":
        by_email = {email_key(c.email): c for c in contacts}
        found: list[tuple[Contact, DripExtra | None]] = [
            (by_email[email_key(r.by_email)], DripExtra(ReferralInfo(r.id, r.name, r.status)))
            for r in store.referrals() if email_key(r.by_email) in by_email]
        if found or not contacts:
            return found
        return [(contacts[0], DripExtra(ReferralInfo(0, SAMPLE_REFERRAL,
                                                          ReferralStatus.RECEIVED)))]
    out = []
    for c in contacts:
        anchor = getattr(c, drip.anchor, None)
        if isinstance(anchor, dt.date):
            out.append((c, _repeat(anchor, step, now.date())))
    return out


def _repeat(anchor: dt.date, step: DripStep, today: dt.date) -> DripExtra | None:
    """A repeating step's count at its next occurrence (as schedule.drip_due gives it)."""
    if step.after_days is not None:
        return None
    every = step.every_days or 365
    k = 1
    while (_anniversary(anchor, k) if every == 365 else
           anchor + dt.timedelta(days=every * k)) < today:
        k += 1
    return DripExtra(years=k) if every == 365 else DripExtra(times=k)
