"""`sphere report`: what each send did (from the ledger and the provider's events), which
stories were clicked, and who is engaged or gone cold; as data, text and an HTML page."""
from __future__ import annotations

import bisect
import datetime as dt
import html
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pipeline.addresses import email_key
from pipeline.contacts.engagement import TRACKED_TRANSPORTS, cold_contacts
from pipeline.models import LedgerStatus
from pipeline.state.interface import Ledger
from pipeline.state.records import LedgerRow, SendRow, StoredEvent

METRICS: tuple[str, ...] = ("sent", "delivered", "opened", "clicked", "bounced",
                            "unsubscribed", "complained")
# SendGrid Event Webhook event names behind each metric ("sent" comes from the ledger).
EVENT_METRICS: dict[str, tuple[str, ...]] = {
    "delivered": ("delivered",), "opened": ("open",), "clicked": ("click",),
    "bounced": ("bounce",), "unsubscribed": ("unsubscribe", "group_unsubscribe"),
    "complained": ("spamreport",),
}
_METRIC_OF = {event: metric for metric, events in EVENT_METRICS.items() for event in events}
TOP_STORIES = 10
# Seconds an event may carry a time before the ledger's (the provider's clock and ours).
CLOCK_SLACK = 300
# Bars drawn per send in the chart, with their colours (the sample brand's palette).
CHART_SERIES: tuple[tuple[str, str], ...] = (("sent", "#9AA5B1"), ("delivered", "#1F5F8B"),
                                             ("opened", "#E07A3F"), ("clicked", "#2E8B57"))


UNKNOWN = "\u2014"  # an em dash: the figure cannot be known, which is not zero
# Why a send's event figures are unknown: shown as a footnote in text and HTML, and as
# each send's `unknown_why` in JSON.
UNTRACKED_WHY = ("sent through the outbox or an SMTP relay, which report no deliveries, "
                 "opens, clicks, bounces, unsubscribes or complaints (only SendGrid's Event "
                 "Webhook does)")


@dataclass(frozen=True)
class SendStats:
    """Unique contacts per metric for one send; an event metric is None (unknown) when
    no email of the send went through a transport that reports events."""

    send_id: str
    campaign: str
    period: str
    sent: int = 0
    delivered: int | None = 0
    opened: int | None = 0
    clicked: int | None = 0
    bounced: int | None = 0
    unsubscribed: int | None = 0
    complained: int | None = 0
    tracked: int = 0  # emails sent through a transport that reports events
    unknown_why: str = ""  # why the event figures are None, or cover only `tracked`

    def count(self, metric: str) -> int | None:
        """The figure for one of METRICS; None when it cannot be known."""
        value = getattr(self, metric)
        return None if value is None else int(value)

    def line(self) -> str:
        """'monthly@2026-09-01T09:00: sent 10, delivered 9, opened 5, ...' ('delivered —'
        when unknown, with a footnote marker)."""
        figures = ", ".join(f"{m} {UNKNOWN if self.count(m) is None else self.count(m)}"
                            for m in METRICS)
        return f"{self.send_id}: {figures}" + (" *" if self.unknown_why else "")


@dataclass(frozen=True)
class StoryClicks:
    """A clicked link: how many people clicked it, and the article it belongs to."""

    url: str
    title: str  # the article's title, or '' when the link is not a stored article
    contacts: int
    clicks: int


@dataclass(frozen=True)
class ContactEngagement:
    """One person across the reported sends."""

    email: str
    sent: int
    opened: int  # sends opened at least once
    clicked: int  # sends with at least one click
    last_active: int  # unix time of the last open or click; 0 for never
    cold: bool
    flags: tuple[str, ...] = ()  # bounced, unsubscribed, complained


@dataclass(frozen=True)
class Report:
    """Everything `sphere report` shows."""

    campaign: str  # '' for every campaign
    sends: tuple[SendStats, ...]
    stories: tuple[StoryClicks, ...]
    contacts: tuple[ContactEngagement, ...]
    cold_after_sends: int

    @property
    def cold(self) -> tuple[str, ...]:
        """Addresses flagged cold, sorted."""
        return tuple(c.email for c in self.contacts if c.cold)


def url_key(url: str) -> str:
    """A link as matched to an article (no utm_ parameters, fragment, trailing slash)."""
    parts = urlsplit(url.strip())
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                       if not k.lower().startswith("utm_")])
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"),
                       query, ""))


