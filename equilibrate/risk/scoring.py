"""Rule score and hardship type from a customer's features: pure functions, no I/O.

The same code serves the streaming risk engine, the periodic sweep (features evaluated at the
watermark) and batch evaluation. Every point carries its reason in plain language.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from equilibrate.risk.rules import Component, RiskRules

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
}


@dataclass(frozen=True, slots=True)
class Reason:
    signal: str
    feature: str
    points: int
    text: str


@dataclass(frozen=True, slots=True)
class RuleScore:
    score: int  # 0-10
    level: str  # LOW / MEDIUM / HIGH
    reasons: list[Reason] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Hardship:
    primary: str  # a hardship type, or "None"
    fired: dict[str, list[str]] = field(default_factory=dict)  # type -> the conditions that held


def _text(component: Component, value: float) -> str:
    return component.text.format(value=value, abs_value=abs(value), pct=value * 100)


def rule_score(features: Mapping[str, float], rules: RiskRules) -> RuleScore:
    """Points per signal (capped), their sum (0-10), the level, and why."""
    total = 0
    reasons: list[Reason] = []
    for name, signal in rules.signals.items():
        earned: list[Reason] = []
        for component in signal.components:
            value = float(features.get(component.feature, 0.0))
            pts = component.points(value)
            if pts:
                earned.append(Reason(name, component.feature, pts, _text(component, value)))
        granted = min(signal.max_points, sum(r.points for r in earned))
        # Keep the reasons that make up the capped points, most severe first.
        budget = granted
        for reason in sorted(earned, key=lambda r: -r.points):
            if budget <= 0:
                break
            pts = min(reason.points, budget)
            reasons.append(Reason(reason.signal, reason.feature, pts, reason.text))
            budget -= pts
        total += granted
    return RuleScore(total, rules.level(total), reasons)


def classify_hardship(features: Mapping[str, float], rules: RiskRules) -> Hardship:
    """The first hardship type (in the file's priority order) whose conditions hold, and all that fired."""
    fired: dict[str, list[str]] = {}
    for rule in rules.hardship:
        for group in rule.any_of:
            if all(_OPS[op](float(features.get(feat, 0.0)), value) for feat, op, value in group):
                fired[rule.type] = [f"{feat} {op} {value:g}" for feat, op, value in group]
                break
    primary = next(iter(fired), "None")
    return Hardship(primary, fired)
