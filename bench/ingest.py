"""Ingest benchmark: 500 feeds served from loopback, 10% of them slow or failing.

Prints the wall time of a cold run and of a second run (conditional GETs answered with
304), the requests the server saw and the bytes it sent, and the core count. Targets on 2
cores (issue 18): cold under 6 s, second run under 2 s. With --baseline REF, the same
benchmark from git REF (exported with `git archive`) runs first, for the ratios.

    python bench/ingest.py [--feeds 500] [--items 20] [--hosts 25] [--baseline main]

The server runs in its own process (so it does not share the GIL with the ingester) on
127.0.0.1 ... 127.0.0.N: feeds spread over several hosts like real ones, and the
per-host limit applies as it would on the web. Nothing leaves the machine."""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gzip
import hashlib
import json
import multiprocessing
import random
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.feeds.fetch import FetchSettings
from pipeline.feeds.ingest import ingest
from pipeline.models import Source
from pipeline.state.store import Store

# Shorter than production (pipeline/feeds/fetch.py): loopback answers in milliseconds, and the
# slow feeds here exist to prove a slow feed costs at most the deadline.
BENCH_SETTINGS = FetchSettings(connect_timeout=2.0, read_timeout=1.5, deadline=2.5)
WORDS = ["market", "housing", "rates", "mortgage", "inventory", "listings", "prices", "school",
         "park", "library", "council", "budget", "road", "bridge", "garden", "festival", "trail",
         "harbor", "river", "bakery", "cafe", "permit", "zoning", "transit", "bus", "bike", "lane",
         "water", "sewer", "tax", "levy", "bond", "vote", "election", "weather", "storm", "snow",
         "heat", "energy", "solar", "insurance", "rent", "lease", "loan", "refinance", "appraisal",
         "inspection", "roof", "kitchen", "remodel", "paint", "deck", "fence", "tree", "museum",
         "theater", "concert", "farmers", "soccer", "baseball", "golf", "fishing", "hiking",
         "kayak", "yoga", "dog", "cat", "shelter", "hospital", "clinic", "police", "fire",
         "station", "plaza", "mall", "store", "opening", "closing"]


def feed_kind(i: int) -> str:
    """ok | slow | silent | error500 | error404 | garbage, so that 10% misbehave."""
    return {0: "slow", 1: "silent", 2: "error500", 3: "error404", 4: "garbage"}.get(
        i % 50 if i % 50 < 5 else -1, "ok")


def make_feed(i: int, items: int, rng: random.Random) -> bytes:
    """One RSS feed with `items` entries; every 20th entry syndicates another feed's."""
    parts = []
    for n in range(items):
        if n == 0 and i % 20 == 7:
            # The same story as feed i-1's first entry, with tracking parameters.
            words = random.Random(i - 1).sample(WORDS, 7)
            link = f"https://site{i - 1}.example/story/0?utm_source=feed{i}"
        else:
            words = rng.sample(WORDS, 7)
            link = f"https://site{i}.example/story/{n}"
        title = " ".join(words).capitalize()
        parts.append(f"<item><title>{title}</title><link>{link}</link>"
                     f"<guid isPermaLink='false'>feed{i}-item{n}</guid>"
                     f"<pubDate>Fri, {1 + n % 20:02d} Nov 2026 10:00:00 GMT</pubDate>"
                     f"<description><![CDATA[<p>{' '.join(rng.choices(WORDS, k=60))}</p>"
                     f"<p><a href='/more/{n}'>More</a> <img src='https://t.example/p.gif'"
                     f" width='1' height='1'></p>]]></description></item>")
    return (f"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
            f"<title>Feed {i}</title><link>https://site{i}.example/</link>"
            f"<description>Bench feed</description>{''.join(parts)}</channel></rss>").encode()


