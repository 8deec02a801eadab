"""Load and validate every file the user writes, once; errors name file, line and key."""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.scheduling import cron
from pipeline.errors import ConfigError, Problem
from pipeline.models import (
    TRANSPORTS, Brand, Campaign, CampaignKind, SectionSizes, Sender, Source, SourceKind, Tip,
)
from pipeline.yamlfile import LineDict, LineList, load_yaml, unknown_keys

SOURCES_FILE = "content_sources.yaml"
CAMPAIGNS_FILE = "campaigns.yaml"
AUDIENCES_DIR = "audiences"
# State (SQLite, outbox) lives under the project unless campaigns.yaml says otherwise,
# so a laptop user can delete one folder to start over.
DEFAULT_STATE_DIR = "var"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_DURATION_RE = re.compile(r"^(\d+)\s*([dwmy])$")
_COLOUR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class SmtpSettings:
    """Where SMTP sends go; credentials come only from SMTP_USERNAME / SMTP_PASSWORD."""

    host: str = "localhost"
    port: int = 587
    security: str = "starttls"  # starttls | ssl | none
    timeout: float = 30.0  # seconds for connect and for each SMTP reply
    # Connections open at once; most relays throttle a client that opens many more.
    workers: int = 4


@dataclass(frozen=True)
class SendGridSettings:
    """SendGrid options; the key comes only from SENDGRID_API_KEY."""

    api_host: str = "https://api.sendgrid.com"
    asm_group_id: int | None = None
    sandbox_mode: bool = False  # SendGrid validates but delivers nothing (smoke tests)
    timeout: float = 30.0  # seconds per API call
    # Requests in flight at once: 16 keep-alive connections send ~800 emails/s on two
    # cores (bench/deliver.py); more mostly adds contention for the GIL.
    workers: int = 16


@dataclass(frozen=True)
class DripStep:
    """One step of a drip: `after` a delay from the anchor, or `every` interval."""

    template: str
    after_days: int | None = None
    every_days: int | None = None
    subject: str = ""  # defaults to the template's own (render.DRIP_SUBJECTS)


@dataclass(frozen=True)
class Drip:
    """A sequence of messages keyed to a date column of each contact."""

    name: str
    audiences: tuple[str, ...]
    anchor: str
    steps: tuple[DripStep, ...]
    line: int = 0
    approval: bool = False  # each due message is held as a draft for `sphere approve`
    approval_expires_days: int = 7  # a draft undecided this long is reported, not sent


@dataclass(frozen=True)
class Scheduling:
    """When mail may go out: quiet hours, drip time, catch-up window, frequency cap."""

    quiet_hours: tuple[dt.time, dt.time] | None = None  # local (start, end), may wrap midnight
    drip_time: dt.time = dt.time(9, 0)  # local time of day drip steps go out
    catch_up_hours: int = 36  # after downtime, sends due this recently are caught up once
    cap_max: int = 0  # at most this many campaign emails per contact ... (0 = no cap)
    cap_days: int = 30  # ... in any window of this many days
    cap_policy: str = "wait"  # wait (for room, up to a week) | skip


@dataclass(frozen=True)
class Engagement:
    """campaigns.yaml `engagement:`: when a contact counts as cold (issue #9)."""

    # Sends in a row without an open or click; see engagement.DEFAULT_COLD_AFTER_SENDS.
    cold_after_sends: int = 4


