"""One-off notes under review (`sphere note list/edit/remove`): a note waits for the next
email to its contact; once an email carried it, it is history and never rewritten."""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.state.store import Store


@dataclass(frozen=True)
class StoredNote:
    """A one-off note as stored: unused until an email carrying it was sent."""

    id: int
    email: str
    text: str
    created: str
    used: str | None  # when the email that carried it was sent
    used_send_id: str | None


def notes(store: Store, email: str | None = None) -> list[StoredNote]:
    """Every one-off note (optionally for one address), oldest first."""
    sql = "SELECT id, email, text, created, used, used_send_id FROM notes"
    args: tuple[str, ...] = ()
    if email:
        sql, args = sql + " WHERE email=?", (email.lower(),)
    return [StoredNote(*r) for r in store.conn.execute(sql + " ORDER BY id", args)]


def edit_note(store: Store, note_id: int, text: str) -> bool:
    """Replace an unused note's text; False if there is no such unused note."""
    with store.transaction() as tx:
        cur = tx.execute("UPDATE notes SET text=? WHERE id=? AND used IS NULL",
                         (text, note_id))
    return cur.rowcount > 0


def remove_note(store: Store, note_id: int) -> bool:
    """Delete an unused note; False if there is no such unused note."""
    with store.transaction() as tx:
        cur = tx.execute("DELETE FROM notes WHERE id=? AND used IS NULL", (note_id,))
    return cur.rowcount > 0
