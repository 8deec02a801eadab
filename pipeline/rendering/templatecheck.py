"""Templates checked before anything is sent: every name, attribute, filter and test a
template in use refers to exists (reported at the user's own file and line, partials
included), and a probe email of each one shows a visible unsubscribe link and the
sender's postal address in both its HTML and its text, whatever the templates say."""
from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta, nodes

from pipeline.config import CAMPAIGNS_FILE, Config
from pipeline.errors import Problem
from pipeline.models import (
    AlertExtra,
    Article,
    Campaign,
    CampaignKind,
    Contact,
    DripExtra,
    Extra,
    Note,
    Pick,
    Plan,
    PlannedEmail,
    ReferralInfo,
    ReferralStatus,
    Sale,
    SalesExtra,
    SourceKind,
    Tip,
    template_variables,
)
from pipeline.rendering.render import (
    DRIP_SUBJECTS,
    KIND_TEMPLATES,
    Renderer,
    TemplateError,
    footer_missing,
)
from pipeline.rendering.strings import SAMPLE_NOW, check_subject
from pipeline.resources import bundled

_UNKNOWN = object()  # a value whose shape the check cannot know: nothing is checked on it
_TAG_RE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)  # the runtime tags of a source file
_JINJA_NAMES = frozenset({"super", "self", "caller", "varargs", "kwargs", "loop"})
_NOW = dt.datetime(2026, 11, 22, 18, 0, tzinfo=dt.UTC)
_ARTICLE = Article(id="probe:1", source="probe", kind=SourceKind.HOBBY,
                   url="https://news.example/1",
                   title="A sample story", summary_html="", summary_text="A sample summary.",
                   published=_NOW, neighbourhood="Maple Heights", topics=("gardening",),
                   image_url="https://img.example/1.jpg", cluster="probe:1")
_TIP = Tip(id="probe", topic="maintenance", title="A sample tip", body="Sample advice.")
_SALE = Sale(address="1 Sample Lane", neighbourhood="Maple Heights", price=500000,
             sold_date=dt.date(2026, 11, 1), beds=3, baths=2, days_on_market=9,
             photo_url="https://img.example/sale.jpg", note="A sample note")
_CONTACT = Contact(email="sam.sample@example.com", first_name="Sam", last_name="Sample",
                   neighbourhood="Maple Heights", interests=("gardening",),
                   relationship="past_client", closing_date=dt.date(2024, 5, 14),
                   timezone="America/Los_Angeles", note="A standing note.", audience="sample")
_REFERRAL = ReferralInfo(1, "Alex Sample", ReferralStatus.MET)


@dataclass(frozen=True)
class Use:
    """A template some send renders, where that is configured, and the send's extras."""

    template: str
    where: str  # "campaigns.monthly-sphere", "drips.after-closing.steps[1].template"
    campaign: Campaign
    extra: Extra | None


def template_uses(config: Config) -> list[Use]:
    """Every template a campaign, a drip step or `sphere referral update` renders."""
    out = []
    for c in config.campaigns:
        extra: Extra | None = None
        if c.kind == CampaignKind.RECENT_SALES:
            extra = SalesExtra((_SALE,), 1)
        elif c.kind == CampaignKind.INTEREST_ALERT:
            extra = AlertExtra("A sample note.")
        out.append(Use(c.template or KIND_TEMPLATES[c.kind], f"campaigns.{c.name}", c, extra))
    for drip in config.drips:
        for i, step in enumerate(drip.steps):
            # The same extras schedule.drip_due gives each step.
            referral = _REFERRAL if drip.anchor == "referral_received" else None
            extra = DripExtra(referral)
            if step.after_days is None:
                extra = DripExtra(referral, years=1) if (step.every_days or 365) == 365 \
                    else DripExtra(referral, times=1)
            out.append(Use(step.template, f"drips.{drip.name}.steps[{i}].template",
                           drip_campaign(drip.name, drip.audiences, step.template,
                                         step.subject), extra))
    out.append(Use("referral_update", "sphere referral update",
                   drip_campaign("referral-update", (), "referral_update", ""),
                   DripExtra(_REFERRAL)))
    return out


