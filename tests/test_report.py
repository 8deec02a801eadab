"""`sphere report` and cold contacts, from a recorded SendGrid event stream in real SQLite."""
from __future__ import annotations

import datetime as dt
import html
import json
import re
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.contacts.engagement import allow_send, cold_contacts
from pipeline.delivery.report import build_report, render_html, report_from_store, url_key
from pipeline.models import Article
from pipeline.runner import prepare
from pipeline.state.store import LedgerRow, Store, StoredEvent
from tests.conftest import NOW

EVENTS = Path(__file__).parent / "fixtures" / "events.json"
PEOPLE = {p: f"{name}@example.com" for p, name in
          (("a", "ann"), ("b", "ben"), ("c", "cara"), ("d", "dev"), ("e", "eve"))}
S1, S2, S3, S4 = (f"monthly-sphere@2026-{m}-01T09:00" for m in ("08", "09", "10", "11"))
S5 = "market-alert@2026-10-15T09:00"
# (send, recipients sent, recipients failed); the order they went out in.
LEDGER = ((S1, "abcde", ""), (S2, "abcde", ""), (S3, "abcd", "e"), (S5, "ac", ""),
          (S4, "abcd", ""))
ARTICLES = (("maple-market", "Maple Heights farmers market moves indoors"),
            ("rates-fall", "Mortgage rates fall for a third week"),
            ("kayak-launch", "New kayak launch opens at Harbor Point"))


def load_events(path: Path) -> list[StoredEvent]:
    """SendGrid Event Webhook JSON -> StoredEvent, as the webhook keeps them."""
    return [StoredEvent(sg_event_id=e["sg_event_id"], event=e["event"], email=e["email"],
                        timestamp=int(e["timestamp"]), sg_message_id=e.get("sg_message_id", ""),
                        send_id=e.get("sphere_send_id", ""), url=e.get("url", ""),
                        reason=e.get("reason", ""))
            for e in json.loads(path.read_text(encoding="utf-8"))]


