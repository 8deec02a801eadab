"""A minimal SMTP server for the benchmarks that takes every message and counts it, in
several processes sharing one listening socket, so that parallel connections are served
in parallel (aiosmtpd serves every connection on one thread, which made it, not the
sender, the limit).

    python bench/smtp_sink.py PORT [PROCESSES] [SPOOL]

With SPOOL (a folder), it behaves like a real relay (Postfix, Exim): each message is
written to a queue file and fsynced before the 250 reply, since that reply takes
responsibility for it (RFC 5321, 6.1); the fsync runs on a thread, so one process keeps
serving its other connections meanwhile. Without, it only counts.
Prints "ready" once listening; on SIGINT or SIGTERM prints "delivered N" and exits.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import socket
import sys
import tempfile


def _queue(spool: str, data: bytes) -> None:
    """Write one message to the spool and fsync it, as a relay's queue does."""
    fd, _ = tempfile.mkstemp(dir=spool, suffix=".msg")
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


async def _session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   count: multiprocessing.sharedctypes.Synchronized, spool: str) -> None:
    writer.write(b"220 sink ESMTP\r\n")
    try:
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-sink\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n")
            elif verb == b"DATA":
                writer.write(b"354 end with <CRLF>.<CRLF>\r\n")
                await writer.drain()
                data = await reader.readuntil(b"\r\n.\r\n")
                if spool:
                    await asyncio.get_running_loop().run_in_executor(None, _queue, spool,
                                                                     data)
                with count.get_lock():
                    count.value += 1
                writer.write(b"250 OK queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:  # HELO, MAIL, RCPT, RSET, NOOP
                writer.write(b"250 OK\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


def _serve(sock: socket.socket, count: multiprocessing.sharedctypes.Synchronized,
           spool: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us, by SIGTERM
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})

    async def run() -> None:
        server = await asyncio.start_server(lambda r, w: _session(r, w, count, spool), sock=sock,
                                            limit=64 * 1024 * 1024)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


def main() -> None:
    """Listen, start the worker processes, wait for a signal, report the count."""
    port = int(sys.argv[1])
    processes = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    spool = sys.argv[3] if len(sys.argv) > 3 else ""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(512)
    ctx = multiprocessing.get_context("fork")
    count = ctx.Value("q", 0)
    workers = [ctx.Process(target=_serve, args=(sock, count, spool), daemon=True)
               for _ in range(processes)]
    for w in workers:
        w.start()
    print("ready", flush=True)
    signal.sigwait({signal.SIGINT, signal.SIGTERM})
    for w in workers:
        w.terminate()
        w.join(5)
    print(f"delivered {count.value}", flush=True)


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    main()
