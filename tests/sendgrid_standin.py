"""A SendGrid v3 stand-in: a real HTTP/1.1 server on loopback that checks each request
the way the real API does (Bearer key, the /v3/mail/send body rules from SendGrid's
OpenAPI spec, size limits), answers like it (202 + X-Message-Id, errors[].message), can
be told to fail (429 with X-RateLimit-Reset, 5xx, hangs, per-address rejections), and
records what it accepted. It also serves the suppression lists, paginated.

Run it alone with `python -m tests.sendgrid_standin PORT` (the benchmark does).
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

KEY = "SG.standin-test-key"
MAX_BYTES = 30 * 1024 * 1024  # SendGrid: the whole request under 30 MB
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_SCHEDULE_AHEAD = 72 * 3600
# Properties of the /v3/mail/send body (tsg_mail_v3.json); anything else is a typo.
TOP_KEYS = {"personalizations", "from", "reply_to", "reply_to_list", "subject", "content",
            "attachments", "template_id", "headers", "categories", "custom_args",
            "send_at", "batch_id", "asm", "ip_pool_name", "mail_settings",
            "tracking_settings"}
PERSONALIZATION_KEYS = {"from", "to", "cc", "bcc", "subject", "headers", "substitutions",
                        "dynamic_template_data", "custom_args", "send_at"}
RESERVED_HEADERS = {"x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type",
                    "content-transfer-encoding", "to", "from", "subject", "reply-to", "cc",
                    "bcc"}


class Invalid(Exception):
    """A request body SendGrid would refuse with 400."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _email_obj(value: Any, where: str) -> str:
    if not isinstance(value, dict) or not isinstance(value.get("email"), str):
        raise Invalid("The email parameter is required.", f"{where}.email")
    addr = value["email"]
    if "@" not in addr or addr.startswith("@") or addr.endswith("@") or " " in addr:
        raise Invalid("Does not contain a valid address.", f"{where}.email")
    if "name" in value and not isinstance(value["name"], str):
        raise Invalid("The name must be a string.", f"{where}.name")
    return addr


def _string_map(value: Any, where: str, limit: int | None = None) -> dict[str, str]:
    if not isinstance(value, dict):
        raise Invalid(f"{where} must be an object.", where)
    for k, v in value.items():
        if not isinstance(v, str):
            raise Invalid(f"{where} values must be strings ({k!r} is "
                          f"{type(v).__name__}).", f"{where}.{k}")
    if limit and len(json.dumps(value).encode()) > limit:
        raise Invalid(f"{where} may not exceed {limit} bytes.", where)
    return value


def _headers(value: Any, where: str) -> None:
    _string_map(value, where)
    for k in value:
        if k.lower() in RESERVED_HEADERS:
            raise Invalid(f"The header {k} is reserved and may not be set.", f"{where}.{k}")


