"""The contact policy: may this customer be contacted on this channel now, and if not, why not.

Checked before every send and recorded with the result (FCA CONC 7, Consumer Duty). A customer flagged
vulnerable goes to a human specialist and is never contacted automatically. Otherwise a channel needs
consent, no opt-out and a contact detail; the customer's local time outside quiet hours; room under the
rolling-window caps; and no suppression after repeated unanswered interventions. A blocked send is an
outcome with its reason, never an exception: `evaluate` and `choose` always return a Decision. When quiet
hours alone stand in the way the route is "defer", with the next permitted local morning in UTC, so the
engine can schedule the send instead of dropping it.

Fail closed: only an explicit "true" is consent, only an explicit "false" clears the vulnerability flag,
and an unreadable opt-out counts as an opt-out. Pure: no Redis, no clock (the caller passes `now`); the
only file read is the tz database behind ZoneInfo, cached by the standard library.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from equilibrate.risk.policy_words import CHANNELS

if TYPE_CHECKING:
    from equilibrate.settings import Settings

__all__ = [
    "DEFAULT_RULES",
    "FALLBACK_TIMEZONE",
    "Check",
    "ContactHistory",
    "ContactRules",
    "CustomerView",
    "Decision",
    "Route",
    "Sent",
    "choose",
    "evaluate",
    "format_checks",
]

Route = Literal["send", "specialist", "blocked", "defer"]
#: The fields of the customer's `customer:{id}` hash, as strings (booleans as "true" / "false").
CustomerView = Mapping[str, str]

FALLBACK_TIMEZONE = "Europe/London"
VOICE = "voice"
#: The hash field holding each channel's contact detail; in-app messages need none (the app is signed in).
_DETAIL_FIELD = {"email": "email", "sms": "phone", "voice": "phone"}
_MIN_PHONE_DIGITS = 7
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


# --- values ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContactRules:
    """The policy's numbers. Quiet hours run from quiet_start to quiet_end local time (equal = none);
    caps count sends in the last `window_days` (at most per_channel_cap messages on each channel and
    total_cap messages in all; voice call attempts apart, at most call_attempt_cap); after
    suppress_after_no_response consecutive unanswered interventions, nothing for suppression_days
    from the latest of them."""

    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 0)
    per_channel_cap: int = 1
    total_cap: int = 3
    call_attempt_cap: int = 7
    window_days: int = 7
    suppress_after_no_response: int = 3
    suppression_days: int = 30

    def __post_init__(self) -> None:
        if self.quiet_start.tzinfo is not None or self.quiet_end.tzinfo is not None:
            raise ValueError("quiet hours are local wall-clock times: give them without a time zone")
        if min(self.per_channel_cap, self.total_cap, self.call_attempt_cap) < 0:
            raise ValueError("contact caps cannot be negative")
        if min(self.window_days, self.suppress_after_no_response, self.suppression_days) < 1:
            raise ValueError("window_days, suppress_after_no_response and suppression_days must be at least 1")

    @property
    def window(self) -> timedelta:
        return timedelta(days=self.window_days)

    @classmethod
    def from_settings(cls, settings: Settings) -> ContactRules:
        """The rules from the CONTACT_* settings (already validated, quiet hours as HH:MM)."""
        return cls(
            quiet_start=time.fromisoformat(settings.contact_quiet_start),
            quiet_end=time.fromisoformat(settings.contact_quiet_end),
            per_channel_cap=settings.contact_cap_per_channel,
            total_cap=settings.contact_cap_total,
            call_attempt_cap=settings.contact_cap_calls,
            window_days=settings.contact_window_days,
            suppress_after_no_response=settings.contact_suppress_after_no_response,
            suppression_days=settings.contact_suppression_days,
        )


DEFAULT_RULES = ContactRules()


@dataclass(frozen=True, slots=True)
class Sent:
    """One send (for voice: one call attempt) at an aware time, on a channel."""

    at: datetime
    channel: str

    def __post_init__(self) -> None:
        _require_aware(self.at, "Sent.at")


@dataclass(frozen=True, slots=True)
class ContactHistory:
    """What the policy needs to know of past contact, in a form a Redis mirror rebuilds in one read.

    - `sent`: the sends of at least the last `window_days`, any order; older ones are ignored, so a
      mirror may trim them (a sorted set per customer scored by epoch seconds, member "<channel>:<ms>",
      read with one ZRANGEBYSCORE and trimmed with ZREMRANGEBYSCORE).
    - `unanswered`: consecutive interventions without a response, newest backwards; a response resets
      it to 0. It outlives the caps' window, so it is a counter, not rebuilt from `sent`.
    - `last_unanswered_at`: when the latest of those interventions was sent (suppression runs from it).

    The two counters fit in the customer's hash; `with_sent` and `with_outcome` are the updates the
    engine mirrors, and `from_log` builds the same thing from a full (sent_at, channel, responded) log.
    """

    sent: tuple[Sent, ...] = ()
    unanswered: int = 0
    last_unanswered_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.unanswered < 0:
            raise ValueError("unanswered cannot be negative")
        if self.last_unanswered_at is None:
            if self.unanswered:
                raise ValueError("unanswered interventions need last_unanswered_at")
        else:
            _require_aware(self.last_unanswered_at, "last_unanswered_at")

    def with_sent(self, at: datetime, channel: str) -> ContactHistory:
        return replace(self, sent=(*self.sent, Sent(at, channel)))

    def with_outcome(self, responded: bool, sent_at: datetime) -> ContactHistory:
        """After an intervention sent at `sent_at` is known answered (resets) or unanswered (counts)."""
        if responded:
            return replace(self, unanswered=0, last_unanswered_at=None)
        last = sent_at if self.last_unanswered_at is None else max(self.last_unanswered_at, sent_at)
        return replace(self, unanswered=self.unanswered + 1, last_unanswered_at=last)

    @classmethod
    def from_log(cls, entries: Iterable[tuple[datetime, str, bool | None]]) -> ContactHistory:
        """From (sent_at, channel, responded) entries, one per send. `responded` is the intervention's
        outcome: None while unknown, and on every call attempt of an intervention but one, so several
        attempts count as one unanswered intervention."""
        history = cls()
        for at, channel, responded in sorted(entries, key=lambda entry: entry[0]):
            history = history.with_sent(at, channel)
            if responded is not None:
                history = history.with_outcome(responded, at)
        return history


@dataclass(frozen=True, slots=True)
class Check:
    """One rule's verdict; `detail` says what was seen (counts, local time), never a contact detail."""

    name: str
    passed: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's answer. `channel` is the channel to send on (send), to send on later (defer), or
    whose block `reason` describes (blocked); None for the specialist route. `next_allowed_at` (UTC) is
    when time alone would open the channel, outside quiet hours: set when every failed check lifts with
    time (quiet hours, caps, suppression); None when consent, opt-out, a missing detail or a zero cap fails."""

    allowed: bool
    channel: str | None
    checks: tuple[Check, ...]
    reason: str | None
    route: Route
    next_allowed_at: datetime | None = None

    @property
    def audit(self) -> str:
        return format_checks(self.checks)


# --- the policy ------------------------------------------------------------------------------------

_Verdict = tuple[Check, datetime | None]  # a check, and when it passes by itself if it fails for now


def evaluate(
    customer: CustomerView, channel: str, history: ContactHistory, now: datetime, rules: ContactRules = DEFAULT_RULES
) -> Decision:
    """The policy for one channel at `now` (aware; the time of the send). Every check runs and is recorded,
    except for a vulnerable customer, who is routed to a specialist whatever else holds."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r} (known: {', '.join(CHANNELS)})")
    now = _as_utc(now, "now")
    vulnerability = _vulnerability(customer)
    if not vulnerability.passed:
        return _specialist(vulnerability)
    zone, zone_note = _zone(customer)
    verdicts: list[_Verdict] = [
        (vulnerability, None),
        (_consent(customer, channel), None),
        (_opt_out(customer, channel), None),
        (_contact_detail(customer, channel), None),
        _quiet_hours(now, zone, zone_note, rules),
    ]
    if channel == VOICE:
        calls = [s.at for s in history.sent if s.channel == VOICE]
        verdicts.append(_cap("cap_calls", calls, rules.call_attempt_cap, now, rules))
    else:
        same = [s.at for s in history.sent if s.channel == channel]
        messages = [s.at for s in history.sent if s.channel != VOICE]
        verdicts.append(_cap(f"cap_{channel}", same, rules.per_channel_cap, now, rules))
        verdicts.append(_cap("cap_total", messages, rules.total_cap, now, rules))
    verdicts.append(_suppression(history, now, rules))
    return _decide(channel, verdicts, zone, rules)


