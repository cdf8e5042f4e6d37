"""The risk rules file: weights, thresholds, levels and hardship rules, validated at load.

Every rule names a feature the feature engine computes (features/compute.py FEATURES), so no rule
can use anything else, the simulator's persona included. A broken file refuses to load with the
file and the field named.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from equilibrate.errors import ConfigError
from equilibrate.features.compute import FEATURES

Op = Literal[">", ">=", "<", "<=", "=="]


def _known_feature(name: str) -> str:
    if name not in FEATURES:
        raise ValueError(f"unknown feature {name!r}: rules may use only the feature engine's features")
    return name


Condition = tuple[str, Op, float]


def _known_conditions(group: list[Condition]) -> list[Condition]:
    for feature, _op, _value in group:
        _known_feature(feature)
    return group


class Component(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feature: str
    at_least: list[tuple[float, int]] | None = None
    at_most: list[tuple[float, int]] | None = None
    #: Conditions that must all hold for the component to score (e.g. a salary gap needs a salary).
    when: list[Condition] = Field(default_factory=list)
    text: str

    @field_validator("feature")
    @classmethod
    def _check_feature(cls, name: str) -> str:
        return _known_feature(name)

    @field_validator("when")
    @classmethod
    def _check_when(cls, group: list[Condition]) -> list[Condition]:
        return _known_conditions(group)

    @model_validator(mode="after")
    def _one_direction(self) -> Component:
        steps = self.at_least if self.at_least is not None else self.at_most
        if (self.at_least is None) == (self.at_most is None):
            raise ValueError("give exactly one of at_least / at_most")
        if not steps:
            raise ValueError("needs at least one [threshold, points] step")
        thresholds = [t for t, _ in steps]
        ordered = sorted(thresholds) if self.at_least is not None else sorted(thresholds, reverse=True)
        if thresholds != ordered:
            raise ValueError("steps must go from the mildest to the most severe threshold")
        return self

    @property
    def steps(self) -> list[tuple[float, int]]:
        return self.at_least if self.at_least is not None else (self.at_most or [])


class Signal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_points: int = Field(ge=0, le=10)
    components: list[Component] = Field(min_length=1)


class HardshipRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    any_of: list[list[Condition]] = Field(min_length=1)

    @field_validator("any_of")
    @classmethod
    def _features(cls, groups: list[list[Condition]]) -> list[list[Condition]]:
        for group in groups:
            if not group:
                raise ValueError("an empty condition group would always hold")
            _known_conditions(group)
        return groups


ModelLevel = Literal["CRITICAL", "HIGH", "MEDIUM"]


def _default_model_levels() -> dict[ModelLevel, float]:
    return {"CRITICAL": 40.0, "HIGH": 15.0, "MEDIUM": 5.0}


class LevelRelease(BaseModel):
    """How far below a level's threshold a customer's score must fall before they leave that level.

    Without it a score hovering at a boundary flips the level, and the proposals and withdrawals
    that follow it, from one day to the next. Entering a level needs its threshold; leaving it needs
    the release point. 0 points / ratio 1 turn it off.
    """

    model_config = ConfigDict(extra="forbid")

    rule_points: float = Field(default=1.0, ge=0, le=5)  # rule levels: threshold minus this many points
    model_ratio: float = Field(default=0.8, gt=0, le=1)  # model levels: this share of the threshold


class RiskRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    levels: dict[Literal["HIGH", "MEDIUM"], float]
    #: With a trained model: levels from its calibrated probability (percent) of a missed payment
    #: within 30 days. Below MEDIUM: LOW.
    model_levels: dict[ModelLevel, float] = Field(default_factory=_default_model_levels)
    level_release: LevelRelease = Field(default_factory=LevelRelease)
    signals: dict[str, Signal]
    hardship: list[HardshipRule]

    @model_validator(mode="after")
    def _consistent(self) -> RiskRules:
        if set(self.levels) != {"HIGH", "MEDIUM"} or self.levels["MEDIUM"] >= self.levels["HIGH"]:
            raise ValueError("levels need MEDIUM below HIGH")
        m = self.model_levels
        if set(m) != {"CRITICAL", "HIGH", "MEDIUM"} or not 0 < m["MEDIUM"] < m["HIGH"] < m["CRITICAL"] <= 100:
            raise ValueError("model_levels need 0 < MEDIUM < HIGH < CRITICAL <= 100 (percent)")
        if sum(s.max_points for s in self.signals.values()) != 10:
            raise ValueError("signal max_points must add up to 10 (the rule score is 0-10)")
        return self

    @property
    def version(self) -> str:
        """`rules-` and a digest of the rules' content: written with every score the rules decide."""
        digest = hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:10]
        return f"rules-{digest}"

    def model_level(self, percent: float) -> str:
        m = self.model_levels
        for name in ("CRITICAL", "HIGH", "MEDIUM"):
            if percent >= m[name]:
                return name
        return "LOW"

    def release_points(self, *, model: bool) -> dict[str, float]:
        """Each level's release point on the risk score's scale (0-100): below it, a customer who
        was at that level leaves it. Rules: the risk score is the rule score x 10."""
        r = self.level_release
        if model:
            return {name: value * r.model_ratio for name, value in self.model_levels.items()}
        return {name: (value - r.rule_points) * 10.0 for name, value in self.levels.items()}

    def level(self, score: float) -> str:
        if score >= self.levels["HIGH"]:
            return "HIGH"
        return "MEDIUM" if score >= self.levels["MEDIUM"] else "LOW"


def load_rules(path: Path | None = None) -> RiskRules:
    """The rules at `path` (default: the packaged rules.yaml), or ConfigError naming the problem."""
    if path is None:
        text = importlib.resources.files("equilibrate.risk").joinpath("rules.yaml").read_text(encoding="utf-8")
        where = "equilibrate/risk/rules.yaml"
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read risk rules {path}: {exc.strerror}") from None
        where = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({exc})") from None
    try:
        return RiskRules.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "file"
        raise ConfigError(f"{where}: {field}: {first['msg']}") from None
