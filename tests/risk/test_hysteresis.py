"""Levels that hold: entering a level needs its threshold, leaving it needs its release point."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from equilibrate.risk.hysteresis import hold_levels
from equilibrate.risk.rules import RiskRules, load_rules

RULES = load_rules()


def test_release_points_on_the_risk_score_scale() -> None:
    assert RULES.release_points(model=False) == {"HIGH": 40.0, "MEDIUM": 20.0}  # rule score x 10
    assert RULES.release_points(model=True) == pytest.approx({"CRITICAL": 32.0, "HIGH": 12.0, "MEDIUM": 4.0})


@pytest.mark.parametrize(
    ("now", "before", "score", "kept"),
    [
        ("LOW", None, 25.0, "LOW"),  # nothing to keep
        ("LOW", "MEDIUM", 20.0, "MEDIUM"),  # at the release point: still MEDIUM
        ("LOW", "MEDIUM", 19.9, "LOW"),  # below it: leaves
        ("MEDIUM", "HIGH", 45.0, "HIGH"),  # just under HIGH's threshold: stays HIGH
        ("MEDIUM", "HIGH", 35.0, "MEDIUM"),  # under HIGH's release, at MEDIUM by the score
        ("LOW", "HIGH", 25.0, "MEDIUM"),  # falls to the highest level it still clears
        ("LOW", "HIGH", 5.0, "LOW"),
        ("HIGH", "MEDIUM", 50.0, "HIGH"),  # going up needs no release point
        ("MEDIUM", "MEDIUM", 30.0, "MEDIUM"),
    ],
)
def test_rule_levels_hold_until_the_release_point(now: str, before: str | None, score: float, kept: str) -> None:
    release = RULES.release_points(model=False)
    assert hold_levels([now], [before], np.array([score]), release) == [kept]


def test_model_levels_hold_at_eighty_percent_of_their_threshold() -> None:
    release = RULES.release_points(model=True)
    scores = np.array([4.2, 3.9, 36.0, 31.0, 13.0])
    levels = [RULES.model_level(s) for s in scores.tolist()]
    assert levels == ["LOW", "LOW", "HIGH", "HIGH", "MEDIUM"]
    before = ["MEDIUM", "MEDIUM", "CRITICAL", "CRITICAL", "CRITICAL"]
    assert hold_levels(levels, before, scores, release) == ["MEDIUM", "LOW", "CRITICAL", "HIGH", "HIGH"]


def test_release_settings_are_validated_and_can_turn_it_off() -> None:
    data = RULES.model_dump()
    off = RiskRules.model_validate({**data, "level_release": {"rule_points": 0, "model_ratio": 1}})
    release = off.release_points(model=False)
    assert hold_levels(["LOW"], ["MEDIUM"], np.array([29.0]), release) == ["LOW"]
    assert hold_levels(["MEDIUM"], ["HIGH"], np.array([49.0]), release) == ["MEDIUM"]
    for bad in ({"rule_points": -1}, {"model_ratio": 0}, {"model_ratio": 1.5}, {"points": 1}):
        with pytest.raises(ValidationError):
            RiskRules.model_validate({**data, "level_release": bad})