def choose(
    customer: CustomerView,
    channels: Sequence[str],
    history: ContactHistory,
    now: datetime,
    rules: ContactRules = DEFAULT_RULES,
) -> Decision:
    """The first channel the policy allows, trying the customer's preferred_channel first when the
    recommendation lists it (the recommendation decides which channels suit; the customer, which of
    them), then the rest in the recommendation's order.

    With none allowed: the soonest defer, else the block that time lifts soonest, else the first
    channel's block. Either way `checks` holds every check of every channel tried, each once:
    vulnerability, quiet hours, cap_total and suppression are the customer's, the same on every channel.
    """
    now = _as_utc(now, "now")
    vulnerability = _vulnerability(customer)
    if not vulnerability.passed:
        return _specialist(vulnerability)
    order = list(dict.fromkeys(channels))
    preferred = customer.get("preferred_channel", "").strip()
    if preferred in order:
        order.remove(preferred)
        order.insert(0, preferred)
    if not order:
        none = Check("channels", False, "none recommended")
        return Decision(False, None, (vulnerability, none), _reason([none]), "blocked")
    checks: dict[str, Check] = {}
    tried: list[Decision] = []
    for channel in order:
        decision = evaluate(customer, channel, history, now, rules)
        for check in decision.checks:
            checks.setdefault(check.name, check)
        if decision.allowed:
            return replace(decision, checks=tuple(checks.values()))
        tried.append(decision)
    return replace(_most_informative(tried), checks=tuple(checks.values()))