def _epoch(stamp: str | None) -> float:
    if not stamp:
        return 0.0
    moment = dt.datetime.fromisoformat(stamp)
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def _attribute(event: StoredEvent, by_provider: dict[str, str],
               sent_at: dict[str, list[tuple[float, str]]]) -> str:
    """The send an event belongs to: our custom arg; else SendGrid's message id (the
    X-Message-Id plus a '.filter...' suffix) as the ledger recorded it; else the latest
    send to that address before the event."""
    if event.send_id:
        return event.send_id
    if event.sg_message_id:
        found = by_provider.get(event.sg_message_id.split(".", 1)[0], "")
        if found:
            return found
    # Events relayed without custom args (another tool, an old account) still belong to
    # the email that person most recently received.
    times = sent_at.get(email_key(event.email), [])
    i = bisect.bisect_right(times, (event.timestamp + CLOCK_SLACK, "\uffff"))
    return times[i - 1][1] if i else ""


def build_report(ledger: Iterable[LedgerRow], events: Iterable[StoredEvent],
                 sends: Iterable[SendRow], titles: dict[str, str],
                 by_provider: dict[str, str], campaign: str = "",
                 cold_after_sends: int = 4) -> Report:
    """The report from ledger rows, events, (send_id, campaign, period) and article titles."""
    ledger = list(ledger)
    events = list(events)
    meta = {s.send_id: (s.campaign, s.period) for s in sends}
    for row in ledger:
        meta.setdefault(row.send_id, (row.send_id.split("@", 1)[0],
                                      row.send_id.split("@", 1)[-1]))
    chosen = {sid for sid, (camp, _) in meta.items() if not campaign or camp == campaign}
    who: dict[tuple[str, str], set[str]] = {}
    sent_to: dict[str, set[str]] = {}
    sent_at: dict[str, list[tuple[float, str]]] = {}
    for row in ledger:
        if row.status == LedgerStatus.SENT:
            sent_at.setdefault(email_key(row.email), []).append((_epoch(row.created), row.send_id))
    for times in sent_at.values():
        times.sort()
    for row in ledger:
        if row.send_id in chosen and row.status == LedgerStatus.SENT:
            who.setdefault((row.send_id, "sent"), set()).add(email_key(row.email))
            sent_to.setdefault(email_key(row.email), set()).add(row.send_id)
    clicks: dict[str, tuple[set[str], list[str]]] = {}
    activity: dict[str, dict[str, set[str]]] = {}
    last_active: dict[str, int] = {}
    reported: set[str] = set()  # sends that some provider event belongs to
    for e in events:
        metric = _METRIC_OF.get(e.event)
        sid = _attribute(e, by_provider, sent_at)
        email = email_key(e.email)
        if sid:
            reported.add(sid)
        # Only people the ledger says this send went to: an event naming a send its address
        # never received (a forged or misrouted webhook post) would inflate its figures.
        if metric is None or sid not in chosen or sid not in sent_to.get(email, ()):
            continue
        who.setdefault((sid, metric), set()).add(email)
        activity.setdefault(email, {}).setdefault(metric, set()).add(sid)
        if metric in ("opened", "clicked"):
            last_active[email] = max(last_active.get(email, 0), e.timestamp)
        if metric == "clicked" and e.url:
            people, raw = clicks.setdefault(url_key(e.url), (set(), []))
            people.add(email)
            raw.append(e.url)
    # A transport reports events if it is SendGrid's API, or if events came back for
    # mail it carried (an SMTP relay run by SendGrid with the Event Webhook on).
    reporting = TRACKED_TRANSPORTS | {
        row.transport for row in ledger
        if row.send_id in reported and row.status == LedgerStatus.SENT}
    tracked: dict[str, int] = {}
    for row in ledger:
        if row.status == LedgerStatus.SENT and row.transport in reporting:
            tracked[row.send_id] = tracked.get(row.send_id, 0) + 1
    stats = tuple(sorted((_send_stats(sid, meta[sid], who, tracked.get(sid, 0))
                          for sid in chosen), key=lambda s: (s.campaign, s.period, s.send_id)))
    by_key = {url_key(u): t for u, t in titles.items()}
    stories = tuple(sorted(
        (StoryClicks(url=raw[0], title=by_key.get(key, ""), contacts=len(people),
                     clicks=len(raw)) for key, (people, raw) in clicks.items()),
        key=lambda s: (-s.contacts, -s.clicks, s.url))[:TOP_STORIES])
    cold = cold_contacts(ledger, events, cold_after_sends)
    everyone = sorted(set(sent_to) | set(activity))
    contacts = tuple(
        ContactEngagement(
            email=email, sent=len(sent_to.get(email, ())),
            opened=len(activity.get(email, {}).get("opened", ())),
            clicked=len(activity.get(email, {}).get("clicked", ())),
            last_active=last_active.get(email, 0), cold=email in cold,
            flags=tuple(m for m in ("bounced", "unsubscribed", "complained")
                        if activity.get(email, {}).get(m)))
        for email in everyone)
    return Report(campaign=campaign, sends=stats, stories=stories, contacts=contacts,
                  cold_after_sends=cold_after_sends)


