"""What the studio's Home and Calendar show, as operations of a `Project` (project.py):
the sends coming, the drafts and alerts waiting, feeds failing, the last sends."""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from pipeline.models import DraftStatus
from pipeline.outcomes import AlertWaiting, ComingSend, HeldDraft, HomeView

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.state.interface import Ledger
    from pipeline.state.records import QueuedAlert

HOME_DAYS = 14  # the coming sends Home lists


class ViewDesk:
    """Home and the calendar, for a Project: it supplies the config, store and clock."""

    if TYPE_CHECKING:
        @property
        def config(self) -> Config: ...

        @property
        def store(self) -> Ledger: ...

        def now(self) -> dt.datetime: ...

        def pending_alerts(self) -> dict[int, QueuedAlert]: ...

    def coming_sends(self, days: int) -> tuple[ComingSend, ...]:
        """Each send due in the next `days` (the daemon's own calendar), at its first
        moment in the sender's time zone, with how many people it reaches."""
        import zoneinfo

        from pipeline.scheduling.daemon import project_calendar
        config, now = self.config, self.now()
        cal = project_calendar(config, self.store, now, now + dt.timedelta(days=days))
        groups: dict[str, list] = {}
        for d in cal.due:
            groups.setdefault(d.send_id, []).append(d)
        zone = zoneinfo.ZoneInfo(config.sender.timezone)
        return tuple(sorted((ComingSend(min(d.at for d in g).astimezone(zone), g[0].name,
                                        sid, len({d.email for d in g}))
                             for sid, g in groups.items()), key=lambda s: (s.at, s.send_id)))

    def home(self, days: int = HOME_DAYS) -> HomeView:
        """Coming sends, drafts with people held, alerts waiting, feeds failing (any the
        store knows), the last eight sends."""
        from pipeline.approval import drafts
        store, now = self.store, self.now()
        waiting = []
        for d in drafts.load(store):
            held = sum(1 for r in d.recipients if d.state(r, now) == "held")
            if d.status != DraftStatus.DROPPED and held:
                waiting.append(HeldDraft(d, held))
        return HomeView(self.coming_sends(days), tuple(waiting),
                        tuple(self.pending_alerts().values()),
                        tuple(f for f in store.feed_states() if f.consecutive_failures),
                        tuple(store.send_counts()[:8]))

    def alerts_waiting(self) -> tuple[AlertWaiting, ...]:
        """The pending interest alerts, each with its story's title and its person."""
        from pipeline.addresses import email_key
        from pipeline.contacts.audience import load_audiences
        config = self.config
        titles = {a.id: a.title for a in self.store.articles()}
        people = {email_key(c.email): c for c in load_audiences(
            config.audience_files, config.audience_names, config.project).contacts}
        return tuple(AlertWaiting(r, titles.get(r.article_id, r.article_id),
                                  people.get(r.email))
                     for r in self.pending_alerts().values())
