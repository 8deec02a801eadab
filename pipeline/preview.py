"""Preview: write each planned email as HTML and an index.html gallery to review them."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from .models import Plan
from .render import Renderer, escape

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class PreviewIndex:
    """Where the gallery is and how many emails it shows."""

    path: Path
    count: int


def write_preview(plan: Plan, renderer: Renderer, now: dt.datetime, folder: Path,
                  only: str | None = None) -> PreviewIndex:
    """Render every email of the plan (or one contact's) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for planned in plan.emails:
        if only and planned.contact.email.lower() != only.lower():
            continue
        email = renderer.render(plan, planned, now)
        name = _UNSAFE.sub("_", planned.contact.email.lower()) + ".html"
        (folder / name).write_text(email.html, encoding="utf-8")
        (folder / (name[:-5] + ".txt")).write_text(email.text, encoding="utf-8")
        reasons = "".join(
            f"<li><b>{escape(p.section)}</b>: "
            f"{escape(p.article.title if p.article else p.tip.title)}"  # type: ignore[union-attr]
            f" <i>({escape(p.reason)})</i></li>" for p in planned.picks)
        rows.append(
            f"<tr><td><a href=\"{escape(name)}\">{escape(email.subject)}</a></td>"
            f"<td>{escape(planned.contact.name)} &lt;{escape(planned.contact.email)}&gt;</td>"
            f"<td><ul>{reasons}</ul></td><td>{len(email.html.encode()) // 1024} KB</td></tr>")
    skipped = "".join(f"<li>{escape(s.email)}: {escape(s.reason)}</li>" for s in plan.skipped)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Preview: {escape(plan.send_id)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;margin:24px;color:#222}}
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;
padding:8px;vertical-align:top;text-align:left}}ul{{margin:0;padding-left:18px}}
i{{color:#666}}</style></head><body>
<h1>Preview of {escape(plan.campaign.name)}</h1>
<p>{len(rows)} email(s) for send <code>{escape(plan.send_id)}</code>. Nothing was sent.</p>
<table><thead><tr><th>Subject</th><th>To</th><th>What and why</th><th>HTML</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
{f'<h2>Skipped</h2><ul>{skipped}</ul>' if skipped else ''}
</body></html>
"""
    index = folder / "index.html"
    index.write_text(page, encoding="utf-8")
    return PreviewIndex(index, len(rows))
