"""The webhook service under hostile clients (issue 13, points 1 and 11): slow clients
hold only their own connections, every request must arrive whole within a deadline,
bodies are capped, and JSON nesting is bounded. Real sockets on 127.0.0.1."""
from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipeline.config import load_config
from pipeline.delivery.webhook import FORM_BODY, check_depth, parse_events
from pipeline.state.store import Store
from pipeline.web.app import MAX_BODY
from tests.test_webhook import EVENTS, _signed, keys, serve  # noqa: F401 (a fixture)

SLOW_CLIENTS = 50


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def _still_open(sock: socket.socket) -> bool:
    """True while the server has neither answered nor closed this connection."""
    # Readable means an answer or the end of the stream (closed); either ends the wait.
    return not select.select([sock], [], [], 0)[0]


def _answer(sock: socket.socket, wait: float = 30.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(wait)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def slow_clients(hook_server) -> Iterator[list[socket.socket]]:
    """50 connections that never finish their request: half trickle a header line every
    second, half declare an 8 MB body and send none of it."""
    url, private = hook_server
    socks: list[socket.socket] = []
    stop = threading.Event()
    for i in range(SLOW_CLIENTS):
        sock = _connect(url)
        if i % 2:
            body_headers = _signed(private, b"[]")
            head = "".join(f"{k}: {v}\r\n" for k, v in body_headers.items())
            sock.sendall(f"POST /sendgrid/events HTTP/1.1\r\nHost: x\r\n{head}"
                         f"Content-Length: {MAX_BODY}\r\n\r\n".encode())
        else:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        socks.append(sock)

    def trickle() -> None:
        n = 0
        while not stop.wait(1.0):
            n += 1
            for sock in socks[::2]:
                with contextlib.suppress(OSError):
                    sock.sendall(f"X-Slow-{n}: 1\r\n".encode())
    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    yield socks
    stop.set()
    thread.join()
    for sock in socks:
        sock.close()


@pytest.fixture
def hook_server(project: Path, keys):  # noqa: F811 (the fixture imported above)
    """(base URL, signing key) of the service with the default deadline."""
    server = serve(project, keys[1])
    yield server.url, keys[0]
    server.stop()


def test_fifty_slow_clients_delay_neither_health_nor_a_signed_batch(
        hook_server, slow_clients: list[socket.socket], project: Path) -> None:
    url, private = hook_server
    # Each probe would fail with httpx's timeout if a slow client held the server (the
    # old single-threaded one gave 3 of 3 /health timeouts).
    for n in range(3):
        assert httpx.get(f"{url}/health", timeout=5).text.strip() == "ok"
        batch = [dict(e, sg_event_id=f"probe-{n}-{i}") for i, e in enumerate(EVENTS)]
        body = json.dumps(batch).encode()
        answer = httpx.post(f"{url}/sendgrid/events", content=body,
                            headers=_signed(private, body), timeout=5)
        assert (answer.status_code, answer.text.strip()) == (200, "ok: 8 new event(s)")
    # ... and they answered while every slow client was still connected and waiting.
    assert sum(_still_open(s) for s in slow_clients) == SLOW_CLIENTS
    store = Store.open(load_config(project).db_path)
    assert len(store.events()) == 24
    store.close()


def test_a_request_must_arrive_whole_within_the_deadline(project: Path, keys) -> None:  # noqa: F811
    server = serve(project, keys[1], deadline=1.0)
    try:
        # Headers trickled a line at a time never complete: cut off after the deadline,
        # long before the 100 lines this client would send.
        trickler = _connect(server.url)
        trickler.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        sent = 0
        while sent < 100 and not select.select([trickler], [], [], 0.2)[0]:
            trickler.sendall(f"X-Slow-{sent}: 1\r\n".encode())
            sent += 1
        assert sent < 100
        assert _answer(trickler).startswith(b"HTTP/1.1 408 ")
        # A declared body that never comes: 408 and closed, not held for ever.
        silent = _connect(server.url)
        body_headers = "".join(f"{k}: {v}\r\n" for k, v in _signed(keys[0], b"[]").items())
        silent.sendall(f"POST /sendgrid/events HTTP/1.1\r\nHost: x\r\n{body_headers}"
                       f"Content-Length: {MAX_BODY}\r\n\r\n".encode())
        assert _answer(silent).startswith(b"HTTP/1.1 408 ")
        # Half a body is no better.
        half = _connect(server.url)
        half.sendall(b"POST /unsubscribe?t=a.b HTTP/1.1\r\nHost: x\r\nContent-Length: 100"
                     b"\r\n\r\nList-Unsubscribe")
        assert _answer(half).startswith(b"HTTP/1.1 408 ")
        # A kept-alive connection's next request has a deadline of its own.
        alive = _connect(server.url)
        alive.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b"ok\n"):
            first += alive.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        alive.sendall(b"GET /health HTTP/1.1\r\n")
        assert _answer(alive).startswith(b"HTTP/1.1 408 ")
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
    finally:
        server.stop()


def test_a_body_over_the_cap_is_refused_unread(hook_server) -> None:
    url, private = hook_server
    sock = _connect(url)
    headers = "".join(f"{k}: {v}\r\n" for k, v in _signed(private, b"[]").items())
    sock.sendall(f"POST /sendgrid/events HTTP/1.1\r\nHost: x\r\n{headers}"
                 f"Content-Length: {MAX_BODY + 1}\r\n\r\n".encode())
    answer = _answer(sock, wait=5)  # answered and closed at once, no byte of body sent
    assert answer.startswith(b"HTTP/1.1 413 ") and b"connection: close" in answer.lower()


def test_a_chunked_body_over_the_cap_is_refused(hook_server) -> None:
    # No Content-Length: the size shows only as the chunks come. An unsubscribe takes a
    # few bytes (FORM_BODY); 5000 is refused once read, and the connection closed.
    url, _ = hook_server
    sock = _connect(url)
    chunk = b"x" * (FORM_BODY + 904)
    sock.sendall(b"POST /unsubscribe?t=a.b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                 b"\r\n\r\n" + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    answer = _answer(sock, wait=5)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"connection: close" in answer.lower()


def test_a_validly_signed_body_nested_200000_deep_is_refused(hook_server) -> None:
    url, private = hook_server
    body = b"[" * 200_000 + b"]" * 200_000
    answer = httpx.post(f"{url}/sendgrid/events", content=body,
                        headers=_signed(private, body), timeout=10)
    assert answer.status_code == 400
    assert answer.text.strip() == "bad payload: JSON nested deeper than 32 levels"
    assert httpx.get(f"{url}/health", timeout=5).status_code == 200


def test_depth_is_counted_outside_strings() -> None:
    # Brackets inside strings (and escaped quotes) are text, not nesting.
    deep_text = json.dumps([{"email": "a@example.com", "event": "open",
                             "reason": "[" * 1000 + '\\"{' * 100,
                             "custom": {"a": {"b": [1, [2, [3]]]}}}]).encode()
    check_depth(deep_text)
    assert len(parse_events(deep_text)[0]) == 1
    with pytest.raises(ValueError, match="nested deeper than 32"):
        check_depth(b'{"a":' * 33 + b"1" + b"}" * 33)
    check_depth(b'{"a":' * 32 + b"1" + b"}" * 32)
