"""campaigns.yaml's campaigns, drips and scheduling blocks."""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from pipeline.config.check import Check, default, parse_duration_days
from pipeline.config.settings import ConfigString, Drip, DripStep, Scheduling
from pipeline.models import Campaign, CampaignKind, SectionSizes
from pipeline.scheduling import cron
from pipeline.yamlfile import LineDict, LineList


def _strings(node: LineDict, path: str, keys: tuple[str, ...], check: Check) -> None:
    """Record subjects and preheaders with their lines: `sphere check` and every send
    render them (rendering/templatecheck.py), so loading config needs no Jinja."""
    for key in keys:
        text = node.get(key)
        if isinstance(text, str) and text.strip():
            check.strings.append(ConfigString(f"{path}{key}", node.line_of(key), text))


def load_campaign(name: str, node: LineDict, audiences: tuple[str, ...],
                  check: Check, project: Path) -> Campaign:
    """One campaign of campaigns.yaml, its problems added to `check`."""
    p = f"campaigns.{name}."
    kind = check.choice(node, "kind", p, tuple(CampaignKind))
    _strings(node, p, ("subject", "preheader"), check)
    targets = _audiences(node, p, audiences, check)
    schedule = _schedule(node, p, kind, check)
    sizes_node = check.mapping(node.get("sections"), f"{p}sections", node.line_of("sections"))
    sizes = SectionSizes(**{
        key: check.integer(sizes_node, key, f"{p}sections.", default(SectionSizes, key)) or 0
        for key in ("neighbourhood", "market", "interests", "tip")})
    max_age = _days_or_null(check, node, p, "max_age_days", "must be a whole number of days",
                            "e.g. `max_age_days: 45`, or `null` to keep every article")
    skip_empty = node.get("skip_empty", default(Campaign, "skip_empty"))
    if not isinstance(skip_empty, bool):
        check.add(node, f"{p}skip_empty", "must be true or false", "`skip_empty: true`")
        skip_empty = default(Campaign, "skip_empty")
    sales_file, window = _sales(node, p, kind, project, check)
    threshold = node.get("threshold", default(Campaign, "alert_threshold"))
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold <= 0:
        check.add(node, f"{p}threshold", f"must be a positive number, got {threshold!r}",
                  "e.g. `threshold: 2.5` (3 = the story is tagged with the interest)")
        threshold = default(Campaign, "alert_threshold")
    approval, expires = _approval(node, p, check, Campaign)
    per_source, limit = default(Campaign, "max_per_source"), default(Campaign, "sales_limit")
    return Campaign(
        name=name, kind=CampaignKind(kind or "newsletter"), audiences=targets,
        schedule=schedule,
        subject=check.text(node, "subject", p, required=True,
                           fix="add `subject:`, e.g. \"{{ contact.first_name }}, your "
                               "{{ month }} digest\""),
        intro=check.text(node, "intro", p).strip(),
        preheader=check.text(node, "preheader", p),
        template=check.text(node, "template", p),
        sections=sizes, max_age_days=max_age,
        max_per_source=check.integer(node, "max_per_source", p, per_source, minimum=1)
        or per_source,
        skip_empty=skip_empty, line=node.line, sales_file=sales_file,
        sales_window_days=window,
        sales_limit=check.integer(node, "sales_limit", p, limit, minimum=1) or limit,
        alert_threshold=float(threshold),
        alert_throttle_days=check.integer(node, "throttle_days", p,
                                          default(Campaign, "alert_throttle_days")) or 0,
        approval=approval, approval_expires_days=expires)


def _audiences(node: LineDict, p: str, audiences: tuple[str, ...], check: Check
               ) -> tuple[str, ...]:
    """A campaign's `audience:` names, each one an audience file."""
    targets = check.names(node, "audience", p)
    if not targets:
        check.add(node, f"{p}audience", "is required",
                  "name one or more audiences: "
                  f"{', '.join(audiences) or 'add a CSV to audiences/'}")
    for a in targets:
        if a not in audiences:
            check.add(node, f"{p}audience", f"unknown audience {a!r}",
                      f"use one of: {', '.join(audiences) or '(none: add audiences/NAME.csv)'}")
    return targets