@dataclass(frozen=True)
class Config:
    """Everything the user configured, validated."""

    project: Path
    state_dir: Path
    sender: Sender
    transport: str
    smtp: SmtpSettings
    sendgrid: SendGridSettings
    campaigns: tuple[Campaign, ...]
    drips: tuple[Drip, ...]
    sources: tuple[Source, ...]
    tips: tuple[Tip, ...]
    audience_files: tuple[Path, ...]
    synonyms: tuple[tuple[str, tuple[str, ...]], ...] = ()
    warnings: tuple[Problem, ...] = field(default=())
    scheduling: Scheduling = field(default_factory=Scheduling)
    engagement: Engagement = field(default_factory=Engagement)
    # (campaign, cold_contacts policy) for campaigns that set one; the rest are "normal".
    cold_policies: tuple[tuple[str, str], ...] = ()

    def cold_policy(self, campaign: str) -> str:
        """How a campaign treats cold contacts: normal | quarterly | skip."""
        return dict(self.cold_policies).get(campaign, "normal")

    @property
    def db_path(self) -> Path:
        """The project's SQLite file."""
        return self.state_dir / "sphere.db"

    @property
    def outbox_dir(self) -> Path:
        """Where the outbox transport writes .eml files."""
        return self.state_dir / "outbox"

    @property
    def audience_names(self) -> tuple[str, ...]:
        """Audience names: the stems of the files in audiences/."""
        return tuple(p.stem for p in self.audience_files)

    def campaign(self, name: str) -> Campaign:
        """The named campaign, or a ConfigError listing the known ones."""
        for c in self.campaigns:
            if c.name == name:
                return c
        known = ", ".join(c.name for c in self.campaigns) or "none defined"
        raise ConfigError([Problem(CAMPAIGNS_FILE, 0, f"campaigns.{name}", "no such campaign",
                                   f"known campaigns: {known}")])


class _Check:
    """Collects problems for one file while reading typed values out of it."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def add(self, node: Any, key: str, problem: str, fix: str = "", line: int = 0,
            severity: str = "error") -> None:
        if not line:
            line = node.line_of(key.rsplit(".", 1)[-1]) if isinstance(node, LineDict) else \
                getattr(node, "line", 0)
        self.problems.append(Problem(self.file, line, key, problem, fix, severity))

    def mapping(self, node: Any, key: str, line: int = 0) -> LineDict:
        if isinstance(node, LineDict):
            return node
        if node is not None:
            self.add(None, key, f"must be a mapping of keys, not {type(node).__name__}",
                     "indent the keys below it", line=line)
        empty = LineDict()
        empty.line, empty.lines = line, {}
        return empty

    def text(self, node: LineDict, key: str, path: str, required: bool = False,
             default: str = "", fix: str = "") -> str:
        value = node.get(key)
        if value is None or value == "":
            if required:
                self.add(node, f"{path}{key}", "is required", fix or f"add `{key}: ...`")
            return default
        if isinstance(value, (dict, list)):
            self.add(node, f"{path}{key}", "must be text", fix or "give a single value")
            return default
        return str(value).strip() if not isinstance(value, str) or "\n" not in value else value

    def integer(self, node: LineDict, key: str, path: str, default: int | None,
                minimum: int = 0) -> int | None:
        value = node.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.add(node, f"{path}{key}", f"must be a whole number >= {minimum}, got {value!r}",
                     f"for example `{key}: {default if default is not None else minimum}`")
            return default
        return value

    def choice(self, node: LineDict, key: str, path: str, choices: tuple[str, ...],
               default: str | None = None) -> str:
        value = node.get(key, default)
        if value not in choices:
            self.add(node, f"{path}{key}",
                     "is required" if value is None else f"unknown value {value!r}",
                     f"use one of: {' | '.join(choices)}")
            # An invalid value yields '' (an enum field takes any member) so dependent
            # checks stay quiet; the run is refused anyway because of this error.
            return default or ""
        return str(value)

    def names(self, node: LineDict, key: str, path: str) -> tuple[str, ...]:
        value = node.get(key)
        if value is None:
            return ()
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, (str, int, float)) for v in items):
            self.add(node, f"{path}{key}", "must be a name or a list of names",
                     f"for example `{key}: [a, b]`")
            return ()
        return tuple(str(v).strip() for v in items if str(v).strip())

    def timezone(self, node: LineDict, key: str, path: str, default: str) -> str:
        value = self.text(node, key, path, default=default)
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            self.add(node, f"{path}{key}", f"unknown time zone {value!r}",
                     "use an IANA name such as America/Los_Angeles")
            return default
        return value


def default(cls: type, name: str) -> Any:
    """A dataclass field's default: each default is written once, on its field, and the
    loader asks for it here rather than restating it."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    raise KeyError(f"{cls.__name__}.{name} has no default")


