"""Matching: which stories suit each contact, and why (pure functions)."""
