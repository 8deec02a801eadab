"""The studio's pages (GET): each reads through the library and renders a template."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from pipeline.addresses import email_key
from pipeline.approval import drafts, notes, review
from pipeline.config import Config
from pipeline.contacts import directory as contacts
from pipeline.errors import SphereError
from pipeline.models import Campaign, ReviewState
from pipeline.outcomes import ComingSend
from pipeline.project import Project
from pipeline.project_views import HOME_DAYS
from pipeline.runner import prepare
from pipeline.state.interface import Ledger
from pipeline.studio.base import page, studio_of
from pipeline.web.app import PRIVATE_HEADERS

# The email and the report are shown in sandboxed frames: no script, nothing fetched
# but their own inline styles and embedded or remote images.
FRAME_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data: https: http:; "
             "font-src data:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'")
CALENDAR_DAYS = 60
SORTS = ("name", "neighbourhood", "interests", "relationship", "status", "last_sent",
         "last_opened")


def _problems(p: Project) -> list[str]:
    """What `sphere check` reports (Project.check), as file:line: key: problem lines."""
    result = p.check()
    return [*(("warning: " if q.severity != "error" else "") + str(q)
              for q in (*p.config.warnings, *result.problems)),
            *result.template_errors, *(f"warning: {a}" for a in result.address_warnings)]


def _campaign(config: Config, name: str) -> Campaign:
    found = next((c for c in config.campaigns if c.name == name), None)
    if found is None:
        raise SphereError(f"no campaign {name!r}", "pick one on the Review page")
    return found


async def home(request: Request) -> Response:
    """Home: coming sends, what waits for approval, feed health, last sends, problems."""
    studio = studio_of(request)

    def read(p: Project) -> dict:
        view = p.home(HOME_DAYS)
        return {"coming": view.coming, "drafts": [(h.draft, h.held) for h in view.drafts],
                "days": HOME_DAYS, "alerts": view.alerts, "feeds": view.failing_feeds,
                "sends": view.sends, "problems": _problems(p),
                "reviewable": review.reviewable(p.config), "last_tick": studio.worker.last_tick}
    return page(request, "home.html", **await studio.call(read))


async def review_index(request: Request) -> Response:
    """Review: every campaign, held ones linking to their send's review."""
    def read(config: Config, store: Ledger) -> dict:
        return {"campaigns": config.campaigns, "reviewable": review.reviewable(config)}
    return page(request, "review_index.html", **await studio_of(request).run(read))


async def review_campaign(request: Request) -> Response:
    """One campaign's send under review: everyone in it, with where they stand."""
    studio = studio_of(request)
    name = request.path_params["campaign"]
    now = studio.now()

    def read(config: Config, store: Ledger) -> dict:
        campaign = _campaign(config, name)
        if campaign not in review.reviewable(config):
            plan = prepare(config, store, campaign, now).plan
            return {"campaign": campaign, "plan": plan, "rev": None}
        # After an approval: that send, with its progress, before the next period's.
        shown = drafts.load(store, send_id=request.query_params.get("send", ""))
        draft = shown[0] if shown and shown[0].name == campaign.name else \
            review.open_draft(config, store, campaign, now)
        return {"campaign": campaign, "plan": None,
                "rev": review.review(config, store, campaign, draft, now)}
    data = await studio.run(read)
    progress = studio.worker.progress(data["rev"].draft.send_id) if data["rev"] else None
    return page(request, "review_campaign.html", progress=progress, **data)


async def progress(request: Request) -> Response:
    """The progress box of a send started here (HTMX polls it)."""
    studio = studio_of(request)
    return page(request, "progress.html",
                progress=studio.worker.progress(request.query_params.get("send", "")))


async def review_person(request: Request) -> Response:
    """One person's email in the send: as they will get it, picks and reasons, actions."""
    studio = studio_of(request)
    name, email = request.path_params["campaign"], request.query_params.get("to", "")
    now = studio.now()

    def read(config: Config, store: Ledger) -> dict:
        campaign = _campaign(config, name)
        if campaign not in review.reviewable(config):
            return _upcoming_person(config, store, campaign, email, now)
        draft = review.open_draft(config, store, campaign, now)
        rev = review.review(config, store, campaign, draft, now)
        person = next((r for r in rev.recipients if r.email == email_key(email)), None)
        if person is None:
            raise SphereError(f"{email} is not in this send", "pick someone on the list")
        try:
            subject, problem = review.render_email(config, store, campaign, draft, email,
                                                   now).subject, ""
        except SphereError as exc:
            subject, problem = "", str(exc)
        return {"campaign": campaign, "rev": rev, "person": person, "subject": subject,
                "problem": problem}
    return page(request, "review_person.html", **await studio.run(read))


def _upcoming_person(config: Config, store: Ledger, campaign: Campaign, email: str,
                     now: dt.datetime) -> dict:
    """A person of a campaign sent without approval: their email as planned now."""
    _, planned = review.upcoming_email(config, store, campaign, email, now)
    waiting = [n for n in notes.notes(store, email_key(email)) if not n.used]
    person = review.ReviewRecipient(
        email_key(planned.contact.email), planned.contact.name or planned.contact.email,
        ReviewState.SCHEDULED, waiting[-1].text if waiting else "", False, False,
        tuple(review.ReviewPick(p.section, p.key, p.article.title if p.article else
                                f"Tip: {p.tip.title}" if p.tip else p.key, p.reason, False)
              for p in planned.picks))
    return {"campaign": campaign, "rev": None, "person": person, "subject": "",
            "problem": ""}


