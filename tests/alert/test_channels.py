"""Delivery channels against real local gateways: an aiosmtpd relay, an http.server gateway, espeak-ng."""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from equilibrate.alert.channels import (
    DeliveryError,
    DeliveryResult,
    OutboundMessage,
    backoff_delay,
    make_channels,
    retrying,
)
from equilibrate.alert.email_channel import EmailChannel, SmtpTarget
from equilibrate.alert.voice_channel import VoiceChannel, find_audio
from equilibrate.alert.webhook_channel import WebhookChannel, sign, verify_signature
from equilibrate.errors import ConfigError
from equilibrate.ops.net import free_port
from equilibrate.risk.policy import load_policy
from equilibrate.settings import Settings, load_settings
from tests.alert.gateways import Gateway, Inbox

POLICY = load_policy()
VALUES = {
    "first_name": "Priya",
    "bank_name": "Equilibrate Bank",
    "app_link": "https://eqb.example/help",
    "helpline": "0800 123 4567",
    "opening_hours": "8am to 8pm, Monday to Friday",
    "reference": "EQ-1234",
    "amount": "£120.00",
    "due_date": "3 June",
}
SIGNING_KEY = "whsec-test-0123456789"
OPT_OUT = "You can stop these emails at any time: reply STOP or change your contact preferences in the app."
_ids = itertools.count(1)


def outbound(template_id: str, language: str = "en", to: str = "priya@example.co.uk") -> OutboundMessage:
    """A message rendered from the shipped policy, as the engine would hand it over."""
    n = next(_ids)
    return OutboundMessage.from_rendered(
        POLICY.message(template_id, language, VALUES),
        message_id=f"1700000000000-{n}",
        case_id=f"case-{n}",
        customer_id="C000123",
        to=to,
    )


def never_listening() -> tuple[str, int]:
    return "127.0.0.1", free_port()


# --- the retry helper --------------------------------------------------------------------------


def test_retrying_retries_transient_errors_with_growing_backoff() -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def flaky() -> DeliveryResult:
        calls.append(1)
        if len(calls) < 3:
            raise DeliveryError("gateway restarting")
        return DeliveryResult("sent", "ref-1", "ok")

    result = retrying(flaky, attempts=5, backoff_s=1.0, sleep=sleeps.append)
    assert (result.status, result.reference, result.attempts) == ("sent", "ref-1", 3)
    assert len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 1.0
    assert 1.0 <= sleeps[1] <= 2.0
    assert all(backoff_delay(10, 1.0) <= 30.0 for _ in range(50))


def test_retrying_stops_at_a_permanent_error_and_after_the_last_attempt() -> None:
    sleeps: list[float] = []

    def rejected() -> DeliveryResult:
        raise DeliveryError("address unknown", permanent=True)

    result = retrying(rejected, attempts=5, backoff_s=1.0, sleep=sleeps.append)
    assert (result.status, result.permanent, result.attempts, result.detail) == ("failed", True, 1, "address unknown")
    assert sleeps == []

    def down() -> DeliveryResult:
        raise DeliveryError("connection refused", retry_after_s=7.0)

    result = retrying(down, attempts=3, backoff_s=0.01, sleep=sleeps.append)
    assert (result.status, result.permanent, result.attempts) == ("failed", False, 3)
    assert sleeps == [7.0, 7.0]  # the gateway's Retry-After outweighs a shorter backoff


# --- email -------------------------------------------------------------------------------------


def email_channel(port: int, userinfo: str = "", attempts: int = 3) -> EmailChannel:
    target = SmtpTarget.from_url(f"smtp://{userinfo}127.0.0.1:{port}")
    return EmailChannel(target, "Equilibrate <support@bank.example>", OPT_OUT, attempts=attempts, backoff_s=0.01)


