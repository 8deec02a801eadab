"""Serving the ASGI app: uvicorn on asyncio, with a whole-request deadline.

uvicorn serves every connection concurrently, so a slow client only ever holds its own
connection. Its timeouts do not bound a request, though: a client sending one header line
every few seconds, or declaring a body and never sending it, would keep a connection (and
a file descriptor) for ever. `_DeadlineProtocol` gives each request a deadline from the
moment the connection is ready for it until its last body byte has arrived."""
from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

# Seconds for a whole request: request line, headers and body. SendGrid posts a batch
# in well under a second; a browser submitting a form, likewise. Ten seconds leaves room
# for a slow mobile link without letting anyone park a connection.
REQUEST_DEADLINE = 10.0
# On shutdown, requests still running get this long to finish.
SHUTDOWN_GRACE = 5
_RECEIVED = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)
_TIMEOUT_ANSWER = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8"
                   b"\r\nContent-Length: 30\r\nConnection: close\r\n\r\n"
                   b"request not received in time\r\n")


class _DeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, plus: a request not fully received `deadline` seconds after
    the connection became ready for it is answered 408 and its connection closed."""

    deadline: float = REQUEST_DEADLINE  # set per server by a subclass (see Server)
    _timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the first request's clock as soon as the client connects."""
        super().connection_made(transport)
        self._arm()

    def handle_events(self) -> None:
        """Stop the clock once the whole request (headers and body) is in."""
        super().handle_events()
        if self.conn.their_state in _RECEIVED:
            self._disarm()

    def on_response_complete(self) -> None:
        """A kept-alive connection's next request gets a fresh deadline; a connection
        answered before its body arrived (a refusal) is closed, the rest never read."""
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self.transport.close()
        if not self.transport.is_closing():
            self._arm()  # before super(): it may parse a pipelined request at once
        super().on_response_complete()

    def shutdown(self) -> None:
        """On shutdown, a body still arriving is not waited for (a slow client would
        hold the shutdown up); a request fully received is answered first."""
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self.transport.close()
        else:
            super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        """No clock for a connection that is gone."""
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._timer = self.loop.call_later(self.deadline, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        answering = cycle is not None and cycle.response_started and \
            not cycle.response_complete
        if not answering:
            # Written raw: h11 cannot answer a request whose headers never completed.
            # The handler still waiting for the body sees a disconnect and stops.
            self.transport.write(_TIMEOUT_ANSWER)
        self.transport.close()


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port); OSError if taken."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family, backlog=2048)


class Server:
    """uvicorn serving `app` on an already bound socket."""

    def __init__(self, app: Any, sock: socket.socket,
                 deadline: float = REQUEST_DEADLINE) -> None:
        self.sock = sock
        protocol = type("DeadlineProtocol", (_DeadlineProtocol,), {"deadline": deadline})
        config = uvicorn.Config(
            app, loop="asyncio", http=protocol, lifespan="on",
            # No access log: query strings carry unsubscribe tokens. No logging setup
            # either: the CLI owns the terminal; uvicorn's warnings still reach stderr.
            log_config=None, access_log=False, server_header=False,
            proxy_headers=False, timeout_graceful_shutdown=SHUTDOWN_GRACE)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """http://host:port actually listened on."""
        host, port = self.sock.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def run(self) -> None:
        """Serve until stop() (or, in the main thread, Ctrl-C / SIGTERM)."""
        self._server.run(sockets=[self.sock])

    def start(self) -> Server:
        """Serve from a background thread; returns once it accepts connections."""
        self._thread = threading.Thread(target=self.run, name="sphere-web", daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the web server stopped while starting")
            self._thread.join(0.01)
        return self

    def stop(self) -> None:
        """Stop serving (a background server: wait for its thread) and close the socket."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.sock.close()