def drip_campaign(name: str, audiences: tuple[str, ...], template: str, subject: str
                  ) -> Campaign:
    """The campaign a drip step is sent as: its own template, no article picks."""
    return Campaign(name=name, kind=CampaignKind.NEWSLETTER, audiences=audiences, schedule="",
                    subject=subject or DRIP_SUBJECTS.get(template,
                                                         "A note from {{ sender.name }}"),
                    skip_empty=False)


def check_templates(config: Config, renderer: Renderer | None = None,
                    only: Iterable[str] | None = None) -> list[Problem]:
    """Problems of every template in use (or of the uses named in `only`, by `where`)."""
    renderer = renderer or Renderer(config.project, config.sender, "check")
    wanted = set(only) if only is not None else None
    problems: list[Problem] = []
    done: dict[tuple[str, frozenset[str]], tuple[Use, list[Problem]]] = {}
    for use in template_uses(config):
        if wanted is not None and use.where not in wanted and use.template not in wanted:
            continue
        broken = _string_problems(config, use)
        if broken:  # rendering the email would only fail on the same subject
            problems += broken
            continue
        key = (use.template, frozenset(template_variables(use.extra)))
        if key in done:  # the same template and names: the same problems, another user
            first, found = done[key]
            problems += [dataclasses.replace(p, problem=p.problem.replace(
                f"(used by {first.where})", f"(used by {use.where})")) for p in found]
            continue
        found = _check_use(config, renderer, use)
        done[key] = (use, found)
        problems += found
    return _merged(problems)


def _string_problems(config: Config, use: Use) -> list[Problem]:
    """The subject and preheader of the campaign or drip step `use` is, rendered against a
    sample contact at a sample moment; each problem names its campaigns.yaml line."""
    owner = use.where.removesuffix("template") if use.where.endswith(".template") \
        else f"{use.where}."
    out = []
    for s in config.strings:
        if s.key.startswith(owner):
            problem = check_subject(s.text, config.sender, SAMPLE_NOW)
            if problem:
                out.append(Problem(CAMPAIGNS_FILE, s.line, s.key, problem,
                                   'e.g. "{{ contact.first_name }}, your {{ month }} notes"'))
    return out


def _merged(problems: list[Problem]) -> list[Problem]:
    """One line per problem, naming every send that uses the template (the fix of the
    first: the names each send offers differ a little, the mistake does not)."""
    users: dict[tuple[str, int, str, str], tuple[str, list[str]]] = {}
    for p in problems:
        found = re.search(r" \(used by ([^)]*)\)", p.problem)
        text = p.problem.replace(found.group(0), "{used}") if found else p.problem
        _, where = users.setdefault((p.file, p.line, p.key, text), (p.fix, []))
        if found and found.group(1) not in where:
            where.append(found.group(1))
    return [Problem(file, line, key, text.replace("{used}", f" (used by {', '.join(w)})"),
                    fix) for (file, line, key, text), (fix, w) in users.items()]


def _probe(use: Use) -> tuple[Plan, PlannedEmail]:
    if use.campaign.kind == CampaignKind.INTEREST_ALERT:
        picks: tuple[Pick, ...] = (Pick("interests", "matches your interest 'gardening'", 3,
                                        article=_ARTICLE),)
    elif use.campaign.kind == CampaignKind.RECENT_SALES or use.campaign.schedule == "":
        picks = (Pick("tip", "advice tip", 0, tip=_TIP, general=True),)
    else:
        picks = (*(Pick(s, f"sample reason for {s}", 1,
                        article=dataclasses.replace(_ARTICLE, id=f"probe:{s}"))
                   for s in ("neighbourhood", "market", "interests")),
                 Pick("tip", "advice tip", 0, tip=_TIP, general=True))
    planned = PlannedEmail(_CONTACT, picks, (Note(1, _CONTACT.email, "A one-off note."),),
                           template=use.template, extra=use.extra)
    plan = Plan(use.campaign, f"{use.campaign.name}@probe", "2026-11-01T09:00:00-08:00",
                (planned,))
    return plan, planned