def validate_mail(body: Any) -> list[str]:
    """Check a /v3/mail/send body; returns the recipients, or raises Invalid."""
    if not isinstance(body, dict):
        raise Invalid("The request body must be a JSON object.")
    unknown = set(body) - TOP_KEYS
    if unknown:
        raise Invalid(f"Unknown field(s): {', '.join(sorted(unknown))}.", sorted(unknown)[0])
    ps = body.get("personalizations")
    if not isinstance(ps, list) or not ps:
        raise Invalid("The personalizations field is required and must have at least one "
                      "personalization.", "personalizations")
    if len(ps) > 1000:
        raise Invalid("You may not have more than 1000 personalizations.", "personalizations")
    _email_obj(body.get("from"), "from")
    if "reply_to" in body:
        _email_obj(body["reply_to"], "reply_to")
    templated = isinstance(body.get("template_id"), str)
    recipients: list[str] = []
    for i, p in enumerate(ps):
        where = f"personalizations.{i}"
        if not isinstance(p, dict):
            raise Invalid("Each personalization must be an object.", where)
        if set(p) - PERSONALIZATION_KEYS:
            raise Invalid("Unknown personalization field.", where)
        to = p.get("to")
        if not isinstance(to, list) or not to:
            raise Invalid("The to array is required for all personalization objects, and "
                          "must have at least one email object with a valid email address.",
                          f"{where}.to")
        for j, t in enumerate(to + p.get("cc", []) + p.get("bcc", [])):
            recipients.append(_email_obj(t, f"{where}.to.{j}"))
        if "subject" in p and (not isinstance(p["subject"], str) or not p["subject"]):
            raise Invalid("The subject must be a non-empty string.", f"{where}.subject")
        if "custom_args" in p:
            _string_map(p["custom_args"], f"{where}.custom_args", MAX_CUSTOM_ARGS_BYTES)
        if "headers" in p:
            _headers(p["headers"], f"{where}.headers")
        if "send_at" in p:
            _send_at(p["send_at"], f"{where}.send_at")
    if len(recipients) > 1000:
        raise Invalid("The total number of recipients must be no more than 1000.",
                      "personalizations")
    if not templated:
        subject = body.get("subject")
        if not all(isinstance(p.get("subject"), str) for p in ps) and \
                (not isinstance(subject, str) or not subject):
            raise Invalid("The subject is required. You can get around this requirement if "
                          "you use a template with a subject defined or if every single "
                          "personalization has a subject defined.", "subject")
        content = body.get("content")
        if not isinstance(content, list) or not content:
            raise Invalid("Unless a valid template_id is provided, the content parameter is "
                          "required. There must be at least one defined content block.",
                          "content")
        types = []
        for k, c in enumerate(content):
            if not isinstance(c, dict) or not isinstance(c.get("type"), str) or \
                    not c["type"] or not isinstance(c.get("value"), str) or not c["value"]:
                raise Invalid("The content type and value are required and must be "
                              "non-empty strings.", f"content.{k}")
            types.append(c["type"])
        if "text/plain" in types and types.index("text/plain") != 0:
            raise Invalid("If present, text/plain content must be first, followed by "
                          "text/html, followed by any other content.", "content")
        if "text/html" in types and types.index("text/html") != (1 if "text/plain" in
                                                               types else 0):
            raise Invalid("If present, text/plain content must be first, followed by "
                          "text/html, followed by any other content.", "content")
    if "headers" in body:
        _headers(body["headers"], "headers")
    if "categories" in body:
        cats = body["categories"]
        if not isinstance(cats, list) or len(cats) > 10:
            raise Invalid("You may not have more than 10 categories per request.",
                          "categories")
        if len(set(map(str, cats))) != len(cats):
            raise Invalid("Categories must be unique.", "categories")
        for c in cats:
            if not isinstance(c, str) or len(c) > 255:
                raise Invalid("A category cannot exceed 255 characters.", "categories")
    if "custom_args" in body:
        _string_map(body["custom_args"], "custom_args", MAX_CUSTOM_ARGS_BYTES)
    if "send_at" in body:
        _send_at(body["send_at"], "send_at")
    if "asm" in body:
        asm = body["asm"]
        if not isinstance(asm, dict) or not isinstance(asm.get("group_id"), int) or \
                isinstance(asm.get("group_id"), bool):
            raise Invalid("The asm group_id is required and must be an integer.",
                          "asm.group_id")
        if len(asm.get("groups_to_display", [])) > 25:
            raise Invalid("groups_to_display may hold at most 25 groups.", "asm")
    settings = body.get("mail_settings", {})
    if not isinstance(settings, dict):
        raise Invalid("mail_settings must be an object.", "mail_settings")
    for name, value in settings.items():
        if not isinstance(value, dict) or not isinstance(value.get("enable", False), bool):
            raise Invalid(f"mail_settings.{name}.enable must be a boolean.",
                          f"mail_settings.{name}")
    return recipients


def _send_at(value: Any, where: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise Invalid("send_at must be a unix timestamp (an integer).", where)
    if value > time.time() + MAX_SCHEDULE_AHEAD:
        raise Invalid("The send_at parameter cannot be more than 72 hours in the future.",
                      where)


@dataclass
class Fault:
    """A scripted failure for the next matching request."""

    status: int = 500  # 0: hang for `hang` seconds, then hang up (a timeout)
    headers: dict[str, str] = field(default_factory=dict)
    hang: float = 0.0
    accept: bool = False  # with status 0: record the message as delivered first


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a killed sender, a timeout) is normal here."""


class StandIn:
    """The server and what it saw. Start with `start()`, stop with `stop()`."""

    def __init__(self, key: str = KEY, keep: bool = True) -> None:
        self.key = key
        self.keep = keep  # keep every accepted payload (off for the benchmark)
        self.lock = threading.Lock()
        self.accepted: list[dict[str, Any]] = []
        self.delivered: Counter[str] = Counter()  # address -> messages accepted
        self.requests = 0
        self.rejected: list[tuple[int, str]] = []  # (status, message) answered
        self.faults: list[Fault] = []
        self.refuse: dict[str, tuple[int, str]] = {}  # address -> (status, message)
        self.delay = 0.0  # seconds before each mail send answer
        self.suppressions: dict[str, list[dict[str, Any]]] = {
            "unsubscribes": [], "bounces": [], "spam_reports": []}
        self.groups: dict[int, list[str]] = {}
        self.pages: list[str] = []  # suppression requests seen, for pagination tests
        self.server = _Server(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    @property
    def url(self) -> str:
        """The base URL, for SENDGRID_API_HOST."""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StandIn:
        """Serve in a background thread."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()

    def fail(self, *faults: Fault) -> None:
        """Answer the next requests with these faults, in order."""
        with self.lock:
            self.faults.extend(faults)

    def _next_fault(self) -> Fault | None:
        with self.lock:
            return self.faults.pop(0) if self.faults else None

    def record(self, body: dict[str, Any], recipients: list[str]) -> str:
        """Remember an accepted message; returns its X-Message-Id."""
        with self.lock:
            for r in recipients:
                self.delivered[r.lower()] += 1
            if self.keep:
                self.accepted.append(body)
        return uuid.uuid4().hex[:22]