def record(store: Store, with_events: bool = True) -> None:
    """The five sends of the ledger, the articles, then the recorded event stream."""
    for send_id, sent, failed in LEDGER:
        campaign, period = send_id.split("@")
        when = dt.datetime.fromisoformat(period + ":00-07:00")
        store.start_send(send_id, campaign, when.isoformat(), when)
        for p in sent + failed:
            email = PEOPLE[p]
            store.begin_delivery(send_id, email, f"<{p}.{period}@sphere>", "sendgrid", (), (),
                                 (), when)
            store.settle_delivery(send_id, email, "sent" if p in sent else "failed", when,
                                  provider_id=f"sgmsg-{p}4" if send_id == S4 else "",
                                  error="" if p in sent else "550 rejected")
        store.finish_send(send_id, when, "done")
    store.upsert_articles([Article(id=f"gazette:{slug}", source="gazette", kind="neighbourhood",
                                   url=f"https://news.example.org/{slug}", title=title,
                                   summary_html="", summary_text="", published=NOW)
                           for slug, title in ARTICLES], NOW)
    if with_events:
        events = load_events(EVENTS)
        assert store.record_events(events, [], NOW) == len(events) - 1  # one redelivery


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A real SQLite file holding the ledger and the events."""
    db = Store.open(tmp_path / "sphere.db")
    record(db)
    yield db
    db.close()


def counts(report) -> dict[str, tuple[int, ...]]:
    return {s.send_id: (s.sent, s.delivered, s.opened, s.clicked, s.bounced, s.unsubscribed,
                        s.complained) for s in report.sends}


def test_counts_per_send_are_unique_contacts(store: Store) -> None:
    report = report_from_store(store)
    assert counts(report) == {
        # sent, delivered, opened, clicked, bounced, unsubscribed, complained
        S5: (2, 2, 1, 1, 0, 0, 0),
        S1: (5, 5, 2, 2, 0, 0, 0),  # ben opened twice: one contact
        S2: (5, 4, 2, 1, 1, 0, 1),
        S3: (4, 4, 1, 1, 0, 1, 0),  # eve failed: not sent; group_unsubscribe counts
        S4: (4, 4, 1, 1, 0, 0, 0),  # ann's open had no send id: placed by message id
    }
    assert [s.send_id for s in report.sends] == [S5, S1, S2, S3, S4]


def test_top_stories_are_joined_to_article_titles(store: Store) -> None:
    stories = report_from_store(store).stories
    assert [(s.title, s.contacts, s.clicks) for s in stories] == [
        ("Mortgage rates fall for a third week", 2, 3),
        ("Maple Heights farmers market moves indoors", 1, 3),
        ("New kayak launch opens at Harbor Point", 1, 1),
        ("", 1, 1),
    ]
    assert stories[-1].url == "https://riverton-homes.example.com/open-house"
    monthly = report_from_store(store, "monthly-sphere")
    assert [s.send_id for s in monthly.sends] == [S1, S2, S3, S4]
    assert "New kayak launch opens at Harbor Point" not in [s.title for s in monthly.stories]


def test_per_contact_engagement_and_cold(store: Store) -> None:
    report = report_from_store(store)
    got = {c.email: (c.sent, c.opened, c.clicked, c.cold, c.flags) for c in report.contacts}
    assert got == {
        "ann@example.com": (5, 4, 2, False, ()),
        "ben@example.com": (4, 1, 1, False, ("unsubscribed",)),
        "cara@example.com": (5, 2, 3, False, ()),
        "dev@example.com": (4, 0, 0, True, ("complained",)),
        "eve@example.com": (2, 0, 0, False, ("bounced",)),
    }
    assert report.cold == ("dev@example.com",)


def test_cold_contacts_window(store: Store) -> None:
    ledger, events = store.ledger_rows(), store.events()
    assert cold_contacts(ledger, events, 4) == {"dev@example.com"}
    # Over the last two sends Ben only unsubscribed and Eve only bounced: neither engaged.
    assert cold_contacts(ledger, events, 2) == {"ben@example.com", "dev@example.com",
                                                "eve@example.com"}
    assert cold_contacts(ledger, events, 6) == set()  # nobody was sent six


def ledger_of(transport: str, sends: int, email: str = "x@example.com") -> list[LedgerRow]:
    """`sends` monthly emails to one address, all sent through `transport`."""
    return [LedgerRow(f"c@2026-{m:02}-01T09:00", email, f"<{m}@x>", "sent", transport, "",
                      f"2026-{m:02}-01T16:00:00+00:00", f"2026-{m:02}-01T16:00:00+00:00")
            for m in range(1, sends + 1)]


def test_only_sends_that_can_report_opens_make_contacts_cold() -> None:
    """Outbox, SMTP and dry-run never yield open or click events: five of them without
    events make nobody cold and do not count towards `n`; five SendGrid sends do."""
    for transport in ("outbox", "smtp", "dry-run"):
        assert cold_contacts(ledger_of(transport, 5), [], 4) == set(), transport
    assert cold_contacts(ledger_of("sendgrid", 5), [], 4) == {"x@example.com"}
    # Three SendGrid sends after two SMTP ones: three tracked sends, fewer than four.
    mixed = ledger_of("smtp", 2) + ledger_of("sendgrid", 5)[2:]
    assert cold_contacts(mixed, [], 4) == set()
    assert cold_contacts(mixed, [], 3) == {"x@example.com"}
    report = build_report(ledger_of("outbox", 5), [], [], {}, {}, cold_after_sends=4)
    assert report.cold == ()


def test_events_count_only_for_addresses_the_send_went_to(store: Store) -> None:
    """A click or open naming a send that its address never received (a stranger, or a
    contact left out of that send) counts nowhere: not in the send's figures, the stories
    or the contacts."""
    at = int(dt.datetime(2026, 11, 2, tzinfo=dt.UTC).timestamp())
    forged = [StoredEvent("x1", "click", "mallory@evil.example", at, send_id=S4,
                          url="https://evil.example/phish"),
              StoredEvent("x2", "open", "mallory@evil.example", at, send_id=S4),
              StoredEvent("x3", "click", "eve@example.com", at, send_id=S4,  # eve: not in S4
                          url="https://evil.example/phish"),
              StoredEvent("x4", "open", "eve@example.com", at, send_id=S4)]
    before = report_from_store(store)
    after = build_report(store.ledger_rows(), store.events() + forged, store.send_rows(),
                         store.article_titles(), store.provider_sends())
    assert counts(after) == counts(before)
    assert counts(after)[S4] == (4, 4, 1, 1, 0, 0, 0)
    assert after.stories == before.stories
    assert after.contacts == before.contacts
    assert "mallory@evil.example" not in [c.email for c in after.contacts]


@pytest.mark.parametrize("url", [
    'javascript:alert(1)"><script>alert(2)</script>', "  JavaScript:alert(1)",
    "java\tscript:alert(1)", "data:text/html,<script>alert(1)</script>", "vbscript:x",
    "https:javascript:alert(1)"])
def test_html_report_links_only_http_urls(store: Store, url: str) -> None:
    """A clicked URL that is not http(s) is shown as escaped text, never as a live link;
    the http(s) stories stay links."""
    at = int(dt.datetime(2026, 11, 2, tzinfo=dt.UTC).timestamp())
    hostile = [StoredEvent(f"h{i}{p}", "click", PEOPLE[p], at, send_id=S4, url=url)
               for p in "ac" for i in range(3)]  # the most people and clicks: first
    report = build_report(store.ledger_rows(), store.events() + hostile, store.send_rows(),
                          store.article_titles(), store.provider_sends())
    assert report.stories[0].url == url
    page = render_html(report, NOW)
    row = next(line for line in page.splitlines() if html.escape(url) in line)
    assert row.startswith(f"<tr><td>{html.escape(url)}</td>"), row
    assert "<script" not in page
    hrefs = re.findall(r'<a href="([^"]*)"', page)
    assert hrefs and all(h.startswith("https://") for h in hrefs), hrefs
    assert '<a href="https://news.example.org/rates-fall/">Mortgage rates fall' in page


def test_allow_send_policies() -> None:
    assert allow_send("normal", "2026-11-01T09:00:00-08:00")
    assert not allow_send("skip", "2026-10-01T09:00:00-07:00")
    assert [m for m in range(1, 13) if allow_send("quarterly", dt.date(2026, m, 1))] == \
        [1, 4, 7, 10]


def test_url_key_ignores_tracking() -> None:
    assert url_key("HTTPS://News.example.org/a/?utm_source=x&id=3#top") == \
        "https://news.example.org/a?id=3"


def test_report_command(store: Store, project: Path, cli, tmp_path: Path) -> None:
    store.close()
    (project / "var").mkdir()
    (tmp_path / "sphere.db").rename(project / "var" / "sphere.db")
    result = cli("report", "monthly-sphere", project=project)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:4] == [
        (f"{S1}: sent 5, delivered 5, opened 2, clicked 2, bounced 0, unsubscribed 0, "
        "complained 0"),
        (f"{S2}: sent 5, delivered 4, opened 2, clicked 1, bounced 1, unsubscribed 0, "
        "complained 1"),
        (f"{S3}: sent 4, delivered 4, opened 1, clicked 1, bounced 0, unsubscribed 1, "
        "complained 0"),
        (f"{S4}: sent 4, delivered 4, opened 1, clicked 1, bounced 0, unsubscribed 0, "
        "complained 0")]
    assert "  dev@example.com: sent 4, opened 0, clicked 0 [cold, complained]" in lines
    as_json = json.loads(cli("report", "--json", project=project).output)
    assert {s["send_id"]: s["opened"] for s in as_json["sends"]}[S5] == 1
    page = tmp_path / "out" / "report.html"
    assert cli("report", "--html", str(page), project=project).exit_code == 0
    text = page.read_text(encoding="utf-8")
    assert text.count('<svg class="chart"') == 2  # one chart per campaign
    assert "<script" not in text and "http-equiv" not in text
    unknown = cli("report", "no-such-campaign", project=project)
    assert unknown.exit_code == 1 and "known:" in unknown.output
    status = cli("status", project=project)
    assert "1 cold contact(s)" in status.output and "dev@example.com" in status.output


def test_cold_contacts_wait_for_the_quarter(project: Path) -> None:
    """A campaign with cold_contacts: quarterly leaves a cold contact out in November and
    mails them in October; the skipped reason says why. (Two SendGrid sends without an
    open: outbox sends could not make anyone cold.)"""
    campaigns = project / "campaigns.yaml"
    text = campaigns.read_text(encoding="utf-8")
    campaigns.write_text(text.replace("    kind: newsletter\n",
                                      "    kind: newsletter\n    cold_contacts: quarterly\n", 1)
                         + "\nengagement:\n  cold_after_sends: 2\n", encoding="utf-8")
    config = load_config(project)
    assert config.cold_policy("monthly-sphere") == "quarterly"
    assert config.engagement.cold_after_sends == 2
    store = Store.open(config.db_path)
    for month in ("09", "10"):
        when = dt.datetime.fromisoformat(f"2026-{month}-01T16:00:00+00:00")
        sid = f"old@2026-{month}-01T09:00"
        store.begin_delivery(sid, "marcus.bell@example.com", f"<m{month}@x>", "sendgrid", (),
                             (), (), when)
        store.settle_delivery(sid, "marcus.bell@example.com", "sent", when)
    from pipeline.feeds.ingest import ingest
    ingest(config.sources, store, NOW)
    campaign = config.campaign("monthly-sphere")
    november = prepare(config, store, campaign, NOW).plan
    assert [s.reason for s in november.skipped if s.email == "marcus.bell@example.com"] == \
        ["cold contact: quarterly cadence"]
    assert "marcus.bell@example.com" not in [e.contact.email for e in november.emails]
    october = prepare(config, store, campaign, NOW,
                      dt.datetime(2026, 10, 1, 9, tzinfo=dt.UTC)).plan
    assert "marcus.bell@example.com" in [e.contact.email for e in october.emails]
    store.close()


def test_bad_cold_policy_is_a_config_error(project: Path, cli) -> None:
    campaigns = project / "campaigns.yaml"
    campaigns.write_text(campaigns.read_text(encoding="utf-8").replace(
        "    kind: newsletter\n", "    kind: newsletter\n    cold_contacts: monthly\n", 1),
        encoding="utf-8")
    result = cli("check", project=project)
    assert result.exit_code == 1
    assert "campaigns.monthly-sphere.cold_contacts: unknown value 'monthly'" in result.output
    assert "normal | quarterly | skip" in result.output


def test_report_events_option_records_a_saved_batch(project: Path, cli) -> None:
    """`report --events FILE` records a webhook batch (deduplicated) and reports it."""
    store = Store.open(project / "var" / "sphere.db")
    record(store, with_events=False)
    store.close()
    first = cli("report", "--events", str(EVENTS), "--json", project=project)
    assert first.exit_code == 0, first.output
    assert "Recorded 45 new event(s) of 46" in first.output
    again = cli("report", "monthly-sphere", "--events", str(EVENTS), project=project)
    assert "Recorded 0 new event(s) of 46" in again.output
    assert f"{S2}: sent 5, delivered 4, opened 2, clicked 1, bounced 1, unsubscribed 0, " \
        "complained 1" in again.output
    # The webhook's rules apply: the bounce, the spam report and the unsubscribe suppress.
    store = Store.open(project / "var" / "sphere.db")
    assert {"ben@example.com", "dev@example.com", "eve@example.com"} <= store.suppressed()
    store.close()
    bad = project / "not-events.json"
    bad.write_text("{\"event\": \"open\"}", encoding="utf-8")
    refused = cli("report", "--events", str(bad), project=project)
    assert refused.exit_code == 1 and "not a SendGrid event batch" in refused.output


def test_events_without_ids_belong_to_the_latest_send_before_them() -> None:
    rows = [LedgerRow(sid, "x@example.com", "<m>", "sent", "smtp", "", created, created)
            for sid, created in (("c@2026-08-01T09:00", "2026-08-01T16:00:00+00:00"),
                                 ("c@2026-09-01T09:00", "2026-09-01T16:00:00+00:00"))]
    sept_5 = int(dt.datetime(2026, 9, 5, tzinfo=dt.UTC).timestamp())
    july = int(dt.datetime(2026, 7, 1, tzinfo=dt.UTC).timestamp())
    events = [StoredEvent("e1", "open", "X@example.com", sept_5),
              StoredEvent("e2", "open", "x@example.com", july)]  # before any send: nobody's
    report = build_report(rows, events, [], {}, {})
    assert [(s.send_id, s.opened) for s in report.sends] == [("c@2026-08-01T09:00", 0),
                                                             ("c@2026-09-01T09:00", 1)]


def test_new_commands_document_every_option() -> None:
    import click

    from pipeline.cli.main import main
    for path in (("contacts", "import"), ("report",)):
        command = main
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        assert command.help, path
        undocumented = [p.name for p in command.params
                        if isinstance(p, click.Option) and not p.help]
        assert not undocumented, (path, undocumented)


def test_figures_no_transport_can_know_are_unknown_not_zero(project: Path, cli,
                                                            tmp_path: Path) -> None:
    assert cli("send", "monthly-sphere", project=project).exit_code == 0  # to the outbox
    result = cli("report", project=project)
    assert result.exit_code == 0, result.output
    send = "monthly-sphere@2026-11-01T09:00"
    assert f"{send}: sent 28, delivered \u2014, opened \u2014, clicked \u2014, bounced " \
           "\u2014, unsubscribed \u2014, complained \u2014 *" in result.stdout
    assert "* \u2014 unknown: sent through the outbox or an SMTP relay" in result.stdout
    doc = json.loads(cli("report", "--json", project=project).stdout)
    (stats,) = doc["sends"]
    assert stats["sent"] == 28 and stats["delivered"] is None and stats["opened"] is None
    assert "outbox or an SMTP relay" in stats["unknown_why"]
    page = tmp_path / "report.html"
    assert cli("report", "--html", str(page), project=project).exit_code == 0
    text = page.read_text(encoding="utf-8")
    assert text.count('<td class="n unknown" title="unknown">\u2014</td>') == 6
    assert "\u2014 unknown: sent through the outbox" in text
    assert 'class="bar bar-opened"' not in text  # no bar drawn for an unknown figure