def format_checks(checks: Iterable[Check]) -> str:
    """One line for the audit log: name:ok|blocked(detail), separated by semicolons, in check order."""
    return ";".join(
        f"{c.name}:{'ok' if c.passed else 'blocked'}" + (f"({c.detail.replace(';', ',')})" if c.detail else "")
        for c in checks
    )


# --- the checks ------------------------------------------------------------------------------------


def _vulnerability(customer: CustomerView) -> Check:
    raw = customer.get("vulnerable")
    flag = _flag(raw)
    if flag is False:
        return Check("vulnerability", True)
    seen = "flagged" if flag else _unreadable(raw)
    return Check("vulnerability", False, f"{seen}: route to a specialist")


def _consent(customer: CustomerView, channel: str) -> Check:
    raw = customer.get(f"consent_{channel}")
    flag = _flag(raw)
    if flag:
        return Check(f"consent_{channel}", True)
    return Check(f"consent_{channel}", False, "refused" if flag is False else _unreadable(raw))


def _opt_out(customer: CustomerView, channel: str) -> Check:
    raw = customer.get(f"opted_out_{channel}")
    if raw is None or not raw.strip():
        return Check(f"opt_out_{channel}", True)
    flag = _flag(raw)
    if flag is False:
        return Check(f"opt_out_{channel}", True)
    return Check(f"opt_out_{channel}", False, "opted out" if flag else _unreadable(raw))


def _contact_detail(customer: CustomerView, channel: str) -> Check:
    field = _DETAIL_FIELD.get(channel)
    if field is None:
        return Check(f"contact_{channel}", True)
    value = customer.get(field, "").strip()
    usable = "@" in value if field == "email" else sum(ch.isdigit() for ch in value) >= _MIN_PHONE_DIGITS
    return Check(f"contact_{channel}", True) if usable else Check(f"contact_{channel}", False, f"no {field}")


def _quiet_hours(now: datetime, zone: ZoneInfo, zone_note: str, rules: ContactRules) -> _Verdict:
    local = now.astimezone(zone)
    detail = f"{local:%H:%M} {zone.key}" + (f", {zone_note}" if zone_note else "")
    if not _is_quiet(local.time(), rules):
        return Check("quiet_hours", True, detail), None
    return Check("quiet_hours", False, detail), _next_quiet_end(now, zone, rules)


def _cap(name: str, times: list[datetime], cap: int, now: datetime, rules: ContactRules) -> _Verdict:
    """At most `cap` sends in the rolling window (now - window, now]; a send exactly a window ago is out."""
    since = now - rules.window
    recent = sorted(t for t in times if t > since)
    detail = f"{len(recent)}/{cap} in {rules.window_days}d"
    if len(recent) < cap:
        return Check(name, True, detail), None
    # The channel reopens when all but cap - 1 of the recent sends have left the window.
    reopens = recent[len(recent) - cap] + rules.window if cap > 0 else None
    return Check(name, False, detail), reopens


