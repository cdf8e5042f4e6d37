"""What the demo gateway received: one JSON line per message, as the customer would have seen it.

The demo gateway (`equilibrate demo-gateway`, started by `equilibrate up` for a demo with no real
channel configured) stands in for the bank's mail relay and SMS / app push gateways. Each message
it accepts becomes an `InboxEntry`, appended to `DATA_DIR/demo-gateway/inbox.jsonl`; the console
shows them beside the case. Parsing (an email's bytes, a webhook's signed JSON) is here, apart from
the servers, so that it is tested on its own.
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from dataclasses import asdict, dataclass, replace
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from equilibrate.alert.webhook_channel import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)
from equilibrate.errors import InvalidEventError

__all__ = ["Inbox", "InboxEntry", "entry_from_email", "entry_from_webhook", "inbox_path", "read_recent"]

#: How a webhook's signature was found: checked against WEBHOOK_SECRET, or no secret to check with.
Signature = str  # "valid" | "unchecked"


def inbox_path(data_dir: Path) -> Path:
    return data_dir / "demo-gateway" / "inbox.jsonl"


@dataclass(frozen=True, slots=True)
class InboxEntry:
    channel: str  # email, sms, app
    message_id: str  # Equilibrate's outbox id (Idempotency-Key / X-Equilibrate-Message-Id)
    to: str
    subject: str
    body: str
    case_id: str
    customer_id: str
    signature: Signature
    received_at: str = ""  # ISO time the gateway accepted it (wall clock: the gateway is outside the pipeline)
    gateway_id: str = ""  # the id the gateway answered with

    def as_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))


def entry_from_email(raw: bytes) -> InboxEntry:
    """An email as the relay received it (the DATA), read back into its parts."""
    parsed = message_from_bytes(raw, policy=policy.default)
    if not isinstance(parsed, EmailMessage):  # pragma: no cover - policy.default always builds EmailMessage
        raise InvalidEventError("not_email", "not an email message")
    part = parsed.get_body(preferencelist=("plain",))
    body = part.get_content() if isinstance(part, EmailMessage) else ""
    message_id = str(parsed.get("X-Equilibrate-Message-Id") or parsed.get("Message-ID") or "").strip()
    if not message_id:
        raise InvalidEventError("no_message_id", "the email has no Message-ID")
    return InboxEntry(
        channel="email",
        message_id=message_id,
        to=str(parsed.get("To", "")),
        subject=str(parsed.get("Subject", "")),
        body=str(body).replace("\r\n", "\n").rstrip(),  # SMTP carries CRLF line ends
        case_id=str(parsed.get("X-Equilibrate-Case", "")),
        customer_id="",
        signature="unchecked",
    )


def entry_from_webhook(channel: str, body: bytes, headers: dict[str, str], secret: str | None) -> InboxEntry:
    """A signed JSON POST from the SMS or app channel; refused (InvalidEventError) when the signature
    does not verify against `secret`, or the body is not the channel's JSON."""
    if secret:
        timestamp = headers.get(TIMESTAMP_HEADER.lower(), "")
        signature = headers.get(SIGNATURE_HEADER.lower(), "")
        if not verify_signature(secret, timestamp, body, signature):
            raise InvalidEventError("bad_signature", "does not verify with WEBHOOK_SECRET, or its timestamp is stale")
    try:
        fields: Any = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidEventError("not_json", str(exc)) from exc
    if not isinstance(fields, dict):
        raise InvalidEventError("not_json", "the body is not a JSON object")
    message_id = str(fields.get("message_id") or headers.get(IDEMPOTENCY_HEADER.lower(), ""))
    if not message_id or not fields.get("to") or not isinstance(fields.get("body"), str):
        raise InvalidEventError("missing_fields", "message_id, to and body are required")
    return InboxEntry(
        channel=channel,
        message_id=message_id,
        to=str(fields["to"]),
        subject=str(fields.get("subject") or ""),
        body=fields["body"],
        case_id=str(fields.get("case_id") or ""),
        customer_id=str(fields.get("customer_id") or ""),
        signature="valid" if secret else "unchecked",
    )


class Inbox:
    """The append-only inbox file, shared by the gateway's SMTP and HTTP threads.

    A message id seen before (a retry after a timeout, a resend after a crash) is answered with the
    first delivery's gateway id and not written again, as a real gateway de-duplicates.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._ids: dict[str, str] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        for entry in read_recent(path, None):
            self._ids[entry.message_id] = entry.gateway_id

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, entry: InboxEntry, received_at: str) -> tuple[str, bool]:
        """Record `entry`; returns (gateway id, True when it was a repeat and nothing was written)."""
        with self._lock:
            if entry.message_id in self._ids:
                return self._ids[entry.message_id], True
            gateway_id = f"demo-{len(self._ids) + 1:06d}"
            stamped = replace(entry, received_at=received_at, gateway_id=gateway_id)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (stamped.as_json() + "\n").encode("utf-8"))
            finally:
                os.close(fd)
            self._ids[entry.message_id] = gateway_id
            return gateway_id, False


def read_recent(path: Path, limit: int | None = 50) -> list[InboxEntry]:
    """The newest `limit` entries, oldest first (every entry with None); a torn last line is skipped."""
    if not path.is_file():
        return []
    keep: deque[InboxEntry] = deque(maxlen=limit)
    fields = set(InboxEntry.__dataclass_fields__)
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash mid-write
            if isinstance(row, dict) and fields >= set(row) and "message_id" in row:
                keep.append(InboxEntry(**{k: str(v) for k, v in row.items()}))
    return list(keep)