def parse_duration_days(text: str) -> int | None:
    """'3d' -> 3, '2w' -> 14, '1m' -> 30, '1y' -> 365; None when malformed."""
    m = _DURATION_RE.match(str(text).strip().lower())
    if not m:
        return None
    return int(m.group(1)) * {"d": 1, "w": 7, "m": 30, "y": 365}[m.group(2)]


def _load_sources(project: Path, check: _Check) -> tuple[Source, ...]:
    data, problems = load_yaml(project / SOURCES_FILE, SOURCES_FILE)
    check.problems += problems
    if problems:
        return ()
    root = check.mapping(data, "", 1)
    items = root.get("sources")
    if not isinstance(items, LineList) or not items:
        check.add(root, "sources", "must be a non-empty list of feeds",
                  "add `sources:` with items like `- {name: ..., url: ..., kind: ...}`")
        return ()
    seen: dict[str, int] = {}
    out = []
    for i, item in enumerate(items):
        path = f"sources[{i}]."
        node = check.mapping(item, f"sources[{i}]", items.lines[i])
        name = check.text(node, "name", path, required=True)
        url = check.text(node, "url", path, required=True)
        kind = check.choice(node, "kind", path, tuple(SourceKind))
        hood = check.text(node, "neighbourhood", path)
        topics = check.names(node, "topics", path)
        if name and not _NAME_RE.match(name):
            check.add(node, f"{path}name", f"{name!r} is not a simple id",
                      "use lowercase letters, digits, '-' or '_'")
        if name in seen:
            check.add(node, f"{path}name", f"duplicate source name {name!r} (first on line "
                      f"{seen[name]})", "give each source a unique name")
        seen[name] = node.line
        if kind == "neighbourhood" and not hood:
            check.add(node, f"{path}neighbourhood", "is required for kind neighbourhood",
                      "add `neighbourhood: <name as written in the audience files>`")
        allow_private = node.get("allow_private", False)
        if not isinstance(allow_private, bool):
            check.add(node, f"{path}allow_private", f"must be true or false, got "
                      f"{allow_private!r}", "`allow_private: true` for a feed on your own "
                      "network, or leave it out")
        if url and not url.startswith(("http://", "https://")):
            # Inside the project once symlinks are resolved: not /etc/shadow, ../../x,
            # or a link pointing out (fetch.local_path checks again when reading).
            local = (project / url).resolve()
            if not local.is_relative_to(project.resolve()):
                check.add(node, f"{path}url", f"{url!r} is outside the project folder",
                          "a local feed must be a file inside the project; give an http(s) "
                          "URL for anything else")
            elif not local.is_file():
                check.add(node, f"{path}url", f"no such file {url!r}",
                          "give an http(s) URL, or a path relative to the project folder")
            url = str(local)
        out.append(Source(name=name, url=url, kind=SourceKind(kind or "hobby"), neighbourhood=hood,
                          topics=tuple(t.lower() for t in topics), line=node.line,
                          allow_private=allow_private is True, root=str(project.resolve())))
    check.problems += unknown_keys(root, SOURCES_FILE)
    return tuple(out)


def _load_tips(project: Path, rel: str, check: _Check) -> tuple[Tip, ...]:
    if not rel:
        return ()
    tips_check = _Check(rel)
    data, problems = load_yaml(project / rel, rel)
    tips_check.problems += problems
    out: list[Tip] = []
    if not problems:
        root = tips_check.mapping(data, "", 1)
        items = root.get("tips")
        if not isinstance(items, LineList):
            tips_check.add(root, "tips", "must be a list of tips",
                           "add `tips:` with items `- {id: ..., title: ..., body: ...}`")
            items = LineList()
        ids: set[str] = set()
        for i, item in enumerate(items):
            path = f"tips[{i}]."
            node = tips_check.mapping(item, f"tips[{i}]", items.lines[i])
            tip = Tip(id=tips_check.text(node, "id", path, required=True),
                      topic=tips_check.text(node, "topic", path, default="general"),
                      title=tips_check.text(node, "title", path, required=True),
                      body=tips_check.text(node, "body", path, required=True).strip(),
                      season=tips_check.text(node, "season", path))
            if tip.id in ids:
                tips_check.add(node, f"{path}id", f"duplicate tip id {tip.id!r}",
                               "tip ids must be unique: they record who has seen which tip")
            ids.add(tip.id)
            out.append(tip)
        tips_check.problems += unknown_keys(root, rel)
    check.problems += tips_check.problems
    return tuple(out)


