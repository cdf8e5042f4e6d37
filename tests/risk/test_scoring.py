"""Rule score, levels, reasons and hardship types from hand-made feature sets."""

from __future__ import annotations

from pathlib import Path

import pytest

from equilibrate.errors import ConfigError
from equilibrate.features.compute import FEATURES
from equilibrate.risk.rules import load_rules
from equilibrate.risk.scoring import classify_hardship, rule_score

RULES = load_rules()
STEADY = {name: 0.0 for name in FEATURES} | {
    "days_since_salary": 12,
    "salary_regularity": 0.97,
    "salary_credits_90d": 3,
    "income_30d": 2400,
    "spend_total_30d": 1900,
    "spend_essential_30d": 1100,
    "spend_discretionary_30d": 500,
    "essential_share_30d": 0.58,
    "discretionary_ratio_30d": 0.45,
    "spend_change_pct": 4,
    "atm_spike": 0.8,
    "balance": 1500,
    "balance_min_30d": 900,
    "net_flow_30d": 500,
    "txn_count_7d": 14,
    "txn_count_30d": 60,
}


def test_a_steady_customer_is_low_with_no_reasons() -> None:
    scored = rule_score(STEADY, RULES)
    assert (scored.score, scored.level, scored.reasons) == (0, "LOW", [])
    assert classify_hardship(STEADY, RULES).primary == "None"


@pytest.mark.parametrize(
    ("changes", "signal", "points"),
    [
        ({"days_since_salary": 36}, "salary_gap", 1),
        ({"days_since_salary": 50}, "salary_gap", 2),
        ({"days_since_salary": 75}, "salary_gap", 3),
        ({"income_drop_pct": 30}, "salary_gap", 1),
        ({"income_drop_pct": 100, "days_since_salary": 70}, "salary_gap", 3),
        ({"atm_spike": 3.5}, "withdrawal_spike", 1),
        ({"atm_spike": 6}, "withdrawal_spike", 2),
        ({"atm_count_7d": 6}, "withdrawal_spike", 2),
        ({"spend_change_pct": -35}, "spending_drop", 1),
        ({"spend_change_pct": -70}, "spending_drop", 2),
        ({"days_inactive": 9}, "inactivity", 1),
        ({"essential_share_30d": 0.95}, "inactivity", 1),
        ({"failed_payments_30d": 1}, "credit_stress", 1),
        ({"balance_trend_30d": -25}, "credit_stress", 1),
        ({"failed_payments_30d": 1, "payday_credits_30d": 300, "negative_balance_days_30d": 8}, "credit_stress", 2),
    ],
)
def test_each_signal_scores_its_steps_and_caps(changes: dict[str, float], signal: str, points: int) -> None:
    scored = rule_score(STEADY | changes, RULES)
    assert scored.score == points
    assert sum(r.points for r in scored.reasons) == points
    assert {r.signal for r in scored.reasons} == {signal}
    assert all(r.text and "{" not in r.text for r in scored.reasons)


def test_a_salary_gap_needs_a_salary_before_it() -> None:
    # Students and the self-employed are paid by transfer: "no salary" is their normal, not a gap.
    never_paid = STEADY | {"days_since_salary": 90, "salary_credits_90d": 0}
    assert rule_score(never_paid, RULES).score == 0
    assert classify_hardship(never_paid, RULES).primary == "None"


def test_levels_and_the_most_severe_case() -> None:
    two = rule_score(STEADY | {"days_since_salary": 40, "atm_spike": 3.5}, RULES)
    assert (two.score, two.level) == (2, "LOW")
    three = rule_score(STEADY | {"days_since_salary": 40, "atm_spike": 3.5, "spend_change_pct": -40}, RULES)
    assert (three.score, three.level) == (3, "MEDIUM")
    four = rule_score(STEADY | {"days_since_salary": 50, "atm_spike": 3.5, "spend_change_pct": -40}, RULES)
    assert (four.score, four.level) == (4, "MEDIUM")
    worst = STEADY | {
        "days_since_salary": 90,
        "atm_spike": 9,
        "spend_change_pct": -90,
        "days_inactive": 10,
        "failed_payments_30d": 3,
        "payday_credits_30d": 500,
    }
    scored = rule_score(worst, RULES)
    assert scored.score == 10 and scored.level == "HIGH"
    assert "No salary credit for 90 days" in [r.text for r in scored.reasons]
    assert (
        rule_score(
            STEADY | {"days_since_salary": 50, "atm_spike": 3.5, "spend_change_pct": -35, "failed_payments_30d": 1},
            RULES,
        ).level
        == "HIGH"
    )


@pytest.mark.parametrize(
    ("changes", "primary"),
    [
        ({"days_since_salary": 40}, "Income Shock"),
        ({"income_drop_pct": 60}, "Income Shock"),
        ({"essential_share_30d": 0.8, "payday_credits_30d": 200}, "Over-Leverage"),
        ({"failed_payments_30d": 2}, "Over-Leverage"),
        ({"atm_spike": 3, "spend_change_pct": -45}, "Liquidity Stress"),
        ({"negative_balance_days_30d": 6}, "Liquidity Stress"),
        ({"spend_change_pct": -50, "discretionary_ratio_30d": 0.1}, "Expense Compression"),
        ({"discretionary_ratio_30d": 1.6, "net_flow_30d": -300}, "Overspending"),
    ],
)
def test_hardship_types_from_behaviour(changes: dict[str, float], primary: str) -> None:
    found = classify_hardship(STEADY | changes, RULES)
    assert found.primary == primary
    assert found.fired[primary]


def test_priority_and_every_type_that_fired_is_reported() -> None:
    both = STEADY | {"days_since_salary": 40, "negative_balance_days_30d": 7}
    found = classify_hardship(both, RULES)
    assert found.primary == "Income Shock"
    assert set(found.fired) == {"Income Shock", "Liquidity Stress"}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


def test_a_broken_rules_file_is_refused_with_the_field_named(tmp_path: Path) -> None:
    good = (Path(__file__).resolve().parents[2] / "equilibrate" / "risk" / "rules.yaml").read_text()
    cases = {
        "persona": good.replace("feature: atm_spike", "feature: persona"),
        "levels": good.replace("MEDIUM: 3", "MEDIUM: 7"),
        "add up to 10": good.replace("max_points: 3", "max_points: 4"),
        "mildest": good.replace("[[35, 1], [45, 2], [60, 3]]", "[[60, 3], [35, 1]]"),
        "not valid YAML": good + "\n  - : [",
    }
    for needle, text in cases.items():
        with pytest.raises(ConfigError) as info:
            load_rules(_write(tmp_path, text))
        assert needle in str(info.value), (needle, str(info.value))
        assert "rules.yaml" in str(info.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml")
