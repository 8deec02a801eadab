"""The user's configuration: `load_config(project)` reads and validates every file they
write, once; errors name file, line and key.

settings: the frozen dataclasses (each default written once, on its field); check: typed
reads that collect problems; campaigns: campaigns, drips and scheduling; load: the files.
"""
from pipeline.config.campaigns import DRIP_ANCHORS
from pipeline.config.check import default, parse_duration_days
from pipeline.config.load import load_config
from pipeline.config.settings import (
    AUDIENCES_DIR,
    CAMPAIGNS_FILE,
    DEFAULT_STATE_DIR,
    SOURCES_FILE,
    Config,
    Drip,
    DripStep,
    Engagement,
    Scheduling,
    SendGridSettings,
    SmtpSettings,
)

__all__ = [
    "AUDIENCES_DIR", "CAMPAIGNS_FILE", "DEFAULT_STATE_DIR", "DRIP_ANCHORS", "SOURCES_FILE",
    "Config", "Drip", "DripStep", "Engagement", "Scheduling", "SendGridSettings",
    "SmtpSettings", "default", "load_config", "parse_duration_days",
]
