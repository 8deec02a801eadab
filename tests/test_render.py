"""Rendering: golden files for every template, escaping of hostile text, MIME on the wire."""
from __future__ import annotations

import datetime as dt
import email
import os
import re
from email import policy
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.models import (
    AlertExtra,
    Article,
    Campaign,
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
    SectionSizes,
    Tip,
)
from pipeline.planning.inputs import LedgerView, PlanInputs
from pipeline.planning.sends import plan_recent_sales
from pipeline.rendering.render import Renderer, without_greeting
from tests.conftest import NOW, REPO

GOLDEN = Path(__file__).parent / "golden"
TEMPLATES = ("newsletter", "interest_alert", "recent_sales", "thank_you", "settling_in",
             "home_anniversary", "referral_thank_you", "referral_update")
KIND = {"interest_alert": "interest_alert", "recent_sales": "recent_sales"}


def _article(n: int, section_kind: str, title: str, image: str = "") -> Article:
    return Article(id=f"src:{n}", source=f"src{n % 3}", kind=section_kind,
                   url=f"https://news.example/{n}", title=title, summary_html="",
                   summary_text=f"Summary of story {n}: plain words & a few numbers, 5 < 6.",
                   published=NOW - dt.timedelta(days=n), neighbourhood="Maple Heights",
                   image_url=image, cluster=f"url:{n}")


TIP = Tip(id="gutters", topic="maintenance", title="Clear the gutters before the rains",
          body="Leaves block downspouts; an hour with a scoop saves a soggy basement.")
ZOE = Contact(email="zoe.hartmann@example.com", first_name="Zoë", last_name="Hartmann",
              neighbourhood="Maple Heights", interests=("gardening",),
              note="Hope the new deck is holding up through the rain!", audience="sphere")


def _plan(kind: str, contact: Contact = ZOE, notes: tuple[Note, ...] = (),
          picks: tuple[Pick, ...] | None = None, intro: str = "") -> Plan:
    campaign = Campaign(name=f"test-{kind}", kind=KIND.get(kind, "newsletter"),
                        audiences=("sphere",), schedule="0 9 1 * *",
                        subject="{{ contact.first_name }}, your {{ month }} notes",
                        intro=intro or "Here's what caught my eye this month.",
                        sections=SectionSizes())
    if picks is None:
        picks = (
            Pick("neighbourhood", "from your neighbourhood, Maple Heights", 3,
                 _article(1, "neighbourhood", "Pocket park opens on Birch Lane",
                          "https://img.example/park.jpg")),
            Pick("market", "housing market update", 1,
                 _article(2, "market", "Listings climb to a three-year high")),
            Pick("interests", "matches your interest 'gardening': tagged by its source", 2,
                 _article(3, "hobby", "Seed swap at the Grange")),
            Pick("tip", "advice tip on maintenance", 0, tip=TIP, general=True))
    return Plan(campaign=campaign, send_id=f"test-{kind}@2026-11-01T09:00",
                period="2026-11-01T09:00:00-07:00",
                emails=(PlannedEmail(contact, picks, notes),))


_SALES = (Sale("1412 Birch Lane", "Maple Heights", 865000, dt.date(2026, 11, 7), 4, 2.5, 6,
               "https://img.example/birch.jpg", "Two offers"),
          Sale("88 Pier Street", "Harbor Point", 640000, dt.date(2026, 10, 30), 2, 2, 21))


def _extra(name: str) -> Extra:
    """The typed content a send of template `name` carries."""
    if name == "recent_sales":
        return SalesExtra(_SALES, own_sales=1)
    return DripExtra(ReferralInfo(0, "Sam Ortiz", ReferralStatus.LISTED), years=3)


@pytest.fixture
def renderer() -> Renderer:
    config = load_config(REPO)
    return Renderer(config.project, config.sender, "test-secret")


def _render(renderer: Renderer, name: str, plan: Plan | None = None):
    plan = plan or _plan(name)
    return renderer.render(plan, plan.emails[0], NOW, _extra(name), template=name)