def _schedule(node: LineDict, p: str, kind: str, check: Check) -> str:
    """A campaign's cron `schedule:`, which must parse and must fire."""
    # Alerts follow new articles: by default they are looked for daily at 10:00.
    alert = kind == CampaignKind.INTEREST_ALERT
    schedule = check.text(node, "schedule", p, default="0 10 * * *" if alert else "0 9 1 * *")
    try:
        never = cron.check(schedule)
    except cron.CronError as exc:
        check.add(node, f"{p}schedule", f"bad cron expression {schedule!r}: {exc}",
                  "five fields: minute hour day month weekday, e.g. \"0 9 1 * *\"")
    else:
        # "0 9 31 2 *" parses but never fires (no 31 February): the campaign would vanish.
        if never:
            check.add(node, f"{p}schedule", f"{schedule!r} {never}",
                      "check the day and month fields, e.g. \"0 9 1 * *\"")
    return schedule


def _sales(node: LineDict, p: str, kind: str, project: Path, check: Check
           ) -> tuple[str, int | None]:
    """A campaign's `sales:` file (required for recent_sales) and `sales_window_days`."""
    sales_file = check.text(node, "sales", p)
    if kind == CampaignKind.RECENT_SALES:
        if not sales_file:
            check.add(node, f"{p}sales", "is required for kind recent_sales",
                      "add `sales: path/to/sales.csv` (address, neighbourhood, price, "
                      "sold_date, ...)")
        elif not (project / sales_file).is_file():
            check.add(node, f"{p}sales", f"no such file {sales_file!r}",
                      "give a path relative to the project folder")
    window = _days_or_null(check, node, p, "sales_window_days", "must be a number of days",
                           "e.g. `sales_window_days: 120`")
    return sales_file, window


def _days_or_null(check: Check, node: LineDict, p: str, key: str, problem: str,
                  fix: str) -> int | None:
    """A campaign's number of days (at least 1) or null; an invalid one is reported and
    its default used."""
    value = node.get(key, default(Campaign, key))
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 1):
        check.add(node, f"{p}{key}", f"{problem} or null, got {value!r}", fix)
        return default(Campaign, key)
    return value


def _approval(node: LineDict, p: str, check: Check, cls: type) -> tuple[bool, int]:
    """`approval: true` and `approval_expires: 7d` of a campaign or drip (`cls`)."""
    approval = node.get("approval", default(cls, "approval"))
    if not isinstance(approval, bool):
        check.add(node, f"{p}approval", "must be true or false", "`approval: true`")
        approval = default(cls, "approval")
    expires_days = default(cls, "approval_expires_days")
    raw = node.get("approval_expires", f"{expires_days}d")
    days = parse_duration_days(str(raw))
    if not days:
        check.add(node, f"{p}approval_expires", f"bad duration {raw!r}",
                  "a number and a unit: 3d, 1w (how long a draft may wait for approval)")
    return approval, days or expires_days