def _check_use(config: Config, renderer: Renderer, use: Use) -> list[Problem]:
    try:
        html_source = renderer.html_source(use.template)
    except TemplateError as exc:
        return [Problem(use.where, 0, "", str(exc))]
    plan, planned = _probe(use)
    try:
        ctx = renderer.context(plan, planned, _NOW)
    except TemplateError as exc:  # the subject: config reports it with its line
        return [Problem(use.where, 0, "", str(exc))]
    mjml_files = _sources(renderer.compile_env, f"{use.template}.mjml", config)
    text_files = _sources(renderer.text_env, f"{use.template}.txt", config)
    problems = _strict_html(renderer, html_source, ctx, mjml_files, use)
    loop_names = {n.name for _, _, text in text_files
                  for f in _parsed(renderer.text_env, text).find_all(nodes.For)
                  for n in _names(f.target)}
    for shown, _, text in text_files:
        scope = {**ctx, **dict.fromkeys(loop_names, _UNKNOWN)}
        walker = _Walker(renderer.text_env)
        try:
            found = walker.run(text, scope)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(Problem(shown, exc.lineno, "", f"{exc.message} (used by "
                                    f"{use.where})", "fix the Jinja tag"))
            continue
        for kind, token, base, line in found:
            problems.append(_problem(shown, line, kind, token, base, use,
                                     walker.options.get((token, base))))
    if problems:
        return problems  # compiling or a probe would only repeat them
    try:
        compiled = renderer.template(use.template)
        body_html = compiled.html.render(ctx)
        body_text = compiled.text.render(ctx)
    except TemplateError as exc:
        return [Problem(use.where, 0, "", str(exc))]
    except jinja2.TemplateError as exc:
        return [Problem(mjml_files[0][0], 0, "", f"{exc} (used by {use.where})",
                        "fix the template")]
    return _footer_problems(ctx, body_html, body_text, mjml_files, text_files, use)


def _parsed(env: jinja2.Environment, text: str) -> nodes.Template:
    try:
        return env.parse(text)
    except jinja2.TemplateSyntaxError:
        return nodes.Template([])


def _sources(env: jinja2.Environment, name: str, config: Config
             ) -> list[tuple[str, bool, str]]:
    """(shown path, overridden by the project, text) of a template and every file it
    includes or extends, in the order they are first reached."""
    out: list[tuple[str, bool, str]] = []
    seen: set[str] = set()

    def walk(n: str) -> None:
        if n in seen:
            return
        seen.add(n)
        try:
            text, _, _ = env.loader.get_source(env, n)  # type: ignore[union-attr]
        except jinja2.TemplateNotFound:
            return
        out.append((f"templates/{n}", is_override(config.project, n), text))
        try:
            refs = list(meta.find_referenced_templates(env.parse(text)))
        except jinja2.TemplateSyntaxError:
            return
        for ref in refs:
            if ref:
                walk(ref)
    walk(name)
    return out


@dataclass(frozen=True)
class TemplateFile:
    """One template file for `sphere templates`."""

    name: str  # "newsletter.mjml", "partials/footer.mjml"
    built_in: bool
    overridden: bool  # the project's own file replaces the built-in
    used_by: tuple[str, ...]  # campaigns and drip steps that render it (emails only)


def template_listing(config: Config) -> list[TemplateFile]:
    """Every built-in template and every template of the project's own."""
    users: dict[str, list[str]] = {}
    for use in template_uses(config):
        for ext in ("mjml", "txt"):
            users.setdefault(f"{use.template}.{ext}", []).append(use.where)
    root, mine = bundled("templates"), config.project / "templates"
    names = {p.relative_to(root).as_posix() for p in root.rglob("*.*")
             if p.suffix in (".mjml", ".txt") and p.name != "README.txt"}
    own = {p.relative_to(mine).as_posix() for p in mine.rglob("*.*")
           if p.suffix in (".mjml", ".txt") and p.name != "README.txt"} \
        if mine.is_dir() else set()
    return [TemplateFile(n, n in names, n in names and is_override(config.project, n),
                         tuple(dict.fromkeys(users.get(n, ()))))
            for n in sorted(names) + sorted(own - names)]


