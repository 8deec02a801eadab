"""The professional's recent sales from a CSV they keep, validated with file:line errors."""
from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

from pipeline.errors import Problem
from pipeline.feeds.sanitise import safe_url
from pipeline.models import Sale

COLUMNS = ("address", "neighbourhood", "price", "sold_date", "beds", "baths",
           "days_on_market", "photo_url", "note")


def load_sales(path: Path, shown: str) -> tuple[tuple[Sale, ...], tuple[Problem, ...]]:
    """Read the sales CSV; a bad row is reported and left out."""
    problems: list[Problem] = []
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        return (), (Problem(shown, 0, "", "file not found", "create it with the columns "
                            + ", ".join(COLUMNS)),)
    except UnicodeDecodeError:
        return (), (Problem(shown, 0, "", "not UTF-8 text", "save the file as UTF-8"),)
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    sales: list[Sale] = []
    try:
        header = [h.strip().lower() for h in reader.fieldnames or []]
        missing = [c for c in ("address", "neighbourhood", "price", "sold_date")
                   if c not in header]
        if missing:
            return (), (Problem(shown, 1, missing[0], f"missing column(s) {missing}",
                                "the header row needs: " + ", ".join(COLUMNS)),)
        reader.fieldnames = header
        line = reader.line_num + 1
        for row in reader:
            sale = _row(row, shown, line, problems)
            if sale:
                sales.append(sale)
            line = reader.line_num + 1
    except csv.Error as exc:
        problems.append(Problem(shown, reader.line_num, "", f"CSV syntax error: {exc}",
                                "close the quote that starts on or before this line"))
    return tuple(sales), tuple(problems)


def _row(row: dict[str, str], shown: str, line: int, problems: list[Problem]) -> Sale | None:
    def num(key: str, kind: type, default: float = 0) -> float | None:
        raw = (row.get(key) or "").replace(",", "").replace("$", "").strip()
        if not raw:
            return default
        try:
            return kind(raw)
        except ValueError:
            problems.append(Problem(shown, line, key, f"{raw!r} is not a number",
                                    "write digits only, e.g. 725000"))
            return None
    price = num("price", int)
    beds, baths, dom = num("beds", int), num("baths", float), num("days_on_market", int)
    try:
        sold = dt.date.fromisoformat((row.get("sold_date") or "").strip())
    except ValueError:
        problems.append(Problem(shown, line, "sold_date", f"{row.get('sold_date')!r} is not a "
                                "date", "write it as YYYY-MM-DD"))
        return None
    if None in (price, beds, baths, dom) or not (row.get("address") or "").strip():
        if not (row.get("address") or "").strip():
            problems.append(Problem(shown, line, "address", "is empty", "fill it in"))
        return None
    return Sale(address=row["address"].strip(), neighbourhood=(row.get("neighbourhood") or "")
                .strip(), price=int(price or 0), sold_date=sold, beds=int(beds or 0),
                baths=float(baths or 0), days_on_market=int(dom or 0),
                photo_url=safe_url(row.get("photo_url") or ""),
                note=(row.get("note") or "").strip())


def sales_for(contact_hood: str, sales: tuple[Sale, ...], since: dt.date,
              limit: int = 4) -> tuple[Sale, ...]:
    """Recent sales, the contact's own neighbourhood first, newest first within each."""
    recent = [s for s in sales if s.sold_date >= since]
    own = contact_hood.lower()
    recent.sort(key=lambda s: (s.neighbourhood.lower() != own, -s.sold_date.toordinal()))
    return tuple(recent[:limit])
