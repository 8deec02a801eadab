"""The text and JSON of `sphere plan`, built whole (the CLI writes each in one go):
a rich print per line, and `json.dumps(indent=...)` (pure Python), were most of a
10,000-contact plan's time."""
from __future__ import annotations

import json
from typing import Any

import click

from pipeline.models import Plan, PlannedEmail, Rejected, Sale, SalesExtra, Skipped
from pipeline.planning.prepare import Prepared


def skipped_line(skipped: tuple[Skipped, ...]) -> str:
    """'2 skipped (1 unsubscribed in the audience file, 1 nothing new worth sending)'."""
    if not skipped:
        return ""
    reasons: dict[str, int] = {}
    for s in skipped:
        reasons[s.reason] = reasons.get(s.reason, 0) + 1
    return f"{len(skipped)} skipped (" + ", ".join(f"{n} {r}" for r, n in reasons.items()) + ")"


def _sales(planned: PlannedEmail) -> tuple[Sale, ...]:
    """The sales a recent-sales email shows (none for other kinds)."""
    extra = planned.extra
    return extra.sales if isinstance(extra, SalesExtra) else ()


def _sales_json(planned: PlannedEmail) -> dict:
    """For `plan --json` of a recent-sales mailer: the sales this person will see."""
    sales = _sales(planned)
    if not sales:
        return {}
    return {"sales": [{"address": x.address, "neighbourhood": x.neighbourhood,
                       "price": x.price, "sold_date": x.sold_date.isoformat()} for x in sales]}


def _rejected(items: tuple[Rejected, ...], explain: bool) -> dict:
    """For `plan --json --explain`: the candidates a contact did not get, and why."""
    if not explain:
        return {}
    return {"rejected": [{"section": r.section, "title": r.title, "source": r.source,
                          "score": r.score, "why": r.why} for r in items]}


def plan_json(prepared: Prepared, done: set[str], explain: bool) -> str:
    """`plan --json`: indented at the top, one line per email and per skip. The C
    encoder does each line (json.dumps with `indent` falls back to pure Python, which
    took most of a 10,000-contact plan's time)."""
    p = prepared.plan
    emails = [{"email": e.contact.email, "name": e.contact.name,
               "picks": [{"section": k.section, "reason": k.reason, "score": k.score,
                          "general": k.general,
                          **({"url": k.article.url, "title": k.article.title,
                              "source": k.article.source} if k.article else
                             {"tip": k.tip.id, "title": k.tip.title})}  # type: ignore[union-attr]
                         for k in e.picks], **_rejected(e.rejected, explain),
               # --explain: how each interest was read ("'loves golf' -> golf"); only
               # the newsletter's planner reads interests that way (the others: none)
               **({"interests": [p.understood[i] for i in e.contact.interests
                                 if i in p.understood]} if explain else {}),
               **_sales_json(e), "already_sent": e.contact.email in done}
              for e in p.emails]
    skipped = [{"email": s.email, "reason": s.reason, **_rejected(s.rejected, explain)}
               for s in p.skipped]
    problems = [str(x) for x in prepared.audience.problems]

    def items(rows: list) -> str:
        if not rows:
            return "[]"
        return "[\n    " + ",\n    ".join(
            json.dumps(r, ensure_ascii=False) for r in rows) + "\n  ]"

    head = {"campaign": p.campaign.name, "send_id": p.send_id, "period": p.period}
    fields = [f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}"
              for k, v in head.items()]
    fields += [f'  "emails": {items(emails)}', f'  "skipped": {items(skipped)}',
               f'  "problems": {items(problems)}']
    return "{\n" + ",\n".join(fields) + "\n}"


def plan_text(p: Plan, done: set[str], colour: bool) -> str:
    """`plan` as text, built whole and written at once (a rich print per line took 80%
    of a 10,000-contact plan); colours only on a terminal."""
    def st(text: str, **style: Any) -> str:
        return click.style(text, **style) if colour else text

    lines: list[str] = []

    def rejected(items: tuple[Rejected, ...]) -> None:
        lines.extend(st(f"  {'rejected':<13} {r.title}  ({r.why})", dim=True) for r in items)

    sent_mark = st(" (already sent in this period)", fg="green")
    for e in p.emails:
        mark = sent_mark if e.contact.email in done else ""
        lines.append(f"{st(e.contact.name or e.contact.email, bold=True)} "
                     f"<{e.contact.email}>{mark}")
        for sale in _sales(e):
            lines.append(f"  {'sale':<13} {sale.address}, {sale.neighbourhood}  "
                         + st(f"({sale.price_text}, sold {sale.sold_date})", dim=True))
        for k in e.picks:
            title = k.article.title if k.article else k.tip.title  # type: ignore[union-attr]
            lines.append(f"  {k.section:<13} {title}  " + st(f"({k.reason})", dim=True))
        if p.understood and e.contact.interests:  # --explain: how each interest was read
            lines.append(st(f"  {'understood':<13} "
                            + "; ".join(p.understood[i] for i in e.contact.interests),
                            dim=True))
        rejected(e.rejected)
    for s in p.skipped:
        lines.append(f"{st('skipped', fg='yellow')} {s.email}: {s.reason}")
        rejected(s.rejected)
    already = sum(1 for e in p.emails if e.contact.email in done)
    lines.append(f"{len(p.emails) - already} emails to send for {p.send_id}"
                 f"{f', {already} already sent' if already else ''}; "
                 f"{skipped_line(p.skipped) or '0 skipped'}")
    return "\n".join(lines) + "\n"