def _send_stats(send_id: str, meta: tuple[str, str], who: dict[tuple[str, str], set[str]],
                tracked: int) -> SendStats:
    """One send's figures: event metrics unknown (None) when none of its emails went
    through a transport that reports events, where a 0 would claim nobody opened it."""
    sent = len(who.get((send_id, "sent"), ()))
    known = tracked > 0 or sent == 0
    figures = {m: len(who.get((send_id, m), ())) if known else None
               for m in METRICS if m != "sent"}
    why = "" if known else UNTRACKED_WHY
    if known and 0 < tracked < sent:
        why = (f"events cover only {tracked} of the {sent} emails; the others were "
               f"{UNTRACKED_WHY}")
    return SendStats(send_id, meta[0], meta[1], sent=sent, tracked=tracked, unknown_why=why,
                     **figures)


def footnotes(report: Report) -> list[str]:
    """The distinct explanations behind unknown or partial figures, one line each."""
    return list(dict.fromkeys(s.unknown_why for s in report.sends if s.unknown_why))


def report_from_store(store: Ledger, campaign: str = "", cold_after_sends: int = 4) -> Report:
    """build_report over everything the project's database holds."""
    return build_report(store.ledger_rows(), store.events(), store.send_rows(),
                        store.article_titles(), store.provider_sends(), campaign,
                        cold_after_sends)


# ---- HTML -----------------------------------------------------------------------------
# Schemes a clicked URL may have to become a link in the page; any other (javascript:,
# data:, vbscript: ...) is shown as text, since event URLs come from outside.
LINK_SCHEMES = frozenset({"http", "https"})


def _story_cell(story: StoryClicks) -> str:
    """The story's title (or URL) as a link when its URL is http(s), else as plain text."""
    text = html.escape(story.title or story.url)
    # urlsplit drops what a browser drops (leading spaces and controls, tabs and newlines
    # inside), so "  JavaScript:" and "java\tscript:" are seen for what they are.
    parts = urlsplit(story.url)
    if parts.scheme.lower() not in LINK_SCHEMES or not parts.netloc:
        return text
    return f'<a href="{html.escape(story.url)}">{text}</a>'


def _when(stamp: int) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%d") \
        if stamp else "never"