def _suppression(history: ContactHistory, now: datetime, rules: ContactRules) -> _Verdict:
    limit = rules.suppress_after_no_response
    if history.unanswered < limit or history.last_unanswered_at is None:
        return Check("suppression", True, f"{history.unanswered}/{limit} unanswered"), None
    until = _as_utc(history.last_unanswered_at, "last_unanswered_at") + timedelta(days=rules.suppression_days)
    if now >= until:
        return Check("suppression", True, f"{history.unanswered} unanswered, lapsed {_stamp(until)}"), None
    return Check("suppression", False, f"{history.unanswered} unanswered, until {_stamp(until)}"), until


# --- deciding --------------------------------------------------------------------------------------


def _decide(channel: str, verdicts: Sequence[_Verdict], zone: ZoneInfo, rules: ContactRules) -> Decision:
    checks = tuple(check for check, _ in verdicts)
    failed = [(check, reopens) for check, reopens in verdicts if not check.passed]
    if not failed:
        return Decision(True, channel, checks, None, "send")
    reason = _reason([check for check, _ in failed])
    reopen_times = [reopens for _, reopens in failed if reopens is not None]
    next_allowed: datetime | None = None
    if len(reopen_times) == len(failed):
        # Every block lifts with time: the latest lift, moved out of quiet hours if it falls in them.
        next_allowed = max(reopen_times)
        if _is_quiet(next_allowed.astimezone(zone).time(), rules):
            next_allowed = _next_quiet_end(next_allowed, zone, rules)
    route: Route = "defer" if [check.name for check, _ in failed] == ["quiet_hours"] else "blocked"
    return Decision(False, channel, checks, reason, route, next_allowed)


def _specialist(vulnerability: Check) -> Decision:
    return Decision(False, None, (vulnerability,), _reason([vulnerability]), "specialist")


def _most_informative(tried: Sequence[Decision]) -> Decision:
    """The soonest defer, else the block lifted soonest by time, else the first (preferred) channel's block."""
    for route in ("defer", "blocked"):
        timed = [d for d in tried if d.route == route and d.next_allowed_at is not None]
        if timed:
            return min(timed, key=lambda d: d.next_allowed_at or datetime.max.replace(tzinfo=UTC))
    return tried[0]


def _reason(failed: Sequence[Check]) -> str:
    return "; ".join(f"{c.name}: {c.detail}" if c.detail else c.name for c in failed)


# --- time and values -------------------------------------------------------------------------------


def _is_quiet(local: time, rules: ContactRules) -> bool:
    start, end = rules.quiet_start, rules.quiet_end
    if start == end:
        return False
    if start > end:  # across midnight, the usual case: 21:00 to 08:00
        return local >= start or local < end
    return start <= local < end


def _next_quiet_end(after: datetime, zone: ZoneInfo, rules: ContactRules) -> datetime:
    """The next quiet_end wall-clock time after `after` in `zone`, in UTC; the date is local, so a DST
    change overnight moves the UTC hour, not the local one."""
    local = after.astimezone(zone)
    day: date = local.date() if local.time() < rules.quiet_end else local.date() + timedelta(days=1)
    return datetime.combine(day, rules.quiet_end, tzinfo=zone).astimezone(UTC)


def _zone(customer: CustomerView) -> tuple[ZoneInfo, str]:
    """The customer's time zone, or Europe/London with a note saying why."""
    key = customer.get("timezone", "").strip()
    if not key:
        return ZoneInfo(FALLBACK_TIMEZONE), "no timezone recorded"
    try:
        return ZoneInfo(key), ""
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return ZoneInfo(FALLBACK_TIMEZONE), f"unknown timezone {key[:40]!r}"


def _flag(raw: str | None) -> bool | None:
    """True, False, or None for a value that is missing or neither."""
    value = (raw or "").strip().lower()
    return True if value in _TRUE else False if value in _FALSE else None


def _unreadable(raw: str | None) -> str:
    return "not recorded" if raw is None or not raw.strip() else f"unreadable {raw.strip()[:20]!r}"


def _require_aware(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {value.isoformat()}")


def _as_utc(value: datetime, what: str) -> datetime:
    _require_aware(value, what)
    return value.astimezone(UTC)


def _stamp(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%dT%H:%MZ}"