def load_drips(root: LineDict, audiences: tuple[str, ...], check: Check) -> tuple[Drip, ...]:
    drips_node = check.mapping(root.get("drips"), "drips", root.line_of("drips"))
    out = []
    for name, raw in drips_node.items():
        p = f"drips.{name}."
        node = check.mapping(raw, f"drips.{name}", drips_node.line_of(name))
        targets = check.names(node, "audience", p)
        for a in targets:
            if a not in audiences:
                check.add(node, f"{p}audience", f"unknown audience {a!r}",
                          f"use one of: {', '.join(audiences)}")
        anchor = check.text(node, "anchor", p, required=True, fix="e.g. `anchor: closing_date`")
        if anchor and anchor not in DRIP_ANCHORS:
            check.add(node, f"{p}anchor", f"unknown anchor {anchor!r}",
                      f"use one of: {' | '.join(DRIP_ANCHORS)}")
        steps_raw = node.get("steps")
        steps = []
        if not isinstance(steps_raw, LineList) or not steps_raw:
            check.add(node, f"{p}steps", "must be a non-empty list",
                      "e.g. `- {after: 3d, template: thank_you}`")
            steps_raw = LineList()
        for i, s in enumerate(steps_raw):
            sp = f"{p}steps[{i}]."
            snode = check.mapping(s, f"{p}steps[{i}]", steps_raw.lines[i])
            template = check.text(snode, "template", sp, required=True)
            _strings(snode, sp, ("subject",), check)
            after = snode.get("after")
            every = snode.get("every")
            if (after is None) == (every is None):
                check.add(snode, f"{sp}after", "give exactly one of `after` or `every`",
                          "e.g. `after: 30d` or `every: 1y`", line=snode.line)
                continue
            days = parse_duration_days(str(after if after is not None else every))
            if days is None:
                check.add(snode, f"{sp}{'after' if after is not None else 'every'}",
                          f"bad duration {after if after is not None else every!r}",
                          "a number and a unit: 3d, 2w, 1m, 1y")
                continue
            steps.append(DripStep(template=template,
                                  after_days=days if after is not None else None,
                                  every_days=days if every is not None else None,
                                  subject=check.text(snode, "subject", sp)))
        approval, expires = _approval(node, p, check, Drip)
        out.append(Drip(name=name, audiences=targets, anchor=anchor, steps=tuple(steps),
                        line=node.line, approval=approval, approval_expires_days=expires))
    return tuple(out)


# What a drip can be keyed to: a date column of the contact, or an event.
DRIP_ANCHORS = ("closing_date", "referral_received")
_TIME_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _clock_time(text: str) -> dt.time | None:
    m = _TIME_RE.match(str(text).strip())
    return dt.time(int(m.group(1)), int(m.group(2))) if m else None


def load_scheduling(root: LineDict, check: Check) -> Scheduling:
    node = check.mapping(root.get("scheduling"), "scheduling", root.line_of("scheduling"))
    p = "scheduling."
    defaults = Scheduling()
    quiet = defaults.quiet_hours
    raw = check.text(node, "quiet_hours", p)
    if raw:
        parts = [t for x in raw.split("-") if (t := _clock_time(x)) is not None]
        if len(parts) != 2 or raw.count("-") != 1:
            check.add(node, f"{p}quiet_hours", f"{raw!r} is not a time range",
                      'write it as "21:00-08:00" (local time; may wrap midnight)')
        else:
            quiet = (parts[0], parts[1])
    drip_time = _clock_time(check.text(node, "drip_time", p,
                                       default=f"{defaults.drip_time:%H:%M}"))
    if drip_time is None:
        check.add(node, f"{p}drip_time", "is not a time of day", 'e.g. "09:00"')
        drip_time = defaults.drip_time
    cap = check.mapping(node.get("frequency_cap"), f"{p}frequency_cap",
                        node.line_of("frequency_cap"))
    return Scheduling(
        quiet_hours=quiet, drip_time=drip_time,
        catch_up_hours=check.integer(node, "catch_up_hours", p, defaults.catch_up_hours) or 0,
        cap_max=check.integer(cap, "max", f"{p}frequency_cap.", defaults.cap_max) or 0,
        cap_days=check.integer(cap, "days", f"{p}frequency_cap.", defaults.cap_days, minimum=1)
        or defaults.cap_days,
        cap_policy=check.choice(cap, "policy", f"{p}frequency_cap.", ("wait", "skip"),
                                default=defaults.cap_policy) or defaults.cap_policy)