def chart_svg(campaign: str, sends: list[SendStats]) -> str:
    """Inline SVG: sent, delivered, opened and clicked bars per send, oldest first."""
    # A viewBox and width:100% let it scale to its container: no overflow at any width.
    width, height, left, bottom, top = 800, 280, 44, 44, 36
    plot_w, plot_h = width - left - 16, height - bottom - top
    # Whole-number gridlines: four steps of ceil(peak / 4) people each.
    step = -(-max([s.count(m) or 0 for s in sends for m, _ in CHART_SERIES] + [1]) // 4)
    peak = step * 4
    slot = plot_w / max(len(sends), 1)
    bar = min(28.0, slot * 0.8 / len(CHART_SERIES))
    # A date label is ~70 units wide: with many sends, label every k-th one.
    label_every = max(1, -(-70 // int(max(slot, 1))))
    esc = html.escape
    parts = [(f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
              f'xmlns="http://www.w3.org/2000/svg" aria-label="{esc(campaign)}: sent, '
              'delivered, opened and clicked per send">'),
             f'<title>{esc(campaign)} over time</title>']
    for i in range(5):
        y = top + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 16}" y2="{y:.1f}" '
                     'stroke="#E3E0DA"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" '
                     f'font-size="11" fill="#555">{step * i}</text>')
    for n, s in enumerate(sends):
        x0 = left + slot * n + (slot - bar * len(CHART_SERIES)) / 2
        for k, (metric, colour) in enumerate(CHART_SERIES):
            value = s.count(metric)
            if value is None:  # unknown is not zero: no bar at all
                continue
            h = plot_h * value / peak
            parts.append(f'<rect class="bar bar-{metric}" x="{x0 + k * bar:.1f}" '
                         f'y="{top + plot_h - h:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" '
                         f'fill="{colour}"><title>{esc(s.send_id)}: {value} {metric}</title>'
                         '</rect>')
        if n % label_every:
            continue
        label = s.period[:10]
        parts.append(f'<text x="{left + slot * n + slot / 2:.1f}" y="{height - bottom + 18}" '
                     f'text-anchor="middle" font-size="11" fill="#333">{esc(label)}</text>')
    for k, (metric, colour) in enumerate(CHART_SERIES):
        x = left + k * 110
        parts.append(f'<rect x="{x}" y="10" width="12" height="12" fill="{colour}"/>'
                     f'<text x="{x + 17}" y="20" font-size="12" fill="#333">{metric}</text>')
    parts.append("</svg>")
    return "".join(parts)


# Soft hyphens: the long headings break as "unsub-scribed", not "unsubscrib-ed".
_HEADINGS = {"delivered": "de&shy;livered", "unsubscribed": "unsub&shy;scribed",
             "complained": "com&shy;plained"}
_CSS = """
*{box-sizing:border-box}body{margin:0;background:#F4F1EC;color:#222;
font:15px/1.45 -apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif}
main{max-width:1000px;margin:0 auto;padding:24px 16px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 8px}
section{background:#fff;border-radius:8px;padding:16px;margin:0 0 16px}
table{width:100%;border-collapse:collapse;table-layout:fixed}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #E3E0DA;
overflow-wrap:anywhere;vertical-align:top}
th{font-size:13px;color:#555;overflow-wrap:normal}td.n,th.n{text-align:right;width:9%}
.chart{display:block;width:100%;height:auto}.cold{color:#B03A2E;font-weight:600}
.muted{color:#666}
"""


def _figure_cell(value: int | None) -> str:
    if value is None:
        return f'<td class="n unknown" title="unknown">{UNKNOWN}</td>'
    return f'<td class="n">{value}</td>'


def render_html(report: Report, generated: dt.datetime) -> str:
    """A self-contained page: inline CSS and SVG, no scripts, nothing fetched."""
    esc = html.escape
    title = f"Sphere report: {report.campaign or 'all campaigns'}"
    out = [(f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{_CSS}</style></head><body><main>"),
           (f"<h1>{esc(title)}</h1><p class=\"muted\">Generated "
            f"{generated.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC. "
            "Counts are unique contacts; opens are approximate (image blocking hides some, "
            "privacy proxies add some).</p>")]
    campaigns = sorted({s.campaign for s in report.sends})
    for camp in campaigns:
        sends = [s for s in report.sends if s.campaign == camp]
        out.append(f'<section class="campaign"><h2>{esc(camp)}</h2>{chart_svg(camp, sends)}'
                   '<table><thead><tr><th style="width:28%">send</th>' +
                   "".join(f'<th class="n">{_HEADINGS.get(m, m)}</th>' for m in METRICS) +
                   "</tr></thead><tbody>")
        for s in sends:
            mark = "<sup>*</sup>" if s.unknown_why else ""
            out.append(f"<tr><td>{esc(s.send_id)}{mark}</td>" +
                       "".join(_figure_cell(s.count(m)) for m in METRICS) + "</tr>")
        out.append("</tbody></table>")
        for why in dict.fromkeys(s.unknown_why for s in sends if s.unknown_why):
            out.append(f'<p class="muted"><sup>*</sup> {UNKNOWN} unknown: {esc(why)}.</p>')
        out.append("</section>")
    if not campaigns:
        out.append("<section><p>No sends recorded yet.</p></section>")
    out.append('<section><h2>Top clicked stories</h2><table><thead><tr><th>story</th>'
               '<th class="n">people</th><th class="n">clicks</th></tr></thead><tbody>')
    for st in report.stories:
        out.append(f'<tr><td>{_story_cell(st)}</td>'
                   f'<td class="n">{st.contacts}</td><td class="n">{st.clicks}</td></tr>')
    if not report.stories:
        out.append('<tr><td colspan="3" class="muted">No clicks recorded.</td></tr>')
    out.append("</tbody></table></section>")
    out.append(f'<section><h2>Contacts</h2><p class="muted">Cold: no open or click in the '
               f'last {report.cold_after_sends} sends through SendGrid, the one transport that '
               f'reports them ({len(report.cold)} contact(s)).</p>'
               '<table><thead><tr><th style="width:34%">contact</th><th class="n">sent</th>'
               '<th class="n">opened</th><th class="n">clicked</th><th>last active</th>'
               '<th>flags</th></tr></thead><tbody>')
    for c in report.contacts:
        flags = (["<span class=\"cold\">cold</span>"] if c.cold else []) + \
            [esc(f) for f in c.flags]
        out.append(f"<tr><td>{esc(c.email)}</td><td class=\"n\">{c.sent}</td>"
                   f"<td class=\"n\">{c.opened}</td><td class=\"n\">{c.clicked}</td>"
                   f"<td>{_when(c.last_active)}</td><td>{', '.join(flags)}</td></tr>")
    out.append("</tbody></table></section></main></body></html>")
    return "\n".join(out)
