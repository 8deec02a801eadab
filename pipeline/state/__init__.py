"""State: what the rest of Sphere may ask of the project's store (interface.Ledger, opened
with interface.open_store), the records it returns (records.py), and the SQLite backend
(store.py with its parts, migrations, the database file)."""
