"""Worker processes for the CPU-bound stages (feed parsing in ingest.py, rendering in
render_pool.py): threads share one interpreter lock, so those stages ran on one core.

Workers start from a fresh interpreter (the fork server, else spawn), never by forking a
process that has threads and an open database. A program that starts Sphere's stages
from a script of its own needs the usual `if __name__ == "__main__":` guard, as with
any multiprocessing code; `sphere` and `python -m pipeline` have it.
"""
from __future__ import annotations

import multiprocessing
import os
import select
import signal
import threading
import time
from multiprocessing.context import BaseContext


def context(preload: str) -> BaseContext:
    """The multiprocessing context for a worker pool whose workers use module
    `preload` (imported once by the fork server, if this process starts one, instead of
    once per worker)."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([preload])
        return ctx
    return multiprocessing.get_context("spawn")


def exit_with(parent: int) -> None:
    """In a worker: exit as soon as process `parent` is gone. A SIGKILLed sender
    cannot shut its pool down, and its workers (and the fork server, which lives while
    they do) would otherwise wait for work forever. Ctrl-C is the parent's to handle
    (it reaches the whole process group): it settles what is in flight, then stops us."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        try:
            fd = os.pidfd_open(parent)
        except (AttributeError, OSError):  # not Linux 5.3+: look every second
            fd = -1
        if fd >= 0:
            select.select([fd], [], [])  # readable once the process has ended
        else:
            while _alive(parent):
                time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="sphere-parent-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cores() -> int:
    """How many worker processes a pool may use: one per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
