"""The `sphere` command line: a thin click app over the library; the only module that
prints or exits."""
from __future__ import annotations

import datetime as dt
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipeline import __version__

if TYPE_CHECKING:
    from rich.progress import Progress

    from pipeline.config import Config
    from pipeline.delivery.deliver import Transport
    from pipeline.models import RunSummary
    from pipeline.delivery.sendgrid_api import SendAtRule
    from pipeline.state.store import Store

# Each command imports what it uses (our modules too: their dataclasses and regexes
# alone cost more than click): importing everything up front made `sphere --help` take
# 9 x `python -c "import click"`. tests/test_cli.py checks this module stays light.


class LazyConsole:
    """rich's Console, made on first use."""

    def __init__(self, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Any = None

    def real(self) -> Any:
        """The Console itself (for rich's own classes that want one)."""
        if self._console is None:
            from rich.console import Console
            self._console = Console(stderr=self._stderr, highlight=False, soft_wrap=True)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)


def escape(text: str) -> str:
    """Escape rich markup in text we did not write."""
    from rich.markup import escape as rich_escape
    return rich_escape(text)


out = LazyConsole()
err = LazyConsole(stderr=True)
CONTEXT = {"help_option_names": ["-h", "--help"]}
FAILING_FEED_THRESHOLD = 3  # consecutive failures before `status` flags a feed


def clock() -> Callable[[], dt.datetime]:
    """The current time; SPHERE_NOW (ISO 8601) pins it for demos and tests."""
    pinned = os.environ.get("SPHERE_NOW")
    if pinned:
        try:
            moment = dt.datetime.fromisoformat(pinned)
        except ValueError:
            raise click.BadParameter(f"SPHERE_NOW={pinned!r} is not an ISO 8601 time") from None
        moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
        return lambda: moment
    return lambda: dt.datetime.now(dt.timezone.utc)


def fail(message: str, code: int = 1) -> None:
    """Print one error and exit."""
    from pipeline.errors import redact
    err.print(f"[bold red]Error:[/] {escape(redact(message))}", markup=True,
              highlight=False)
    sys.exit(code)


_open_stores: list[Store] = []


def open_store(config: Config, dry_run: bool = False, new_ledger: bool = False,
               verify: bool = False) -> Store:
    """Open the project's database; closed when the command ends."""
    from pipeline.state.store import Store
    store = Store.open(config.db_path, dry_run=dry_run, new_ledger=new_ledger,
                       verify=verify)
    _open_stores.append(store)
    return store


@contextmanager
def handled() -> Iterator[None]:
    """Turn Sphere's own errors into one clear message and exit status 1."""
    import sqlite3

    from pipeline.state.dbfile import db_error
    from pipeline.errors import ConfigError, SphereError
    try:
        yield
    except ConfigError as exc:
        for p in exc.problems:
            err.print(str(p), markup=False)
        fail(f"{len(exc.problems)} problem(s) in your files; nothing was run")
    except SphereError as exc:
        fail(str(exc))
    except sqlite3.Error as exc:  # the database failed under a command (damage, a lock)
        fail(str(db_error(next((s.origin for s in _open_stores if s.origin), None), exc)))
    finally:
        while _open_stores:
            _open_stores.pop().close()


def load(project: Path) -> Config:
    """Load the project's config, printing its warnings."""
    from pipeline.config import load_config
    config = load_config(project)
    for w in config.warnings:
        err.print(f"warning: {w}", markup=False)
    return config


def progress_bar(quiet: bool, label: str) -> Progress | None:
    """A progress bar on interactive terminals only; --quiet silences it."""
    if quiet or not err.is_terminal:
        return None
    from rich import progress as rp
    console = err.real() if isinstance(err, LazyConsole) else err  # or a test's Console
    return rp.Progress(rp.TextColumn(label), rp.BarColumn(), rp.MofNCompleteColumn(),
                       rp.TimeElapsedColumn(), console=console, transient=True)


project_option = click.option("--project", "project", type=click.Path(file_okay=False,
                              path_type=Path), default=Path("."), show_default=True,
                              help="The project folder (content_sources.yaml, campaigns.yaml, "
                                   "audiences/).")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bar.")


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="sphere")
def main() -> None:
    """Sphere: useful, personal email digests that keep you top of mind."""


