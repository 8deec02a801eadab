"""Feeds in: fetch over HTTP, parse, sanitise, store articles."""
