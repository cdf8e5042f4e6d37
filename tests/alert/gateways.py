"""Real local gateways for the delivery tests: an aiosmtpd relay and an http.server webhook gateway."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd import smtp as smtpd
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from equilibrate.ops.net import free_port


@dataclass
class Inbox:
    """An aiosmtpd handler: keeps what it accepts; `rcpt_reply` overrides the answer to RCPT TO."""

    rcpt_reply: str | None = None
    received: list[Envelope] = field(default_factory=list)
    #: While set, RCPT TO waits (a relay stalling mid-conversation); `stalled` is set when one does.
    stall: threading.Event = field(default_factory=threading.Event)
    stalled: threading.Event = field(default_factory=threading.Event)

    async def handle_RCPT(  # noqa: N802  # aiosmtpd's hook name
        self, server: smtpd.SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        while self.stall.is_set():
            self.stalled.set()
            await asyncio.sleep(0.05)
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: smtpd.SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        self.received.append(envelope)
        return "250 Message accepted for delivery"

    def parsed(self, index: int = 0) -> EmailMessage:
        content = self.received[index].content
        assert isinstance(content, bytes)
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message


def _authenticate(
    server: smtpd.SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"relay", b"p@ss:word")
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Gateway:
    """A real HTTP server answering from a script: an int is a status, a float a delay before 200."""

    url: str
    script: list[int | float] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)


@contextmanager
def running_smtp(inbox: Inbox | None = None, port: int | None = None) -> Iterator[tuple[Inbox, int]]:
    """An aiosmtpd relay on a free (or the given) port; AUTH LOGIN/PLAIN accepted for relay / p@ss:word."""
    inbox, port = inbox or Inbox(), port or free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, authenticator=_authenticate, auth_require_tls=False)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@contextmanager
def running_gateway(path: str = "/v1/messages") -> Iterator[Gateway]:
    port = free_port()
    gw = Gateway(f"http://127.0.0.1:{port}{path}")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                gw.seen.append(Seen(self.path, dict(self.headers.items()), body))
                step = gw.script.pop(0) if gw.script else 200
            if isinstance(step, float):
                time.sleep(step)
                step = 200
            answer = json.dumps({"id": f"gw-{len(gw.seen)}", "status": "queued"}).encode()
            if step != 200:
                answer = b'{"error": "scripted"}'
            try:
                self.send_response(step)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                if step in {429, 503}:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(answer)
            except OSError:
                pass  # the client gave up (the timeout test)

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield gw
    finally:
        server.shutdown()
        server.server_close()
