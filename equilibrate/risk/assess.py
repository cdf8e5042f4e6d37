"""From features to what the risk engine writes: score, level, hardship, reasons, action. Pure.

Without a trained model the rules decide: the risk score (0-100) is the rule score x 10 and the
level is the rules' level. The model issue plugs a calibrated probability in through `Scorer`;
the rule score then stays beside it as the readable explanation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from equilibrate.model.reasons import ModelReason, top_reasons
from equilibrate.risk.policy import Policy
from equilibrate.risk.rules import RiskRules
from equilibrate.risk.scoring import HardshipTable, ScoreTable, hardship_table, score_table

if TYPE_CHECKING:
    from equilibrate.model.registry import Model

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
#: Reasons written into `customer:{id}` (the full list is kept in eq:risk:reasons:{id}).
TOP_REASONS = 3


@dataclass(frozen=True)
class Assessment:
    """Many customers' assessments, as columns (row i is `ids[i]`)."""

    ids: list[str]
    as_of_ms: I64  # event time each score is as of
    rules: ScoreTable
    hardship: HardshipTable
    risk_score: F64  # 0-100
    levels: list[str]
    actions: list[str]
    model_version: str
    model_reasons: list[list[ModelReason]] | None = None  # SHAP reasons when a model scored

    def __len__(self) -> int:
        return len(self.ids)

    def hardship_type(self, i: int) -> str:
        return self.hardship.primary_name(i)

    def reasons_text(self, i: int) -> str:
        if self.model_reasons is not None and self.model_reasons[i]:
            return "; ".join(r.text for r in self.model_reasons[i][:TOP_REASONS])
        return "; ".join(r.text for r in self.rules.reasons(i)[:TOP_REASONS])

    def scored_at(self, i: int) -> str:
        return _iso(int(self.as_of_ms[i]))

    def row(self, i: int) -> list[object]:
        """Values in keys.RISK_FIELDS order."""
        return [
            round(float(self.risk_score[i]), 1),
            self.levels[i],
            int(self.rules.score[i]),
            self.hardship_type(i),
            self.reasons_text(i),
            self.actions[i],
            self.scored_at(i),
            self.model_version,
        ]

    def explanation(self, i: int) -> dict[str, Any]:
        """Everything behind customer i's score (stored as JSON, shown by the console and the API)."""
        fired = {}
        for t, name in enumerate(self.hardship.types[:-1]):
            if self.hardship.held[i, t]:
                fired[name] = int(self.hardship.group[i, t])
        return {
            "customer_id": self.ids[i],
            "risk_score": round(float(self.risk_score[i]), 1),
            "risk_level": self.levels[i],
            "rule_score": int(self.rules.score[i]),
            "hardship_type": self.hardship_type(i),
            "hardship_rules_fired": fired,
            "reasons": [
                {"signal": r.signal, "feature": r.feature, "points": r.points, "text": r.text}
                for r in self.rules.reasons(i)
            ],
            "model_reasons": None
            if self.model_reasons is None
            else [
                {"feature": r.feature, "shap": r.contribution, "value": r.value, "text": r.text}
                for r in self.model_reasons[i]
            ],
            "recommended_action": self.actions[i],
            "scored_at": self.scored_at(i),
            "model_version": self.model_version,
        }


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def assess(
    ids: Sequence[str],
    features: Mapping[str, F64],
    as_of_ms: I64,
    rules: RiskRules,
    policy: Policy,
    *,
    model: Model | None = None,
) -> Assessment:
    """Score, level, hardship type and the policy's action for every customer at once.

    With a model, its calibrated probability (x 100) is the risk score and decides the level
    (rules.model_levels), and its SHAP values give the reasons; the rule score stays beside it.
    """
    table = score_table(features, rules)
    hardship = hardship_table(features, rules)
    explained: list[list[ModelReason]] | None = None
    if model is None:
        risk = table.score.astype(np.float64) * 10.0
        levels = [table.level_name(i) for i in range(len(table))]
        version = rules.version
    else:
        x = model.matrix(dict(features))
        risk = np.round(model.predict(x) * 100.0, 1)
        levels = [rules.model_level(p) for p in risk.tolist()]
        shap = model.contributions(x)
        explained = [top_reasons(model.features, shap[i], x[i]) for i in range(len(x))]
        version = model.version
    actions = _actions(policy, hardship, levels)
    return Assessment(
        list(ids),
        np.asarray(as_of_ms, dtype=np.int64),
        table,
        hardship,
        risk,
        levels,
        actions,
        version,
        explained,
    )


def _actions(policy: Policy, hardship: HardshipTable, levels: Sequence[str]) -> list[str]:
    cache: dict[tuple[int, str], str] = {}
    out = []
    for code, level in zip(hardship.primary.tolist(), levels, strict=True):
        action = cache.get((code, level))
        if action is None:
            action = cache[(code, level)] = policy.recommend(hardship.types[code], level).action
        out.append(action)
    return out
