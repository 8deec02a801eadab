"""Suppressions from SendGrid: the global unsubscribe, bounce and spam-report lists (and
the unsubscribe group's list), fetched page by page and stored so every transport skips
those addresses."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline.delivery.sendgrid_api import SendGridClient, Unknown, error_text
from pipeline.errors import TransportError
from pipeline.state.interface import Ledger

PAGE_SIZE = 500  # the most SendGrid returns per page
# Endpoint under /v3/suppression/ -> the reason we record.
LISTS: tuple[tuple[str, str], ...] = (
    ("unsubscribes", "unsubscribed"),
    ("bounces", "bounced"),
    ("spam_reports", "complained"),
)
MAX_PAGES = 10_000  # 5 million addresses: beyond that the API is misbehaving


@dataclass(frozen=True)
class SyncSummary:
    """What `sphere suppressions sync` found and stored."""

    fetched: tuple[tuple[str, int], ...]  # (list, addresses on it)
    added: int  # addresses newly suppressed here

    def line(self) -> str:
        """'unsubscribes 3, bounces 2, spam_reports 0; 4 newly suppressed'."""
        counts = ", ".join(f"{name} {n}" for name, n in self.fetched)
        return f"{counts}; {self.added} newly suppressed"


def _get(client: SendGridClient, path: str, params: dict[str, int] | None = None
         ) -> list:
    try:
        response = client.request("GET", path, params=params)
    except Unknown as exc:  # not raised for GET, but keep the contract total
        raise TransportError(str(exc), "run the sync again") from exc
    if response.status_code in (401, 403):
        raise TransportError(error_text(response), "check SENDGRID_API_KEY has the "
                             "Suppressions read permission")
    if response.status_code != 200:
        raise TransportError(f"{path}: {error_text(response)}", "run the sync again later")
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if not isinstance(doc, list):
        raise TransportError(f"{path}: SendGrid returned something other than a list",
                             "check sendgrid.api_host points at the v3 API")
    return doc


def fetch_list(client: SendGridClient, name: str) -> Iterator[str]:
    """Every address on one global suppression list, following limit/offset pages."""
    for page in range(MAX_PAGES):
        rows = _get(client, f"/v3/suppression/{name}",
                    {"limit": PAGE_SIZE, "offset": page * PAGE_SIZE})
        for row in rows:
            if isinstance(row, dict) and isinstance(row.get("email"), str):
                yield row["email"]
        if len(rows) < PAGE_SIZE:
            return


def fetch_group(client: SendGridClient, group_id: int) -> list[str]:
    """Addresses that left one unsubscribe group (one unpaginated list)."""
    return [e for e in _get(client, f"/v3/asm/groups/{group_id}/suppressions")
            if isinstance(e, str)]


def sync(client: SendGridClient, store: Ledger, asm_group_id: int | None,
         now: dt.datetime) -> SyncSummary:
    """Fetch every list and store its addresses as suppressions."""
    fetched = []
    added = 0
    for name, reason in LISTS:
        emails = list(fetch_list(client, name))
        fetched.append((name, len(emails)))
        added += store.suppress_many(((e, reason, f"sendgrid:{name}") for e in emails), now)
    if asm_group_id:
        emails = fetch_group(client, asm_group_id)
        fetched.append((f"group {asm_group_id}", len(emails)))
        added += store.suppress_many(((e, "unsubscribed", f"sendgrid:group:{asm_group_id}")
                                      for e in emails), now)
    return SyncSummary(tuple(fetched), added)