async def _email(request: Request) -> tuple[str, str]:
    studio = studio_of(request)
    name, email = request.path_params["campaign"], request.query_params.get("to", "")

    def read(p: Project) -> tuple[str, str]:
        rendered = p.email_preview(name, email)
        return rendered.html, rendered.text
    return await studio.call(read)


async def email_html(request: Request) -> Response:
    """The email's HTML exactly as it will go (shown in a sandboxed frame)."""
    html, _ = await _email(request)
    return HTMLResponse(html, headers={**PRIVATE_HEADERS, "Content-Security-Policy":
                                       FRAME_CSP})


async def email_text(request: Request) -> Response:
    """The email's text version."""
    _, text = await _email(request)
    return PlainTextResponse(text, headers=PRIVATE_HEADERS)


async def contacts_list(request: Request) -> Response:
    """Contacts: searchable, sortable, with last sent and last opened."""
    query = request.query_params.get("q", "").strip()
    sort = request.query_params.get("sort", "name")
    sort = sort if sort in SORTS else "name"

    def read(config: Config, store: Ledger) -> list[contacts.ContactRow]:
        return contacts.contact_rows(config, store)
    rows = await studio_of(request).run(read)
    if query:
        needle = query.lower()
        rows = [r for r in rows if needle in " ".join(
            (r.contact.name, r.contact.email, r.contact.neighbourhood,
             " ".join(r.contact.interests), r.contact.relationship)).lower()]

    def key(r: contacts.ContactRow) -> str:
        c = r.contact
        value = {"name": c.name or c.email, "neighbourhood": c.neighbourhood,
                 "interests": ";".join(c.interests), "relationship": c.relationship,
                 "status": c.status, "last_sent": r.last_sent,
                 "last_opened": r.last_opened}[sort]
        return value.lower()
    recent_first = sort in ("last_sent", "last_opened")
    rows.sort(key=key, reverse=recent_first)
    return page(request, "contacts.html", rows=rows, q=query, sort=sort)


async def contact_page(request: Request) -> Response:
    """One person: their fields to edit, what they would get now, their timeline."""
    studio = studio_of(request)
    email = request.query_params.get("email", "")

    def read(p: Project) -> dict:
        config = p.config
        record = contacts.read(config, email)
        previews = [(c.campaign, c.picks) for c in p.contact_preview(email)]
        return {"record": record, "person": contacts.find(config, email),
                "previews": previews, "timeline": contacts.timeline(config, p.store, email),
                "shown": record.path.relative_to(config.project)}
    return page(request, "contact.html", email=email, **await studio.call(read))


async def import_page(request: Request) -> Response:
    """The CRM export upload form."""
    def read(config: Config, store: Ledger) -> tuple[str, ...]:
        return config.audience_names
    names = await studio_of(request).run(read)
    return page(request, "import.html", names=names, report=None, upload="", audience="")


async def calendar_page(request: Request) -> Response:
    """Calendar: the next 60 days, per day, from the daemon's own calendar."""
    studio = studio_of(request)

    days: dict[dt.date, list[ComingSend]] = defaultdict(list)
    for send in await studio.call(lambda p: p.coming_sends(CALENDAR_DAYS)):
        days[send.at.date()].append(send)
    return page(request, "calendar.html", days=sorted(days.items()), span=CALENDAR_DAYS)


async def report_page(request: Request) -> Response:
    """Report: the report's tables and charts (in a frame: it is a page of its own)."""
    return page(request, "report.html")


async def report_html(request: Request) -> Response:
    """The HTML report, as `sphere report --html` writes it."""
    studio = studio_of(request)

    return HTMLResponse(await studio.call(lambda p: p.report_html()), headers={
        **PRIVATE_HEADERS, "Content-Security-Policy": FRAME_CSP})


async def approvals(request: Request) -> Response:
    """Approvals: interest alerts waiting, each to approve with your words or drop."""
    def read(p: Project) -> dict:
        return {"rows": [(w.alert, w.title, w.contact) for w in p.alerts_waiting()]}
    return page(request, "approvals.html", **await studio_of(request).call(read))


async def feeds(request: Request) -> Response:
    """Feeds: health, last fetch, articles."""
    now = studio_of(request).now()

    def read(p: Project) -> dict:
        recent = p.store.recent_articles(now - dt.timedelta(days=14))[:40]
        return {"sources": [(h.source, h.state) for h in p.feed_health()],
                "recent": recent}
    return page(request, "feeds.html", **await studio_of(request).call(read))


ROUTES = [
    Route("/", home), Route("/review", review_index),
    Route("/review/{campaign}", review_campaign),
    Route("/review/{campaign}/email", review_person),
    Route("/review/{campaign}/email.html", email_html),
    Route("/review/{campaign}/email.txt", email_text),
    Route("/progress", progress), Route("/contacts", contacts_list),
    Route("/contacts/person", contact_page), Route("/contacts/import", import_page),
    Route("/calendar", calendar_page), Route("/report", report_page),
    Route("/report.html", report_html), Route("/approvals", approvals),
    Route("/feeds", feeds),
]
