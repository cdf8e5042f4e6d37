"""Delivery channels behind one interface: what the intervention engine hands over and what it gets back.

The engine owns the outbox and the case lifecycle; a channel only tries to hand one message to its
gateway. `send()` never raises for a delivery problem: it returns a `DeliveryResult`, `failed` with
the error and whether retrying could ever help, so nothing is silently dropped. Anything else a
channel raises is a bug. Every message carries the engine's outbox id, passed to the gateway
(Message-ID / Idempotency-Key) so a resend after a crash can be de-duplicated downstream.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, Protocol

from equilibrate.errors import EquilibrateError
from equilibrate.risk.policy_words import Channel as ChannelName

if TYPE_CHECKING:
    from equilibrate.risk.policy import RenderedMessage
    from equilibrate.settings import Settings

__all__ = [
    "Channel",
    "ChannelName",
    "DeliveryError",
    "DeliveryResult",
    "DeliveryStatus",
    "OutboundMessage",
    "backoff_delay",
    "failure",
    "make_channels",
    "message_problem",
    "retrying",
]

log = logging.getLogger(__name__)

DeliveryStatus = Literal["sent", "delivered", "failed"]

#: The longest wait between two tries of one send, whatever the backoff or a gateway's Retry-After.
MAX_BACKOFF_S = 30.0


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One approved, rendered message for one customer on one channel."""

    message_id: str  # the engine's outbox id: the idempotency key downstream
    case_id: str
    customer_id: str
    channel: ChannelName
    to: str  # email address, phone number (sms, voice) or app user id
    language: str
    subject: str | None  # email only
    body: str
    template_id: str
    template_version: int
    approval_ref: str

    @classmethod
    def from_rendered(
        cls, rendered: RenderedMessage, *, message_id: str, case_id: str, customer_id: str, to: str
    ) -> OutboundMessage:
        """The message a policy template rendered, addressed: keeps the approval trail with it."""
        channel: ChannelName = rendered.channel  # type: ignore[assignment]  # the policy checked it
        return cls(
            message_id=message_id,
            case_id=case_id,
            customer_id=customer_id,
            channel=channel,
            to=to,
            language=rendered.language,
            subject=rendered.subject,
            body=rendered.body,
            template_id=rendered.template_id,
            template_version=rendered.version,
            approval_ref=rendered.approval,
        )


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """The outcome of one `send()`: what the engine records on the case.

    `reference` is the gateway's id for the message (email: the Message-ID; voice: the audio file).
    `permanent` marks failures retrying cannot fix (an address rejected, a 4xx, a missing package).
    """

    status: DeliveryStatus
    reference: str | None
    detail: str
    attempts: int = 1
    permanent: bool = False

    @property
    def ok(self) -> bool:
        return self.status != "failed"


class DeliveryError(EquilibrateError):
    """One try at a gateway failed; channels raise it inside `retrying`, which turns it into a result."""

    def __init__(self, message: str, *, permanent: bool = False, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after_s = retry_after_s


class Channel(Protocol):
    """A delivery adapter: one try-with-retries per call, never raising for a delivery problem."""

    def send(self, message: OutboundMessage) -> DeliveryResult: ...


def failure(detail: str, *, permanent: bool, attempts: int = 1) -> DeliveryResult:
    return DeliveryResult("failed", None, detail, attempts=attempts, permanent=permanent)


#: A message id goes into a Message-ID header and a file name: letters, digits, _ + = - and single dots.
_MESSAGE_ID_RE = re.compile(r"[A-Za-z0-9_+=-]+(?:\.[A-Za-z0-9_+=-]+)*")
#: A case id names a directory of audio files: the same, plus colons.
_CASE_ID_RE = re.compile(r"[A-Za-z0-9_+=:-]+(?:\.[A-Za-z0-9_+=:-]+)*")
_MAX_ID_LENGTH = 200


def message_problem(message: OutboundMessage) -> str | None:
    """Why no gateway should be given this message, or None: checked before the first try, never retried."""
    if len(message.message_id) > _MAX_ID_LENGTH or not _MESSAGE_ID_RE.fullmatch(message.message_id):
        return f"message id {message.message_id!r} is not usable (letters, digits, _ + = - and single dots)"
    if len(message.case_id) > _MAX_ID_LENGTH or not _CASE_ID_RE.fullmatch(message.case_id):
        return f"case id {message.case_id!r} is not usable (letters, digits, _ + = : - and single dots)"
    if not message.to.strip():
        return f"no {message.channel} contact for customer {message.customer_id}"
    if not message.body.strip():
        return f"message {message.message_id} has an empty body"
    return None


def backoff_delay(attempt: int, backoff_s: float, max_s: float = MAX_BACKOFF_S) -> float:
    """Exponential backoff with jitter: about backoff_s x 2^(attempt-1), between half and all of it.

    The jitter spreads the retries of many messages that failed together (a gateway restart).
    """
    ceiling = min(max_s, backoff_s * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def retrying(
    send: Callable[[], DeliveryResult],
    attempts: int,
    backoff_s: float,
    *,
    what: str = "send",
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryResult:
    """Call `send` until it succeeds, fails permanently, or `attempts` tries have failed.

    Only a transient `DeliveryError` is retried; the result records how many tries were made.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    for attempt in range(1, attempts + 1):
        try:
            result = send()
        except DeliveryError as exc:
            if exc.permanent or attempt == attempts:
                kind = "permanently" if exc.permanent else f"after {attempt} tries"
                log.warning("%s failed %s: %s", what, kind, exc)
                return failure(str(exc), permanent=exc.permanent, attempts=attempt)
            delay = backoff_delay(attempt, backoff_s)
            if exc.retry_after_s is not None:
                delay = min(MAX_BACKOFF_S, max(delay, exc.retry_after_s))
            log.info("%s failed (try %d of %d), retrying in %.2f s: %s", what, attempt, attempts, delay, exc)
            sleep(delay)
        else:
            return replace(result, attempts=attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def make_channels(settings: Settings) -> dict[str, Channel]:
    """The channels the settings configure, by policy channel name.

    Email needs SMTP_URL, sms and app their webhook URL (and WEBHOOK_SECRET to sign with, else a
    ConfigError); a channel without config is absent, for the engine to record as "channel not
    configured". Voice needs no config (espeak-ng renders offline), so it is always present; a missing
    espeak-ng shows up as a failed result naming the package to install.
    """
    from equilibrate.alert.email_channel import EmailChannel
    from equilibrate.alert.voice_channel import VoiceChannel
    from equilibrate.alert.webhook_channel import WebhookChannel

    attempts = settings.delivery_attempts
    channels: dict[str, Channel] = {}
    if settings.smtp_url:
        channels["email"] = EmailChannel.from_settings(settings)
    webhooks: dict[ChannelName, str | None] = {"sms": settings.sms_webhook_url, "app": settings.app_webhook_url}
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
    for name, url in webhooks.items():
        if url:  # the channel refuses an empty WEBHOOK_SECRET with a ConfigError
            channels[name] = WebhookChannel(name, url, secret, timeout_s=settings.webhook_timeout_s, attempts=attempts)
    channels["voice"] = VoiceChannel(settings.data_dir, settings.voice_engine, attempts=attempts)
    return channels
