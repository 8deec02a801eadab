"""Which neighbourhood an address is in, from a mapping file of streets and ZIP codes:

    neighbourhoods:
      Maple Heights: {zips: ["98001"], streets: ["Birch Lane", "Linden Street"]}
"""
from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config
from pipeline.contacts.sales import load_sales
from pipeline.errors import ConfigError, Problem
from pipeline.models import CampaignKind, Contact, Sale, Source, SourceKind
from pipeline.yamlfile import LineDict, LineList, load_yaml

# Street-type abbreviations, so "12 Birch Ln." matches "Birch Lane".
_SUFFIXES = {"st": "street", "str": "street", "ln": "lane", "ave": "avenue", "av": "avenue",
             "rd": "road", "dr": "drive", "ct": "court", "blvd": "boulevard", "pl": "place",
             "ter": "terrace", "terr": "terrace", "cir": "circle", "hwy": "highway",
             "pkwy": "parkway", "sq": "square", "trl": "trail", "n": "north", "s": "south",
             "e": "east", "w": "west"}


def street_key(text: str) -> str:
    """'12 Birch Ln., Apt 4' -> '12 birch lane apt 4' (words, abbreviations expanded)."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return " ".join(_SUFFIXES.get(w, w) for w in words)


def zip_key(text: str) -> str:
    """'98001-1234' -> '980011234'; 'sw1a 1aa' -> 'SW1A1AA'."""
    return re.sub(r"[^A-Za-z0-9]", "", text).upper()


@dataclass(frozen=True)
class Neighbourhoods:
    """Streets and postal codes of each neighbourhood; a street beats a ZIP code."""

    streets: tuple[tuple[str, str], ...] = ()  # (street_key, neighbourhood)
    zips: tuple[tuple[str, str], ...] = ()  # (zip_key, neighbourhood)

    def lookup(self, street: str, postal_code: str) -> str:
        """The neighbourhood of an address, or '' when the mapping does not say."""
        if street.strip():
            padded = f" {street_key(street)} "
            hits = [(len(s), hood) for s, hood in self.streets if f" {s} " in padded]
            if hits:
                # The longest street name wins: "Old Mill Road" over "Mill Road".
                return max(hits, key=lambda h: h[0])[1]
        code = zip_key(postal_code)
        if code:
            # A prefix match: "98001" covers "98001-1234", "SW1A" covers "SW1A 1AA".
            hits = [(len(z), hood) for z, hood in self.zips if code.startswith(z)]
            if hits:
                return max(hits, key=lambda h: h[0])[1]
        return ""


def load_neighbourhoods(path: Path, shown: str = "") -> Neighbourhoods:
    """Read and check a neighbourhoods mapping file; ConfigError names file:line."""
    shown = shown or str(path)
    data, problems = load_yaml(path, shown)
    if problems:
        raise ConfigError(list(problems))
    root = data.get("neighbourhoods") if isinstance(data, LineDict) else None
    if not isinstance(root, LineDict):
        raise ConfigError([Problem(shown, getattr(data, "line", 1), "neighbourhoods",
                                   "must be a mapping of neighbourhood names",
                                   "write `neighbourhoods: {Maple Heights: {zips: [\"98001\"], "
                                   "streets: [\"Birch Lane\"]}}`")])
    streets: list[tuple[str, str]] = []
    zips: list[tuple[str, str]] = []
    errors: list[Problem] = []
    for name, spec in root.items():
        line = root.line_of(name)
        if not isinstance(spec, LineDict):
            errors.append(Problem(shown, line, f"neighbourhoods.{name}", "must be a mapping "
                                  "with `zips` and/or `streets`",
                                  "e.g. `{zips: [\"98001\"], streets: [\"Birch Lane\"]}`"))
            continue
        for key, bucket, norm in (("zips", zips, zip_key), ("streets", streets, street_key)):
            items = spec.get(key, [])
            if not isinstance(items, (list, LineList)) or \
                    not all(isinstance(i, (str, int)) for i in items):
                errors.append(Problem(shown, spec.line_of(key), f"neighbourhoods.{name}.{key}",
                                      "must be a list of text", f"e.g. `{key}: [...]`"))
                continue
            bucket.extend((norm(str(i)), str(name)) for i in items if norm(str(i)))
        unknown = [k for k in spec if k not in ("zips", "streets")]
        if unknown:
            errors.append(Problem(shown, spec.line_of(unknown[0]),
                                  f"neighbourhoods.{name}.{unknown[0]}", "unknown key",
                                  "use `zips` and `streets`"))
    if errors:
        raise ConfigError(errors)
    return Neighbourhoods(streets=tuple(streets), zips=tuple(zips))


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    spelled = {k.lower(): k for k in known}
    near = difflib.get_close_matches(name.lower(), list(spelled), 1, 0.75)
    return f"did you mean {spelled[near[0]]!r}? " if near else ""


def feed_warnings(contacts: Iterable[Contact], sources: Iterable[Source]) -> list[Problem]:
    """A warning per neighbourhood of a contact that no neighbourhood feed covers (matched
    as the matcher does, ignoring case): a misspelled one silently gets no local news."""
    covered = {s.neighbourhood for s in sources
               if s.kind == SourceKind.NEIGHBOURHOOD and s.neighbourhood}
    folded = {c.lower() for c in covered}
    missing: dict[str, list[Contact]] = {}
    for c in contacts:
        if c.neighbourhood and c.neighbourhood.lower() not in folded:
            missing.setdefault(c.neighbourhood.lower(), []).append(c)
    out = []
    for people in missing.values():
        first = people[0]
        file, _, line = first.origin.rpartition(":")
        others = f" and {len(people) - 1} other contact(s)" if len(people) > 1 else ""
        out.append(Problem(file or first.origin, int(line) if line.isdigit() else 0,
                           "neighbourhood", f"{first.neighbourhood!r} matches no "
                           f"neighbourhood feed{others}: no neighbourhood news for them",
                           f"{_did_you_mean(first.neighbourhood, covered)}spell it as "
                           "content_sources.yaml does, or add a feed for it", "warning"))
    return out


def sales_warning(campaign: str, shown: str, sales: Iterable[Sale],
                  contacts: Iterable[Contact]) -> Problem | None:
    """A warning when no sale of a recent-sales mailer is in any of its contacts'
    neighbourhoods: every email would show only sales from elsewhere."""
    hoods = {c.neighbourhood for c in contacts if c.neighbourhood}
    sold = sorted({s.neighbourhood for s in sales if s.neighbourhood})
    if not sold or {h.lower() for h in hoods} & {s.lower() for s in sold}:
        return None
    hints = "".join(_did_you_mean(s, hoods) for s in sold)
    return Problem(shown, 0, "neighbourhood", f"no sale is in any contact's neighbourhood "
                   f"(sales in {', '.join(sold)}), so every {campaign} email shows only "
                   "sales from elsewhere", f"{hints}check the spelling, or add sales near "
                   "your contacts", "warning")


def coverage_warnings(config: Config, contacts: tuple[Contact, ...], now: dt.datetime
                      ) -> list[Problem]:
    """Neighbourhoods no feed covers, and recent-sales mailers with no sale near anyone."""
    out = feed_warnings(contacts, config.sources)
    for c in config.campaigns:
        if c.kind != CampaignKind.RECENT_SALES or not c.sales_file:
            continue
        sales, _ = load_sales(config.project / c.sales_file, c.sales_file)
        since = (now - dt.timedelta(days=c.sales_window_days)).date() \
            if c.sales_window_days else dt.date.min
        warning = sales_warning(c.name, c.sales_file, [s for s in sales if s.sold_date >= since],
                                [p for p in contacts if p.audience in c.audiences])
        if warning:
            out.append(warning)
    return out