@main.command(context_settings=CONTEXT)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """Create a working starter project in DIRECTORY (the bundled sample)."""
    import shutil

    from pipeline.resources import bundled
    if (directory / "campaigns.yaml").exists() or (directory / "content_sources.yaml").exists():
        fail(f"{directory} already holds a Sphere project (campaigns.yaml or "
             "content_sources.yaml exists); choose an empty folder")
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("content_sources.yaml", "campaigns.yaml"):
        shutil.copyfile(bundled(name), directory / name)
    for name in ("audiences", "samples"):
        shutil.copytree(bundled(name), directory / name, dirs_exist_ok=True)
    (directory / "templates").mkdir(exist_ok=True)
    (directory / "templates" / "README.txt").write_text(
        "Put a file here with the same name as a built-in template (for example\n"
        "newsletter.mjml or partials/footer.mjml) to override it. `sphere templates` lists\n"
        "the built-in ones.\n", encoding="utf-8")
    out.print(f"Created a starter project in {directory}. Next: cd {directory} && "
              "sphere check && sphere send monthly-sphere --dry-run")


@main.command(context_settings=CONTEXT)
@project_option
def check(project: Path) -> None:
    """Validate every file; exit 1 with file:line: key: problem (fix) lines."""
    from pipeline.contacts.audience import load_audiences
    from pipeline.rendering.mime import address_problem
    from pipeline.contacts.neighbourhoods import coverage_warnings
    from pipeline.rendering.templatecheck import check_templates
    with handled():
        config = load(project)
        names = config.audience_names
        loaded = load_audiences(config.audience_files, names, config.project)
        for p in loaded.problems + tuple(coverage_warnings(config, loaded.contacts,
                                                          clock()())):
            (err if p.severity == "error" else out).print(
                f"{'warning: ' if p.severity != 'error' else ''}{p}", markup=False)
        for c in loaded.contacts:  # an address the configured transport cannot carry
            problem = address_problem(c.email, config.transport)
            if problem:
                out.print(f"warning: {c.origin}: email: {problem}", markup=False)
        template_errors = [str(p) for p in check_templates(config)]
        for line in template_errors:
            err.print(line, markup=False)
        if loaded.errors or template_errors:
            fail(f"{len(loaded.errors) + len(template_errors)} problem(s) in audience files "
                 "and templates")
        out.print(f"OK: {len(config.sources)} sources, {len(config.campaigns)} campaigns, "
                  f"{len(loaded.contacts)} contacts in {len(names)} audience(s), "
                  f"{len(config.tips)} tips")


@main.command("ingest", context_settings=CONTEXT)
@project_option
@quiet_option
@click.option("--retry-failed", is_flag=True,
              help="Fetch failing feeds now instead of waiting for their retry time.")
def ingest_cmd(project: Path, quiet: bool, retry_failed: bool) -> None:
    """Fetch every feed in content_sources.yaml and store new articles."""
    from pipeline.runner import run_ingest
    with handled():
        config = load(project)
        store = open_store(config)
        bar = progress_bar(quiet, "Fetching feeds")
        if bar:
            with bar:
                task = bar.add_task("fetch", total=len(config.sources))
                summary = run_ingest(config, store, clock()(),
                                     lambda r: bar.advance(task), retry_failed)
        else:
            summary = run_ingest(config, store, clock()(), retry_failed=retry_failed)
        out.print(f"Done: {summary.line()} in {summary.seconds:.1f} s", markup=False)
        if summary.moved:
            err.print(f"{len(summary.moved)} feed(s) moved permanently: "
                      f"{', '.join(n for n, _ in summary.moved)}; `sphere status` says where "
                      "(update content_sources.yaml)", markup=False)
        if summary.failed and not summary.fetched and not summary.not_modified:
            sys.exit(1)


def summary_parts(summary: RunSummary, verb: str = "Sent") -> list[str]:
    """The pieces of a send's one-line summary: sent, already sent, failed, unknown,
    skipped with their reasons."""
    from pipeline.runner import skipped_line
    parts = [f"{verb} {summary.sent}"]
    if summary.already_sent:
        parts.append(f"{summary.already_sent} already sent for {summary.send_id}")
    if summary.failed:
        parts.append(f"{summary.failed} failed")
    if summary.unknown:
        parts.append(f"{summary.unknown} outcome unknown (see `sphere status`)")
    if summary.skipped:
        parts.append(skipped_line(summary.skipped))
    return parts


