"""From features to what the risk engine writes: score, level, hardship, reasons, action. Pure.

Without a trained model the rules decide: the risk score (0-100) is the rule score x 10 and the
level is the rules' level. The model issue plugs a calibrated probability in through `Scorer`;
the rule score then stays beside it as the readable explanation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from equilibrate.model.reasons import ModelReason, top_reasons_table
from equilibrate.risk.hysteresis import hold_levels
from equilibrate.risk.policy import Policy
from equilibrate.risk.rules import RiskRules
from equilibrate.risk.scoring import HardshipTable, Reason, ScoreTable, hardship_table, score_table

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
    #: Each level's release point on the risk score's scale (RiskRules.release_points).
    release: Mapping[str, float] = field(default_factory=dict)
    #: The levels from the score alone, where `held` kept some customers higher (else None).
    score_levels: list[str] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def held(self, previous: Sequence[str | None], policy: Policy) -> Assessment:
        """This assessment with each customer kept at the level they were at (`previous`, in `ids`
        order) while their score clears that level's release point; actions follow the levels."""
        levels = hold_levels(self.levels, previous, self.risk_score, self.release)
        if levels == self.levels:
            return self
        return replace(self, levels=levels, actions=_actions(policy, self.hardship, levels), score_levels=self.levels)

    # Per-row text, built once for the whole batch (the write path reads each several times).
    @cached_property
    def rule_reasons(self) -> list[list[Reason]]:
        return self.rules.all_reasons()

    @cached_property
    def scores_rounded(self) -> list[float]:
        rounded: list[float] = np.round(self.risk_score, 1).tolist()
        return rounded

    @cached_property
    def hardship_types(self) -> list[str]:
        names = np.array(self.hardship.types, dtype=object)
        found: list[str] = names[self.hardship.primary].tolist()
        return found

    @cached_property
    def scored_at_texts(self) -> list[str]:
        seconds = (self.as_of_ms // 1000).astype("datetime64[s]")
        texts: list[str] = np.char.add(np.datetime_as_string(seconds, unit="s"), "Z").tolist()
        return texts

    @cached_property
    def top_reasons(self) -> list[list[str]]:
        """Each customer's TOP_REASONS reasons as sentences: the model's when it scored, else the rules'."""
        table = self.model_reasons if self.model_reasons is not None else self.rule_reasons
        return [[r.text for r in reasons[:TOP_REASONS]] for reasons in table]

    @cached_property
    def reasons_texts(self) -> list[str]:
        return ["; ".join(texts) for texts in self.top_reasons]

    def hardship_type(self, i: int) -> str:
        return self.hardship_types[i]

    def reasons_text(self, i: int) -> str:
        return self.reasons_texts[i]

    def scored_at(self, i: int) -> str:
        return self.scored_at_texts[i]

    def rows(self) -> list[list[object]]:
        """Every customer's values in keys.RISK_FIELDS order."""
        scores = self.scores_rounded
        rule = self.rules.score.tolist()
        version = self.model_version
        return [
            [score, level, points, hardship, reasons, action, at, version]
            for score, level, points, hardship, reasons, action, at in zip(
                scores, self.levels, rule, self.hardship_types, self.reasons_texts, self.actions,
                self.scored_at_texts, strict=True,
            )
        ]  # fmt: skip

    def row(self, i: int) -> list[object]:
        """Customer i's values in keys.RISK_FIELDS order."""
        return [
            self.scores_rounded[i],
            self.levels[i],
            int(self.rules.score[i]),
            self.hardship_types[i],
            self.reasons_texts[i],
            self.actions[i],
            self.scored_at_texts[i],
            self.model_version,
        ]

    def explanation(self, i: int) -> dict[str, Any]:
        """Everything behind customer i's score (stored as JSON, shown by the console and the API)."""
        fired = {}
        if self.hardship.primary[i] < len(self.hardship.types) - 1:
            for t in np.flatnonzero(self.hardship.held[i]).tolist():
                fired[self.hardship.types[t]] = int(self.hardship.group[i, t])
        return {
            "customer_id": self.ids[i],
            "risk_score": self.scores_rounded[i],
            "risk_level": self.levels[i],
            "rule_score": int(self.rules.score[i]),
            "hardship_type": self.hardship_types[i],
            "hardship_rules_fired": fired,
            "reasons": [
                {"signal": r.signal, "feature": r.feature, "points": r.points, "text": r.text}
                for r in self.rule_reasons[i]
            ],
            "model_reasons": None
            if self.model_reasons is None
            else [
                {"feature": r.feature, "shap": r.contribution, "value": r.value, "text": r.text}
                for r in self.model_reasons[i]
            ],
            "recommended_action": self.actions[i],
            "scored_at": self.scored_at_texts[i],
            "model_version": self.model_version,
            # the level the score alone gives, when the customer is kept at a higher one (release point)
            "level_by_score": None if self.score_levels is None else self.score_levels[i],
            "level_release_point": self.release.get(self.levels[i]),
        }


def assess(
    ids: Sequence[str],
    features: Mapping[str, F64],
    as_of_ms: I64,
    rules: RiskRules,
    policy: Policy,
    *,
    model: Model | None = None,
    rules_version: str | None = None,
) -> Assessment:
    """Score, level, hardship type and the policy's action for every customer at once.

    With a model, its calibrated probability (x 100) is the risk score and decides the level
    (rules.model_levels), and its SHAP values give the reasons; the rule score stays beside it.
    `rules_version`: `rules.version` when the caller has it already (a digest of the rules' JSON,
    ~50 us: a cost for one customer at a time). The levels are the score's alone: `Assessment.held`
    keeps customers at the level they were at while their score clears its release point.
    """
    table = score_table(features, rules)
    hardship = hardship_table(features, rules)
    explained: list[list[ModelReason]] | None = None
    if model is None:
        risk = table.score.astype(np.float64) * 10.0
        levels = [table.level_name(i) for i in range(len(table))]
        version = rules_version or rules.version
    else:
        x = model.matrix(dict(features))
        probs, shap = model.score(x)
        risk = np.round(probs * 100.0, 1)
        levels = [rules.model_level(p) for p in risk.tolist()]
        explained = top_reasons_table(model.features, shap, x)
        version = model.version
    release = rules.release_points(model=model is not None)
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
        release,
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
