"""One-off notes under review (`sphere note list/edit/remove`): a note waits for the next
email to its contact; once an email carried it, it is history and never rewritten."""
from __future__ import annotations

from pipeline.state.interface import Ledger
from pipeline.state.records import StoredNote


def notes(store: Ledger, email: str | None = None) -> list[StoredNote]:
    """Every one-off note (optionally for one address), oldest first."""
    return store.notes(email)


def edit_note(store: Ledger, note_id: int, text: str) -> bool:
    """Replace an unused note's text; False if there is no such unused note."""
    return store.edit_note(note_id, text)


def remove_note(store: Ledger, note_id: int) -> bool:
    """Delete an unused note; False if there is no such unused note."""
    return store.remove_note(note_id)