def serve(n_feeds: int, items: int, hosts: int, ready: multiprocessing.Queue) -> None:
    """The server process: a minimal keep-alive HTTP/1.1 server on `hosts` addresses."""
    bodies = {}
    for i in range(n_feeds):
        body = make_feed(i, items, random.Random(i))
        bodies[f"/feed{i}.xml"] = (body, gzip.compress(body, 6),
                                   '"' + hashlib.sha1(body).hexdigest()[:16] + '"', i)
    stats = {"requests": 0, "bytes": 0, "304": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {k.lower(): v.strip() for k, _, v in
                           (line.partition(":") for line in lines[1:] if line)}
                if path == "/__stats":
                    await _send(writer, 200, json.dumps(stats).encode(), {})
                    continue
                stats["requests"] += 1
                entry = bodies.get(path)
                if entry is None:
                    stats["bytes"] += await _send(writer, 404, b"no such feed", {})
                    continue
                body, packed, etag, i = entry
                kind = feed_kind(i)
                if kind == "silent":
                    await asyncio.sleep(30)  # never answers within the deadline
                    return
                if kind == "error500":
                    stats["bytes"] += await _send(writer, 500, b"internal error", {})
                    continue
                if kind == "error404":
                    stats["bytes"] += await _send(writer, 404, b"gone", {})
                    continue
                if kind == "garbage":
                    stats["bytes"] += await _send(writer, 200, b"<html>not a feed</html>",
                                                  {"Content-Type": "text/html"})
                    continue
                if headers.get("if-none-match") == etag:
                    stats["304"] += 1
                    stats["bytes"] += await _send(writer, 304, b"", {"ETag": etag})
                    continue
                extra = {"ETag": etag, "Content-Type": "application/rss+xml; charset=utf-8"}
                if "gzip" in headers.get("accept-encoding", ""):
                    body = packed
                    extra["Content-Encoding"] = "gzip"
                if kind == "slow":
                    # Trickle: a chunk every second, each inside the read timeout, the
                    # whole far beyond the deadline.
                    writer.write(_head(200, len(body), extra))
                    for k in range(0, len(body), 64):
                        writer.write(body[k:k + 64])
                        stats["bytes"] += 64
                        await writer.drain()
                        await asyncio.sleep(1.0)
                    continue
                stats["bytes"] += await _send(writer, 200, body, extra)
        except (asyncio.IncompleteReadError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        servers = [await asyncio.start_server(handle, f"127.0.0.{h + 1}", 0, backlog=512)
                   for h in range(hosts)]
        ready.put([s.sockets[0].getsockname()[:2] for s in servers])
        await asyncio.Event().wait()

    asyncio.run(main())


def _head(code: int, length: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {code} X", f"Content-Length: {length}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _send(writer: asyncio.StreamWriter, code: int, body: bytes,
                headers: dict[str, str]) -> int:
    data = _head(code, len(body), headers) + body
    writer.write(data)
    await writer.drain()
    return len(data)


def server_stats(address: tuple[str, int]) -> dict[str, int]:
    """The server's request and byte counters."""
    with urllib.request.urlopen(f"http://{address[0]}:{address[1]}/__stats", timeout=5) as r:
        return json.loads(r.read())


def run(label: str, sources: tuple[Source, ...], store: Store, address: tuple[str, int],
        now: dt.datetime) -> float:
    """One ingest run, timed, with what the server saw during it."""
    before = server_stats(address)
    started = time.monotonic()
    summary = ingest(sources, store, now, settings=BENCH_SETTINGS)
    wall = time.monotonic() - started
    after = server_stats(address)
    kinds: dict[str, int] = {}
    for _, error in summary.failed:
        key = error.split(":")[0].split(" (")[0]
        kinds[key] = kinds.get(key, 0) + 1
    print(f"{label}: {wall:.2f} s wall; fetched {summary.fetched}, not modified "
          f"{summary.not_modified}, failed {len(summary.failed)} "
          f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}); "
          f"{summary.new} new, {summary.updated} updated articles; "
          f"{after['requests'] - before['requests']} requests, "
          f"{(after['bytes'] - before['bytes']) / 1e6:.2f} MB sent by the server "
          f"({summary.bytes_read / 1e6:.2f} MB read by the client), "
          f"{after['304'] - before['304']} answered 304")
    clusters = store.conn.execute("SELECT count(DISTINCT cluster) FROM articles").fetchone()[0]
    print(f"  store: {store.article_count()} articles in {clusters} story clusters")
    return wall


def baseline(ref: str, argv: list[str]) -> dict[str, float]:
    """Run this benchmark as it is at git `ref`; its printed wall times by run."""
    import re
    import subprocess
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(root), "archive", ref], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        out = subprocess.run([sys.executable, str(Path(tmp) / "bench" / "ingest.py"), *argv],
                             capture_output=True, text=True, cwd=tmp, check=False).stdout
    for line in out.splitlines():
        print(f"[{ref}] {line}")
    return {m[1]: float(m[2]) for m in re.finditer(r"^(cold run|second run): ([\d.]+) s",
                                                     out, re.M)}


def main() -> None:
    """Start the server, run cold and warm, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--feeds", type=int, default=500)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--hosts", type=int, default=25)
    parser.add_argument("--baseline", default="", help="git ref to compare with (e.g. main)")
    args = parser.parse_args()
    print(f"{multiprocessing.cpu_count()} CPUs", flush=True)
    base = baseline(args.baseline, ["--feeds", str(args.feeds), "--items", str(args.items),
                                    "--hosts", str(args.hosts)]) if args.baseline else {}
    ready: multiprocessing.Queue = multiprocessing.Queue()
    proc = multiprocessing.Process(target=serve, args=(args.feeds, args.items, args.hosts,
                                                       ready), daemon=True)
    proc.start()
    try:
        addresses = ready.get(timeout=60)
        # Feeds land on hosts at random (seeded), so the misbehaving ones are spread
        # the way they would be on the web rather than stacked on one host.
        placement = random.Random(42)
        hosts = [addresses[placement.randrange(len(addresses))] for _ in range(args.feeds)]
        # Loopback servers: the sources must say allow_private, as a user's would.
        sources = tuple(Source(name=f"feed{i}", kind="economy", allow_private=True,
                               url=f"http://{hosts[i][0]}:{hosts[i][1]}/feed{i}.xml")
                        for i in range(args.feeds))
        misbehaving = sum(feed_kind(i) != "ok" for i in range(args.feeds))
        print(f"{args.feeds} feeds x {args.items} items on {len(addresses)} loopback hosts, "
              f"{misbehaving} slow or failing; deadline {BENCH_SETTINGS.deadline:g} s, "
              f"{BENCH_SETTINGS.max_connections} connections, {BENCH_SETTINGS.per_host} "
              "per host")
        now = dt.datetime.now(dt.UTC)
        with tempfile.TemporaryDirectory() as tmp:
            store = Store.open(Path(tmp) / "bench.db")
            cold = run("cold run", sources, store, addresses[0], now)
            warm = run("second run", sources, store, addresses[0],
                       now + dt.timedelta(hours=1))
            store.close()
        for label, wall in (("cold run", cold), ("second run", warm)):
            if label in base:
                print(f"{label}: {wall:.2f} s here, {base[label]:.2f} s at {args.baseline}: "
                      f"{base[label] / wall:.2f}x faster", flush=True)
    finally:
        proc.terminate()
        proc.join(5)


if __name__ == "__main__":
    main()