def is_override(project: Path, name: str) -> bool:
    """True when the project's templates/NAME replaces the built-in with its own text (a
    project copied from the sample holds identical copies, which change nothing)."""
    mine, built_in = project / "templates" / name, bundled("templates") / name
    if not mine.is_file():
        return False
    return not built_in.is_file() or mine.read_bytes() != built_in.read_bytes()


class _Walker:
    """Finds names, attributes, filters and tests a template uses that do not exist,
    following loops so `pick.article.titel` is caught inside `{% for pick in ... %}`."""

    def __init__(self, env: jinja2.Environment) -> None:
        self.env = env
        self.found: list[tuple[str, str, str, int]] = []  # (kind, token, base, line)
        self.options: dict[tuple[str, str], list[str]] = {}  # what the base does have

    def run(self, source: str, scope: dict[str, Any]) -> list[tuple[str, str, str, int]]:
        """Problems of one template source, given the names the context holds."""
        self.visit(self.env.parse(source), dict(scope))
        return self.found

    def value(self, node: nodes.Node, scope: dict[str, Any]) -> Any:
        """A sample of what the expression holds, or _UNKNOWN."""
        if isinstance(node, nodes.Name):
            return scope.get(node.name, _UNKNOWN)
        if isinstance(node, (nodes.Getattr, nodes.Getitem)):
            base = self.value(node.node, scope)
            if base is _UNKNOWN or base is None:
                return _UNKNOWN
            if isinstance(node, nodes.Getattr):
                got = self.env.getattr(base, node.attr)
            elif isinstance(node.arg, nodes.Const):
                got = self.env.getitem(base, node.arg.value)
            else:
                return _UNKNOWN
            return _UNKNOWN if isinstance(got, jinja2.Undefined) else got
        return _UNKNOWN

    def visit(self, node: nodes.Node, scope: dict[str, Any]) -> None:
        """Walk one node and its children with the names in scope."""
        if isinstance(node, nodes.For):
            self.visit(node.iter, scope)
            items = self.value(node.iter, scope)
            first = items[0] if isinstance(items, (list, tuple)) and items and \
                isinstance(node.target, nodes.Name) else _UNKNOWN
            inner = {**scope, "loop": _UNKNOWN,
                     **{n.name: first for n in _names(node.target)}}
            for child in ([node.test] if node.test else []) + node.body:
                self.visit(child, inner)
            for child in node.else_:
                self.visit(child, scope)
            return
        if isinstance(node, (nodes.Assign, nodes.AssignBlock, nodes.With, nodes.Macro,
                             nodes.CallBlock)):
            for target in node.find_all(nodes.Name):
                if target.ctx in ("store", "param"):
                    scope[target.name] = _UNKNOWN
        if isinstance(node, nodes.Name) and node.ctx == "load" and \
                node.name not in scope and node.name not in self.env.globals and \
                node.name not in _JINJA_NAMES:
            self.found.append(("name", node.name, "", node.lineno))
            self.options[(node.name, "")] = sorted(k for k in scope if scope[k] is not
                                                   _UNKNOWN)
        elif isinstance(node, nodes.Getattr):
            base = self.value(node.node, scope)
            if base is not _UNKNOWN and base is not None and \
                    isinstance(self.env.getattr(base, node.attr), jinja2.Undefined):
                self.found.append(("attribute", node.attr, _path(node.node), node.lineno))
                self.options[(node.attr, _path(node.node))] = _attributes(base)
        elif isinstance(node, nodes.Filter) and node.name not in self.env.filters:
            self.found.append(("filter", node.name, "", node.lineno))
        elif isinstance(node, nodes.Test) and node.name not in self.env.tests:
            self.found.append(("test", node.name, "", node.lineno))
        for child in node.iter_child_nodes():
            self.visit(child, scope)


