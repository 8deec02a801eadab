"""Load and validate every file the user writes, once; errors name file, line and key."""
from __future__ import annotations

import re
from pathlib import Path

from pipeline.config.campaigns import load_campaign, load_drips, load_scheduling
from pipeline.config.check import NAME_RE, Check, default
from pipeline.config.settings import (
    AUDIENCES_DIR,
    CAMPAIGNS_FILE,
    DEFAULT_STATE_DIR,
    SOURCES_FILE,
    Config,
    Engagement,
    SendGridSettings,
    SmtpSettings,
)
from pipeline.errors import ConfigError
from pipeline.models import (
    TRANSPORTS,
    Brand,
    Campaign,
    CampaignKind,
    Sender,
    Source,
    SourceKind,
    Tip,
)
from pipeline.yamlfile import LineDict, LineList, load_yaml, unknown_keys

_COLOUR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")


def _load_sources(project: Path, check: Check) -> tuple[Source, ...]:
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
        if name and not NAME_RE.match(name):
            check.add(node, f"{path}name", f"{name!r} is not a simple id",
                      "use lowercase letters, digits, '-' or '_'")
        if name in seen:
            check.add(node, f"{path}name", f"duplicate source name {name!r} (first on line "
                      f"{seen[name]})", "give each source a unique name")
        seen[name] = node.line
        if kind == SourceKind.NEIGHBOURHOOD and not hood:
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
        out.append(Source(name=name, url=url, kind=SourceKind(kind or "hobby"),
                          neighbourhood=hood,
                          topics=tuple(t.lower() for t in topics), line=node.line,
                          allow_private=allow_private is True, root=str(project.resolve())))
    check.problems += unknown_keys(root, SOURCES_FILE)
    return tuple(out)


def _load_tips(project: Path, rel: str, check: Check) -> tuple[Tip, ...]:
    if not rel:
        return ()
    tips_check = Check(rel)
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


def _load_sender(root: LineDict, check: Check) -> Sender:
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


def _smtp(root: LineDict, check: Check) -> SmtpSettings:
    """campaigns.yaml `smtp:`."""
    smtp_node = check.mapping(root.get("smtp"), "smtp", root.line_of("smtp"))
    smtp_d = SmtpSettings()
    return SmtpSettings(
        host=check.text(smtp_node, "host", "smtp.", default=smtp_d.host),
        port=check.integer(smtp_node, "port", "smtp.", smtp_d.port, minimum=1) or smtp_d.port,
        security=check.choice(smtp_node, "security", "smtp.", ("starttls", "ssl", "none"),
                              default=smtp_d.security),
        timeout=float(check.integer(smtp_node, "timeout", "smtp.", int(smtp_d.timeout),
                                    minimum=1) or smtp_d.timeout),
        workers=check.integer(smtp_node, "workers", "smtp.", smtp_d.workers, minimum=1)
        or smtp_d.workers)


def _sendgrid(root: LineDict, check: Check) -> SendGridSettings:
    """campaigns.yaml `sendgrid:`."""
    sg_node = check.mapping(root.get("sendgrid"), "sendgrid", root.line_of("sendgrid"))
    sg_d = SendGridSettings()
    return SendGridSettings(
        api_host=check.text(sg_node, "api_host", "sendgrid.", default=sg_d.api_host),
        asm_group_id=check.integer(sg_node, "asm_group_id", "sendgrid.", sg_d.asm_group_id,
                                   minimum=1),
        sandbox_mode=bool(sg_node.get("sandbox_mode", sg_d.sandbox_mode)),
        timeout=float(check.integer(sg_node, "timeout", "sendgrid.", int(sg_d.timeout),
                                    minimum=1) or sg_d.timeout),
        workers=check.integer(sg_node, "workers", "sendgrid.", sg_d.workers, minimum=1)
        or sg_d.workers)


def _campaigns(root: LineDict, audiences: tuple[str, ...], check: Check, project: Path
               ) -> tuple[list[Campaign], list[tuple[str, str]], LineDict]:
    """campaigns.yaml `campaigns:`: each campaign, the cold-contact policies set, and the
    block itself (later checks point at it)."""
    campaigns_node = check.mapping(root.get("campaigns"), "campaigns", root.line_of("campaigns"))
    if not campaigns_node:
        check.add(root, "campaigns", "no campaigns defined",
                  "add `campaigns:` with at least one, e.g. monthly-sphere")
    campaigns: list[Campaign] = []
    cold_policies: list[tuple[str, str]] = []
    for name, raw in campaigns_node.items():
        if not NAME_RE.match(str(name)):
            check.add(campaigns_node, f"campaigns.{name}", "is not a simple id",
                      "use lowercase letters, digits, '-' or '_'")
        node = check.mapping(raw, f"campaigns.{name}", campaigns_node.line_of(name))
        campaigns.append(load_campaign(str(name), node, audiences, check, project))
        if "cold_contacts" in node:
            cold_policies.append((str(name), check.choice(
                node, "cold_contacts", f"campaigns.{name}.", ("normal", "quarterly", "skip"),
                default="normal")))
    return campaigns, cold_policies, campaigns_node


def _engagement(root: LineDict, check: Check) -> Engagement:
    """campaigns.yaml `engagement:`."""
    eng_node = check.mapping(root.get("engagement"), "engagement", root.line_of("engagement"))
    cold = default(Engagement, "cold_after_sends")
    return Engagement(cold_after_sends=check.integer(
        eng_node, "cold_after_sends", "engagement.", cold, minimum=1) or cold)


def _database_url(root: LineDict, check: Check) -> str:
    """campaigns.yaml `database_url:` (team mode), refused when it holds a password."""
    from pipeline.state.postgres import PASSWORD_IN_FILE, has_password
    url = check.text(root, "database_url", "", default="")
    if has_password(url):
        check.add(root, "database_url", *PASSWORD_IN_FILE)
        return ""
    return url


def load_config(project: Path) -> Config:
    """Read and validate content_sources.yaml, campaigns.yaml and the tips library."""
    project = project.resolve()
    check = Check(CAMPAIGNS_FILE)
    sources_check = Check(SOURCES_FILE)
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
    smtp = _smtp(root, check)
    sendgrid = _sendgrid(root, check)
    campaigns, cold_policies, campaigns_node = _campaigns(root, audiences, check, project)
    drips = load_drips(root, audiences, check)
    tips = _load_tips(project, check.text(root, "tips", "", default=""), check)
    for c in campaigns:
        if c.kind == CampaignKind.RECENT_SALES and not tips:
            check.add(campaigns_node, f"campaigns.{c.name}.kind",
                      "a recent-sales mailer always carries an advice tip, and no tips "
                      "library is configured", "add `tips: samples/tips.yaml` (top level)",
                      line=c.line)
    syn_node = check.mapping(root.get("synonyms"), "synonyms", root.line_of("synonyms"))
    synonyms = tuple((str(k).lower(), tuple(s.lower() for s in check.names(syn_node, k,
                      "synonyms."))) for k in syn_node)
    state = check.text(root, "state_dir", "", default=DEFAULT_STATE_DIR)
    database_url = _database_url(root, check)
    scheduling = load_scheduling(root, check)
    engagement = _engagement(root, check)

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
                  database_url=database_url, strings=tuple(check.strings),
                  warnings=tuple(p for p in all_problems if p.severity != "error"))