def _transport(config: Config, name: str | None, dry_run: bool,
               send_at: SendAtRule | None = None) -> Transport:
    """The transport a send uses: --transport, else campaigns.yaml's `transport`."""
    from pipeline.delivery.deliver import DryRunTransport, OutboxTransport
    from pipeline.errors import SphereError
    from pipeline.delivery.sendgrid_api import SendGridTransport
    from pipeline.delivery.smtp import SmtpTransport
    if dry_run:
        return DryRunTransport()
    chosen = name or config.transport
    if chosen == "outbox":
        return OutboxTransport(config.outbox_dir)
    if chosen == "smtp":
        return SmtpTransport.from_env(config.smtp, config.sender)
    if chosen == "sendgrid":
        return SendGridTransport.from_env(config.sendgrid, config.sender, send_at, clock())
    raise SphereError(f"unknown transport {chosen!r}", "use outbox, smtp or sendgrid")


@main.command(context_settings=CONTEXT)
@click.argument("campaign")
@project_option
@click.option("--dry-run", is_flag=True, help="Change nothing (no files, no ledger); say "
              "what would be sent.")
@click.option("--transport", "transport_name", type=click.Choice(["outbox", "smtp", "sendgrid"]),
              help="Override campaigns.yaml's transport.")
@click.option("--no-ingest", is_flag=True, help="Use stored articles; do not fetch feeds first.")
@click.option("--new-ledger", is_flag=True, help="Start a new, empty ledger even though "
              "earlier sends left traces (outbox files, a backup): everyone is sent again.")
@quiet_option
@click.option("--local-time", is_flag=True,
              help="SendGrid only: send ahead of the campaign's next scheduled time and "
                   "have SendGrid hold each email until that time in the contact's own "
                   "time zone (send_at, at most 72 hours ahead).")
def send(campaign: str, project: Path, dry_run: bool, transport_name: str | None,
         no_ingest: bool, new_ledger: bool, quiet: bool, local_time: bool) -> None:
    """Send CAMPAIGN now: one email per subscribed contact, exactly once per period."""
    from pipeline.delivery.deliver import OutboxTransport
    from pipeline.errors import redact
    from pipeline.runner import run_send
    from pipeline.delivery.sendgrid_api import local_time_rule
    with handled():
        config = load(project)
        store = open_store(config, dry_run=dry_run, new_ledger=new_ledger, verify=True)
        period, rule = None, None
        if local_time:
            period, rule = local_time_rule(config, campaign, transport_name, clock()())
        transport = _transport(config, transport_name, dry_run, rule)
        bar = progress_bar(quiet, f"Sending {campaign}")
        task = bar.add_task("send", total=None) if bar else None

        def tick(done: int, total: int, email: str) -> None:
            if bar is not None and task is not None:
                bar.update(task, completed=done, total=total)

        if bar:
            bar.start()
        started = time.monotonic()
        try:
            ingested, summary = run_send(config, store, transport, campaign, clock(),
                                         dry_run=dry_run, do_ingest=not no_ingest,
                                         period=period, progress=tick)
        finally:
            if bar:
                bar.stop()
        for problem in summary.problems:
            err.print(f"warning: {problem}", markup=False)
        if ingested:
            err.print(f"ingest: {ingested.line()}", markup=False)
        for failure in summary.failures[:10]:
            err.print(f"failed: {redact(failure)}", markup=False)
        parts = summary_parts(summary, "Would send" if dry_run else "Sent")
        if summary.problems:
            parts.append(f"{len(summary.problems)} contact row(s) reported above")
        where = f" to {config.outbox_dir}" if isinstance(transport, OutboxTransport) else ""
        out.print(f"Done: {', '.join(parts)} ({summary.send_id}{where}) in "
                  f"{time.monotonic() - started:.2f} s", markup=False)
        if summary.paused:
            fail(summary.paused)
        if summary.failed:
            sys.exit(1)


@main.command(context_settings=CONTEXT)
@click.argument("campaign")
@project_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--explain", is_flag=True, help="Also show how each interest was understood "
              "('loves golf' -> golf) and list each contact's best rejected candidates and "
              "why they lost (already sent, same story, source cap, stale, below threshold, "
              "section full).")
@click.option("--no-ingest", is_flag=True, help="Use stored articles; do not fetch feeds "
              "first (send fetches them, so the plan may then differ from the send).")
