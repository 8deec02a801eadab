"""Helpers for the delivery tests: rendered sample emails, a fast retry policy, a
self-signed certificate, and an aiosmtpd server on loopback that records raw bytes."""
from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pipeline.config import Config, load_config
from pipeline.delivery.deliver import RetryPolicy
from pipeline.models import RenderedEmail
from pipeline.rendering.render import Renderer
from pipeline.runner import Prepared, prepare, run_ingest
from pipeline.state.store import Store
from tests.conftest import NOW

FAST = RetryPolicy(attempts=4, base=0.01, cap=0.05, max_reset_wait=3.0)


@dataclass(frozen=True)
class Sample:
    """The sample project loaded, ingested and planned, with its emails rendered."""

    config: Config
    store: Store
    prepared: Prepared
    renderer: Renderer
    emails: tuple[RenderedEmail, ...]


def sample(project: Path) -> Sample:
    """Load, ingest, plan and render the sample's monthly newsletter."""
    config = load_config(project)
    store = Store.open(config.db_path)
    run_ingest(config, store, NOW)
    prepared = prepare(config, store, config.campaign("monthly-sphere"), NOW)
    renderer = Renderer(config.project, config.sender, store.secret())
    emails = tuple(renderer.render(prepared.plan, p, NOW) for p in prepared.plan.emails)
    return Sample(config, store, prepared, renderer, emails)


def self_signed(folder: Path) -> tuple[Path, Path]:
    """(cert.pem, key.pem) for CN=localhost / 127.0.0.1, made fresh for the test."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Recorder:
    """An aiosmtpd handler that keeps each message's envelope and exact bytes, and can
    refuse recipients (permanently or once, transiently)."""

    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # address -> reply
    refuse_once: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay: float = 0.0  # seconds between taking a message and saying so (a slow relay)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        if address in self.refuse_once:
            return self.refuse_once.pop(address)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                                  envelope.original_content))
        if self.delay:
            await asyncio.sleep(self.delay)
        return "250 Message accepted for delivery"

    def by_rcpt(self) -> dict[str, int]:
        """address -> messages received."""
        out: dict[str, int] = {}
        for _, rcpts, _ in self.messages:
            for r in rcpts:
                out[r.lower()] = out.get(r.lower(), 0) + 1
        return out


def smtp_server(recorder: Recorder, tls: ssl.SSLContext | None = None,
                implicit: bool = False, auth: tuple[str, str] | None = None,
                logins: list[str] | None = None, smtputf8: bool = False) -> Controller:
    """A started aiosmtpd Controller on 127.0.0.1 (any free port); each AUTH attempt
    appends its connection's id to `logins` (smtplib tries each mechanism offered);
    `smtputf8` offers RFC 6531 (international addresses)."""
    def check(server: Any, session: Any, envelope: Any, mechanism: str,
              data: Any) -> AuthResult:
        if logins is not None and isinstance(data, LoginPassword):
            logins.append(str(id(session)))
        ok = isinstance(data, LoginPassword) and auth is not None and \
            (data.login.decode(), data.password.decode()) == auth
        return AuthResult(success=ok, handled=False)

    kwargs: dict[str, Any] = {"hostname": "127.0.0.1", "port": free_port(),
                              "enable_SMTPUTF8": smtputf8}
    if implicit:
        kwargs["ssl_context"] = tls
    elif tls is not None:
        kwargs["tls_context"] = tls
        kwargs["require_starttls"] = True
    if auth:
        kwargs["authenticator"] = check
        kwargs["auth_required"] = True
    controller = Controller(recorder, **kwargs)
    controller.start()
    return controller


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    """The server side of the self-signed certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def client_tls(cert: Path) -> ssl.SSLContext:
    """A client context that trusts only the test certificate."""
    return ssl.create_default_context(cafile=str(cert))