def _load_sender(root: LineDict, check: _Check) -> Sender:
    node = check.mapping(root.get("sender"), "sender", root.line_of("sender"))
    if "sender" not in root:
        check.add(root, "sender", "is required", "add a `sender:` block with name, email "
                  "and postal_address")
    p = "sender."
    brand_node = check.mapping(node.get("brand"), "sender.brand", node.line_of("brand"))
    brand_vals = {}
    for key in ("primary", "accent", "text", "background"):
        val = check.text(brand_node, key, "sender.brand.", default=default(Brand, key))
        if not _COLOUR_RE.match(val):
            check.add(brand_node, f"sender.brand.{key}", f"{val!r} is not a colour",
                      "use a hex colour such as #1F5F8B")
            val = default(Brand, key)
        brand_vals[key] = val
    brand = Brand(logo_url=check.text(brand_node, "logo_url", "sender.brand."), **brand_vals)
    email = check.text(node, "email", p, required=True)
    if email and "@" not in email:
        check.add(node, "sender.email", f"{email!r} is not an email address",
                  "use the address your contacts know, e.g. dana@example.com")
    return Sender(
        name=check.text(node, "name", p, required=True),
        email=email,
        postal_address=check.text(node, "postal_address", p, required=True,
                                  fix="add `postal_address:`; anti-spam law requires it "
                                      "in every marketing email"),
        reply_to=check.text(node, "reply_to", p),
        phone=check.text(node, "phone", p),
        brokerage=check.text(node, "brokerage", p),
        timezone=check.timezone(node, "timezone", p, default(Sender, "timezone")),
        title=check.text(node, "title", p),
        website=check.text(node, "website", p),
        photo_url=check.text(node, "photo_url", p),
        signature=check.text(node, "signature", p),
        unsubscribe_url=check.text(node, "unsubscribe_url", p),
        referral_ask=check.text(node, "referral_ask", p),
        brand=brand,
    )


def _check_strings(node: LineDict, path: str, keys: tuple[str, ...], sender: Sender,
                   check: _Check) -> None:
    """Subjects and preheaders must render: a misspelled name fails here, not in inboxes."""
    # Jinja only (not MJML): imported here, not for `sphere --help`. Checked at a sample
    # moment, as against a sample contact: the answer does not depend on the clock.
    from pipeline.rendering.strings import SAMPLE_NOW, check_subject
    for key in keys:
        text = node.get(key)
        if isinstance(text, str) and text.strip():
            problem = check_subject(text, sender, SAMPLE_NOW)
            if problem:
                check.add(node, f"{path}{key}", problem,
                          'e.g. "{{ contact.first_name }}, your {{ month }} notes"')