def plan(campaign: str, project: Path, as_json: bool, explain: bool, no_ingest: bool
         ) -> None:
    """Show who would get what in CAMPAIGN, with the reason for every pick."""
    from pipeline.runner import held, prepare, run_ingest
    with handled():
        config = load(project)
        store = open_store(config, dry_run=True)
        if not no_ingest or store.article_count() == 0:
            # Like `send`: the plan is made from the articles the send would see. The
            # fetch lands in the in-memory copy, so `plan` still changes nothing.
            ingested = run_ingest(config, store, clock()())
            err.print(f"ingest: {ingested.line()}", markup=False)
        # As `send` would: a send held for approval shows who is held and who approved.
        prepared = held(config, store, prepare(config, store, config.campaign(campaign),
                                               clock()(), explain=explain), clock()())
        p = prepared.plan
        # Agree with `send`: people this period already reached are not sent again.
        done = {e for e, status in store.ledger_status(p.send_id).items() if status == "sent"}

        from pipeline.planning.output import plan_json, plan_text
        if as_json:
            click.echo(plan_json(prepared, done, explain))
        else:
            click.echo(plan_text(p, done, sys.stdout.isatty()),
                       nl=False)


@main.command(context_settings=CONTEXT)
@click.argument("campaign")
@project_option
@click.option("--contact", "contact_email", help="Only this contact.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the HTML files [default: var/preview/CAMPAIGN].")
@click.option("--step", type=int, help="For a drip: only this step (1 is the first).")
def preview(campaign: str, project: Path, contact_email: str | None, out_dir: Path | None,
            step: int | None) -> None:
    """Write each email of CAMPAIGN (or of a drip's steps) as HTML plus an index.html
    gallery; sends nothing."""
    from pipeline.rendering.preview import REFERRAL_UPDATE, drip_plans, find_drip, write_preview
    from pipeline.rendering.render import Renderer
    from pipeline.runner import prepare, run_ingest
    with handled():
        config = load(project)
        store = open_store(config, dry_run=True)
        now = clock()()
        renderer = Renderer(config.project, config.sender, store.secret())
        target = out_dir or config.state_dir / "preview" / campaign
        drip = find_drip(config, campaign) or (REFERRAL_UPDATE if campaign ==
                                               REFERRAL_UPDATE.name else None)
        if drip is not None:
            for number, s, plan in drip_plans(config, store, drip, step, now):
                index = write_preview(plan, renderer, now,
                                      target / f"step-{number}-{s.template}", contact_email)
                out.print(f"Step {number} ({s.template}): wrote {index.count} email(s) and "
                          f"{index.path}", markup=False)
            return
        if step is not None:
            fail(f"--step is for drips; {campaign} is a campaign")
        if store.article_count() == 0:
            run_ingest(config, store, now)
        prepared = prepare(config, store, config.campaign(campaign), now)
        if contact_email and not any(e.contact.email.lower() == contact_email.lower()
                                     for e in prepared.plan.emails):
            why = next((s.reason for s in prepared.plan.skipped
                        if s.email.lower() == contact_email.lower()), "")
            fail(f"{contact_email} gets no email in this send" + (f": {why}" if why else
                 " (not in the campaign's audience; check the spelling)"))
        index = write_preview(prepared.plan, renderer, now, target, contact_email)
        out.print(f"Done: wrote {index.count} email(s) and {index.path}", markup=False)


@main.group(context_settings=CONTEXT)
def note() -> None:
    """One-off personal notes for the next email to a contact."""


@note.command("add", context_settings=CONTEXT)
@click.argument("email")
@click.argument("text")
@project_option
def note_add(email: str, text: str, project: Path) -> None:
    """Add TEXT (Markdown) to the next email EMAIL receives."""
    from pipeline.contacts.audience import load_audiences
    with handled():
        config = load(project)
        known = {c.email.lower() for c in load_audiences(
            config.audience_files, config.audience_names, config.project).contacts}
        if email.lower() not in known:
            fail(f"{email} is in no audience file; check the spelling "
                 f"(`sphere plan CAMPAIGN` lists contacts)")
        store = open_store(config)
        note_id = store.add_note(email, text, clock()())
        out.print(f"Note {note_id} queued for the next email to {email}.")


def _when(stamp: str | None) -> str:
    return stamp[:16].replace("T", " ") if stamp else ""


