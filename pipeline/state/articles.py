"""The articles and the health of each feed, in the SQLite store."""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable

from pipeline.models import Article, TopicProfile
from pipeline.state.base import SQLiteBase
from pipeline.state.base import iso as _iso
from pipeline.state.base import parse as _parse
from pipeline.state.records import FeedState, RecentArticle


def _profile_json(profile: TopicProfile | None) -> str:
    """An article's topic profile as stored ('' when none was computed)."""
    if profile is None:
        return ""
    return json.dumps({"v": profile.version, "t": [list(t) for t in profile.topics],
                       "b": profile.business}, ensure_ascii=False)


def _profile(text: str) -> TopicProfile | None:
    """The stored topic profile, or None (then the matcher computes it)."""
    if not text:
        return None
    doc = json.loads(text)
    return TopicProfile(doc["v"], tuple((str(t), float(s), str(h)) for t, s, h in doc["t"]),
                        bool(doc.get("b")))



class ArticleStore(SQLiteBase):
    """Articles and feed state."""

    # ---- articles ------------------------------------------------------------------
    def upsert_articles(self, articles: Iterable[Article], now: dt.datetime) -> tuple[int, int]:
        """Insert new articles and update edited ones; returns (new, updated).

        An update keeps the stored cluster: it may already be in someone's history, and
        moving the story to another cluster would let its twin reach them again."""
        new = updated = 0
        stamp = _iso(now)
        with self.transaction() as tx:
            for a in articles:
                values = (a.source, a.kind, a.url, a.title, a.summary_html, a.summary_text,
                          _iso(a.published), a.neighbourhood, json.dumps(list(a.topics)),
                          a.image_url)
                profile = _profile_json(a.profile)
                row = tx.execute("SELECT source, kind, url, title, summary_html, "
                                 "summary_text, published, neighbourhood, topics, image_url, "
                                 "profile FROM articles WHERE id=?", (a.id,)).fetchone()
                if row is None:
                    tx.execute("INSERT INTO articles (source, kind, url, title, summary_html, "
                               "summary_text, published, neighbourhood, topics, image_url, "
                               "cluster, id, first_seen, updated, profile) "
                               "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                               (*values, a.cluster, a.id, stamp, stamp, profile))
                    new += 1
                elif tuple(row)[:-1] != values:
                    tx.execute("UPDATE articles SET source=?, kind=?, url=?, title=?, "
                               "summary_html=?, summary_text=?, published=?, neighbourhood=?, "
                               "topics=?, image_url=?, updated=?, profile=? WHERE id=?",
                               (*values, stamp, profile, a.id))
                    updated += 1
                elif profile and row[-1] != profile:
                    # The same story read by a newer taxonomy: not an edit.
                    tx.execute("UPDATE articles SET profile=? WHERE id=?", (profile, a.id))
        return new, updated

    def article_clusters(self, ids: Iterable[str]) -> dict[str, str]:
        """id -> cluster for those of `ids` that are stored."""
        wanted = list(ids)
        found: dict[str, str] = {}
        for start in range(0, len(wanted), 500):  # SQLite caps bound parameters
            chunk = wanted[start:start + 500]
            found.update(self.conn.execute(
                f"SELECT id, cluster FROM articles WHERE id IN ({','.join('?' * len(chunk))})",
                chunk).fetchall())
        return found

    def latest_urls(self, source: str, limit: int) -> dict[str, str]:
        """id -> url of the `limit` articles of one source seen most recently."""
        return {r[0]: r[1] for r in self.conn.execute(
            "SELECT id, url FROM articles WHERE source=? ORDER BY first_seen DESC, id "
            "LIMIT ?", (source, limit))}

    def recent_articles(self, since: dt.datetime) -> list[RecentArticle]:
        """Articles first seen or published since `since`, oldest first: the candidates
        a new story may be a near-duplicate of."""
        stamp = _iso(since)
        return [RecentArticle(*r) for r in self.conn.execute(
            "SELECT id, source, url, title, cluster FROM articles "
            "WHERE first_seen >= ? OR published >= ? ORDER BY first_seen, id",
            (stamp, stamp))]

    def articles(self) -> list[Article]:
        """Every stored article, newest first."""
        rows = self.conn.execute("SELECT * FROM articles ORDER BY published DESC, id")
        return [Article(id=r["id"], source=r["source"], kind=r["kind"], url=r["url"],
                        title=r["title"], summary_html=r["summary_html"],
                        summary_text=r["summary_text"], published=_parse(r["published"]),
                        neighbourhood=r["neighbourhood"], topics=tuple(json.loads(r["topics"])),
                        image_url=r["image_url"], cluster=r["cluster"],
                        profile=_profile(r["profile"])) for r in rows]

    def article_count(self) -> int:
        """How many articles are stored."""
        return self.conn.execute("SELECT count(*) FROM articles").fetchone()[0]

    # ---- feed state ----------------------------------------------------------------
    def feed_state(self, source: str) -> FeedState:
        """Remembered validators and health of one feed."""
        row = self.conn.execute("SELECT * FROM feed_state WHERE source=?", (source,)).fetchone()
        return FeedState(**dict(row)) if row else FeedState(source=source)

    def feed_states(self) -> list[FeedState]:
        """Health of every feed ever fetched."""
        return [FeedState(**dict(r)) for r in
                self.conn.execute("SELECT * FROM feed_state ORDER BY source")]

    def record_feed_success(self, source: str, now: dt.datetime, *, url: str,
                            etag: str | None, last_modified: str | None, new: int = 0,
                            permanent_url: str | None = None, content_hash: str | None = None,
                            outcome: str = "ok") -> None:
        """A fetch succeeded (200 or 304): store validators, reset the failure count.

        permanent_url is replaced, not kept: once the user updates the url (or the
        server stops redirecting) the advice to move disappears."""
        stamp = _iso(now)
        with self.transaction() as tx:
            tx.execute("INSERT OR IGNORE INTO feed_state (source) VALUES (?)", (source,))
            tx.execute("UPDATE feed_state SET etag=?, last_modified=?, last_attempt=?, "
                       "last_success=?, consecutive_failures=0, permanent_url=?, url=?, "
                       "content_hash=coalesce(?, content_hash), last_outcome=?, last_new=?, "
                       "articles_seen=(SELECT count(*) FROM articles WHERE source=?) "
                       "WHERE source=?",
                       (etag, last_modified, stamp, stamp, permanent_url, url, content_hash,
                        outcome, new, source, source))

    def record_feed_failure(self, source: str, now: dt.datetime, error: str,
                            url: str | None = None) -> None:
        """A fetch or parse failed: remember why and count it, and at which `url` (the
        retry backoff, fetch.backing_off, holds for that url only). A failure at a new
        url drops the old url's validators: they belong to the url that gave them."""
        stamp = _iso(now)
        with self.transaction() as tx:
            tx.execute("INSERT OR IGNORE INTO feed_state (source) VALUES (?)", (source,))
            if url is not None:
                tx.execute("UPDATE feed_state SET url=?, etag=NULL, last_modified=NULL, "
                           "content_hash=NULL WHERE source=? AND url IS NOT ?",
                           (url, source, url))
            tx.execute("UPDATE feed_state SET last_attempt=?, last_error=?, last_error_at=?, "
                       "consecutive_failures=consecutive_failures+1, last_outcome='failed' "
                       "WHERE source=?",
                       (stamp, error[:500], stamp, source))

    def article_ids_since(self, since: dt.datetime) -> frozenset[str]:
        """Ids of the articles first stored at or after `since` (newly ingested)."""
        return frozenset(r[0] for r in self.conn.execute(
            "SELECT id FROM articles WHERE first_seen >= ?", (_iso(since),)))


    def article_titles(self) -> dict[str, str]:
        """url -> title of every stored article, for naming clicked links."""
        return {r[0]: r[1] for r in self.conn.execute("SELECT url, title FROM articles")}
