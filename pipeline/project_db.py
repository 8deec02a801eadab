"""The project's database as a whole, for a Project: its schema version, upgrading it,
and moving a solo project's SQLite file into PostgreSQL (`sphere db ...`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.errors import redact_url

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.state.interface import Ledger
    from pipeline.state.migrations import SchemaState
    from pipeline.state.moveto import Moved


@dataclass(frozen=True)
class SchemaReport:
    """Where the project's schema stands: the database as it may be shown (password
    redacted), and its state, or None when the SQLite file does not exist yet."""

    where: str
    state: SchemaState | None


class DatabaseDesk:
    """`sphere db` for a Project: it supplies the config and the store."""

    if TYPE_CHECKING:
        @property
        def config(self) -> Config: ...

        @property
        def store(self) -> Ledger: ...

    def _database(self) -> tuple[str, str]:
        """(the PostgreSQL URL or "", the database as it may be shown)."""
        from pipeline.state.postgres import database_url
        url = database_url(self.config.database_url)
        return (url, f"{redact_url(url)} (PostgreSQL)") if url else \
            ("", f"{self.config.db_path} (SQLite)")

    def schema_status(self) -> SchemaReport:
        """The schema version of the project's database and what is pending; changes
        nothing."""
        from pipeline.state import postgres
        from pipeline.state.dbfile import schema_version
        from pipeline.state.migrations import MIGRATIONS, SchemaState
        url, where = self._database()
        if url:
            with postgres.connect(url) as conn:
                return SchemaReport(where, postgres.status(conn))
        if not self.config.db_path.exists():
            return SchemaReport(where, None)
        return SchemaReport(where, SchemaState(schema_version(self.config.db_path),
                                               len(MIGRATIONS)))

    def upgrade_schema(self) -> SchemaReport:
        """Apply the pending numbered migrations (PostgreSQL when a URL is set, else the
        SQLite file, which migrates as the store opens and refuses a lost ledger)."""
        from pipeline.state import postgres
        from pipeline.state.dbfile import schema_version
        from pipeline.state.migrations import MIGRATIONS, SchemaState
        url, where = self._database()
        if url:
            with postgres.connect(url) as conn:
                return SchemaReport(where, postgres.upgrade(conn))
        before = schema_version(self.config.db_path)
        self.store  # noqa: B018  (opening the store applies the migrations)
        latest = len(MIGRATIONS)
        return SchemaReport(where, SchemaState(latest, latest,
                                               tuple(range(before + 1, latest + 1))))

    def migrate_to(self, url: str) -> Moved:
        """Copy this project's sphere.db into the empty PostgreSQL database at `url`."""
        from pipeline.state.moveto import migrate_to
        return migrate_to(self.config.db_path, url)
