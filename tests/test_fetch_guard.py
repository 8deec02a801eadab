"""Where feeds may reach (issue 13, points 2 and 3): public addresses only, checked on the
address connected to, for every redirect hop, unless a source says `allow_private`; and
local feed files only inside the project. Real servers on loopback; a test that needs a
"public" feed server runs it on 127.0.0.2 and has the guard treat that one address as
public (nothing else about fetching is replaced)."""
from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpcore
import pytest
import yaml

from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.feeds import fetch
from pipeline.feeds.fetch import address_problem
from pipeline.feeds.ingest import ingest
from pipeline.models import Source
from pipeline.state.store import Store
from tests.conftest import NOW
from tests.test_ingest_http import FAST, FeedServer, _reply, feed_server_on, rss, static
from tests.test_ingest_http import server as feed_server  # noqa: F401 (a fixture)

PUBLIC_STAND_IN = ipaddress.ip_address("127.0.0.2")


@pytest.fixture
def public_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FeedServer]:
    """A feed server on 127.0.0.2, which the guard treats as a public host."""
    real = fetch.address_problem

    def problem(ip, allow_private=False):  # type: ignore[no-untyped-def]
        return "" if ip == PUBLIC_STAND_IN else real(ip, allow_private)
    monkeypatch.setattr(fetch, "address_problem", problem)
    with feed_server_on("127.0.0.2") as state:
        yield state


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every address httpcore's socket layer is asked to connect to."""
    seen: list[str] = []
    original = httpcore.AnyIOBackend.connect_tcp

    async def spy(self, host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(host)
        return await original(self, host, port, *args, **kwargs)
    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", spy)
    return seen


def _project_feeds(project: Path, *sources: dict) -> None:
    """content_sources.yaml with only `sources` as market/economy feeds."""
    config = yaml.safe_load((project / "content_sources.yaml").read_text())
    config["sources"] = [s for s in config["sources"] if s["kind"] not in ("market", "economy")]
    config["sources"] += list(sources)
    (project / "content_sources.yaml").write_text(yaml.safe_dump(config))


def test_a_redirect_to_an_internal_page_is_refused_not_stored_not_mailed(
        public_server: FeedServer, feed_server: FeedServer, connects: list[str],  # noqa: F811
        project: Path, cli) -> None:
    feed_server.routes["/internal-admin"] = static(rss([("Internal admin secrets",
                                                         "http://intra.test/1")]))
    public_server.routes["/feed.xml"] = lambda h: _reply(
        h, 302, b"", {"Location": feed_server.url("/internal-admin")})
    _project_feeds(project, {"name": "sneaky", "url": public_server.url("/feed.xml"),
                             "kind": "market"})
    result = cli("send", "monthly-sphere", project=project)
    assert result.exit_code == 0, result.output
    assert "sneaky (refused: 127.0.0.1 is a loopback address; feeds may reach only public " \
           "addresses" in result.output
    assert feed_server.hits("/internal-admin") == [] and "127.0.0.1" not in connects
    assert len(public_server.hits("/feed.xml")) == 1
    store = Store.open(project / "var" / "sphere.db")
    assert not [a for a in store.articles() if a.source == "sneaky"]
    store.close()
    mailed = b"".join(p.read_bytes() for p in (project / "var/outbox").glob("*.eml"))
    assert mailed and b"Internal admin" not in mailed


@pytest.mark.parametrize("allow_private", [False, True])
def test_a_redirect_to_the_metadata_address_is_never_requested(
        public_server: FeedServer, connects: list[str], tmp_path: Path,
        allow_private: bool) -> None:
    public_server.routes["/feed.xml"] = lambda h: _reply(
        h, 301, b"", {"Location": "http://169.254.169.254/latest/meta-data/iam/"})
    sources = (Source("cloud", public_server.url("/feed.xml"), "market",
                      allow_private=allow_private),
               Source("direct", "http://[::ffff:169.254.169.254]/", "market",
                      allow_private=allow_private))
    summary = ingest(sources, Store.open(tmp_path / "sphere.db"), NOW, settings=FAST)
    errors = dict(summary.failed)
    assert errors["cloud"] == ("refused: 169.254.169.254 is a link-local address (where "
                               "cloud metadata lives), never fetched")
    assert errors["direct"].startswith("refused: ::ffff:169.254.169.254 is a link-local")
    assert connects == ["127.0.0.2"]  # the feed itself, and nothing after it


def test_localhost_needs_allow_private(feed_server: FeedServer, tmp_path: Path,  # noqa: F811
                                       connects: list[str]) -> None:
    feed_server.routes["/feed.xml"] = static(rss([("Local story", "http://l.test/1")]))
    port = feed_server.base.rsplit(":", 1)[1]
    url = f"http://localhost:{port}/feed.xml"
    store = Store.open(tmp_path / "sphere.db")
    refused = ingest((Source("home", url, "market"),), store, NOW, settings=FAST)
    (name, error), = refused.failed
    assert name == "home" and re.match(
        r"refused: localhost resolves to (127\.0\.0\.1|::1), a loopback address; feeds may "
        r"reach only public addresses \(for a feed on your own network, add "
        r"`allow_private: true` to its source in content_sources.yaml\)$", error), error
    assert feed_server.hits("/feed.xml") == [] and connects == []
    allowed = ingest((Source("home", url, "market", allow_private=True),), store, NOW,
                     settings=FAST)
    assert allowed.failed == () and allowed.new == 1


def test_a_name_is_connected_to_at_the_address_checked(
        public_server: FeedServer, feed_server: FeedServer, connects: list[str],  # noqa: F811
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # DNS rebinding: the first answer is public, every later one internal. The guard
    # resolves once and connects to the address it checked, never to the name again.
    port = int(public_server.base.rsplit(":", 1)[1])
    feed_server.routes["/feed.xml"] = static(rss([("Internal", "http://i.test/1")]))
    public_server.routes["/feed.xml"] = static(rss([("Public", "http://p.test/1")]))
    answers = iter(["127.0.0.2"])
    real = anyio.getaddrinfo

    async def rebinding(host, port_, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host != "feeds.rebind.test":
            return await real(host, port_, *args, **kwargs)
        address = next(answers, "127.0.0.1")
        return [(2, 1, 6, "", (address, port_))]
    monkeypatch.setattr(anyio, "getaddrinfo", rebinding)
    summary = ingest((Source("rebind", f"http://feeds.rebind.test:{port}/feed.xml",
                             "market"),), Store.open(tmp_path / "sphere.db"), NOW,
                     settings=FAST)
    assert summary.failed == () and summary.new == 1
    assert connects == ["127.0.0.2"] and feed_server.hits("/feed.xml") == []


@pytest.mark.parametrize("address, allowed, private_allowed", [
    ("93.184.216.34", True, True), ("2606:2800:220:1::1", True, True),
    ("127.0.0.1", False, True), ("::1", False, True), ("::ffff:127.0.0.1", False, True),
    ("10.1.2.3", False, True), ("172.16.0.1", False, True), ("192.168.1.1", False, True),
    ("fd12:3456::1", False, True), ("100.64.0.1", False, True),
    ("169.254.169.254", False, False), ("169.254.1.1", False, False),
    ("fe80::1", False, False), ("fd00:ec2::254", False, False),
    ("::ffff:169.254.169.254", False, False), ("64:ff9b::a9fe:a9fe", False, False),
    ("2002:a9fe:a9fe::", False, False),
    ("224.0.0.1", False, False), ("ff02::1", False, False), ("0.0.0.0", False, False),
    ("0.1.2.3", False, False), ("::", False, False), ("240.0.0.1", False, False),
    ("255.255.255.255", False, False),
])
def test_address_policy(address: str, allowed: bool, private_allowed: bool) -> None:
    ip = ipaddress.ip_address(address)
    assert (address_problem(ip) == "") is allowed
    assert (address_problem(ip, allow_private=True) == "") is private_allowed


def test_allow_private_must_be_true_or_false(project: Path) -> None:
    path = project / "content_sources.yaml"
    text = path.read_text().replace("    kind: economy\n",
                                    "    kind: economy\n    allow_private: yes please\n", 1)
    path.write_text(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "yes please" in ln)
    with pytest.raises(ConfigError) as info:
        load_config(project)
    assert [str(p) for p in info.value.problems] == [(
        f"content_sources.yaml:{line}: sources[5].allow_private: must be true or false, got "
        "'yes please' (`allow_private: true` for a feed on your own network, or leave it "
        "out)")]


# ---- local feed files stay in the project (point 3) ----------------------------------
@pytest.mark.parametrize("url", ["/etc/passwd", "../../../etc/passwd", "/proc/self/environ",
                                 "samples/../../outside.xml", "link-out.xml"])
def test_check_refuses_a_local_feed_outside_the_project(project: Path, cli,
                                                         url: str) -> None:
    (project.parent / "outside.xml").write_text("<rss/>")
    os.symlink("/etc/hostname" if Path("/etc/hostname").exists() else "/etc/passwd",
               project / "link-out.xml")
    path = project / "content_sources.yaml"
    text = path.read_text().replace("url: samples/feeds/fairway-weekly.xml", f"url: {url}")
    path.write_text(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if f"url: {url}" in ln)
    result = cli("check", project=project)
    assert result.exit_code != 0
    assert f"content_sources.yaml:{line}: sources[" in result.stderr
    assert f"].url: {url!r} is outside the project folder (a local feed must be a file " \
           "inside the project; give an http(s) URL for anything else)" in result.stderr


def test_a_link_inside_the_project_is_fine(project: Path, cli) -> None:
    (project / "feeds-link.xml").symlink_to(project / "samples/feeds/fairway-weekly.xml")
    path = project / "content_sources.yaml"
    path.write_text(path.read_text().replace("url: samples/feeds/fairway-weekly.xml",
                                             "url: feeds-link.xml"))
    assert cli("check", project=project).exit_code == 0


def test_ingest_refuses_a_local_feed_that_left_the_project_after_check(
        project: Path, tmp_path: Path) -> None:
    feed = project / "samples/feeds/fairway-weekly.xml"
    sources = load_config(project).sources  # checked: a file inside the project
    secret = tmp_path / "secret.xml"
    secret.write_bytes(feed.read_bytes().replace(b"<title>", b"<title>SECRET ", 2))
    feed.unlink()
    feed.symlink_to(secret)  # ... and now it is a link pointing out
    store = Store.open(tmp_path / "sphere.db")
    summary = ingest(sources, store, NOW)
    (name, error), = summary.failed
    assert name == "fairway-weekly" and error.startswith(
        f"{feed} is outside the project folder {project.resolve()}; a local feed must be a "
        "file inside it")
    assert not any("SECRET" in a.title for a in store.articles())
    # A source made in code, with no project, is not read at all.
    loose = ingest((Source("loose", str(feed), "market"),), store, NOW)
    assert "belongs to no project" in loose.failed[0][1]


def _cert_for_name_only(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the name `localhost` and no IP address."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_is_verified_against_the_host_name_not_the_address(
        feed_server: FeedServer, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The guard connects to the checked address, but TLS must still check the
    # certificate against the name in the URL (this one names no address at all).
    import ssl

    import httpx
    cert, key = _cert_for_name_only(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    feed_server.routes["/feed.xml"] = static(rss([("Secure story", "http://s.test/1")]))
    monkeypatch.setattr(httpx, "create_ssl_context",
                        lambda **_: ssl.create_default_context(cafile=str(cert)))
    # The listening socket becomes a TLS one (same descriptor, so the running server
    # keeps accepting on it).
    assert feed_server.httpd is not None
    feed_server.httpd.socket = server_context.wrap_socket(feed_server.httpd.socket,
                                                          server_side=True)
    port = feed_server.base.rsplit(":", 1)[1]
    store = Store.open(tmp_path / "sphere.db")
    good = ingest((Source("tls", f"https://localhost:{port}/feed.xml", "market",
                          allow_private=True),), store, NOW, settings=FAST)
    assert good.failed == () and good.new == 1
    wrong = ingest((Source("tls-ip", f"https://127.0.0.1:{port}/feed.xml", "market",
                           allow_private=True),), store, NOW, settings=FAST)
    assert "certificate verify failed: IP address mismatch" in wrong.failed[0][1]
