"""The schema as numbered migrations, one list for both backends: applied in order by
Store.migrate (SQLite) and by pipeline.state.postgres.upgrade (PostgreSQL).

Each step is written for SQLite; most of it is portable SQL and runs on PostgreSQL as
written. Where a step uses SQLite's own dialect, POSTGRES_EDITS says what PostgreSQL runs
instead, fragment by fragment (each fragment must occur in the step: tests check). A new
step should be portable SQL (TEXT, INTEGER/BIGINT, DOUBLE PRECISION, no AUTOINCREMENT,
no INSERT OR ..., no datetime()); tests/test_migrations.py applies every step to a real
PostgreSQL and compares the tables' columns with SQLite's.
"""
from __future__ import annotations

from dataclasses import dataclass

# Schema changes only by appending a numbered migration; never edit a shipped one.
MIGRATIONS: tuple[str, ...] = (
    # 1: the foundation
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE articles (
        id TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        kind TEXT NOT NULL,
        url TEXT NOT NULL,
        title TEXT NOT NULL,
        summary_html TEXT NOT NULL,
        summary_text TEXT NOT NULL,
        published TEXT,
        neighbourhood TEXT NOT NULL DEFAULT '',
        topics TEXT NOT NULL DEFAULT '[]',
        image_url TEXT NOT NULL DEFAULT '',
        cluster TEXT NOT NULL DEFAULT '',
        first_seen TEXT NOT NULL,
        updated TEXT NOT NULL
    );
    CREATE INDEX articles_published ON articles(published);
    CREATE TABLE feed_state (
        source TEXT PRIMARY KEY,
        etag TEXT,
        last_modified TEXT,
        permanent_url TEXT,
        last_attempt TEXT,
        last_success TEXT,
        last_error TEXT,
        last_error_at TEXT,
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        articles_seen INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE sends (
        id TEXT PRIMARY KEY,
        campaign TEXT NOT NULL,
        period TEXT NOT NULL,
        started TEXT NOT NULL,
        finished TEXT,
        outcome TEXT
    );
    -- One row per (send, contact), written before the transport call and settled after
    -- it: 'pending' rows are messages whose outcome is unknown.
    CREATE TABLE deliveries (
        send_id TEXT NOT NULL,
        email TEXT NOT NULL,
        message_id TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
        transport TEXT NOT NULL,
        provider_id TEXT NOT NULL DEFAULT '',
        error TEXT NOT NULL DEFAULT '',
        picks TEXT NOT NULL DEFAULT '[]',
        clusters TEXT NOT NULL DEFAULT '[]',
        note_ids TEXT NOT NULL DEFAULT '[]',
        attempts INTEGER NOT NULL DEFAULT 0,
        created TEXT NOT NULL,
        settled TEXT,
        PRIMARY KEY (send_id, email)
    );
    CREATE INDEX deliveries_status ON deliveries(status);
    -- What each person has received, for never-repeat across every campaign.
    CREATE TABLE history (
        email TEXT NOT NULL,
        item TEXT NOT NULL,
        cluster TEXT NOT NULL DEFAULT '',
        send_id TEXT NOT NULL,
        sent TEXT NOT NULL,
        PRIMARY KEY (email, item)
    );
    CREATE INDEX history_cluster ON history(email, cluster);
    CREATE TABLE notes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        email TEXT NOT NULL,
        text TEXT NOT NULL,
        created TEXT NOT NULL,
        used_send_id TEXT,
        used TEXT
    );
    CREATE INDEX notes_email ON notes(email, used);
    CREATE TABLE suppressions (
        email TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        source TEXT NOT NULL,
        created TEXT NOT NULL
    );
    """,
    # 2: feed ingestion that survives the real web (issue #3)
    """
    -- The URL the stored validators belong to: after the user edits a source's url, an
    -- old ETag must not be sent to the new server.
    ALTER TABLE feed_state ADD COLUMN url TEXT;
    -- SHA-256 of the last body parsed: a server that ignores ETag/Last-Modified and
    -- sends the same bytes again costs no parsing.
    ALTER TABLE feed_state ADD COLUMN content_hash TEXT;
    -- ok | not_modified | failed, and how many new articles the last run brought.
    ALTER TABLE feed_state ADD COLUMN last_outcome TEXT;
    ALTER TABLE feed_state ADD COLUMN last_new INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX articles_source ON articles(source);
    CREATE INDEX articles_first_seen ON articles(first_seen);
    """,
    # 3: SendGrid Event Webhook events (issue #6), kept for suppressions, for settling
    # messages whose outcome is unknown, and for reports later.
    """
    CREATE TABLE events (
        sg_event_id TEXT PRIMARY KEY,
        event TEXT NOT NULL,
        email TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        sg_message_id TEXT NOT NULL DEFAULT '',
        send_id TEXT NOT NULL DEFAULT '',
        url TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        received TEXT NOT NULL
    );
    CREATE INDEX events_email ON events(email, event);
    CREATE INDEX events_send ON events(send_id, email);
    """,
    # 4: referrals (issue #7): event-started drips thank the referrer and keep them posted
    """
    CREATE TABLE referrals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        by_email TEXT NOT NULL,
        name TEXT NOT NULL,
        received TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'received',
        updated TEXT NOT NULL
    );
    CREATE INDEX referrals_by ON referrals(by_email);
    """,
    # 5: interest alerts waiting for the professional's approval (issue #8)
    """
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        campaign TEXT NOT NULL,
        email TEXT NOT NULL,
        article_id TEXT NOT NULL,
        score REAL NOT NULL,
        reason TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'approved', 'dropped', 'sent')),
        created TEXT NOT NULL,
        decided TEXT,
        UNIQUE (campaign, email, article_id)
    );
    CREATE INDEX alerts_status ON alerts(campaign, status);
    """,
    # 6: drafts (issue #12): with `approval: true`, a due send of any campaign or drip is
    # prepared and held until `sphere approve`; nothing held goes out unapproved. The
    # per-recipient rows are what a review page edits: a personal note for this send,
    # an exclusion, dropped stories.
    """
    CREATE TABLE drafts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        send_id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,             -- the campaign or drip
        kind TEXT NOT NULL CHECK (kind IN ('campaign', 'drip')),
        period TEXT NOT NULL,
        created TEXT NOT NULL,          -- when it fell due and was held
        expires TEXT NOT NULL,          -- undecided after this: reported, never sent
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'approved', 'dropped')),
        decided TEXT
    );
    CREATE TABLE draft_recipients (
        draft_id INTEGER NOT NULL REFERENCES drafts(id),
        email TEXT NOT NULL,
        -- pending follows the draft's own decision, approved is this person's own
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved')),
        picks TEXT NOT NULL DEFAULT '[]',         -- [{section, key, reason, score, general}]
        template TEXT NOT NULL DEFAULT '',        -- a drip step's template
        extra TEXT NOT NULL DEFAULT '{}',         -- a drip step's years, referral ...
        note TEXT NOT NULL DEFAULT '',            -- a personal note for this send only
        excluded INTEGER NOT NULL DEFAULT 0,      -- dropped from this send in review
        dropped_items TEXT NOT NULL DEFAULT '[]', -- pick keys removed in review
        created TEXT NOT NULL,
        decided TEXT,
        PRIMARY KEY (draft_id, email)
    );
    CREATE INDEX drafts_status ON drafts(status, name);
    """,
    # 7: when a referral was recorded, so a thank-you due earlier that day is still sent
    # (issue #12). `updated` moves with each status change, so it tells the recording time
    # only while the status is still 'received'; otherwise it stays unknown (NULL).
    """
    ALTER TABLE referrals ADD COLUMN recorded TEXT;
    UPDATE referrals SET recorded = updated WHERE status = 'received';
    """,
    # 8: each article's hobby topic profile, computed once at ingest (issue #16): JSON
    # {"v": taxonomy version, "t": [[topic, score, evidence], ...], "b": business news}
    """
    ALTER TABLE articles ADD COLUMN profile TEXT NOT NULL DEFAULT '';
    """,
    # 9: the studio's accounts for team mode (issue #17): who may log in by password, and
    # as what. An agent may do everything; an assistant drafts, personalises and reviews
    # but never approves a send. Each project (agent's book) has its own accounts.
    """
    CREATE TABLE users (
        project TEXT NOT NULL DEFAULT '',
        login TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('agent', 'assistant')),
        password_hash TEXT NOT NULL,    -- argon2id, as argon2-cffi writes it
        created TEXT NOT NULL,
        updated TEXT NOT NULL,
        PRIMARY KEY (project, login)
    );
    """,
)

# SQLite's 64-bit rowid key, as PostgreSQL spells it.
_AUTO_ID = ("id INTEGER PRIMARY KEY AUTOINCREMENT",
            "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")

# step number -> ((SQLite fragment, PostgreSQL replacement), ...). SQLite's INTEGER is
# 64-bit and its REAL a double; PostgreSQL's INTEGER is 32-bit and its REAL a float.
POSTGRES_EDITS: dict[int, tuple[tuple[str, str], ...]] = {
    1: (_AUTO_ID,),
    3: (("timestamp INTEGER NOT NULL", "timestamp BIGINT NOT NULL"),),  # epoch seconds
    4: (_AUTO_ID,),
    5: (_AUTO_ID, ("score REAL NOT NULL", "score DOUBLE PRECISION NOT NULL")),
    6: (_AUTO_ID, ("draft_id INTEGER NOT NULL REFERENCES drafts(id)",
                   "draft_id BIGINT NOT NULL REFERENCES drafts(id)")),
}

DIALECTS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class SchemaState:
    """Where a database's schema stands: its version, ours, and what an upgrade did."""

    version: int  # the schema version now
    latest: int  # the newest this Sphere knows
    applied: tuple[int, ...] = ()  # the steps this call applied, in order

    @property
    def pending(self) -> int:
        """How many steps an upgrade would apply."""
        return max(0, self.latest - self.version)


def for_dialect(dialect: str) -> tuple[str, ...]:
    """The numbered migrations' text for one backend ("sqlite" or "postgresql")."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown SQL dialect {dialect!r}; known: {', '.join(DIALECTS)}")
    if dialect == "sqlite":
        return MIGRATIONS
    steps = []
    for number, text in enumerate(MIGRATIONS, 1):
        for old, new in POSTGRES_EDITS.get(number, ()):
            if old not in text:  # an edit that no longer applies would pass silently
                raise ValueError(f"migration {number}: {old!r} not found for PostgreSQL")
            text = text.replace(old, new)
        steps.append(text)
    return tuple(steps)