def _feeds_table(config: Config, store: Store) -> None:
    """The Feeds table of `status`, then what to do about failing or moved feeds."""
    from rich.table import Table

    from pipeline.errors import redact, redact_url
    from pipeline.feeds.fetch import retry_after
    feeds = Table(title="Feeds (times UTC)", title_justify="left")
    for col in ("source", "last run", "last success"):
        feeds.add_column(col, no_wrap=True)
    for col in ("fails in a row", "articles", "new", "last error"):
        feeds.add_column(col, overflow="fold")
    states = {s.source: s for s in store.feed_states()}
    failing, moved = [], []
    for src in config.sources:
        s = states.get(src.name)
        if s is None:
            feeds.add_row(escape(src.name), "never fetched", "", "0", "0", "", "")
            continue
        if s.consecutive_failures >= FAILING_FEED_THRESHOLD:
            failing.append((src, s))
        if s.permanent_url and s.url == src.url and s.permanent_url != src.url:
            moved.append((src, s.permanent_url))
        outcome = {"ok": "ok", "not_modified": "not modified",
                   "failed": "[red]failed[/]"}.get(s.last_outcome or "", "")
        # An old error is history, not health: show it dimmed once the feed recovered.
        error = escape(f"{redact(s.last_error or '')[:90]} ({_when(s.last_error_at)})"
                       if s.last_error else "")
        if error and not s.consecutive_failures:
            error = f"[dim]{error}, since recovered[/]"
        retry = retry_after(s) if src.is_remote and s.url == src.url else None
        if retry is not None:
            # ingest leaves it until then (fetch.backing_off); a url edit retries at once
            error += f"; next try {_when(retry.isoformat())}"
        name = escape(src.name)
        if s.consecutive_failures >= FAILING_FEED_THRESHOLD:
            name += " [red](failing)[/]"
        feeds.add_row(name, outcome, _when(s.last_success) or "never",
                      str(s.consecutive_failures), str(s.articles_seen),
                      str(s.last_new) if s.last_outcome == "ok" else "", error)
    out.print(feeds)
    where = config.project / "content_sources.yaml"
    for src, s in failing:
        retry = retry_after(s) if src.is_remote and s.url == src.url else None
        later = f"; not fetched again before {_when(retry.isoformat())}" if retry else ""
        out.print(f"[red]{escape(src.name)} failed {s.consecutive_failures} times in a row[/]"
                  f" (last: {escape(redact(s.last_error or ''))}){later}; check its url at "
                  f"{escape(str(where))}:{src.line} in a browser, or remove the source")
    for src, url in moved:
        out.print(f"[yellow]{escape(src.name)} has moved permanently[/] to "
                  f"{escape(redact_url(url))}; "
                  f"update its url at {escape(str(where))}:{src.line} (the old address may "
                  "stop redirecting)")


@main.command(context_settings=CONTEXT)
@project_option
def status(project: Path) -> None:
    """Feeds' health, recent sends, and messages whose outcome is unknown."""
    from rich.table import Table
    with handled():
        config = load(project)
        store = open_store(config)
        _feeds_table(config, store)
        sends = Table(title="Sends", title_justify="left")
        for col in ("send", "started", "outcome", "sent", "failed", "unknown"):
            sends.add_column(col)
        for sid, started, _finished, outcome, n_sent, n_failed, n_pending in \
                store.send_counts()[:20]:
            sends.add_row(sid, (started or "")[:19], outcome or "running or interrupted",
                          str(n_sent or 0), str(n_failed or 0), str(n_pending or 0))
        out.print(sends)
        pending = store.pending_deliveries()
        if pending:
            out.print(f"[yellow]{len(pending)} message(s) with unknown outcome[/] (the process "
                      "stopped mid-send); they are not re-sent automatically. Check the "
                      "provider, then resolve each:")
            for row in pending[:20]:
                out.print(f"  sphere resolve {row.send_id} {row.email} --sent|--not-sent",
                          markup=False)
            if len(pending) > 20:
                out.print(f"  ... and {len(pending) - 20} more (resolve these, then run "
                          "`sphere status` again)", markup=False)
        cli_schedule.print_next_runs(config, store)
        cli_contacts.print_cold(config, store)
        cli_sends.print_drafts(store)
        suppressed = store.suppressed()
        reasons = ", ".join(f"{n} {r}" for r, n in store.suppression_counts().items())
        out.print(f"{store.article_count()} articles stored; {len(suppressed)} suppressed "
                  f"address(es){f' ({reasons})' if reasons else ''}.", markup=False)


