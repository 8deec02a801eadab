"""The studio's actions (POST): each checks the CSRF token, calls one library function
and sends the browser back to the page (303), saying what was done. What approves (and
so sends) is an agent's only (require_agent): an assistant's session gets a 403 page."""
from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.approval import drafts, review
from pipeline.config import AUDIENCES_DIR, Config, load_config
from pipeline.contacts import directory as contacts
from pipeline.contacts.importer import ImportReport
from pipeline.errors import SphereError
from pipeline.project import Project
from pipeline.state.interface import Ledger
from pipeline.studio.base import back, page, studio_of
from pipeline.studio.security import posted, require_agent, uploaded

# Seconds an approval waits for the send to finish before showing its progress instead:
# a send of a few hundred to the outbox is done well within it.
SEND_WAIT = 60.0
IMPORTS = "imports"  # under var/: uploads waiting for "Apply import"


def _draft_of(store: Ledger, config: Config, name: str, draft_id: str) -> tuple:
    campaign = next((c for c in config.campaigns if c.name == name), None)
    found = drafts.load(store, draft_id=int(draft_id)) if draft_id.isdigit() else []
    if campaign is None or not found or found[0].name != name:
        raise SphereError("that send is no longer under review", "open the Review page again")
    return campaign, found[0]


async def person_action(request: Request) -> Response:
    """Save note | exclude | drop story | send a test, for one person of a draft."""
    studio = studio_of(request)
    form = await posted(request)
    name, action = request.path_params["campaign"], request.path_params["action"]
    email = form.get("to", "")
    now = studio.now()

    def act(config: Config, store: Ledger) -> str:
        reviewed = any(c.name == name for c in review.reviewable(config))
        if action == "note" and not reviewed:  # sent without approval: a one-off note
            review.set_next_note(store, email, form.get("note", ""), now)
            return "Note saved for their next email"
        campaign, draft = _draft_of(store, config, name, form.get("draft", ""))
        if action == "note":
            review.save_note(store, draft, email, form.get("note", ""), now)
            return "Note saved"
        if action == "exclude":
            review.exclude(store, draft, email, now)
            return "Excluded from this send"
        if action == "drop":
            review.drop_story(config, store, campaign, draft, email, form.get("key", ""),
                              now)
            return "Story dropped and replaced"
        delivery = review.send_test(config, store, campaign, draft, email,
                                    studio.on(store).transport(dry_run=False), now)
        if delivery.status != "sent":
            raise SphereError(f"the test was not sent: {delivery.error}",
                              "check the transport settings")
        return f"Test sent to {config.sender.email}"
    done = await studio.run(act)
    return back(f"/review/{name}/email", done, to=email)


async def approve(request: Request) -> Response:
    """Approve the whole send (or, with `to`, one person); a send whose time has come
    goes at once, in the worker, and the page shows its progress."""
    require_agent(request, "approve a send")  # before anything is read or changed
    studio = studio_of(request)
    form = await posted(request)
    name, email = request.path_params["campaign"], form.get("to") or None
    now = studio.now()

    def act(config: Config, store: Ledger) -> tuple[int, str, bool]:
        _campaign, draft = _draft_of(store, config, name, form.get("draft", ""))
        review.approve(store, draft, now, email)
        due = review.review(config, store, _campaign, draft, now).due
        return draft.id, draft.send_id, due
    draft_id, send_id, due = await studio.run(act)
    if not due:
        return back(f"/review/{name}", "Approved: it goes out on schedule", send=send_id)
    future = studio.worker.send_draft(draft_id, send_id)
    # A small send finishes before the page comes back; a big one shows its progress.
    await asyncio.wait([asyncio.wrap_future(future)], timeout=SEND_WAIT)
    return back(f"/review/{name}", "Approved", send=send_id)


