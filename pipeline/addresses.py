"""Address identity: one rule, shared by the store, contacts, planning and delivery."""
from __future__ import annotations


def email_key(email: str) -> str:
    """The identity of an address for de-duplication, suppressions and history."""
    return email.strip().lower()