def _lf(text: str) -> str:
    """Bodies decode with the wire's CRLF; compare them with plain newlines."""
    return text.replace("\r\n", "\n")


def _stable(text: str) -> str:
    """Volatile parts stripped: nothing left changes between runs but the template."""
    return re.sub(r"=_sphere_[0-9a-f]+", "=_sphere_BOUNDARY", text)


@pytest.mark.parametrize("name", TEMPLATES)
def test_golden(renderer: Renderer, name: str) -> None:
    email_ = _render(renderer, name)
    msg = email.message_from_bytes(email_.raw, policy=policy.default)
    headers = "".join(f"{k}: {v}\n" for k, v in msg.items() if k != "Content-Type")
    actual = {"headers": _stable(headers), "txt": _lf(msg.get_body(("plain",)).get_content()),
              "html": _lf(msg.get_body(("html",)).get_content())}
    for ext, text in actual.items():
        path = GOLDEN / f"{name}.{ext}"
        if os.environ.get("UPDATE_GOLDEN") or not path.exists():
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
        assert text == path.read_text(encoding="utf-8"), \
            f"{path} differs; if the change is intended, rerun with UPDATE_GOLDEN=1"


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_email_is_well_formed(renderer: Renderer, name: str) -> None:
    e = _render(renderer, name)
    msg = email.message_from_bytes(e.raw, policy=policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert _lf(msg.get_body(("plain",)).get_content()) == e.text
    assert _lf(msg.get_body(("html",)).get_content()) == e.html
    assert msg["To"].addresses[0].display_name == "Zoë Hartmann"
    assert msg["Subject"] == "Zoë, your November notes"
    head, _, body = e.raw.partition(b"\r\n\r\n")
    # RFC 5322: 998 octets is the hard limit; bodies are encoded to 76 columns and
    # headers fold at whitespace (a long URL cannot be split, so it may pass 78).
    assert max(len(line) for line in head.split(b"\r\n")) <= 998
    assert max(len(line) for line in body.split(b"\r\n")) <= 78
    assert b"\n" not in e.raw.replace(b"\r\n", b"")  # CRLF only
    assert len(e.html.encode()) < 100 * 1024
    for body in (e.html, e.text):
        assert "214 Alder Street" in body and "Unsubscribe" in body
    for img in re.findall(r"<img [^>]*>", e.html):
        assert 'alt="' in img and 'width="' in img
    for href in re.findall(r'href="([^"]+)"', e.html):
        assert href.startswith(("https://", "mailto:")), href
    assert "fonts.googleapis.com" not in e.html  # no remote fonts: privacy and speed


def test_hostile_text_is_escaped(renderer: Renderer) -> None:
    evil = '<script>alert(1)</script><img src=x onerror=alert(2)>'
    contact = Contact(email="evil@example.com", first_name=f'Eve"{evil}',
                      last_name="Jones", note=f"Hi {evil} [click](javascript:alert(3))",
                      audience="sphere")
    picks = (Pick("interests", f"matches your interest '{evil}'", 1,
                  Article(id="x:1", source="x", kind="hobby", url="https://news.example/1",
                          title=f"Title {evil}", summary_html="", summary_text=f"Body {evil}",
                          published=NOW, cluster="u:1")),)
    plan = _plan("newsletter", contact, notes=(Note(1, contact.email, f"One-off {evil}"),),
                 picks=picks, intro=f"Intro {evil}")
    e = renderer.render(plan, plan.emails[0], NOW)
    assert "<script" not in e.html.lower()
    assert "onerror=" not in e.html.lower().replace("onerror=alert(2)&gt;", "")
    assert not re.search(r"(href|src)\s*=\s*[\"']?\s*javascript:", e.html, re.I)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in e.html  # shown as text, not run
    assert "<img src=x" not in e.html


def test_one_off_notes_and_markdown(renderer: Renderer) -> None:
    plan = _plan("newsletter", notes=(Note(7, ZOE.email, "Congrats on the **new job**!"),))
    e = renderer.render(plan, plan.emails[0], NOW)
    assert e.html.count("<strong>new job</strong>") == 1
    assert e.text.count("Congrats on the **new job**!") == 1
    assert e.note_ids == (7,)


def test_project_template_overrides_builtin(tmp_path: Path) -> None:
    from tests.conftest import copy_sample
    project = copy_sample(tmp_path / "p")
    (project / "templates" / "partials").mkdir(parents=True, exist_ok=True)
    footer = (REPO / "templates/partials/footer.mjml").read_text()
    (project / "templates/partials/footer.mjml").write_text(
        footer.replace("Unsubscribe</a>", "Unsubscribe</a> Custom footer here."))
    config = load_config(project)
    r = Renderer(config.project, config.sender, "s")
    plan = _plan("newsletter")
    assert "Custom footer here." in r.render(plan, plan.emails[0], NOW).html


RUTH = Contact(email="ruth@example.com", first_name="Ruth", last_name="Ames",
               neighbourhood="Cedar Grove", interests=("gardening",),
               note="Thanks again for sending the Garcias my way!", audience="sphere")


def test_a_note_that_opens_with_the_name_is_not_greeted_twice(renderer: Renderer) -> None:
    """Issue 12.13: `approve 1 --note "Ruth, ..."` reads "Hi Ruth, / This is right by
    your place", not "Hi Ruth, / Ruth, this is ..."."""
    plan = _plan("interest_alert", RUTH,
                 notes=(Note(3, RUTH.email, "Hi Ruth! Congrats on the new job."),))
    e = renderer.render(plan, plan.emails[0], NOW,
                        AlertExtra("Ruth, this is right by your place."))
    assert e.text.count("Ruth") == 1, e.text  # the greeting only
    for body in (e.text, e.html):
        assert "Hi Ruth," in body and "Ruth, this" not in body and "Hi Ruth!" not in body
        assert "This is right by your place." in body
        assert "Congrats on the new job." in body
    assert without_greeting("Ruthless pricing, again", "Ruth") == "Ruthless pricing, again"
    assert without_greeting("dear ruth — see below", "Ruth") == "See below"


def test_standing_note_only_in_periodic_letters(renderer: Renderer) -> None:
    """Issue 12.13: a referral source's standing note is not appended to an update about
    another referral (nor any event-specific drip); newsletters keep it."""
    for name in ("referral_update", "referral_thank_you", "thank_you", "interest_alert"):
        e = _render(renderer, name, _plan(name, RUTH))
        assert "Garcias" not in e.text and "Garcias" not in e.html, name
    for name in ("newsletter", "recent_sales"):
        e = _render(renderer, name, _plan(name, RUTH))
        assert "Garcias" in e.text and "Garcias" in e.html, name


def test_recent_sales_heading_states_only_what_is_true(renderer: Renderer) -> None:
    """Issue 12.11: no "starting with <their neighbourhood>" when no sale is there, and
    the month named is the month the email lands in, not a stale period's."""
    sales = _SALES
    campaign = Campaign(name="recent-sales", kind="recent_sales", audiences=("sphere",),
                        schedule="0 9 15 */2 *", subject="Sold near you",
                        sales_window_days=None)
    december = dt.datetime(2026, 12, 2, 18, 0, tzinfo=dt.UTC)
    period = dt.datetime.fromisoformat("2026-11-15T09:00:00-08:00")
    plan = plan_recent_sales(campaign, (RUTH, ZOE),
                             PlanInputs(tips=(TIP,), period=period, sales=sales),
                             LedgerView(), december)
    assert (plan.send_id, plan.period) == ("recent-sales@2026-11-15T09:00",
                                           "2026-11-15T09:00:00-08:00")
    ruth, zoe = (renderer.render(plan, p, december) for p in plan.emails)
    for body in (ruth.text, ruth.html):
        assert "Recently sold, starting" not in body and "Recently sold" in body
        assert "November" not in body
    assert "December 2026" in ruth.html
    assert "== Recently sold, starting with Maple Heights ==" in zoe.text
