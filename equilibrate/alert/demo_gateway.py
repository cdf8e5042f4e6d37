"""`equilibrate demo-gateway`: a local stand-in for the bank's mail relay and SMS / app gateways.

For demos and trials only. `equilibrate up` starts it when it runs the simulator and none of
SMTP_URL, SMS_WEBHOOK_URL and APP_WEBHOOK_URL is set, and points the channels at it, so that an
approved intervention really travels: the interventions engine sends the email over SMTP and the
SMS or push as a signed webhook, exactly as it would to a real gateway, and this process accepts it:

    SMTP  127.0.0.1:DEMO_GATEWAY_SMTP_PORT   any recipient; the DATA is parsed back into its parts
    HTTP  127.0.0.1:DEMO_GATEWAY_HTTP_PORT   POST /sms and /app (signature checked with WEBHOOK_SECRET),
                                             GET /messages (the newest 50 as JSON), GET /health

Nothing leaves the machine. Each accepted message is one line in the log (the terminal `up` runs
in) and one JSON line in DATA_DIR/demo-gateway/inbox.jsonl, which the console shows beside the
case. A message id seen before is answered with the first delivery's id and not recorded twice, as
a real gateway de-duplicates. A request that fails its signature gets 401 and is not recorded.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from equilibrate.alert.demo_inbox import (
    Inbox,
    InboxEntry,
    entry_from_email,
    entry_from_webhook,
    inbox_path,
    read_recent,
)
from equilibrate.errors import InvalidEventError, MissingDependencyError, PortInUseError
from equilibrate.ops.stopping import StopFlag
from equilibrate.settings import Settings

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
WEBHOOK_PATHS = {"/sms": "sms", "/app": "app"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _announce(entry: InboxEntry, gateway_id: str) -> None:
    text = entry.subject or " ".join(entry.body.split())
    if len(text) > 70:
        text = text[:69] + "…"
    case = f" (case {entry.case_id})" if entry.case_id else ""
    log.info("%s to %s%s: %r [%s]", entry.channel, entry.to, case, text, gateway_id)


class _MailHandler:
    """aiosmtpd handler: every recipient accepted, each message parsed and recorded."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:  # noqa: N802  # aiosmtpd's hook name
        try:
            entry = entry_from_email(bytes(envelope.content))
        except InvalidEventError as exc:
            log.warning("email refused: %s", exc)
            return f"550 {exc}"
        gateway_id, repeat = self.inbox.add(entry, _now())
        if repeat:
            log.info("email %s again: already delivered as %s, not recorded twice", entry.message_id, gateway_id)
        else:
            _announce(entry, gateway_id)
        return f"250 OK queued as {gateway_id}"


def _http_handler(inbox: Inbox, secret: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "equilibrate-demo-gateway"

        def log_message(self, format: str, *args: Any) -> None:  # http.server's signature
            log.debug("%s %s", self.address_string(), format % args)

        def _answer(self, status: HTTPStatus, payload: object) -> None:
            body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # http.server's hook name
            if self.path == "/health":
                self._answer(HTTPStatus.OK, {"status": "ok", "messages": len(inbox)})
            elif self.path == "/messages":
                self._answer(HTTPStatus.OK, [json.loads(e.as_json()) for e in read_recent(inbox.path, 50)])
            else:
                self._answer(HTTPStatus.NOT_FOUND, {"error": f"no {self.path}: POST /sms or /app, GET /messages"})

        def do_POST(self) -> None:  # http.server's hook name
            channel = WEBHOOK_PATHS.get(self.path)
            if channel is None:
                self._answer(HTTPStatus.NOT_FOUND, {"error": f"no {self.path}: POST /sms or /app"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body over {MAX_BODY} bytes"})
                return
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                entry = entry_from_webhook(channel, body, headers, secret)
            except InvalidEventError as exc:
                log.warning("%s refused from %s: %s", channel, self.address_string(), exc)
                status = HTTPStatus.UNAUTHORIZED if exc.reason == "bad_signature" else HTTPStatus.BAD_REQUEST
                self._answer(status, {"error": str(exc)})
                return
            gateway_id, repeat = inbox.add(entry, _now())
            if repeat:
                log.info("%s %s again: already delivered as %s", channel, entry.message_id, gateway_id)
            else:
                _announce(entry, gateway_id)
            self._answer(HTTPStatus.OK, {"id": gateway_id, "status": "delivered", "duplicate": repeat})

    return Handler


class DemoGateway:
    """The SMTP server (aiosmtpd, its own thread) and the webhook server (a thread per request)."""

    def __init__(self, inbox: Inbox, secret: str | None, host: str, smtp_port: int, http_port: int) -> None:
        self.inbox, self.secret = inbox, secret
        self.host, self.smtp_port, self.http_port = host, smtp_port, http_port
        self._http: ThreadingHTTPServer | None = None
        self._smtp: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            from aiosmtpd.controller import Controller
        except ImportError as exc:  # pragma: no cover - a runtime dependency
            raise MissingDependencyError("the demo gateway needs aiosmtpd: pip install aiosmtpd") from exc
        try:
            self._http = ThreadingHTTPServer((self.host, self.http_port), _http_handler(self.inbox, self.secret))
        except OSError as exc:
            where = f"{self.host}:{self.http_port}"
            raise PortInUseError(f"demo gateway: cannot listen on {where}: {exc.strerror}") from exc
        self._http.daemon_threads = True
        self._smtp = Controller(_MailHandler(self.inbox), hostname=self.host, port=self.smtp_port, ready_timeout=10)
        try:
            self._smtp.start()
        except (OSError, RuntimeError) as exc:
            self._http.server_close()
            raise PortInUseError(f"demo gateway: cannot listen on {self.host}:{self.smtp_port}: {exc}") from exc
        self._thread = threading.Thread(target=self._http.serve_forever, name="demo-gateway-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._smtp is not None:
            self._smtp.stop()


def run(args: argparse.Namespace, settings: Settings) -> int:
    smtp_port = args.smtp_port or settings.demo_gateway_smtp_port
    http_port = args.http_port or settings.demo_gateway_http_port
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every connection at INFO
    inbox = Inbox(inbox_path(settings.data_dir))
    gateway = DemoGateway(inbox, secret, args.host, smtp_port, http_port)
    stop = StopFlag().install()
    gateway.start()
    log.info(
        "demo gateway: email on smtp://%s:%d, sms and app on http://%s:%d/{sms,app}%s; nothing leaves this machine;"
        " %d message(s) in %s",
        args.host, smtp_port, args.host, http_port, "" if secret else " (no WEBHOOK_SECRET: signatures not checked)",
        len(inbox), inbox.path,
    )  # fmt: skip
    try:
        while not stop:
            stop.wait(0.5)
    finally:
        gateway.stop()
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo-gateway", help="a local mail relay and SMS/app gateway for demos (nothing leaves the machine)"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--smtp-port", type=int, default=None, help="default DEMO_GATEWAY_SMTP_PORT")
    p.add_argument("--http-port", type=int, default=None, help="default DEMO_GATEWAY_HTTP_PORT")
    p.set_defaults(func=run)
