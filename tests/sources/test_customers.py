"""The customer master and the ground truth: pure generation and file round trips."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest

from equilibrate.errors import ConfigError
from equilibrate.sources.customers import (
    CHANNELS,
    CUSTOMER_COLUMNS,
    EMPLOYMENTS,
    INCOME_BANDS,
    MAX_CUSTOMERS,
    Customer,
    GroundTruth,
    generate_customers,
    load_customers_csv,
    load_ground_truth,
    write_customers_csv,
    write_ground_truth,
)
from equilibrate.sources.personas import assign_personas
from equilibrate.sources.produce import MAX_CUSTOMERS as CLI_MAX_CUSTOMERS


@pytest.fixture(scope="module")
def customers() -> list[Customer]:
    return generate_customers(5_000, 42)


def test_ids_are_sequential_and_formatted(customers: list[Customer]) -> None:
    ids = [c.customer_id for c in customers]
    assert ids[0] == "C0000001"
    assert ids[-1] == "C0005000"
    assert all(re.fullmatch(r"C\d{7}", cid) for cid in ids)
    assert len(set(ids)) == len(ids)


def test_attributes_are_plausible(customers: list[Customer]) -> None:
    n = len(customers)
    assert {c.employment for c in customers} == set(EMPLOYMENTS)
    assert {c.preferred_channel for c in customers} == set(CHANNELS)
    assert {c.income_band for c in customers} <= set(INCOME_BANDS)
    hindi = [c for c in customers if c.language == "hi"]
    assert 0.06 < len(hindi) / n < 0.10
    assert {c.language for c in customers} == {"en", "hi"}
    kolkata = [c for c in customers if c.timezone == "Asia/Kolkata"]
    assert kolkata and all(c.language == "hi" for c in kolkata)
    assert Counter(c.timezone for c in customers).most_common(1)[0][0] == "Europe/London"
    assert 0.025 < sum(c.vulnerable for c in customers) / n < 0.055
    for c in customers:
        assert 18 <= c.age <= 92
        assert c.monthly_income >= 300
        assert c.name.strip() and " " in c.name
        assert c.phone.startswith("+447") and len(c.phone) == 13
        assert "@" in c.email and " " not in c.email
        assert c.accounts.split(";")[0] == "current"
        assert c.has_loan == ("loan" in c.accounts.split(";"))
        assert c.has_card == ("credit_card" in c.accounts.split(";"))
        if c.has_loan:
            assert c.loan_instalment is not None and c.loan_instalment > 0
            assert c.loan_due_day is not None and 1 <= c.loan_due_day <= 28
        else:
            assert c.loan_instalment is None and c.loan_due_day is None
        if c.has_card:
            assert c.card_min_payment is not None and c.card_min_payment > 0
            assert c.card_due_day is not None and 1 <= c.card_due_day <= 28
        else:
            assert c.card_min_payment is None and c.card_due_day is None
    assert all(c.age >= 55 for c in customers if c.employment == "retired")
    assert Counter(c.employment for c in customers).most_common(1)[0][0] == "employed"
    # Most consent to being contacted the way they prefer.
    preferred_consent = sum(getattr(c, f"consent_{c.preferred_channel}") for c in customers) / n
    assert preferred_consent > 0.9


def test_hindi_speakers_get_indian_names(customers: list[Customer]) -> None:
    english = {c.name.split()[-1] for c in customers if c.language == "en"}
    hindi = {c.name.split()[-1] for c in customers if c.language == "hi"}
    assert len(hindi - english) > len(hindi) / 2  # mostly surnames no English speaker has


def test_same_seed_same_people_whatever_the_size(customers: list[Customer]) -> None:
    assert generate_customers(300, 42) == customers[:300]
    assert generate_customers(12_345, 42)[:5_000] == customers
    other = generate_customers(300, 43)
    assert [c.name for c in other] != [c.name for c in customers[:300]]


def test_size_limits() -> None:
    assert MAX_CUSTOMERS == CLI_MAX_CUSTOMERS == 1_000_000
    with pytest.raises(ConfigError, match="between 1 and"):
        generate_customers(0, 1)
    with pytest.raises(ConfigError, match="between 1 and"):
        generate_customers(MAX_CUSTOMERS + 1, 1)


def test_customers_csv_round_trip_without_persona(customers: list[Customer], tmp_path: Path) -> None:
    path = tmp_path / "data" / "customers.csv"
    write_customers_csv(path, customers)
    with path.open(newline="") as fh:
        header = next(csv.reader(fh))
    assert tuple(header) == CUSTOMER_COLUMNS
    assert "persona" not in header and not any("distress" in h for h in header)
    assert load_customers_csv(path) == customers
    no_loan = next(c for c in customers if not c.has_loan)
    row = no_loan.as_row()
    assert row["has_loan"] == "false" and row["loan_instalment"] == "" and row["loan_due_day"] == ""
    assert row["age"] == str(no_loan.age)


def test_load_customers_csv_reports_bad_rows(customers: list[Customer], tmp_path: Path) -> None:
    path = tmp_path / "customers.csv"
    write_customers_csv(path, customers[:3])
    text = path.read_text().splitlines()
    text[2] = text[2].replace(",false,", ",maybe,", 1).replace(",true,", ",maybe,", 1)
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(ConfigError, match="line 3"):
        load_customers_csv(path)
    path.write_text("customer_id,name\nC0000001,Ann\n")
    with pytest.raises(ConfigError, match="lacks the columns"):
        load_customers_csv(path)


def test_ground_truth_is_a_separate_file(customers: list[Customer], tmp_path: Path) -> None:
    truth = assign_personas(customers, 42)
    path = tmp_path / "ground_truth.csv"
    write_ground_truth(path, truth)
    loaded = load_ground_truth(path)
    assert loaded == truth
    assert all(isinstance(t, GroundTruth) for t in loaded)
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert set(rows[0]) == {"customer_id", "persona", "distress_start_day", "recovery_day"}
    stable = [r for r in rows if r["persona"] == "stable"]
    assert stable and all(r["distress_start_day"] == "" and r["recovery_day"] == "" for r in stable)
    assert any(r["recovery_day"] for r in rows) and any(
        r["persona"] != "stable" and not r["recovery_day"] for r in rows
    )
