"""SMS and in-app push through HTTP webhooks: one signed JSON POST per message to the bank's gateway.

The gateway (an SMS aggregator's adapter, the app's push service) checks each request like this,
and `verify_signature` does exactly that:

    X-Equilibrate-Timestamp: <unix seconds>
    X-Equilibrate-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>" keyed with WEBHOOK_SECRET>

The timestamp is inside the signed text so a captured request cannot be replayed later. Every request
carries `Idempotency-Key` (and `message_id` in the body): the engine's outbox id, the same on every
retry, so a resend after a timeout or a crash is de-duplicated by the gateway. Connection errors,
timeouts, 429 and 5xx are retried with backoff; any other 4xx, and a redirect, are permanent.
Standard library only (urllib), so the channel adds no runtime dependency.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import logging
import time
import urllib.request
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse

from equilibrate.alert.channels import (
    ChannelName,
    DeliveryError,
    DeliveryResult,
    OutboundMessage,
    failure,
    message_problem,
    retrying,
)
from equilibrate.errors import ConfigError

__all__ = [
    "IDEMPOTENCY_HEADER",
    "MESSAGE_ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookChannel",
    "payload",
    "sign",
    "verify_signature",
]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Equilibrate-Signature"
TIMESTAMP_HEADER = "X-Equilibrate-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
MESSAGE_ID_HEADER = "X-Equilibrate-Message-Id"

#: How far a receiver lets a request's timestamp drift from its own clock (seconds).
DEFAULT_TOLERANCE_S = 300.0
_MAX_RESPONSE_BYTES = 64 * 1024


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    header: str,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> bool:
    """True when `header` signs `body` at `timestamp` with `secret`, and the timestamp is recent enough."""
    if not timestamp.isascii() or not timestamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body).encode("ascii"), header.strip().encode("utf-8"))


def payload(message: OutboundMessage) -> bytes:
    """The JSON body: the message and its approval trail, UTF-8, keys sorted (stable bytes for signing)."""
    fields: dict[str, Any] = {
        "message_id": message.message_id,
        "case_id": message.case_id,
        "customer_id": message.customer_id,
        "channel": message.channel,
        "to": message.to,
        "language": message.language,
        "subject": message.subject,
        "body": message.body,
        "template_id": message.template_id,
        "template_version": message.template_version,
        "approval_ref": message.approval_ref,
    }
    return json.dumps(fields, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib would turn a redirected POST into a GET without the body: report the redirect instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookChannel:
    """POSTs each message to one gateway URL (SMS_WEBHOOK_URL or APP_WEBHOOK_URL)."""

    def __init__(
        self,
        name: ChannelName,
        url: str,
        secret: str,
        *,
        timeout_s: float = 5.0,
        attempts: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in {"http", "https"} or not parsed.hostname:
            raise ConfigError(f"{name.upper()}_WEBHOOK_URL: expected an http:// or https:// URL with a host")
        if not secret:
            raise ConfigError(f"{name.upper()}_WEBHOOK_URL is set but WEBHOOK_SECRET is empty: requests must be signed")
        self.name = name
        self.url = url
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._secret = secret
        # Logs and results name the gateway without credentials or query-string tokens.
        port = f":{parsed.port}" if parsed.port else ""
        self.where = f"{parsed.scheme}://{parsed.hostname}{port}{parsed.path}"
        self._opener = urllib.request.build_opener(_NoRedirect())

    def __repr__(self) -> str:
        return f"WebhookChannel({self.name!r}, {self.where!r})"

    def send(self, message: OutboundMessage) -> DeliveryResult:
        problem = message_problem(message)
        if problem is not None:
            return failure(problem, permanent=True)
        body = payload(message)
        what = f"{self.name} {message.message_id} (case {message.case_id})"
        return retrying(lambda: self._post(body, message.message_id), self.attempts, self.backoff_s, what=what)

    def _post(self, body: bytes, message_id: str) -> DeliveryResult:
        timestamp = str(int(time.time()))  # fresh on every try: a retry after a long backoff still verifies
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Accept": "application/json",
            "User-Agent": "equilibrate",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            IDEMPOTENCY_HEADER: message_id,
            MESSAGE_ID_HEADER: message_id,
        }
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")  # noqa: S310  # http(s) checked in __init__
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                status: int = response.status
                raw: bytes = response.read(_MAX_RESPONSE_BYTES)
        except HTTPError as exc:
            with exc:
                snippet = _snippet(exc.read(500))
            raise _http_error(self.where, exc.code, exc.reason, exc.headers, snippet) from exc
        except (URLError, OSError, http.client.HTTPException) as exc:  # refused, timed out, reset
            reason = exc.reason if isinstance(exc, URLError) else exc
            raise DeliveryError(f"{self.where} unreachable: {reason or type(exc).__name__}") from exc
        return _accepted(self.where, status, raw)


def _http_error(where: str, code: int, reason: str, headers: Message, snippet: str) -> DeliveryError:
    text = f"{where} answered {code} {reason}".rstrip() + (f": {snippet}" if snippet else "")
    if 300 <= code < 400:
        location = headers.get("Location", "?")
        return DeliveryError(f"{where} redirected ({code}) to {location}: set the final URL", permanent=True)
    if code == 429 or code >= 500:
        return DeliveryError(text, retry_after_s=_retry_after(headers.get("Retry-After")))
    return DeliveryError(text, permanent=True)


def _accepted(where: str, code: int, raw: bytes) -> DeliveryResult:
    """A 2xx: `delivered` when the gateway says so in its JSON answer, else `sent` (accepted for delivery)."""
    answer: object = None
    with contextlib.suppress(ValueError):  # an answer that is not JSON still means accepted
        answer = json.loads(raw) if raw.strip() else None
    reference: str | None = None
    delivered = False
    if isinstance(answer, dict):
        ids = (answer[k] for k in ("id", "provider_id", "reference") if isinstance(answer.get(k), str))
        reference = next(ids, None)
        delivered = answer.get("status") == "delivered"
    return DeliveryResult("delivered" if delivered else "sent", reference, f"{where} answered {code}")


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if it has a usable one."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _snippet(raw: bytes) -> str:
    return " ".join(raw.decode("utf-8", "replace").split())[:200]
