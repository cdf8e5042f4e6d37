"""Rule score and hardship type from customers' features: pure functions, no I/O.

Vectorised over customers (numpy columns, as `features.compute.compute` returns them), so the
streaming engine, the periodic sweep against the watermark, a full re-score and batch evaluation
all run the same code. Every point carries its reason in plain language.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from equilibrate.risk.rules import Component, Condition, RiskRules

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]
Columns = Mapping[str, F64]

_OPS: dict[str, Callable[[F64, float], Mask]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
}
#: Levels the rules can give, by code (score_table.level indexes this).
RULE_LEVELS: tuple[str, ...] = ("LOW", "MEDIUM", "HIGH")


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


class _Clean:
    """The features as finite float64 columns (NaN 0, infinities the largest finite value), each
    column converted once per table: the rules read some features many times."""

    __slots__ = ("always", "features", "n", "seen")

    def __init__(self, features: Columns) -> None:
        self.features = features
        self.n = len(next(iter(features.values()))) if features else 0
        self.seen: dict[str, F64] = {}
        self.always: Mask | None = None

    def __call__(self, name: str) -> F64:
        found = self.seen.get(name)
        if found is None:
            values = self.features.get(name)
            if values is None:
                found = np.zeros(self.n)
            else:
                found = np.asarray(values, dtype=np.float64)
                if not np.isfinite(found).all():  # nan_to_num costs ~20 us even when nothing changes
                    found = np.nan_to_num(found)
            self.seen[name] = found
        return found


def _holds(column: _Clean, group: Sequence[Condition]) -> Mask:
    """Where every condition of `group` holds (read-only: an empty group shares one all-true mask)."""
    if not group:
        if column.always is None:
            column.always = np.ones(column.n, dtype=np.bool_)
        return column.always
    feature, op, value = group[0]
    mask = _OPS[op](column(feature), value)
    for feature, op, value in group[1:]:
        mask &= _OPS[op](column(feature), value)
    return mask


def _component_points(component: Component, values: F64, guard: Mask) -> I64:
    """Points of the most severe step each value reaches (0 when none is or the guard fails)."""
    pts = np.zeros(len(values), dtype=np.int64)
    reached = operator.ge if component.at_least is not None else operator.le
    for threshold, step in component.steps:  # mildest first: later steps overwrite
        pts[reached(values, threshold)] = step
    pts[~guard] = 0
    return pts


@dataclass(frozen=True)
class ScoreTable:
    """Rule scores of many customers: totals, levels and the points behind them."""

    components: list[tuple[str, Component]]  # (signal, component), column order of `points`
    points: I64  # (customers, components): points granted after each signal's cap
    values: F64  # (customers, components): the feature value each component read
    score: I64  # 0-10
    level: I64  # index into RULE_LEVELS

    def __len__(self) -> int:
        return len(self.score)

    def level_name(self, i: int) -> str:
        return RULE_LEVELS[int(self.level[i])]

    def all_reasons(self) -> list[list[Reason]]:
        """Every customer's reasons, most points first (ties in file order), in one pass over the points."""
        out: list[list[Reason]] = [[] for _ in range(len(self))]
        rows, cols = np.nonzero(self.points > 0)
        texts: dict[tuple[int, float], str] = {}
        pts = self.points[rows, cols].tolist()
        vals = self.values[rows, cols].tolist()
        for i, j, p, value in zip(rows.tolist(), cols.tolist(), pts, vals, strict=True):
            text = texts.get((j, value))
            if text is None:
                component = self.components[j][1]
                text = texts[(j, value)] = component.text.format(value=value, abs_value=abs(value), pct=value * 100)
            out[i].append(Reason(self.components[j][0], self.components[j][1].feature, p, text))
        for reasons in out:
            if len(reasons) > 1:
                reasons.sort(key=lambda r: -r.points)  # stable: file order on ties
        return out


