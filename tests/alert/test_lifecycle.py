"""The case lifecycle: every allowed step works, every other one is refused with the state named."""

from __future__ import annotations

import itertools

import pytest

from equilibrate.alert.lifecycle import NEXT, OPEN, OUTCOMES, STATES, TransitionError, check_transition, is_open


def test_the_happy_path_and_a_retry_after_a_failure() -> None:
    path = ["proposed", "approved", "sent", "failed", "sent", "delivered"]
    for current, target in itertools.pairwise(path):
        check_transition("K1", current, target)
    check_transition("K1", "delivered", "outcome", "plan_agreed")


@pytest.mark.parametrize(("current", "target"), list(itertools.product(STATES, STATES)))
def test_every_step_outside_the_table_is_refused(current: str, target: str) -> None:
    outcome = "cured" if target == "outcome" else None
    if target in NEXT[current]:
        check_transition("K2", current, target, outcome)
    else:
        with pytest.raises(TransitionError, match=f"case K2 is {current}"):
            check_transition("K2", current, target, outcome)


def test_closed_cases_stay_closed_and_closing_needs_an_outcome() -> None:
    for closed in ("rejected", "outcome"):
        assert not is_open(closed) and not NEXT[closed]
        with pytest.raises(TransitionError, match="closed"):
            check_transition("K3", closed, "approved")
    with pytest.raises(TransitionError, match="needs an outcome"):
        check_transition("K3", "sent", "outcome")
    with pytest.raises(TransitionError, match="only when the case closes"):
        check_transition("K3", "proposed", "approved", "cured")
    with pytest.raises(TransitionError, match="unknown state"):
        check_transition("K3", "lost", "approved")
    assert set(OPEN) | {"rejected", "outcome"} == set(STATES)
    assert "missed_payment" in OUTCOMES and "no_response" in OUTCOMES
