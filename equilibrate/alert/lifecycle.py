"""The intervention case lifecycle (pure): which step may follow which, and who may take it.

    proposed -> approved -> sent -> delivered -> outcome
         \\          \\        \\-> failed -> (retry) sent | outcome
          \\-> rejected  \\-> blocked (contact policy) -> approved again later, or outcome
    any open state -> outcome (closed with the result: responded, plan agreed, payment holiday,
                               no response, cured, missed payment, withdrawn, or
                               contact_blocked: the contact policy allowed no channel at all)

A step not in the table is refused with the case's current state named, so an operator clicking
twice, the API and the engine racing, or a replay after a crash cannot move a case backwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from equilibrate.errors import EquilibrateError

State = Literal["proposed", "approved", "rejected", "blocked", "sent", "delivered", "failed", "outcome"]
Outcome = Literal[
    "responded",
    "plan_agreed",
    "payment_holiday",
    "no_response",
    "cured",
    "missed_payment",
    "withdrawn",
    "contact_blocked",
]

STATES: tuple[State, ...] = ("proposed", "approved", "rejected", "blocked", "sent", "delivered", "failed", "outcome")
OUTCOMES: tuple[Outcome, ...] = (
    "responded",
    "plan_agreed",
    "payment_holiday",
    "no_response",
    "cured",
    "missed_payment",
    "withdrawn",
    "contact_blocked",
)
#: Outcomes that mean the customer answered (they reset the contact policy's no-response count).
RESPONDED: frozenset[str] = frozenset({"responded", "plan_agreed", "payment_holiday", "cured"})
#: Where each state may go next.
NEXT: Mapping[str, frozenset[str]] = {
    "proposed": frozenset({"approved", "rejected", "blocked", "outcome"}),
    "approved": frozenset({"sent", "blocked", "failed", "outcome"}),
    "blocked": frozenset({"approved", "outcome"}),
    "sent": frozenset({"delivered", "failed", "outcome"}),
    "failed": frozenset({"sent", "failed", "outcome"}),
    "delivered": frozenset({"outcome"}),
    "rejected": frozenset(),
    "outcome": frozenset(),
}
#: States in which a case is still open (counts towards "one open case per customer").
OPEN: frozenset[str] = frozenset({"proposed", "approved", "blocked", "sent", "failed", "delivered"})


class TransitionError(EquilibrateError):
    """A case cannot take this step from the state it is in."""


def check_transition(case_id: str, current: str, target: str, outcome: str | None = None) -> None:
    """Raise TransitionError unless `current -> target` is allowed (and an outcome is named when closing)."""
    if current not in NEXT:
        raise TransitionError(f"case {case_id} is in an unknown state {current!r}")
    if target not in NEXT:
        raise TransitionError(f"case {case_id}: unknown state {target!r}")
    if target not in NEXT[current]:
        allowed = ", ".join(sorted(NEXT[current])) or "nothing (it is closed)"
        raise TransitionError(f"case {case_id} is {current}: it can go to {allowed}, not {target}")
    if target == "outcome" and outcome not in OUTCOMES:
        raise TransitionError(f"case {case_id}: closing needs an outcome, one of {', '.join(OUTCOMES)}")
    if target != "outcome" and outcome is not None:
        raise TransitionError(f"case {case_id}: an outcome is recorded only when the case closes")


def is_open(state: str) -> bool:
    return state in OPEN