@main.command(context_settings=CONTEXT)
@click.argument("send_id")
@click.argument("email")
@click.option("--sent/--not-sent", required=True,
              help="--sent if it was delivered; --not-sent to send it on the next run.")
@project_option
def resolve(send_id: str, email: str, sent: bool, project: Path) -> None:
    """Settle a message whose outcome is unknown after an interruption."""
    with handled():
        config = load(project)
        store = open_store(config)
        rows = {r.email: r for r in store.pending_deliveries() if r.send_id == send_id}
        if email not in rows:
            fail(f"no message with unknown outcome for {email} in {send_id} "
                 "(`sphere status` lists them)")
        store.settle_delivery(send_id, email, "sent" if sent else "failed", clock()(),
                              "resolved by hand", "" if sent else "resolved as not sent")
        out.print(f"Recorded {email} in {send_id} as {'sent' if sent else 'not sent'}.")


@main.group(context_settings=CONTEXT)
def suppressions() -> None:
    """Addresses never to mail: unsubscribes, bounces and spam reports."""


@suppressions.command("sync", context_settings=CONTEXT)
@project_option
def suppressions_sync(project: Path) -> None:
    """Fetch SendGrid's unsubscribe, bounce and spam-report lists (and the unsubscribe
    group's) and suppress those addresses for every transport."""
    from pipeline.delivery.sendgrid_api import SendGridClient, api_host, api_key_from_env
    from pipeline.delivery.suppressions import sync as sync_suppressions
    with handled():
        config = load(project)
        store = open_store(config)
        client = SendGridClient(api_host(config.sendgrid), api_key_from_env(
                                    "export a key with Suppressions read access"),
                                config.sendgrid.timeout, pool=2)
        try:
            summary = sync_suppressions(client, store, config.sendgrid.asm_group_id,
                                        clock()())
        finally:
            client.close()
        out.print(f"Done: {summary.line()}; {len(store.suppressed())} suppressed in all.",
                  markup=False)


@main.group(context_settings=CONTEXT)
def webhook() -> None:
    """The HTTP service for SendGrid events and one-click unsubscribes."""


@webhook.command("serve", context_settings=CONTEXT)
@project_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (put a TLS proxy in front for the internet).")
@click.option("--port", default=8025, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
def webhook_serve(project: Path, host: str, port: int) -> None:
    """Serve POST /sendgrid/events (signed Event Webhook) and the one-click unsubscribe
    page of sender.unsubscribe_url until interrupted."""
    from pipeline.errors import SphereError
    from pipeline.state.store import Store
    from pipeline.delivery import webhook as hook
    with handled():
        config = load(project)
        open_store(config).close()  # migrate now, and fail now if the folder is unusable
        from pipeline.web.server import Server, bind  # uvicorn: only when serving
        key = hook.public_key_from_env()
        paths = hook.unsubscribe_paths(config.sender.unsubscribe_url)
        try:
            sock = bind(host, port)
        except OSError as exc:
            raise SphereError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                              "choose another --port, or stop what is using it") from None
        server = Server(hook.webhook_app(lambda: Store.open(config.db_path), key, paths,
                                         clock(), config.sender.name), sock)
        if key is None:
            err.print(f"warning: {hook.PUBLIC_KEY_ENV} is not set: SendGrid events are "
                      "refused (403) until you export it", markup=False)
        out.print(f"Listening on {server.url} (events: {hook.EVENTS_PATH}; unsubscribe: "
                  f"{', '.join(paths)}); Ctrl-C stops.", markup=False)
        try:
            server.run()
        except KeyboardInterrupt:
            pass  # uvicorn re-raises the Ctrl-C it handled, once it has shut down
        finally:
            sock.close()


# The scheduler's commands live in their own module; importing it registers them.
from pipeline.cli import schedule as cli_schedule  # noqa: E402,F401
from pipeline.cli import sends as cli_sends  # noqa: E402
from pipeline.cli import templates as cli_templates  # noqa: F401

# `contacts import` and `report` (issue #9) live in their own module; importing it
# registers them.
from pipeline.cli import contacts as cli_contacts  # noqa: E402,F401

# `backup` (the database's online copy) and `studio` (the browser app): their own modules.
from pipeline.cli import state as cli_state, studio as cli_studio  # noqa: F401