def _handler(standin: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        """Answers like api.sendgrid.com for the endpoints Sphere uses."""

        protocol_version = "HTTP/1.1"  # keep-alive, like the real API

        def log_message(self, fmt: str, *args: Any) -> None:
            """Quiet: tests read the records, not a log."""

        def _reply(self, status: int, doc: Any = None, headers: dict[str, str] | None = None
                   ) -> None:
            data = b"" if doc is None else json.dumps(doc).encode()
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            if status >= 400:
                with standin.lock:
                    standin.rejected.append((status, json.dumps(doc)))

        def _error(self, status: int, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> None:
            self._reply(status, {"errors": [{"message": message, "field": field,
                                             "help": None}]}, headers)

        def _authorised(self) -> bool:
            auth = self.headers.get("Authorization", "")
            if auth != f"Bearer {standin.key}":
                self._error(401, "The provided authorization grant is invalid, expired, "
                            "or revoked", None)
                return False
            return True

        def do_POST(self) -> None:
            """POST /v3/mail/send: validate, maybe fail as told, record, answer 202."""
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BYTES:
                self.close_connection = True
                self._error(413, "content too large")
                return
            raw = self.rfile.read(length)
            with standin.lock:
                standin.requests += 1
            if urlsplit(self.path).path != "/v3/mail/send":
                self._error(404, "resource not found")
                return
            if not self._authorised():
                return
            fault = standin._next_fault()
            if fault and fault.status:
                self._error(fault.status, "injected failure" if fault.status != 429 else
                            "too many requests", None, fault.headers)
                return
            if not self.headers.get("Content-Type", "").startswith("application/json"):
                self._error(415, "Content-Type should be application/json.")
                return
            try:
                body = json.loads(raw)
                recipients = validate_mail(body)
            except ValueError:
                self._error(400, "Bad Request", None)
                return
            except Invalid as exc:
                self._error(400, str(exc), exc.field)
                return
            for r in recipients:
                if r.lower() in standin.refuse:
                    status, message = standin.refuse[r.lower()]
                    self._error(status, message, "personalizations.0.to.0.email")
                    return
            sandbox = body.get("mail_settings", {}).get("sandbox_mode", {}).get("enable")
            if fault:  # a hang: the client's read times out
                if fault.accept:  # ... after SendGrid took the message
                    standin.record(body, recipients)
                time.sleep(fault.hang)
                self.close_connection = True
                return
            if sandbox:
                self._reply(200)  # validated, delivered nowhere
                return
            message_id = standin.record(body, recipients)
            if standin.delay:
                time.sleep(standin.delay)
            self._reply(202, None, {"X-Message-Id": message_id})

        def do_GET(self) -> None:
            """The suppression lists, paginated with limit/offset, and group lists."""
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            if not self._authorised():
                return
            with standin.lock:
                standin.pages.append(self.path)
            segments = parts.path.strip("/").split("/")
            if segments[:2] == ["v3", "suppression"] and len(segments) == 3 and \
                    segments[2] in standin.suppressions:
                try:
                    limit = int(query.get("limit", 500))
                    offset = int(query.get("offset", 0))
                except ValueError:
                    self._error(400, "limit and offset must be integers")
                    return
                if not 1 <= limit <= 500 or offset < 0:
                    self._error(400, "limit must be 1..500 and offset >= 0")
                    return
                rows = standin.suppressions[segments[2]]
                self._reply(200, rows[offset:offset + limit])
                return
            if segments[:3] == ["v3", "asm", "groups"] and len(segments) == 5 and \
                    segments[4] == "suppressions" and segments[3].isdigit():
                group = int(segments[3])
                if group not in standin.groups:
                    self._error(404, "Unsubscribe group not found")
                    return
                self._reply(200, standin.groups[group])
                return
            self._error(404, "resource not found")

    return Handler


if __name__ == "__main__":  # a stand-alone stand-in for the benchmark
    import sys

    server = StandIn(keep=False)
    server.server.server_close()
    server.server = _Server(("127.0.0.1", int(sys.argv[1])), _handler(server))
    print("ready", flush=True)
    try:
        server.server.serve_forever()
    except KeyboardInterrupt:  # how the benchmark stops it
        pass
    finally:
        print(f"delivered {sum(server.delivered.values())}", flush=True)