async def save_contact(request: Request) -> Response:
    """Write a person's fields back to their audience file."""
    studio = studio_of(request)
    form = await posted(request)
    email = form.get("email", "")

    def act(config: Config, store: Ledger) -> None:
        contacts.save(config, email, {k: v for k, v in form.items()
                                      if k in contacts.EDITABLE})
        # Their email in a send still under review follows the new fields.
        review.refresh_person(load_config(config.project), store, email, studio.now())
    await studio.run(act)
    return back("/contacts/person", "Contact saved", email=email)


def _import(p: Project, upload: Path, audience: str, dry_run: bool, shown: str
            ) -> ImportReport:
    """The Project's contacts import, the audience named in the form's own words."""
    if not audience.replace("-", "").replace("_", "").isalnum():
        raise SphereError(f"audience {audience!r}: use letters, digits, '-' or '_'",
                          f"it becomes {AUDIENCES_DIR}/NAME.csv")
    return p.import_contacts(upload, audience, {}, dry_run=dry_run, shown=shown)


async def import_check(request: Request) -> Response:
    """Keep the uploaded export and show what importing it would do (nothing written)."""
    studio = studio_of(request)
    form, upload = await uploaded(request)
    if upload is None or not upload[1]:
        raise SphereError("no file was uploaded", "choose the CRM export file")
    audience = form.get("audience", "").strip()
    filename, data = upload
    suffix = ".vcf" if filename.lower().endswith(".vcf") else ".csv"
    token = secrets.token_hex(12)

    def act(p: Project) -> tuple[ImportReport, tuple[str, ...]]:
        folder = p.config.state_dir / IMPORTS
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / f"{token}{suffix}"
        path.write_bytes(data)
        return _import(p, path, audience, True, Path(filename).name), \
            tuple(p.config.audience_names)
    report, names = await studio.call(act)
    return page(request, "import.html", names=names, report=report, upload=token + suffix,
                audience=audience)


async def import_apply(request: Request) -> Response:
    """Apply an upload checked before."""
    studio = studio_of(request)
    form = await posted(request)
    upload, audience = form.get("upload", ""), form.get("audience", "")
    if not upload or "/" in upload or upload.startswith("."):
        raise SphereError("no checked upload to apply", "upload the file again")

    def act(p: Project) -> tuple[ImportReport, tuple[str, ...]]:
        path = p.config.state_dir / IMPORTS / upload
        if not path.is_file():
            raise SphereError("that upload is gone", "upload the file again")
        try:
            return _import(p, path, audience, False, "upload"), tuple(p.config.audience_names)
        finally:
            path.unlink(missing_ok=True)
    report, names = await studio.call(act)
    return page(request, "import.html", names=names, report=report, upload="",
                audience=audience)


async def alert_action(request: Request) -> Response:
    """Approve an interest alert with your own words, or drop it."""
    studio = studio_of(request)
    form = await posted(request)
    alert_id = form.get("alert", "")
    drop = request.path_params["action"] == "drop"
    if not drop:  # dropping sends nothing, like excluding someone from a send
        require_agent(request, "approve an interest alert")

    def act(p: Project) -> None:
        # The same decision as `sphere approve ID [--note TEXT]` / `--drop ID`.
        pending = p.pending_alerts()
        if not alert_id.isdigit() or int(alert_id) not in pending:
            raise SphereError("that alert is no longer waiting", "open Approvals again")
        words = form.get("note", "").strip() or None
        p.decide_alerts([int(alert_id)], pending, drop, None if drop else words)
    await studio.call(act)
    return back("/approvals", "Alert dropped" if drop else "Alert approved")


ROUTES = [
    Route("/review/{campaign}/approve", approve, methods=["POST"]),
    Route("/review/{campaign}/{action:str}", person_action, methods=["POST"]),
    Route("/contacts/person", save_contact, methods=["POST"]),
    Route("/contacts/import", import_check, methods=["POST"]),
    Route("/contacts/import/apply", import_apply, methods=["POST"]),
    Route("/approvals/{action:str}", alert_action, methods=["POST"]),
]
