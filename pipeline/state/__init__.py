"""State: the store (the ledger of everything sent), its migrations and its file."""