def test_email_in_hindi_reaches_the_relay_with_opt_out_line_and_message_id(smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server
    message = outbound("income_shock_email", "hi")
    assert message.subject is not None
    assert not message.body.isascii()

    result = email_channel(port).send(message)

    assert (result.status, result.attempts, result.permanent) == ("sent", 1, False)
    assert result.reference == f"<{message.message_id}@bank.example>"
    [envelope] = inbox.received
    assert (envelope.mail_from, envelope.rcpt_tos) == ("support@bank.example", ["priya@example.co.uk"])
    received = inbox.parsed()
    assert received["Message-ID"] == result.reference
    assert received["X-Equilibrate-Message-Id"] == message.message_id
    assert received["X-Equilibrate-Case"] == message.case_id
    assert received["Subject"] == message.subject
    assert received.get_content_type() == "text/plain"
    assert received.get_content_charset() == "utf-8"
    text = received.get_content().replace("\r\n", "\n")
    assert message.body.strip() in text
    assert text.rstrip().endswith(OPT_OUT)


def test_email_logs_in_with_the_url_credentials(smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server
    assert email_channel(port, "relay:p%40ss%3Aword@").send(outbound("check_in_email")).status == "sent"
    assert len(inbox.received) == 1

    refused = email_channel(port, "relay:wrong@").send(outbound("check_in_email"))
    assert (refused.status, refused.permanent, refused.attempts) == ("failed", True, 1)
    assert "535" in refused.detail
    assert len(inbox.received) == 1


def test_email_rejected_recipient_is_a_permanent_failure(smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server
    inbox.rcpt_reply = "550 5.1.1 <nobody@example.co.uk>: mailbox unavailable"
    result = email_channel(port).send(outbound("check_in_email", to="nobody@example.co.uk"))
    assert (result.status, result.permanent, result.attempts) == ("failed", True, 1)
    assert "550" in result.detail
    assert "mailbox unavailable" in result.detail
    assert inbox.received == []


def test_email_temporary_rejection_is_retried(smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server
    inbox.rcpt_reply = "451 4.3.0 try again later"
    result = email_channel(port, attempts=2).send(outbound("check_in_email"))
    assert (result.status, result.permanent, result.attempts) == ("failed", False, 2)
    assert "451" in result.detail


def test_email_with_no_relay_listening_fails_transiently_after_every_attempt() -> None:
    _, port = never_listening()
    result = email_channel(port, attempts=3).send(outbound("check_in_email"))
    assert (result.status, result.permanent, result.attempts) == ("failed", False, 3)
    assert "unreachable" in result.detail


def test_email_needs_an_address_and_a_subject() -> None:
    channel = email_channel(free_port())
    assert channel.send(outbound("check_in_email", to="07700900123")).permanent
    message = outbound("check_in_email")
    result = channel.send(replace(message, subject=None))
    assert (result.status, result.permanent, result.attempts) == ("failed", True, 1)


def test_smtp_url_forms() -> None:
    assert SmtpTarget.from_url("smtp://mail.bank.example") == SmtpTarget("mail.bank.example", 25, "none")
    starttls = SmtpTarget.from_url("smtp://u:s%2Fcret@mail.bank.example?starttls=true")
    assert (starttls.port, starttls.tls, starttls.username, starttls.password) == (587, "starttls", "u", "s/cret")
    assert "cret" not in repr(starttls)
    assert SmtpTarget.from_url("smtps://mail.bank.example").port == 465
    with pytest.raises(ConfigError, match="SMTP_URL"):
        SmtpTarget.from_url("http://mail.bank.example")


# --- webhooks (sms, app) -----------------------------------------------------------------------


def sms_channel(url: str, attempts: int = 3, timeout_s: float = 5.0) -> WebhookChannel:
    return WebhookChannel("sms", url, SIGNING_KEY, timeout_s=timeout_s, attempts=attempts, backoff_s=0.01)


def test_sms_webhook_is_signed_and_carries_the_idempotency_key(gateway: Gateway) -> None:
    message = outbound("payment_options_sms", to="+447700900123")
    result = sms_channel(gateway.url).send(message)

    assert (result.status, result.reference, result.attempts) == ("sent", "gw-1", 1)
    [request] = gateway.seen
    assert request.path == "/v1/messages"
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["content-type"].startswith("application/json")
    assert headers["idempotency-key"] == message.message_id
    timestamp, signature = headers["x-equilibrate-timestamp"], headers["x-equilibrate-signature"]
    assert signature.startswith("sha256=")
    assert verify_signature(SIGNING_KEY, timestamp, request.body, signature)
    assert not verify_signature("another-secret", timestamp, request.body, signature)
    assert not verify_signature(SIGNING_KEY, timestamp, request.body.replace(b"Priya", b"Mallory"), signature)
    assert not verify_signature(SIGNING_KEY, timestamp, request.body, signature, now=int(timestamp) + 301)
    sent = json.loads(request.body)
    assert (sent["message_id"], sent["to"], sent["body"]) == (message.message_id, "+447700900123", message.body)
    assert (sent["template_id"], sent["approval_ref"]) == (message.template_id, message.approval_ref)


def test_webhook_retries_5xx_then_succeeds_with_the_same_key(gateway: Gateway) -> None:
    gateway.script = [503, 503, 200]
    message = outbound("payment_options_sms", to="+447700900123")
    result = sms_channel(gateway.url).send(message)
    assert (result.status, result.attempts) == ("sent", 3)
    assert len(gateway.seen) == 3
    assert {s.headers["Idempotency-Key"] for s in gateway.seen} == {message.message_id}
    for s in gateway.seen:
        timestamp, signature = s.headers["X-Equilibrate-Timestamp"], s.headers["X-Equilibrate-Signature"]
        assert verify_signature(SIGNING_KEY, timestamp, s.body, signature)


def test_webhook_4xx_is_permanent_after_one_request(gateway: Gateway) -> None:
    gateway.script = [400]
    result = sms_channel(gateway.url).send(outbound("payment_options_sms", to="+447700900123"))
    assert (result.status, result.permanent, result.attempts) == ("failed", True, 1)
    assert "400" in result.detail
    assert len(gateway.seen) == 1


def test_webhook_429_is_retried(gateway: Gateway) -> None:
    gateway.script = [429]
    result = sms_channel(gateway.url).send(outbound("payment_options_sms", to="+447700900123"))
    assert (result.status, result.attempts, len(gateway.seen)) == ("sent", 2, 2)


def test_webhook_timeout_is_a_transient_failure(gateway: Gateway) -> None:
    gateway.script = [1.0, 1.0]
    started = time.monotonic()
    result = sms_channel(gateway.url, attempts=2, timeout_s=0.3).send(outbound("payment_options_sms", to="+44770090"))
    assert (result.status, result.permanent, result.attempts) == ("failed", False, 2)
    assert "timed out" in result.detail
    assert len(gateway.seen) == 2
    assert time.monotonic() - started < 2.0


def test_webhook_with_nothing_listening_is_transient() -> None:
    host, port = never_listening()
    result = sms_channel(f"http://{host}:{port}/sms", attempts=2).send(outbound("payment_options_sms", to="+4477"))
    assert (result.status, result.permanent, result.attempts) == ("failed", False, 2)


def test_app_push_goes_to_its_own_gateway(gateway: Gateway) -> None:
    channel = WebhookChannel("app", gateway.url, SIGNING_KEY, attempts=1)
    message = outbound("check_in_app", "hi", to="app-user-81")
    assert channel.send(message).status == "sent"
    sent = json.loads(gateway.seen[0].body)
    assert (sent["channel"], sent["to"], sent["language"]) == ("app", "app-user-81", "hi")
    assert sent["body"] == message.body  # UTF-8 JSON, not escaped
    assert SIGNING_KEY not in repr(channel)


def test_signature_is_hmac_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SIGNING_KEY.encode(), b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign(SIGNING_KEY, "1700000000", b"{}") == f"sha256={expected}"
    assert not verify_signature(SIGNING_KEY, "not-a-time", b"{}", sign(SIGNING_KEY, "1700000000", b"{}"))


# --- voice -------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["en", "hi"])
def test_espeak_renders_a_wav_file_per_case_and_message(tmp_path: Path, language: str) -> None:
    message = outbound("specialist_voice", language, to="+447700900123")
    result = VoiceChannel(tmp_path, "espeak").send(message)

    assert (result.status, result.attempts) == ("sent", 1), result.detail
    assert result.reference == str(tmp_path / "audio" / message.case_id / f"{message.message_id}.wav")
    audio = Path(result.reference).read_bytes()
    assert audio[:4] == b"RIFF"
    assert audio[8:12] == b"WAVE"
    assert len(audio) > 10_000
    assert "espeak-ng" in result.detail
    assert find_audio(tmp_path, message.case_id, message.message_id) == Path(result.reference)
    assert [p.name for p in Path(result.reference).parent.iterdir()] == [f"{message.message_id}.wav"]

    again = VoiceChannel(tmp_path, "espeak").send(message)  # a resend after a crash reuses the file
    assert (again.status, again.reference) == ("sent", result.reference)


def test_gtts_when_google_is_unreachable_is_a_clear_failure(tmp_path: Path) -> None:
    channel = VoiceChannel(tmp_path, "gtts", attempts=2, backoff_s=0.01, gtts_probe=never_listening())
    result = channel.send(outbound("specialist_voice", to="+447700900123"))
    assert (result.status, result.permanent, result.attempts) == ("failed", False, 2)
    assert "unreachable" in result.detail
    assert "VOICE_ENGINE=auto or espeak" in result.detail
    assert "Traceback" not in result.detail


def test_auto_falls_back_to_espeak_offline(tmp_path: Path) -> None:
    channel = VoiceChannel(tmp_path, "auto", gtts_probe=never_listening(), probe_timeout_s=0.5)
    result = channel.send(outbound("specialist_voice", to="+447700900123"))
    assert result.status == "sent", result.detail
    assert result.reference is not None
    assert result.reference.endswith(".wav")


def test_missing_espeak_names_the_package_to_install(tmp_path: Path) -> None:
    channel = VoiceChannel(tmp_path, "espeak", espeak_bin="espeak-ng-not-installed")
    result = channel.send(outbound("specialist_voice", to="+447700900123"))
    assert (result.status, result.permanent, result.attempts) == ("failed", True, 1)
    assert "apt-get install espeak-ng" in result.detail


def test_ids_that_are_not_safe_in_a_path_or_header_are_refused(tmp_path: Path) -> None:
    message = outbound("specialist_voice", to="+447700900123")
    unsafe = [
        replace(message, case_id="../../etc"),
        replace(message, message_id="a/b"),
        replace(message, message_id="x\r\nBcc: all"),
        replace(message, message_id=".hidden"),
    ]
    for bad in unsafe:
        result = VoiceChannel(tmp_path, "espeak").send(bad)
        assert (result.status, result.permanent) == ("failed", True)
    assert email_channel(free_port()).send(replace(outbound("check_in_email"), message_id="a>b")).permanent
    assert not (tmp_path / "audio").exists()


# --- configuration -----------------------------------------------------------------------------


def test_make_channels_builds_only_the_configured_ones(tmp_path: Path) -> None:
    bare = Settings(_env_file=None, data_dir=tmp_path, smtp_url=None, sms_webhook_url=None, app_webhook_url=None)
    assert set(make_channels(bare)) == {"voice"}

    full = Settings(
        _env_file=None,
        data_dir=tmp_path,
        smtp_url="smtp://relay:secret@127.0.0.1:2525",
        sms_webhook_url="https://sms.gateway.example/v1/send",
        app_webhook_url="https://push.gateway.example/v1/send",
        webhook_secret=SIGNING_KEY,
        delivery_attempts=4,
    )
    channels = make_channels(full)
    assert set(channels) == {"email", "sms", "app", "voice"}
    assert isinstance(channels["email"], EmailChannel)
    assert channels["email"].attempts == 4
    assert isinstance(channels["sms"], WebhookChannel)
    assert channels["sms"].url == "https://sms.gateway.example/v1/send"

    unsigned = full.model_copy(update={"webhook_secret": None})
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET"):
        make_channels(unsigned)


def test_channel_settings_are_validated_and_passwords_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_URL", "http://mail.bank.example")
    with pytest.raises(ConfigError, match="SMTP_URL"):
        load_settings(_env_file=None)
    monkeypatch.setenv("SMTP_URL", "smtps://relay:s3cret@mail.bank.example:465")
    monkeypatch.setenv("WEBHOOK_SECRET", "hunter2")
    monkeypatch.setenv("SMS_WEBHOOK_URL", "ftp://sms.example")
    with pytest.raises(ConfigError, match="SMS_WEBHOOK_URL"):
        load_settings(_env_file=None)
    monkeypatch.setenv("SMS_WEBHOOK_URL", "")
    s = load_settings(_env_file=None)
    assert s.sms_webhook_url is None
    shown = repr(s) + repr(s.redacted())
    assert "s3cret" not in shown
    assert "hunter2" not in shown
    assert "smtps://relay:****@mail.bank.example:465" in shown
