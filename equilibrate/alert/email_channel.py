"""Email over SMTP: plain UTF-8 text, with the mandatory opt-out line on every message.

One connection per message (no connection held between sends, nothing opened at import): an
intervention engine sends a handful of emails a second at most, and a fresh connection survives a
relay restart without any reconnect logic. The engine's outbox id becomes the Message-ID, so a resend
after a crash is recognisable downstream. SMTP reply codes decide what is retried: 4xx and network
errors are transient, 5xx (an address rejected, authentication refused) are permanent.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, parseaddr
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qs, unquote, urlparse

from equilibrate.alert.channels import (
    DeliveryError,
    DeliveryResult,
    OutboundMessage,
    failure,
    message_problem,
    retrying,
)
from equilibrate.errors import ConfigError
from equilibrate.settings import redact_url

if TYPE_CHECKING:
    from equilibrate.settings import Settings

__all__ = ["SMTP_TIMEOUT_S", "EmailChannel", "SmtpTarget"]

log = logging.getLogger(__name__)

#: Seconds for connecting and for each SMTP command.
SMTP_TIMEOUT_S = 20.0

_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    """Where and how to connect, parsed from SMTP_URL."""

    host: str
    port: int
    tls: Literal["none", "starttls", "ssl"]
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str) -> SmtpTarget:
        """smtp://[user:pass@]host[:port][?starttls=true] (port 25, or 587 with STARTTLS) or smtps:// (465)."""
        parsed = urlparse(url)
        bad = ConfigError(f"SMTP_URL: expected smtp://[user:pass@]host:port or smtps://..., got {redact_url(url)}")
        try:
            port = parsed.port
        except ValueError:
            raise bad from None
        if parsed.scheme not in {"smtp", "smtps"} or not parsed.hostname:
            raise bad
        starttls = parse_qs(parsed.query).get("starttls", ["false"])[-1].lower() in _TRUE
        tls: Literal["none", "starttls", "ssl"] = (
            "ssl" if parsed.scheme == "smtps" else "starttls" if starttls else "none"
        )
        default_port = {"ssl": 465, "starttls": 587, "none": 25}[tls]
        return cls(
            host=parsed.hostname,
            port=port or default_port,
            tls=tls,
            username=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password is not None else None,
        )


class EmailChannel:
    """Sends each message as one plain-text email through the configured relay."""

    def __init__(
        self,
        target: SmtpTarget,
        sender: str,
        opt_out_text: str,
        *,
        attempts: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = SMTP_TIMEOUT_S,
    ) -> None:
        if not opt_out_text.strip():
            raise ConfigError("EMAIL_OPT_OUT_TEXT: the opt-out line is mandatory and cannot be empty")
        self.target = target
        self.sender = sender
        self.opt_out_text = opt_out_text.strip()
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        address = parseaddr(sender)[1]
        if "@" not in address:
            raise ConfigError(f"SMTP_FROM: expected an address such as 'Bank <support@bank.example>', got {sender!r}")
        self._domain = address.rpartition("@")[2]

    @classmethod
    def from_settings(cls, settings: Settings) -> EmailChannel:
        if not settings.smtp_url:
            raise ConfigError("SMTP_URL is not set: the email channel has no relay")
        return cls(
            SmtpTarget.from_url(settings.smtp_url),
            settings.smtp_from,
            settings.email_opt_out_text,
            attempts=settings.delivery_attempts,
        )

    def compose(self, message: OutboundMessage) -> EmailMessage:
        """The email exactly as it goes out: the approved body, then the opt-out line."""
        email = EmailMessage(policy=SMTP)
        email["From"] = self.sender
        email["To"] = message.to
        email["Subject"] = message.subject or ""
        email["Date"] = formatdate(usegmt=True)
        email["Message-ID"] = f"<{message.message_id}@{self._domain}>"
        email["X-Equilibrate-Message-Id"] = message.message_id
        email["X-Equilibrate-Case"] = message.case_id
        email["X-Equilibrate-Template"] = f"{message.template_id} v{message.template_version} {message.approval_ref}"
        email["Content-Language"] = message.language
        text = message.body.rstrip()
        if self.opt_out_text not in text:
            text = f"{text}\n\n{self.opt_out_text}"
        # Quoted-printable keeps English readable in the raw message; base64 is smaller for Hindi.
        email.set_content(text + "\n", charset="utf-8", cte="quoted-printable" if text.isascii() else "base64")
        return email

    def send(self, message: OutboundMessage) -> DeliveryResult:
        problem = message_problem(message)
        if problem is None and "@" not in message.to:
            problem = f"{message.to!r} is not an email address"
        if problem is None and not (message.subject or "").strip():
            problem = f"template {message.template_id} gave no subject: an email needs its approved subject"
        if problem is not None:
            return failure(problem, permanent=True)
        try:
            email = self.compose(message)
        except ValueError as exc:  # a header with a line break in it, for instance
            return failure(f"cannot build the email: {exc}", permanent=True)
        what = f"email {message.message_id} (case {message.case_id})"
        return retrying(lambda: self._deliver(email), self.attempts, self.backoff_s, what=what)

    def _deliver(self, email: EmailMessage) -> DeliveryResult:
        where = f"{self.target.host}:{self.target.port}"
        try:
            with self._connect() as smtp:
                smtp.send_message(email)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            raise _refused(f"{where} refused the recipient", code, reply) from exc
        except smtplib.SMTPResponseException as exc:  # sender or data refused, authentication, greeting
            raise _refused(f"{where} answered", exc.smtp_code, exc.smtp_error) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(f"{where} does not support what SMTP_URL asks for: {exc}", permanent=True) from exc
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(f"{where}: TLS certificate not trusted: {exc.verify_message}", permanent=True) from exc
        except (smtplib.SMTPException, OSError) as exc:  # refused, timed out, disconnected
            raise DeliveryError(f"{where} unreachable: {exc or type(exc).__name__}") from exc
        log.debug("email %s accepted by %s", email["Message-ID"], where)
        return DeliveryResult("sent", str(email["Message-ID"]), f"accepted by {where}")

    def _connect(self) -> smtplib.SMTP:
        t = self.target
        smtp: smtplib.SMTP
        if t.tls == "ssl":
            smtp = smtplib.SMTP_SSL(t.host, t.port, timeout=self.timeout_s, context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(t.host, t.port, timeout=self.timeout_s)
        try:
            if t.tls == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if t.username:
                smtp.login(t.username, t.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp


def _refused(what: str, code: int, reply: bytes | str) -> DeliveryError:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return DeliveryError(f"{what} {code} {text}".strip(), permanent=500 <= code < 600)