def _path(node: nodes.Node) -> str:
    """`pick.article` for a chain of attributes on a name; '' for anything else."""
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        base = _path(node.node)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _attributes(value: Any) -> list[str]:
    """The names a template may read from a value: fields, properties or keys."""
    if dataclasses.is_dataclass(value):
        names = [f.name for f in dataclasses.fields(value)
                 if f.name not in ("audience", "origin", "line")]
        return names + [n for n, v in vars(type(value)).items() if isinstance(v, property)]
    if isinstance(value, Mapping):
        return [str(k) for k in value]
    return []


def _names(target: nodes.Node) -> list[nodes.Name]:
    """The names a loop or assignment target binds (`x`, or `k, v`)."""
    return [target] if isinstance(target, nodes.Name) else list(target.find_all(nodes.Name))


def _pattern(kind: str, token: str, base: str) -> re.Pattern[str]:
    t = re.escape(token)
    if kind == "name":
        return re.compile(rf"(?<![\w.]){t}\b")
    if kind == "attribute":
        dotted = r"\s*\.\s*".join(re.escape(p) for p in base.split(".")) if base else ""
        return re.compile(rf"\b{dotted}\s*\.\s*{t}\b" if base else rf"\.\s*{t}\b")
    if kind == "filter":
        return re.compile(rf"\|\s*{t}\b")
    return re.compile(rf"\bis\s+(?:not\s+)?{t}\b")


def _strict_html(renderer: Renderer, compiled: str, ctx: dict[str, Any],
                 files: list[tuple[str, bool, str]], use: Use) -> list[Problem]:
    """Problems of the compiled HTML template, each placed at its source file and line:
    the compiled line means nothing to the user (MJML rewrites every line)."""
    try:
        renderer.html_env.parse(compiled)
    except jinja2.TemplateSyntaxError as exc:
        shown, at = _source_line(compiled, exc.lineno or 0, files)
        return [Problem(shown, at, "", f"{exc.message} (used by {use.where})",
                        "fix the Jinja tag")]
    out = []
    walker = _Walker(renderer.html_env)
    for kind, token, base, line in walker.run(compiled, ctx):
        pattern = _pattern(kind, token, base)
        # The k-th use in the compiled template is the k-th in the sources, in order.
        before = sum(len(pattern.findall(m.group())) for m in _TAG_RE.finditer(compiled)
                     if compiled.count("\n", 0, m.start()) + 1 < line)
        spots = [(shown, text.count("\n", 0, m.start() + hit.start()) + 1)
                 for shown, _, text in files for m in _TAG_RE.finditer(text)
                 for hit in pattern.finditer(m.group())]
        shown, at = spots[min(before, len(spots) - 1)] if spots else (files[0][0], 0)
        out.append(_problem(shown, at, kind, token, base, use,
                            walker.options.get((token, base))))
    return out


def _source_line(compiled: str, line: int, files: list[tuple[str, bool, str]]
                 ) -> tuple[str, int]:
    """The source file and line of a compiled line: where its text (a tag, or the line
    itself) is written; else the template file without a line."""
    lines = compiled.splitlines()
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    pieces = [m.group() for m in _TAG_RE.finditer(text)] + ([text.strip()] if text.strip()
                                                           else [])
    for piece in pieces:
        for shown, _, source in files:
            at = source.find(piece)
            if at >= 0:
                return shown, source.count("\n", 0, at) + 1
    return files[0][0], 0


def _problem(shown: str, line: int, kind: str, token: str, base: str, use: Use,
             options: list[str] | None = None) -> Problem:
    used = f"(used by {use.where})"
    if kind == "attribute" and token == "private_note":
        return Problem(shown, line, f"{base}.{token}" if base else token,
                       f"private notes are never printed in an email {used}",
                       "use contact.note for what the person may read")
    near = difflib.get_close_matches(token, options or [], 1)
    guess = f"did you mean {near[0]!r}? " if near else ""
    if kind == "attribute":
        hint = f"{guess}{base or 'it'} has: {', '.join(options)}" if options else \
            "check the spelling against the README's template names"
        return Problem(shown, line, f"{base}.{token}" if base else f".{token}",
                       f"no such attribute {used}", hint)
    if kind == "name":
        return Problem(shown, line, token, f"undefined name {used}",
                       f"{guess}names you can use: {', '.join(options or [])}")
    return Problem(shown, line, token, f"no such {kind} {used}",
                   "use one of Jinja's built-in filters and tests")


