"""What the user configured, as frozen dataclasses; each default is written once, on
its field (the loader asks `check.default` for it)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import names
from pipeline.errors import ConfigError, Problem
from pipeline.models import Campaign, Sender, Source, Tip

SOURCES_FILE = "content_sources.yaml"
CAMPAIGNS_FILE = "campaigns.yaml"
AUDIENCES_DIR = names.AUDIENCES_DIR
# State (SQLite, outbox) lives under the project unless campaigns.yaml says otherwise,
# so a laptop user can delete one folder to start over.
DEFAULT_STATE_DIR = "var"


@dataclass(frozen=True)
class ConfigString:
    """A subject or preheader of campaigns.yaml, where it is written (the key and line)."""

    key: str  # "campaigns.monthly-sphere.subject", "drips.after-closing.steps[0].subject"
    line: int
    text: str


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
    # `database_url:` (team mode, issue #17): a PostgreSQL database instead of sphere.db;
    # SPHERE_DATABASE_URL overrides it. Never a password here: secrets come from the env.
    database_url: str = ""
    # Subjects and preheaders with their lines, for templatecheck to render.
    strings: tuple[ConfigString, ...] = ()

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