def score_table(features: Columns, rules: RiskRules) -> ScoreTable:
    """Points per signal (capped), their sum (0-10) and the level, for every customer at once."""
    column = _Clean(features)
    n = column.n
    components: list[tuple[str, Component]] = []
    points: list[I64] = []
    values: list[F64] = []
    for name, signal in rules.signals.items():
        raw = []
        for component in signal.components:
            value = column(component.feature)
            raw.append(_component_points(component, value, _holds(column, component.when)))
            components.append((name, component))
            values.append(value)
        total = raw[0].copy()
        for more in raw[1:]:
            total += more
        if (total <= signal.max_points).all():  # nobody over the cap (most calls): points as they are
            points.extend(raw)
            continue
        # Within the cap, the most severe components keep their points (stable: file order on ties).
        pts = np.stack(raw, axis=1)
        order = np.argsort(-pts, axis=1, kind="stable")
        ranked = np.take_along_axis(pts, order, axis=1)
        before = np.cumsum(ranked, axis=1) - ranked
        granted_ranked = np.clip(signal.max_points - before, 0, ranked)
        granted = np.empty_like(pts)
        np.put_along_axis(granted, order, granted_ranked, axis=1)
        points.extend(granted.T)
    matrix = np.stack(points, axis=1) if points else np.zeros((n, 0), dtype=np.int64)
    total = matrix.sum(axis=1)
    level = np.where(total >= rules.levels["HIGH"], 2, np.where(total >= rules.levels["MEDIUM"], 1, 0))
    vals = np.stack(values, axis=1) if values else np.zeros((n, 0))
    return ScoreTable(components, matrix, vals, total, level.astype(np.int64))


@dataclass(frozen=True)
class HardshipTable:
    """Hardship types of many customers: which types hold (in priority order) and the primary one."""

    types: list[str]  # rules.hardship order, then "None"
    held: Mask  # (customers, len(types) - 1)
    group: I64  # (customers, len(types) - 1): index of the first any_of group that held, -1 if none
    primary: I64  # index into types

    def primary_name(self, i: int) -> str:
        return self.types[int(self.primary[i])]


def hardship_table(features: Columns, rules: RiskRules) -> HardshipTable:
    column = _Clean(features)
    n = column.n
    held, groups = [], []
    for rule in rules.hardship:
        first = np.full(n, -1, dtype=np.int64)
        for g, group in enumerate(rule.any_of):
            first[(first < 0) & _holds(column, group)] = g
        groups.append(first)
        held.append(first >= 0)
    types = [r.type for r in rules.hardship] + ["None"]
    held_m = np.stack(held, axis=1) if held else np.zeros((n, 0), dtype=np.bool_)
    group_m = np.stack(groups, axis=1) if groups else np.zeros((n, 0), dtype=np.int64)
    primary = np.where(held_m.any(axis=1), np.argmax(held_m, axis=1), len(types) - 1)
    return HardshipTable(types, held_m, group_m, primary.astype(np.int64))


def _one(features: Mapping[str, float]) -> dict[str, F64]:
    return {name: np.array([float(value)]) for name, value in features.items()}


def rule_score(features: Mapping[str, float], rules: RiskRules) -> RuleScore:
    """One customer's rule score, level and reasons."""
    table = score_table(_one(features), rules)
    return RuleScore(int(table.score[0]), table.level_name(0), table.all_reasons()[0])


def classify_hardship(features: Mapping[str, float], rules: RiskRules) -> Hardship:
    """The first hardship type (in the file's priority order) whose conditions hold, and all that fired."""
    table = hardship_table(_one(features), rules)
    fired = {}
    for t, rule in enumerate(rules.hardship):
        g = int(table.group[0, t])
        if g >= 0:
            fired[rule.type] = [f"{feat} {op} {value:g}" for feat, op, value in rule.any_of[g]]
    return Hardship(table.primary_name(0), fired)