def _footer_problems(ctx: dict[str, Any], body_html: str, body_text: str,
                     mjml_files: list[tuple[str, bool, str]],
                     text_files: list[tuple[str, bool, str]], use: Use) -> list[Problem]:
    """A visible unsubscribe link and the postal address, in the HTML and the text."""
    out = []
    url, postal = ctx["unsubscribe_url"], ctx["sender"].postal_address
    seen = _Visible(url)
    seen.feed(body_html)
    # What every email is checked for as it is rendered, and that it is visible.
    written = footer_missing(url, postal, body_html, "")
    html_missing = [w for w, ok in (
        ("visible unsubscribe link", seen.link and "unsubscribe link" not in written),
        ("postal address", _squash(postal) in _squash(" ".join(seen.text)) and
         "postal address" not in written)) if not ok]
    text_missing = footer_missing(url, postal, "", body_text)
    for files, missing, part in ((mjml_files, html_missing, "HTML"),
                                 (text_files, text_missing, "text")):
        if missing:
            # Blame the project's own file: the footer partial if overridden, else the
            # first override in the chain, else the template itself.
            overridden = [f for f, mine, _ in files if mine]
            shown = next((f for f in overridden if "footer" in f or "signature" in f),
                         overridden[0] if overridden else files[0][0])
            out.append(Problem(shown, 0, "footer", f"the {part} email has no "
                               f"{' and no '.join(missing)} (used by {use.where}); every "
                               "email must carry both, so nothing will be sent",
                               "show {{ unsubscribe_url }} as a link and "
                               "{{ sender.postal_address }}, as partials/footer.mjml and "
                               "partials/signature.txt do"))
    return out


def _squash(text: str) -> str:
    return " ".join(text.split())


class _Visible(HTMLParser):
    """Collects the text a reader sees and whether a visible link goes to `url`."""

    VOID = frozenset({"br", "img", "meta", "link", "hr", "input", "col", "area", "base",
                      "source", "wbr"})
    HIDDEN_TAGS = frozenset({"head", "style", "script", "title", "template"})
    HIDES = re.compile(r"display:none|visibility:hidden|opacity:0(?![.\d]*[1-9])|"
                       r"max-height:0(?![.\d]*[1-9])")
    FONT = re.compile(r"font-size:([\d.]+)")

    def __init__(self, url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.url = url
        # (tag, hidden for good, text size zero): MJML sets font-size:0 on layout cells
        # and the text inside sets its own size, so only a zero size that is never reset
        # hides text; display:none and the like hide a whole subtree.
        self.stack: list[tuple[str, bool, bool]] = []
        self.text: list[str] = []
        self.link = False
        self._anchor: list[str] | None = None

    @property
    def hidden(self) -> bool:
        """True inside an element the reader does not see."""
        return bool(self.stack) and (self.stack[-1][1] or self.stack[-1][2])

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        style = (a.get("style") or "").replace(" ", "").lower()
        hard = (bool(self.stack) and self.stack[-1][1]) or tag in self.HIDDEN_TAGS or \
            "hidden" in a or bool(self.HIDES.search(style))
        size = self.FONT.search(style)
        zero = float(size.group(1)) == 0 if size else bool(self.stack) and self.stack[-1][2]
        if tag == "a" and not hard and (a.get("href") or "") == self.url:
            self._anchor = []
        if tag not in self.VOID:
            self.stack.append((tag, hard, zero))
        elif tag == "img" and self._anchor is not None and not hard and a.get("alt"):
            self._anchor.append(a["alt"] or "")

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break
        if tag == "a" and self._anchor is not None:
            self.link = self.link or bool("".join(self._anchor).strip())
            self._anchor = None

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.text.append(data)
            if self._anchor is not None:
                self._anchor.append(data)
