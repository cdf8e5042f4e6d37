"""The demo gateway: the real channels deliver to it over SMTP and signed webhooks, and it records
each message as the customer would have got it, once."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from equilibrate.alert.demo_gateway import DemoGateway
from equilibrate.alert.demo_inbox import Inbox, InboxEntry, entry_from_webhook, inbox_path, read_recent
from equilibrate.alert.email_channel import EmailChannel, SmtpTarget
from equilibrate.alert.webhook_channel import WebhookChannel, payload
from equilibrate.errors import InvalidEventError
from equilibrate.ops.net import free_port, wait_for_port
from equilibrate.ops.supervisor import Supervisor, demo_gateway
from equilibrate.settings import Settings
from tests.alert.test_channels import OPT_OUT, SIGNING_KEY, outbound
from tests.conftest import run_cli, settings_env


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[DemoGateway, Path]]:
    path = tmp_path / "demo-gateway" / "inbox.jsonl"
    gateway = DemoGateway(Inbox(path), SIGNING_KEY, "127.0.0.1", free_port(), free_port())
    gateway.start()
    try:
        yield gateway, path
    finally:
        gateway.stop()


def _get(port: int, path: str) -> object:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:  # loopback
        return json.loads(answer.read())


def test_an_email_arrives_as_the_customer_would_read_it(running: tuple[DemoGateway, Path]) -> None:
    gateway, path = running
    channel = EmailChannel(
        SmtpTarget.from_url(f"smtp://127.0.0.1:{gateway.smtp_port}"), "Bank <help@bank.example>", OPT_OUT
    )
    message = outbound("income_shock_email")
    result = channel.send(message)

    assert result.status == "sent", result.detail
    [entry] = read_recent(path)
    assert (entry.channel, entry.to, entry.case_id) == ("email", message.to, message.case_id)
    assert entry.message_id == message.message_id
    assert entry.subject == message.subject
    assert entry.body.startswith(message.body.rstrip()) and entry.body.endswith(OPT_OUT)
    assert entry.gateway_id == "demo-000001" and entry.received_at
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    assert channel.send(message).status == "sent"  # the same message again (a resend after a crash)
    assert len(read_recent(path)) == 1


def test_sms_and_app_are_signature_checked_delivered_and_recorded_once(running: tuple[DemoGateway, Path]) -> None:
    gateway, path = running
    url = f"http://127.0.0.1:{gateway.http_port}"
    sms = WebhookChannel("sms", f"{url}/sms", SIGNING_KEY, attempts=1)
    app = WebhookChannel("app", f"{url}/app", SIGNING_KEY, attempts=1)
    text, push = outbound("payment_options_sms", to="+447700900123"), outbound("income_shock_app", to="app-77")

    first = sms.send(text)
    assert (first.status, first.reference) == ("delivered", "demo-000001")
    again = sms.send(text)  # a retry after a timeout: the gateway answers with the first delivery
    assert (again.status, again.reference) == ("delivered", "demo-000001")
    assert app.send(push).reference == "demo-000002"

    forged = WebhookChannel("sms", f"{url}/sms", "not-the-secret", attempts=1).send(outbound("payment_options_sms"))
    assert forged.status == "failed" and forged.permanent and "401" in forged.detail

    entries = read_recent(path)
    assert [(e.channel, e.to, e.signature) for e in entries] == [
        ("sms", "+447700900123", "valid"),
        ("app", "app-77", "valid"),
    ]
    assert entries[0].body == text.body and entries[1].customer_id == push.customer_id
    listed = _get(gateway.http_port, "/messages")
    assert isinstance(listed, list) and [m["gateway_id"] for m in listed] == ["demo-000001", "demo-000002"]
    assert _get(gateway.http_port, "/health") == {"status": "ok", "messages": 2}


def test_the_inbox_remembers_across_restarts_and_skips_a_torn_line(tmp_path: Path) -> None:
    path = inbox_path(tmp_path)
    entry = InboxEntry("sms", "m-1", "+447700900123", "", "Hello", "K1", "C1", "valid")
    assert Inbox(path).add(entry, "2026-11-23T06:00:00+00:00") == ("demo-000001", False)
    with path.open("a") as handle:
        handle.write('{"channel": "sms", "message_id": "m-2", "to"')  # a crash mid-write
    reopened = Inbox(path)
    assert reopened.add(entry, "later") == ("demo-000001", True)
    assert [e.message_id for e in read_recent(path)] == ["m-1"]


def test_webhook_bodies_are_checked() -> None:
    body = payload(outbound("payment_options_sms", to="+447700900123"))
    assert entry_from_webhook("sms", body, {}, None).signature == "unchecked"  # no secret: nothing to check
    with pytest.raises(InvalidEventError) as bad:
        entry_from_webhook("sms", body, {}, SIGNING_KEY)
    assert bad.value.reason == "bad_signature"
    for raw, reason in ((b"\xff", "not_json"), (b"[1]", "not_json"), (b'{"to": "x"}', "missing_fields")):
        with pytest.raises(InvalidEventError) as refused:
            entry_from_webhook("sms", raw, {}, None)
        assert refused.value.reason == reason


def test_up_starts_the_gateway_only_for_a_demo_without_channels(settings: Settings) -> None:
    found = demo_gateway(settings, simulator=True)
    assert found is not None
    spec, env = found
    assert spec.kind == "service" and spec.argv[0] == "demo-gateway"
    smtp_port, http_port = (port for _, port in spec.ports)
    assert env["SMTP_URL"] == f"smtp://127.0.0.1:{smtp_port}"
    assert env["SMS_WEBHOOK_URL"] == f"http://127.0.0.1:{http_port}/sms"
    assert env["APP_WEBHOOK_URL"] == f"http://127.0.0.1:{http_port}/app" and env["WEBHOOK_SECRET"]

    assert demo_gateway(settings, simulator=False) is None
    assert demo_gateway(settings.model_copy(update={"demo_gateway": "never"}), simulator=True) is None
    assert demo_gateway(settings.model_copy(update={"api_mode": "production"}), simulator=True) is None
    relay = settings.model_copy(update={"smtp_url": "smtp://mail.bank.example:25"})
    assert demo_gateway(relay, simulator=True) is None


def test_a_busy_default_port_is_replaced_by_a_free_one(settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        found = demo_gateway(settings.model_copy(update={"demo_gateway_smtp_port": busy}), simulator=True)
        assert found is not None
        assert found[0].ports[0][1] != busy


def test_the_command_runs_until_sigterm_and_a_taken_port_is_one_line(settings: Settings, tmp_path: Path) -> None:
    env = {**os.environ, **settings_env(settings)}
    smtp_port, http_port = free_port(), free_port()
    argv = [
        sys.executable,
        "-m",
        "equilibrate",
        "demo-gateway",
        "--smtp-port",
        str(smtp_port),
        "--http-port",
        str(http_port),
    ]
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert wait_for_port("127.0.0.1", http_port, timeout=20) and wait_for_port("127.0.0.1", smtp_port, timeout=20)
        taken = run_cli(
            "demo-gateway", "--smtp-port", str(free_port()), "--http-port", str(http_port), env=env, cwd=tmp_path
        )
        assert taken.returncode == 2
        assert taken.stderr.strip().count("\n") == 0 and f"127.0.0.1:{http_port}" in taken.stderr
        assert "Traceback" not in taken.stderr + taken.stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert "nothing leaves this machine" in output


def test_up_wires_the_gateway_and_the_channels_to_the_same_secret(settings: Settings, tmp_path: Path) -> None:
    """The supervisor starts the gateway as a service with the env it gives every component: a
    channel built from that env is accepted, one with another secret is refused."""
    found = demo_gateway(settings, simulator=True)
    assert found is not None
    spec, env = found
    child_env = {**settings_env(settings), **env}  # the test's data directory, not the default
    sup = Supervisor(settings, [spec], state_file=tmp_path / "supervisor.json", env=child_env)
    try:
        sup.start_services()  # returns once both ports accept connections
        message = outbound("payment_options_sms", to="+447700900123")
        channel = WebhookChannel("sms", env["SMS_WEBHOOK_URL"], env["WEBHOOK_SECRET"], attempts=1)
        assert channel.send(message).status == "delivered"
        forged = WebhookChannel("sms", env["SMS_WEBHOOK_URL"], "guessed", attempts=1).send(message)
        assert forged.status == "failed" and "401" in forged.detail
        email = EmailChannel(SmtpTarget.from_url(env["SMTP_URL"]), "Bank <help@bank.example>", OPT_OUT)
        assert email.send(outbound("check_in_email")).status == "sent"
    finally:
        sup.shutdown()
    assert [e.channel for e in read_recent(inbox_path(settings.data_dir))] == ["sms", "email"]
