"""Render: Jinja + MJML -> HTML, a plain-text twin from its own template, and the MIME message.

MJML is compiled once per template (a compile pass resolves partials and brand colours);
the compiled HTML is itself a Jinja template, so each email costs one Jinja render.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import html
import re
import zoneinfo
from dataclasses import dataclass
from email.utils import format_datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import mjml
import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup
from markupsafe import escape as escape_markup

from pipeline.addresses import email_key
from pipeline.errors import SphereError
from pipeline.models import (
    Campaign,
    Extra,
    Plan,
    PlannedEmail,
    RenderedEmail,
    Sender,
    template_variables,
)
from pipeline.rendering.links import unsubscribe_links
from pipeline.rendering.mime import address, build_alternative
from pipeline.rendering.strings import STRINGS
from pipeline.resources import bundled

SECTION_TITLES = {
    "neighbourhood": "Around your neighbourhood",
    "market": "The economy and the housing market",
    "interests": "For your interests",
}
# Subjects of the drip messages; a drip step's `subject:` overrides them.
DRIP_SUBJECTS = {
    "thank_you": "Thank you, {{ first_name }}",
    "settling_in": "How are you settling in, {{ first_name }}?",
    "home_anniversary": "Happy home anniversary, {{ first_name }}!",
    "referral_thank_you": "Thank you for the introduction, {{ first_name }}",
    "referral_update": "An update on {{ referral.name or 'your introduction' }}",
}
KIND_TEMPLATES = {"newsletter": "newsletter", "recent_sales": "recent_sales",
                  "interest_alert": "interest_alert"}
MAX_HTML_BYTES = 100 * 1024  # Gmail clips messages at about 102 KB
_NOTE_TAGS = {"p", "br", "a", "em", "strong", "ul", "ol", "li", "blockquote"}
_md = MarkdownIt("js-default")  # raw HTML in notes is shown as text, never passed through


class TemplateError(SphereError):
    """A template could not be found, compiled or rendered."""


def _landing(period: str, now: dt.datetime, zone: str) -> dt.datetime:
    """When the email reaches the reader, in their zone: now, or a scheduled time ahead
    (SendGrid's send_at)."""
    at = dt.datetime.fromisoformat(period)
    tz = zoneinfo.ZoneInfo(zone)
    local_now = now.astimezone(tz)
    if at.tzinfo is None:
        return max(at, local_now.replace(tzinfo=None))
    return max(at.astimezone(tz), local_now)


# Module level, not on the method: an lru_cache on a method keys on (and keeps alive)
# every Renderer; the compiled subject depends only on its text and the shared sandbox.
@lru_cache(maxsize=64)
def _string_template(text: str) -> jinja2.Template:
    return STRINGS.from_string(text)


@lru_cache(maxsize=4096)
def without_greeting(text: str, first_name: str) -> str:
    """A note without its own opening "Ruth," or "Hi Ruth,": the email greets by name."""
    if not first_name or not text:
        return text
    found = re.match(r"\s*(?:(?:hi|hello|hey|dear)\s+)?" + re.escape(first_name)
                     + r"\s*(?:[,!:]|\s[-\u2013\u2014])\s*", text, re.IGNORECASE)
    if found is None or not text[found.end():].strip():
        return text
    rest = text[found.end():]
    return rest[0].upper() + rest[1:]


@lru_cache(maxsize=4096)
def note_html(text: str) -> Markup:
    """A personal note written in Markdown, as safe HTML (raw HTML is escaped)."""
    if not text.strip():
        return Markup("")
    rendered = _md.render(text)
    return Markup(nh3.clean(rendered, tags=_NOTE_TAGS, attributes={"a": {"href"}},
                            url_schemes={"http", "https", "mailto"}, link_rel=None))


@dataclass(frozen=True)
class CompiledTemplate:
    """The HTML and text Jinja templates of one email kind."""

    name: str
    html: jinja2.Template
    text: jinja2.Template
    html_source: str = ""  # the compiled HTML, for `sphere check` to analyse


class Renderer:
    """Turns planned emails into finished messages for one project."""

    def __init__(self, project: Path, sender: Sender, secret: str) -> None:
        self.project = project
        self.sender = sender
        self.secret = secret
        dirs = [str(project / "templates"), str(bundled("templates"))]
        loader = jinja2.FileSystemLoader(dirs)
        # Compile pass: partials and brand, with delimiters that leave the runtime
        # {{ }} / {% %} untouched for the per-email pass.
        self.compile_env = jinja2.Environment(
            loader=loader, block_start_string="[%", block_end_string="%]",
            variable_start_string="[[", variable_end_string="]]",
            comment_start_string="[#", comment_end_string="#]",
            undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
        # Strict like the subjects: a misspelled name stops the send (and `sphere check`
        # names the file and line) instead of greeting 10,000 people with "Hi ,".
        self.html_env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
        self.text_env = jinja2.Environment(loader=loader, autoescape=False,
                                           undefined=jinja2.StrictUndefined,
                                           keep_trailing_newline=True)
        self._strings = STRINGS
        self._compiled: dict[str, CompiledTemplate] = {}
        self._domain = sender.email.rsplit("@", 1)[-1] or "localhost"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its arguments: a worker process builds its own (render_pool.py)."""
        return (Renderer, (self.project, self.sender, self.secret))

    # ---- compilation ---------------------------------------------------------------
    def compile_mjml(self, name: str) -> str:
        """The template's MJML with partials and brand resolved (runtime Jinja left in)."""
        try:
            return self.compile_env.get_template(f"{name}.mjml").render(
                brand=self.sender.brand, sender=self.sender)
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"template {exc.name!r} not found",
                                "put it in your project's templates/ folder") from exc
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"templates/{exc.filename or name}:{exc.lineno}: {exc.message}",
                                "fix the [% %] / [[ ]] tag") from exc

    def html_source(self, name: str) -> str:
        """The template's compiled HTML: the runtime Jinja source of its HTML part."""
        source = self.compile_mjml(name)
        try:
            return str(mjml.mjml2html(source))
        except Exception as exc:  # mrml raises its own error types
            raise TemplateError(f"templates/{name}.mjml: MJML error: {exc}",
                                "check the MJML tags are closed and nested as documented") \
                from exc

    def template(self, name: str) -> CompiledTemplate:
        """Compile a template kind once: MJML -> HTML -> Jinja template, plus its text twin."""
        if name in self._compiled:
            return self._compiled[name]
        compiled_html = self.html_source(name)
        try:
            html_template = self.html_env.from_string(compiled_html)
            text_template = self.text_env.get_template(f"{name}.txt")
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"template {exc.name!r} not found",
                                "every email template needs a .txt twin") from exc
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"templates/{exc.name or name}:{exc.lineno}: {exc.message}",
                                "fix the Jinja tag; `sphere check` names the source line") \
                from exc
        self._compiled[name] = CompiledTemplate(name, html_template, text_template,
                                                compiled_html)
        return self._compiled[name]

    def _string_template(self, text: str) -> jinja2.Template:
        return _string_template(text)

    # ---- per email -----------------------------------------------------------------
    def context(self, plan: Plan, planned: PlannedEmail, now: dt.datetime,
                extra: Extra | None = None) -> dict[str, Any]:
        """Everything a template may use for one contact."""
        c = planned.contact
        landing = _landing(plan.period, now, c.timezone or self.sender.timezone)
        unsub_https, unsub_mailto = unsubscribe_links(self.sender, self.secret, c.email)
        sections = []
        for key, title in SECTION_TITLES.items():
            picks = planned.section(key)
            if picks:
                sections.append({"key": key, "title": title, "picks": picks})
        tip = next((p.tip for p in planned.picks if p.tip), None)
        # `month` and `year` name when the email lands in the reader's own calendar (a
        # late or catch-up send says December in December), never a stale period's.
        base = {"contact": c, "first_name": c.first_name or "there", "sender": self.sender,
                "campaign": plan.campaign, "month": f"{landing:%B}", "year": landing.year,
                "now": now, "sign_off": "", **template_variables(planned.extra),
                **template_variables(extra)}
        # An interest alert opens with its own (possibly edited) note. Every built-in
        # email already says "Hi Ruth,", so a note that opens "Ruth, ..." loses the name.
        intro = without_greeting(str(base.get("intro") or plan.campaign.intro), c.first_name)
        note = without_greeting(c.note, c.first_name)
        one_off = [without_greeting(n.text, c.first_name) for n in planned.notes]
        subject = self._render_string(plan.campaign.subject, base, "subject")
        preheader = self._render_string(plan.campaign.preheader, base, "preheader") if \
            plan.campaign.preheader else "; ".join(
                p.article.title for p in planned.picks[:2] if p.article)
        return {**base, "subject": subject, "preheader": preheader,
                "intro_html": note_html(intro), "intro_text": intro,
                "note_html": note_html(note), "note_text": note,
                "one_off": [{"html": note_html(t), "text": t} for t in one_off],
                "sections": sections, "tip": tip, "brand": self.sender.brand,
                "unsubscribe_url": unsub_https or unsub_mailto,
                "unsubscribe_links": (unsub_https, unsub_mailto),
                "has_picks": bool(planned.picks)}

    def _render_string(self, text: str, ctx: dict[str, Any], what: str) -> str:
        try:
            return " ".join(self._string_template(text).render(ctx).split())
        except Exception as exc:
            raise TemplateError(f"campaigns.yaml: {what}: {exc}",
                                "use {{ contact.first_name }}, {{ month }} and the like") from exc

    def render(self, plan: Plan, planned: PlannedEmail, now: dt.datetime,
               extra: Extra | None = None, template: str = "") -> RenderedEmail:
        """One finished message: HTML, text twin, headers, MIME bytes. `extra` adds
        template variables (sales, years, referral); `template` overrides the kind's."""
        campaign = plan.campaign
        compiled = self.template(template or planned.template or campaign.template
                                 or KIND_TEMPLATES[campaign.kind])
        ctx = self.context(plan, planned, now, extra)
        try:
            body_html = compiled.html.render(ctx)
            body_text = compiled.text.render(ctx)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"templates/{compiled.name}: {exc} (email to "
                                f"{planned.contact.email})", "run `sphere check`, which "
                                "names the file and line") from exc
        missing = footer_missing(ctx["unsubscribe_url"], self.sender.postal_address,
                                 body_html, body_text)
        if missing:
            # Whatever a project's templates say, no email goes without these.
            raise TemplateError(f"templates/{compiled.name}: the email to "
                                f"{planned.contact.email} has no {' and no '.join(missing)}"
                                "; nothing is sent without both", "run `sphere check`, "
                                "then put {{ unsubscribe_url }} and {{ sender.postal_address "
                                "}} back in your footer")
        if len(body_html.encode("utf-8")) > MAX_HTML_BYTES:
            raise TemplateError(f"email to {planned.contact.email} is "
                                f"{len(body_html.encode()) // 1024} KB of HTML; Gmail clips "
                                "messages over ~102 KB", "lower the section sizes or "
                                "shorten the template")
        message_id = self.message_id(plan.send_id, planned.contact.email)
        raw = self.mime(campaign, planned, ctx["subject"], body_text, body_html, message_id, now,
                        ctx["unsubscribe_links"])
        picks = tuple(p.key for p in planned.picks)
        clusters = tuple(p.article.cluster if p.article else "" for p in planned.picks)
        return RenderedEmail(send_id=plan.send_id, contact=planned.contact,
                             message_id=message_id, subject=ctx["subject"],
                             preheader=ctx["preheader"], html=body_html, text=body_text,
                             raw=raw, pick_keys=picks, clusters=clusters,
                             # id 0: a draft's personal note, no stored one-off note
                             note_ids=tuple(n.id for n in planned.notes if n.id))

    def message_id(self, send_id: str, email: str) -> str:
        """Unique per (send, contact) and stable across retries of the same message."""
        digest = hashlib.sha256(f"{send_id}|{email_key(email)}".encode()).hexdigest()[:32]
        return f"<{digest}.sphere@{self._domain}>"

    def mime(self, campaign: Campaign, planned: PlannedEmail, subject: str, text: str,
             body_html: str, message_id: str, now: dt.datetime,
             links: tuple[str, str]) -> bytes:
        """multipart/alternative (text first, HTML preferred) with list headers; `links`
        are the (https, mailto) unsubscribe links the context already signed."""
        c, s = planned.contact, self.sender
        https, mailto = links
        headers = [("From", address(s.name, s.email)), ("To", address(c.name, c.email))]
        if s.reply_to:
            headers.append(("Reply-To", s.reply_to))
        headers += [("Subject", subject),
                    ("Date", format_datetime(now.astimezone(dt.UTC))),
                    ("Message-ID", message_id),
                    ("List-Unsubscribe", ", ".join(f"<{u}>" for u in (https, mailto) if u))]
        if https:
            # RFC 8058 one-click needs an https URI that accepts POST.
            headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
        headers.append(("X-Sphere-Campaign", campaign.name))
        # Encoded bodies keep every line on the wire under 998 octets whatever the
        # template does.
        return build_alternative(headers, text, body_html)


def footer_missing(url: str, postal: str, body_html: str, body_text: str) -> list[str]:
    """What the legal footer lacks: the unsubscribe link and the postal address, in the
    HTML (as a link, escaped as Jinja escapes) and the text ('' skips that part). Cheap
    enough for every email; `sphere check` also verifies they are visible."""
    missing = []
    link, address = str(escape_markup(url)), _escaped(postal)
    if (body_html and f'href="{link}"' not in body_html and \
            f"href='{link}'" not in body_html) or \
            (body_text and url not in body_text):
        missing.append("unsubscribe link")
    if (body_html and not _contains(body_html, address)) or \
            (body_text and not _contains(body_text, postal)):
        missing.append("postal address")
    return missing


@lru_cache(maxsize=16)
def _escaped(text: str) -> str:
    return str(escape_markup(text))


def _contains(text: str, part: str) -> bool:
    # Squashing whitespace costs a split of the whole email: only when the plain search
    # fails (a template may wrap the address over lines).
    return part in text or " ".join(part.split()) in " ".join(text.split())


def escape(text: str) -> str:
    """HTML-escape for the few places Python builds markup (the preview gallery)."""
    return html.escape(text, quote=True)
