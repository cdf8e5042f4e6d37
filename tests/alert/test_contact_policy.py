"""The contact policy as pure functions: consent, vulnerability, quiet hours across time zones and DST,
rolling caps, suppression, contact details, channel choice and the audit line. Fixed datetimes only."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from equilibrate.alert.contact_policy import (
    DEFAULT_RULES,
    Check,
    ContactHistory,
    ContactRules,
    Decision,
    Sent,
    choose,
    evaluate,
    format_checks,
)
from equilibrate.errors import ConfigError
from equilibrate.settings import Settings, load_settings

CHANNELS = ("email", "sms", "app", "voice")
MESSAGES = ("email", "sms", "app")
LONDON = ZoneInfo("Europe/London")
KOLKATA = ZoneInfo("Asia/Kolkata")
WINTER_NOON = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)  # a Monday; London on GMT (UTC+0)
SUMMER_NOON = datetime(2024, 7, 15, 12, 0, tzinfo=UTC)  # London on BST (UTC+1)
NONE = ContactHistory()
DAY = timedelta(days=1)


def customer(**fields: str) -> dict[str, str]:
    """A customer:{id} hash who may be contacted on every channel, with `fields` changed."""
    row = {
        "customer_id": "C0000001",
        "preferred_channel": "sms",
        "language": "en",
        "timezone": "Europe/London",
        "consent_email": "true",
        "consent_sms": "true",
        "consent_app": "true",
        "consent_voice": "true",
        "vulnerable": "false",
        "phone": "+447700900123",
        "email": "priya.shah12@example.com",
    }
    row.update(fields)
    return row


def without(row: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in row.items() if k not in names}


def local(zone: ZoneInfo, day: tuple[int, int, int], hour: int, minute: int) -> datetime:
    """A wall-clock time in `zone`, as UTC."""
    return datetime(*day, hour, minute, tzinfo=zone).astimezone(UTC)


def check(decision: Decision, name: str) -> Check:
    return next(c for c in decision.checks if c.name == name)


def failed(decision: Decision) -> list[str]:
    return [c.name for c in decision.checks if not c.passed]


def sends(channel: str, *times: datetime) -> ContactHistory:
    return ContactHistory(sent=tuple(Sent(t, channel) for t in times))


# --- all clear -------------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_consenting_customer_at_noon_is_sent_to(channel: str) -> None:
    decision = evaluate(customer(), channel, NONE, WINTER_NOON)
    assert decision.allowed
    assert (decision.route, decision.channel, decision.reason, decision.next_allowed_at) == (
        "send",
        channel,
        None,
        None,
    )
    assert all(c.passed for c in decision.checks)


def test_check_names_per_channel() -> None:
    assert [c.name for c in evaluate(customer(), "sms", NONE, WINTER_NOON).checks] == [
        "vulnerability",
        "consent_sms",
        "opt_out_sms",
        "contact_sms",
        "quiet_hours",
        "cap_sms",
        "cap_total",
        "suppression",
    ]
    assert [c.name for c in evaluate(customer(), "voice", NONE, WINTER_NOON).checks] == [
        "vulnerability",
        "consent_voice",
        "opt_out_voice",
        "contact_voice",
        "quiet_hours",
        "cap_calls",
        "suppression",
    ]


# --- consent and opt-out ---------------------------------------------------------------------------


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize(("value", "detail"), [("false", "refused"), ("", "not recorded"), ("maybe", "unreadable")])
def test_without_consent_a_channel_is_blocked_and_only_that_one(channel: str, value: str, detail: str) -> None:
    who = customer(**{f"consent_{channel}": value})
    decision = evaluate(who, channel, NONE, WINTER_NOON)
    assert not decision.allowed
    assert decision.route == "blocked"
    assert decision.next_allowed_at is None  # time does not give consent
    assert failed(decision) == [f"consent_{channel}"]
    assert detail in check(decision, f"consent_{channel}").detail
    assert decision.reason is not None
    assert decision.reason.startswith(f"consent_{channel}: ")
    for other in CHANNELS:
        if other != channel:
            assert evaluate(who, other, NONE, WINTER_NOON).allowed, other


@pytest.mark.parametrize("channel", CHANNELS)
def test_missing_consent_field_blocks(channel: str) -> None:
    decision = evaluate(without(customer(), f"consent_{channel}"), channel, NONE, WINTER_NOON)
    assert failed(decision) == [f"consent_{channel}"]
    assert check(decision, f"consent_{channel}").detail == "not recorded"


@pytest.mark.parametrize("value", ["TRUE", "True", " true ", "1", "yes"])
def test_consent_spellings(value: str) -> None:
    assert evaluate(customer(consent_sms=value), "sms", NONE, WINTER_NOON).allowed


@pytest.mark.parametrize("channel", CHANNELS)
def test_an_opt_out_blocks_its_channel_only(channel: str) -> None:
    who = customer(**{f"opted_out_{channel}": "true"})
    decision = evaluate(who, channel, NONE, WINTER_NOON)
    assert failed(decision) == [f"opt_out_{channel}"]
    assert check(decision, f"opt_out_{channel}").detail == "opted out"
    assert decision.next_allowed_at is None
    for other in CHANNELS:
        if other != channel:
            assert evaluate(who, other, NONE, WINTER_NOON).allowed, other


@pytest.mark.parametrize(
    ("value", "allowed"), [("false", True), ("", True), ("0", True), ("true", False), ("?", False)]
)
def test_opt_out_values(value: str, allowed: bool) -> None:
    """An opt-out we cannot read counts as an opt-out."""
    assert evaluate(customer(opted_out_sms=value), "sms", NONE, WINTER_NOON).allowed is allowed


# --- vulnerability ---------------------------------------------------------------------------------


def test_a_vulnerable_customer_goes_to_a_specialist_whatever_the_consents() -> None:
    for consents in itertools.product(("true", "false"), repeat=4):
        who = customer(vulnerable="true", **{f"consent_{ch}": v for ch, v in zip(CHANNELS, consents, strict=True)})
        for when in (WINTER_NOON, WINTER_NOON.replace(hour=23)):
            for channel in CHANNELS:
                decision = evaluate(who, channel, NONE, when)
                assert (decision.allowed, decision.route, decision.channel) == (False, "specialist", None)
                assert decision.next_allowed_at is None
                assert [c.name for c in decision.checks] == ["vulnerability"]
            picked = choose(who, CHANNELS, NONE, when)
            assert (picked.allowed, picked.route, picked.channel) == (False, "specialist", None)


@pytest.mark.parametrize("value", ["true", "TRUE", "", "unknown"])
def test_vulnerability_fails_closed(value: str) -> None:
    decision = evaluate(customer(vulnerable=value), "email", NONE, WINTER_NOON)
    assert decision.route == "specialist"
    assert "specialist" in (decision.reason or "")
    assert evaluate(without(customer(), "vulnerable"), "email", NONE, WINTER_NOON).route == "specialist"


# --- contact details -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drop", "blocked", "open_"),
    [
        (("email",), ["email"], ["sms", "app", "voice"]),
        (("phone",), ["sms", "voice"], ["email", "app"]),
        (("email", "phone"), ["email", "sms", "voice"], ["app"]),
    ],
)
def test_missing_contact_details(drop: tuple[str, ...], blocked: list[str], open_: list[str]) -> None:
    who = without(customer(), *drop)
    for channel in blocked:
        decision = evaluate(who, channel, NONE, WINTER_NOON)
        assert failed(decision) == [f"contact_{channel}"], channel
        assert decision.next_allowed_at is None
    for channel in open_:
        assert evaluate(who, channel, NONE, WINTER_NOON).allowed, channel


@pytest.mark.parametrize(("field", "value"), [("email", "  "), ("email", "not-an-address"), ("phone", "07")])
def test_unusable_contact_details(field: str, value: str) -> None:
    channel = "email" if field == "email" else "sms"
    decision = evaluate(customer(**{field: value}), channel, NONE, WINTER_NOON)
    assert failed(decision) == [f"contact_{channel}"]
    assert check(decision, f"contact_{channel}").detail == f"no {field}"


# --- quiet hours -----------------------------------------------------------------------------------

EDGES = ((7, 59, False), (8, 0, True), (20, 59, True), (21, 0, False))
QUIET_CASES = [  # (zone, local date, hour, minute, allowed): winter and summer in London, and Kolkata
    (zone, day, hour, minute, allowed)
    for zone, day in ((LONDON, (2024, 1, 15)), (LONDON, (2024, 7, 15)), (KOLKATA, (2024, 1, 15)))
    for hour, minute, allowed in EDGES
]


@pytest.mark.parametrize(("zone", "day", "hour", "minute", "allowed"), QUIET_CASES)
def test_quiet_hours_edges_in_local_time(
    zone: ZoneInfo, day: tuple[int, int, int], hour: int, minute: int, allowed: bool
) -> None:
    now = local(zone, day, hour, minute)
    who = customer(timezone=zone.key)
    for channel in CHANNELS:
        decision = evaluate(who, channel, NONE, now)
        quiet = check(decision, "quiet_hours")
        assert quiet.passed is allowed
        assert quiet.detail == f"{hour:02d}:{minute:02d} {zone.key}"
        assert decision.allowed is allowed
        if not allowed:
            assert decision.route == "defer"
            assert decision.channel == channel
            assert decision.next_allowed_at is not None
            assert decision.next_allowed_at.astimezone(zone).time() == time(8, 0)


def test_london_summer_edges_are_an_hour_earlier_in_utc() -> None:
    """07:59 BST is 06:59 UTC: a policy reading UTC as local time would get these wrong."""
    assert not evaluate(customer(), "sms", NONE, datetime(2024, 7, 15, 6, 59, tzinfo=UTC)).allowed
    assert evaluate(customer(), "sms", NONE, datetime(2024, 7, 15, 7, 0, tzinfo=UTC)).allowed
    assert evaluate(customer(), "sms", NONE, datetime(2024, 7, 15, 19, 59, tzinfo=UTC)).allowed
    assert not evaluate(customer(), "sms", NONE, datetime(2024, 7, 15, 20, 0, tzinfo=UTC)).allowed


def test_a_time_fine_in_london_is_quiet_in_kolkata() -> None:
    now = datetime(2024, 1, 15, 16, 0, tzinfo=UTC)  # 16:00 in London, 21:30 in Kolkata
    assert evaluate(customer(), "sms", NONE, now).allowed
    decision = evaluate(customer(timezone="Asia/Kolkata"), "sms", NONE, now)
    assert decision.route == "defer"
    assert check(decision, "quiet_hours").detail == "21:30 Asia/Kolkata"
    assert decision.next_allowed_at == datetime(2024, 1, 16, 2, 30, tzinfo=UTC)  # 08:00 IST


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # early morning: today's 08:00
        (datetime(2024, 1, 15, 7, 12, tzinfo=UTC), datetime(2024, 1, 15, 8, 0, tzinfo=UTC)),
        (datetime(2024, 7, 15, 6, 12, tzinfo=UTC), datetime(2024, 7, 15, 7, 0, tzinfo=UTC)),
        # evening: tomorrow's 08:00
        (datetime(2024, 1, 15, 22, 0, tzinfo=UTC), datetime(2024, 1, 16, 8, 0, tzinfo=UTC)),
        # clocks go forward overnight (31 March 2024, 01:00 UTC): 22:00 GMT -> 08:00 BST = 07:00 UTC
        (datetime(2024, 3, 30, 22, 0, tzinfo=UTC), datetime(2024, 3, 31, 7, 0, tzinfo=UTC)),
        (datetime(2024, 3, 31, 0, 30, tzinfo=UTC), datetime(2024, 3, 31, 7, 0, tzinfo=UTC)),
        # clocks go back overnight (27 October 2024, 01:00 UTC): 22:30 BST -> 08:00 GMT = 08:00 UTC
        (datetime(2024, 10, 26, 21, 30, tzinfo=UTC), datetime(2024, 10, 27, 8, 0, tzinfo=UTC)),
        (datetime(2024, 10, 27, 0, 30, tzinfo=UTC), datetime(2024, 10, 27, 8, 0, tzinfo=UTC)),  # 01:30 BST
        (datetime(2024, 10, 27, 1, 30, tzinfo=UTC), datetime(2024, 10, 27, 8, 0, tzinfo=UTC)),  # 01:30 GMT
    ],
)
def test_next_allowed_at_is_the_next_local_eight_oclock(now: datetime, expected: datetime) -> None:
    decision = evaluate(customer(), "email", NONE, now)
    assert decision.route == "defer"
    assert decision.next_allowed_at == expected
    assert decision.next_allowed_at.tzinfo is UTC


@pytest.mark.parametrize("start", [datetime(2024, 3, 29, tzinfo=UTC), datetime(2024, 10, 25, tzinfo=UTC)])
@pytest.mark.parametrize("zone", [LONDON, KOLKATA])
def test_defer_property_across_dst_weeks(start: datetime, zone: ZoneInfo) -> None:
    """Every 7 minutes over four days around a clock change: a quiet moment defers to the earliest
    permitted minute, which is 08:00 local, in the future, and within one night."""
    who = customer(timezone=zone.key)
    for step in range(4 * 24 * 60 // 7):
        now = start + timedelta(minutes=7 * step)
        hour = now.astimezone(zone).hour
        decision = evaluate(who, "sms", NONE, now)
        assert decision.allowed is (8 <= hour < 21), now
        if decision.allowed:
            continue
        nxt = decision.next_allowed_at
        assert nxt is not None
        assert now < nxt <= now + timedelta(hours=12), now
        assert nxt.astimezone(zone).time() == time(8, 0), now
        assert evaluate(who, "sms", NONE, nxt).allowed
        assert not evaluate(who, "sms", NONE, nxt - timedelta(minutes=1)).allowed


@pytest.mark.parametrize("zone_value", ["Mars/Olympus", "Europe", "../../etc/passwd", "europe/london", "x" * 300])
def test_an_invalid_time_zone_falls_back_to_london_and_says_so(zone_value: str) -> None:
    now = datetime(2024, 7, 15, 7, 30, tzinfo=UTC)  # 08:30 BST: allowed in London, quiet if read as UTC
    decision = evaluate(customer(timezone=zone_value), "sms", NONE, now)
    assert decision.allowed
    detail = check(decision, "quiet_hours").detail
    assert detail.startswith("08:30 Europe/London, unknown timezone ")
    assert repr(zone_value[:40]) in detail


@pytest.mark.parametrize("who", [without(customer(), "timezone"), customer(timezone=" ")])
def test_a_missing_time_zone_falls_back_to_london(who: dict[str, str]) -> None:
    decision = evaluate(who, "sms", NONE, datetime(2024, 7, 15, 6, 30, tzinfo=UTC))
    assert decision.route == "defer"
    assert check(decision, "quiet_hours").detail == "07:30 Europe/London, no timezone recorded"
    assert decision.next_allowed_at == datetime(2024, 7, 15, 7, 0, tzinfo=UTC)


def test_other_quiet_windows() -> None:
    daytime = ContactRules(quiet_start=time(12, 0), quiet_end=time(14, 0))
    assert not evaluate(customer(), "sms", NONE, WINTER_NOON, daytime).allowed
    assert evaluate(customer(), "sms", NONE, WINTER_NOON.replace(hour=14), daytime).allowed
    assert evaluate(customer(), "sms", NONE, WINTER_NOON.replace(hour=23), daytime).allowed
    never = ContactRules(quiet_start=time(0, 0), quiet_end=time(0, 0))
    assert all(evaluate(customer(), "sms", NONE, WINTER_NOON.replace(hour=h), never).allowed for h in range(24))


# --- caps ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", MESSAGES)
def test_one_message_per_channel_per_seven_days(channel: str) -> None:
    first = WINTER_NOON
    history = sends(channel, first)
    later = evaluate(customer(), channel, history, first + timedelta(hours=1))
    assert failed(later) == [f"cap_{channel}"]
    assert check(later, f"cap_{channel}").detail == "1/1 in 7d"
    assert later.route == "blocked"
    assert later.next_allowed_at == first + 7 * DAY
    assert not evaluate(customer(), channel, history, first + 7 * DAY - timedelta(seconds=1)).allowed
    assert evaluate(customer(), channel, history, first + 7 * DAY).allowed  # the window is (now - 7d, now]
    eight_days = evaluate(customer(), channel, history, first + 8 * DAY)
    assert eight_days.allowed
    assert check(eight_days, f"cap_{channel}").detail == "0/1 in 7d"
    for other in MESSAGES:
        if other != channel:
            other_decision = evaluate(customer(), other, history, first + timedelta(hours=1))
            assert other_decision.allowed, other
            assert check(other_decision, "cap_total").detail == "1/3 in 7d"


def test_three_messages_in_total_per_seven_days() -> None:
    loose = ContactRules(per_channel_cap=10)
    history = sends("sms", WINTER_NOON - 3 * DAY, WINTER_NOON - 2 * DAY, WINTER_NOON - DAY)
    decision = evaluate(customer(), "email", history, WINTER_NOON, loose)
    assert failed(decision) == ["cap_total"]
    assert check(decision, "cap_total").detail == "3/3 in 7d"
    assert decision.next_allowed_at == WINTER_NOON + 4 * DAY  # the oldest leaves the window
    assert evaluate(customer(), "email", history, WINTER_NOON + 4 * DAY, loose).allowed
    two = sends("sms", WINTER_NOON - 2 * DAY, WINTER_NOON - DAY)
    assert evaluate(customer(), "email", two, WINTER_NOON, loose).allowed


def test_one_per_channel_then_the_total_cap_with_default_rules() -> None:
    history = ContactHistory(
        sent=(Sent(WINTER_NOON - 3 * DAY, "email"), Sent(WINTER_NOON - 2 * DAY, "sms"), Sent(WINTER_NOON - DAY, "app"))
    )
    for channel in MESSAGES:
        decision = evaluate(customer(), channel, history, WINTER_NOON)
        assert failed(decision) == [f"cap_{channel}", "cap_total"], channel
    assert evaluate(customer(), "voice", history, WINTER_NOON).allowed  # calls are counted apart


def test_seven_call_attempts_in_seven_days() -> None:
    six = sends("voice", *(WINTER_NOON - timedelta(hours=10 * i + 1) for i in range(6)))  # oldest 09:00
    assert check(evaluate(customer(), "voice", six, WINTER_NOON), "cap_calls").detail == "6/7 in 7d"
    assert evaluate(customer(), "voice", six, WINTER_NOON).allowed
    seven = six.with_sent(WINTER_NOON - timedelta(minutes=5), "voice")
    decision = evaluate(customer(), "voice", seven, WINTER_NOON)
    assert failed(decision) == ["cap_calls"]
    assert check(decision, "cap_calls").detail == "7/7 in 7d"
    assert min(s.at for s in seven.sent) == datetime(2024, 1, 13, 9, 0, tzinfo=UTC)
    assert decision.next_allowed_at == datetime(2024, 1, 20, 9, 0, tzinfo=UTC)
    # call attempts are not messages: every message channel is still open, with nothing counted
    for channel in MESSAGES:
        message = evaluate(customer(), channel, seven, WINTER_NOON)
        assert message.allowed
        assert check(message, "cap_total").detail == "0/3 in 7d"


def test_a_cap_that_lifts_in_quiet_hours_reopens_the_next_morning() -> None:
    late = datetime(2024, 1, 15, 22, 30, tzinfo=UTC)  # in the history, e.g. under older rules
    decision = evaluate(customer(), "sms", sends("sms", late), WINTER_NOON + DAY)
    assert decision.route == "blocked"
    assert decision.next_allowed_at == datetime(2024, 1, 23, 8, 0, tzinfo=UTC)


def test_a_zero_cap_never_lifts() -> None:
    decision = evaluate(customer(), "voice", NONE, WINTER_NOON, ContactRules(call_attempt_cap=0))
    assert failed(decision) == ["cap_calls"]
    assert decision.next_allowed_at is None


def test_caps_and_quiet_hours_together_are_blocked_not_deferred() -> None:
    night = datetime(2024, 1, 15, 23, 0, tzinfo=UTC)
    decision = evaluate(customer(), "sms", sends("sms", night - DAY), night)
    assert failed(decision) == ["quiet_hours", "cap_sms"]
    assert decision.route == "blocked"
    assert decision.next_allowed_at == datetime(2024, 1, 22, 8, 0, tzinfo=UTC)  # 23:00 + 6d is quiet


# --- suppression -----------------------------------------------------------------------------------


def _unanswered(n: int, last: datetime) -> ContactHistory:
    return ContactHistory.from_log((last - timedelta(days=10 * i), "sms", False) for i in range(n))


def test_three_unanswered_interventions_suppress_for_thirty_days() -> None:
    last = WINTER_NOON - 10 * DAY
    history = _unanswered(3, last)
    assert (history.unanswered, history.last_unanswered_at) == (3, last)
    for channel in CHANNELS:
        decision = evaluate(customer(), channel, history, WINTER_NOON)
        assert failed(decision) == ["suppression"], channel
        assert decision.route == "blocked"
        assert decision.next_allowed_at == last + 30 * DAY
    assert not evaluate(customer(), "email", history, last + 30 * DAY - timedelta(seconds=1)).allowed
    lifted = evaluate(customer(), "email", history, last + 30 * DAY)
    assert lifted.allowed
    assert check(lifted, "suppression").detail == "3 unanswered, lapsed 2024-02-04T12:00Z"
    assert evaluate(customer(), "email", history, last + 31 * DAY).allowed


def test_two_unanswered_do_not_suppress() -> None:
    decision = evaluate(customer(), "email", _unanswered(2, WINTER_NOON - DAY), WINTER_NOON)
    assert decision.allowed
    assert check(decision, "suppression").detail == "2/3 unanswered"


def test_a_response_lifts_suppression() -> None:
    history = _unanswered(3, WINTER_NOON - 10 * DAY)
    answered = history.with_outcome(True, WINTER_NOON - DAY)
    assert (answered.unanswered, answered.last_unanswered_at) == (0, None)
    assert evaluate(customer(), "email", answered, WINTER_NOON).allowed
    log = [(WINTER_NOON - timedelta(days=d), "sms", r) for d, r in ((40, False), (30, False), (20, True), (10, False))]
    assert ContactHistory.from_log(log).unanswered == 1


def test_unanswered_after_a_lapse_suppresses_again() -> None:
    """Past the 30 days one more try is allowed; unanswered, it suppresses for another 30."""
    history = _unanswered(3, WINTER_NOON - 31 * DAY).with_sent(WINTER_NOON, "email").with_outcome(False, WINTER_NOON)
    decision = evaluate(customer(), "sms", history, WINTER_NOON + 2 * DAY)
    assert failed(decision) == ["suppression"]
    assert decision.next_allowed_at == WINTER_NOON + 30 * DAY


def test_call_attempts_of_one_intervention_count_once() -> None:
    """`responded` is given on one entry per intervention: pending attempts (None) neither count nor reset."""
    start = WINTER_NOON - 20 * DAY
    log: list[tuple[datetime, str, bool | None]] = []
    for intervention in range(3):
        at = start + intervention * 5 * DAY
        log += [(at + timedelta(hours=h), "voice", None) for h in range(3)]
        log.append((at + timedelta(hours=3), "voice", intervention == 0))  # only the first was answered
    history = ContactHistory.from_log(log)
    assert history.unanswered == 2
    assert len(history.sent) == 12
    assert evaluate(customer(), "voice", history, WINTER_NOON).allowed


def test_incremental_updates_match_the_log() -> None:
    log: list[tuple[datetime, str, bool | None]] = [
        (WINTER_NOON - 9 * DAY, "sms", False),
        (WINTER_NOON - 6 * DAY, "email", None),
        (WINTER_NOON - 3 * DAY, "app", False),
    ]
    built = ContactHistory()
    for at, channel, responded in log:
        built = built.with_sent(at, channel)
        if responded is not None:
            built = built.with_outcome(responded, at)
    assert built == ContactHistory.from_log(reversed(log))


# --- choosing a channel ----------------------------------------------------------------------------


def test_choose_takes_the_preferred_channel_when_recommended_and_allowed() -> None:
    decision = choose(customer(preferred_channel="sms"), ["email", "sms", "app"], NONE, WINTER_NOON)
    assert (decision.allowed, decision.channel, decision.route) == (True, "sms", "send")
    assert [c.name for c in decision.checks if c.name.startswith("consent_")] == ["consent_sms"]


def test_choose_keeps_the_recommendation_order_when_the_preference_is_not_recommended() -> None:
    decision = choose(customer(preferred_channel="voice"), ["email", "sms"], NONE, WINTER_NOON)
    assert decision.channel == "email"


def test_choose_falls_through_blocked_channels_and_records_every_check() -> None:
    who = without(customer(preferred_channel="sms", consent_sms="false"), "email")
    decision = choose(who, ["email", "sms", "app"], NONE, WINTER_NOON)
    assert (decision.allowed, decision.channel) == (True, "app")
    names = [c.name for c in decision.checks]
    assert len(names) == len(set(names))
    assert names == [
        "vulnerability",
        "consent_sms",
        "opt_out_sms",
        "contact_sms",
        "quiet_hours",
        "cap_sms",
        "cap_total",
        "suppression",
        "consent_email",
        "opt_out_email",
        "contact_email",
        "cap_email",
        "consent_app",
        "opt_out_app",
        "contact_app",
        "cap_app",
    ]
    assert failed(decision) == ["consent_sms", "contact_email"]


def test_choose_with_nothing_allowed_prefers_a_block_that_time_lifts() -> None:
    who = customer(preferred_channel="email", consent_email="false")
    decision = choose(who, ["email", "sms"], sends("sms", WINTER_NOON - DAY), WINTER_NOON)
    assert (decision.allowed, decision.route, decision.channel) == (False, "blocked", "sms")
    assert decision.next_allowed_at == WINTER_NOON + 6 * DAY
    assert failed(decision) == ["consent_email", "cap_sms"]


def test_choose_with_nothing_allowed_and_nothing_timed_reports_the_first_channel() -> None:
    who = customer(preferred_channel="app", consent_app="false", consent_email="false")
    decision = choose(who, ["email", "app"], NONE, WINTER_NOON)
    assert (decision.route, decision.channel, decision.next_allowed_at) == ("blocked", "app", None)
    assert decision.reason == "consent_app: refused"


def test_choose_defers_in_quiet_hours_on_the_preferred_channel() -> None:
    night = datetime(2024, 1, 15, 22, 0, tzinfo=UTC)
    decision = choose(customer(preferred_channel="app"), ["email", "app"], NONE, night)
    assert (decision.route, decision.channel) == ("defer", "app")
    assert decision.next_allowed_at == datetime(2024, 1, 16, 8, 0, tzinfo=UTC)


def test_choose_prefers_the_soonest_defer_over_a_block() -> None:
    night = datetime(2024, 1, 15, 22, 0, tzinfo=UTC)
    history = sends("email", night - DAY)
    decision = choose(customer(preferred_channel="email"), ["email", "sms"], history, night)
    assert (decision.route, decision.channel) == ("defer", "sms")


def test_choose_without_channels_is_blocked() -> None:
    decision = choose(customer(), [], NONE, WINTER_NOON)
    assert (decision.allowed, decision.route, decision.channel) == (False, "blocked", None)
    assert decision.reason == "channels: none recommended"


# --- the audit line --------------------------------------------------------------------------------


def test_format_checks_is_stable() -> None:
    decision = evaluate(customer(), "sms", sends("email", WINTER_NOON - DAY), datetime(2024, 1, 15, 7, 12, tzinfo=UTC))
    assert decision.audit == format_checks(decision.checks)
    assert decision.audit == (
        "vulnerability:ok;consent_sms:ok;opt_out_sms:ok;contact_sms:ok;quiet_hours:blocked(07:12 Europe/London);"
        "cap_sms:ok(0/1 in 7d);cap_total:ok(1/3 in 7d);suppression:ok(0/3 unanswered)"
    )
    assert decision.reason == "quiet_hours: 07:12 Europe/London"
    assert format_checks([]) == ""
    assert format_checks([Check("x", False, "a;b")]) == "x:blocked(a,b)"


def test_the_audit_line_never_shows_contact_details() -> None:
    who = customer()
    for channel in CHANNELS:
        line = choose(who, [channel], NONE, WINTER_NOON).audit
        assert who["phone"] not in line
        assert who["email"] not in line


# --- rules, settings and misuse --------------------------------------------------------------------


def test_rules_from_default_settings_are_the_defaults() -> None:
    assert ContactRules.from_settings(Settings(_env_file=None)) == DEFAULT_RULES == ContactRules()


def test_rules_from_settings_overrides() -> None:
    settings = Settings(
        _env_file=None,
        contact_quiet_start="20:30",
        contact_quiet_end="09:15",
        contact_cap_per_channel=2,
        contact_cap_total=5,
        contact_cap_calls=3,
        contact_window_days=14,
        contact_suppress_after_no_response=4,
        contact_suppression_days=60,
    )
    assert ContactRules.from_settings(settings) == ContactRules(time(20, 30), time(9, 15), 2, 5, 3, 14, 4, 60)


@pytest.mark.parametrize("value", ["8:00", "24:00", "08:60", "0800", "08:00:00", "ab:cd", ""])
def test_quiet_hours_settings_must_be_hh_mm(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CONTACT_QUIET_END", value)
    with pytest.raises(ConfigError, match="CONTACT_QUIET_END"):
        load_settings()


def test_misuse_is_an_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(customer(), "sms", NONE, datetime(2024, 1, 15, 12, 0))  # noqa: DTZ001
    with pytest.raises(ValueError, match="unknown channel"):
        evaluate(customer(), "pigeon", NONE, WINTER_NOON)
    with pytest.raises(ValueError, match="timezone-aware"):
        Sent(datetime(2024, 1, 15, 12, 0), "sms")  # noqa: DTZ001
    with pytest.raises(ValueError, match="last_unanswered_at"):
        ContactHistory(unanswered=2)
    with pytest.raises(ValueError, match="negative"):
        ContactRules(total_cap=-1)
    with pytest.raises(ValueError, match="at least 1"):
        ContactRules(window_days=0)
    with pytest.raises(ValueError, match="wall-clock"):
        ContactRules(quiet_end=time(8, 0, tzinfo=UTC))


def test_now_in_another_offset_is_the_same_instant() -> None:
    ist_now = datetime(2024, 1, 15, 12, 0, tzinfo=UTC).astimezone(KOLKATA)
    assert evaluate(customer(), "sms", NONE, ist_now) == evaluate(customer(), "sms", NONE, WINTER_NOON)