def _load_campaign(name: str, node: LineDict, audiences: tuple[str, ...],
                   check: _Check, project: Path, sender: Sender) -> Campaign:
    p = f"campaigns.{name}."
    kind = check.choice(node, "kind", p, tuple(CampaignKind))
    _check_strings(node, p, ("subject", "preheader"), sender, check)
    targets = check.names(node, "audience", p)
    if not targets:
        check.add(node, f"{p}audience", "is required",
                  f"name one or more audiences: {', '.join(audiences) or 'add a CSV to audiences/'}")
    for a in targets:
        if a not in audiences:
            check.add(node, f"{p}audience", f"unknown audience {a!r}",
                      f"use one of: {', '.join(audiences) or '(none: add audiences/NAME.csv)'}")
    # Alerts follow new articles: by default they are looked for daily at 10:00.
    schedule = check.text(node, "schedule", p,
                          default="0 10 * * *" if kind == "interest_alert" else "0 9 1 * *")
    try:
        trigger = cron.trigger(schedule, dt.timezone.utc)
    except cron.CronError as exc:
        check.add(node, f"{p}schedule", f"bad cron expression {schedule!r}: {exc}",
                  "five fields: minute hour day month weekday, e.g. \"0 9 1 * *\"")
    else:
        # "0 9 31 2 *" parses but never fires (no 31 February): the campaign would vanish.
        start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
        if trigger.get_next_fire_time(None, start) is None:
            check.add(node, f"{p}schedule", f"{schedule!r} never fires (no such date)",
                      "check the day and month fields, e.g. \"0 9 1 * *\"")
    sizes_node = check.mapping(node.get("sections"), f"{p}sections", node.line_of("sections"))
    sizes = SectionSizes(**{
        key: check.integer(sizes_node, key, f"{p}sections.", default(SectionSizes, key)) or 0
        for key in ("neighbourhood", "market", "interests", "tip")})
    max_age = node.get("max_age_days", default(Campaign, "max_age_days"))
    if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int)
                                or max_age < 1):
        check.add(node, f"{p}max_age_days", f"must be a whole number of days or null, got "
                  f"{max_age!r}", "e.g. `max_age_days: 45`, or `null` to keep every article")
        max_age = default(Campaign, "max_age_days")
    skip_empty = node.get("skip_empty", default(Campaign, "skip_empty"))
    if not isinstance(skip_empty, bool):
        check.add(node, f"{p}skip_empty", "must be true or false", "`skip_empty: true`")
        skip_empty = default(Campaign, "skip_empty")
    sales_file = check.text(node, "sales", p)
    if kind == "recent_sales":
        if not sales_file:
            check.add(node, f"{p}sales", "is required for kind recent_sales",
                      "add `sales: path/to/sales.csv` (address, neighbourhood, price, "
                      "sold_date, ...)")
        elif not (project / sales_file).is_file():
            check.add(node, f"{p}sales", f"no such file {sales_file!r}",
                      "give a path relative to the project folder")
    window = node.get("sales_window_days", default(Campaign, "sales_window_days"))
    if window is not None and (isinstance(window, bool) or not isinstance(window, int)
                               or window < 1):
        check.add(node, f"{p}sales_window_days", f"must be a number of days or null, got "
                  f"{window!r}", "e.g. `sales_window_days: 120`")
        window = default(Campaign, "sales_window_days")
    threshold = node.get("threshold", default(Campaign, "alert_threshold"))
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold <= 0:
        check.add(node, f"{p}threshold", f"must be a positive number, got {threshold!r}",
                  "e.g. `threshold: 2.5` (3 = the story is tagged with the interest)")
        threshold = default(Campaign, "alert_threshold")
    approval, expires = _approval(node, p, check, Campaign)
    per_source, limit = default(Campaign, "max_per_source"), default(Campaign, "sales_limit")
    return Campaign(
        name=name, kind=CampaignKind(kind or "newsletter"), audiences=targets, schedule=schedule,
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


def _approval(node: LineDict, p: str, check: _Check, cls: type) -> tuple[bool, int]:
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


def _load_drips(root: LineDict, audiences: tuple[str, ...], check: _Check,
                sender: Sender) -> tuple[Drip, ...]:
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
            _check_strings(snode, sp, ("subject",), sender, check)
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


def _load_scheduling(root: LineDict, check: _Check) -> Scheduling:
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


def load_config(project: Path) -> Config:
    """Read and validate content_sources.yaml, campaigns.yaml and the tips library."""
    project = project.resolve()
    check = _Check(CAMPAIGNS_FILE)
    sources_check = _Check(SOURCES_FILE)
    sources = _load_sources(project, sources_check)
    audience_files = tuple(sorted(
        p for p in (project / AUDIENCES_DIR).glob("*")
        if p.suffix.lower() in (".csv", ".yaml", ".yml") and p.is_file()))
    audiences = tuple(p.stem for p in audience_files)

    data, problems = load_yaml(project / CAMPAIGNS_FILE, CAMPAIGNS_FILE)
    if problems:
        # A file that does not parse has no keys to check: report the syntax error alone.
        raise ConfigError(sources_check.problems + problems)
    root = check.mapping(data, "", 1)
    sender = _load_sender(root, check)
    transport = check.choice(root, "transport", "", TRANSPORTS, default="outbox")
    smtp_node = check.mapping(root.get("smtp"), "smtp", root.line_of("smtp"))
    smtp_d = SmtpSettings()
    smtp = SmtpSettings(
        host=check.text(smtp_node, "host", "smtp.", default=smtp_d.host),
        port=check.integer(smtp_node, "port", "smtp.", smtp_d.port, minimum=1) or smtp_d.port,
        security=check.choice(smtp_node, "security", "smtp.", ("starttls", "ssl", "none"),
                              default=smtp_d.security),
        timeout=float(check.integer(smtp_node, "timeout", "smtp.", int(smtp_d.timeout),
                                    minimum=1) or smtp_d.timeout),
        workers=check.integer(smtp_node, "workers", "smtp.", smtp_d.workers, minimum=1)
        or smtp_d.workers)
    sg_node = check.mapping(root.get("sendgrid"), "sendgrid", root.line_of("sendgrid"))
    sg_d = SendGridSettings()
    sendgrid = SendGridSettings(
        api_host=check.text(sg_node, "api_host", "sendgrid.", default=sg_d.api_host),
        asm_group_id=check.integer(sg_node, "asm_group_id", "sendgrid.", sg_d.asm_group_id,
                                   minimum=1),
        sandbox_mode=bool(sg_node.get("sandbox_mode", sg_d.sandbox_mode)),
        timeout=float(check.integer(sg_node, "timeout", "sendgrid.", int(sg_d.timeout),
                                    minimum=1) or sg_d.timeout),
        workers=check.integer(sg_node, "workers", "sendgrid.", sg_d.workers, minimum=1)
        or sg_d.workers)
    campaigns_node = check.mapping(root.get("campaigns"), "campaigns", root.line_of("campaigns"))
    if not campaigns_node:
        check.add(root, "campaigns", "no campaigns defined",
                  "add `campaigns:` with at least one, e.g. monthly-sphere")
    campaigns = []
    cold_policies: list[tuple[str, str]] = []
    for name, raw in campaigns_node.items():
        if not _NAME_RE.match(str(name)):
            check.add(campaigns_node, f"campaigns.{name}", "is not a simple id",
                      "use lowercase letters, digits, '-' or '_'")
        node = check.mapping(raw, f"campaigns.{name}", campaigns_node.line_of(name))
        campaigns.append(_load_campaign(str(name), node, audiences, check, project, sender))
        if "cold_contacts" in node:
            cold_policies.append((str(name), check.choice(
                node, "cold_contacts", f"campaigns.{name}.", ("normal", "quarterly", "skip"),
                default="normal")))
    drips = _load_drips(root, audiences, check, sender)
    tips = _load_tips(project, check.text(root, "tips", "", default=""), check)
    for c in campaigns:
        if c.kind == "recent_sales" and not tips:
            check.add(campaigns_node, f"campaigns.{c.name}.kind",
                      "a recent-sales mailer always carries an advice tip, and no tips "
                      "library is configured", "add `tips: samples/tips.yaml` (top level)",
                      line=c.line)
    syn_node = check.mapping(root.get("synonyms"), "synonyms", root.line_of("synonyms"))
    synonyms = tuple((str(k).lower(), tuple(s.lower() for s in check.names(syn_node, k,
                      "synonyms."))) for k in syn_node)
    state = check.text(root, "state_dir", "", default=DEFAULT_STATE_DIR)
    scheduling = _load_scheduling(root, check)
    eng_node = check.mapping(root.get("engagement"), "engagement", root.line_of("engagement"))
    cold = default(Engagement, "cold_after_sends")
    engagement = Engagement(cold_after_sends=check.integer(
        eng_node, "cold_after_sends", "engagement.", cold, minimum=1) or cold)

    check.problems += unknown_keys(root, CAMPAIGNS_FILE)
    all_problems = sources_check.problems + check.problems
    errors = [p for p in all_problems if p.severity == "error"]
    if errors:
        raise ConfigError(errors)
    return Config(project=project, state_dir=(project / state).resolve(), sender=sender,
                  transport=transport, smtp=smtp, sendgrid=sendgrid,
                  campaigns=tuple(campaigns), drips=drips, sources=sources, tips=tips,
                  audience_files=audience_files, synonyms=synonyms, scheduling=scheduling,
                  engagement=engagement, cold_policies=tuple(cold_policies),
                  warnings=tuple(p for p in all_problems if p.severity != "error"))
