"""The contact policy: the shipped file, each validation rule against a crafted broken copy, rendering, the CLI."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml

from equilibrate.risk.keys import HARDSHIP_TYPES, LEVELS
from equilibrate.risk.policy import (
    PolicyError,
    build_policy,
    load_policy,
    read_policy,
    sms_size,
    validate_policy,
)
from tests.conftest import run_cli

RAW: Any = read_policy()
POLICY = load_policy()
VALUES = {"first_name": "Priya", "bank_name": "Equilibrate Bank", "app_link": "https://eqb.example/help"}


def shipped() -> Any:
    return copy.deepcopy(RAW)


def template(doc: Any, template_id: str) -> Any:
    return next(t for t in doc["templates"] if t["id"] == template_id)


def rule(doc: Any, hardship: str, level: str) -> Any:
    return next(r for r in doc["rules"] if (r["hardship"], r["level"]) == (hardship, level))


def assert_problem(doc: Any, *needles: str) -> list[str]:
    problems = validate_policy(doc)
    assert any(all(n in p for n in needles) for p in problems), problems
    return problems


# --- the shipped policy ------------------------------------------------------------------------------


def test_the_shipped_policy_is_valid_and_covers_every_pair_once() -> None:
    assert validate_policy(RAW) == []
    assert set(POLICY.rules) == set(itertools.product(HARDSHIP_TYPES, LEVELS))
    assert len(RAW["rules"]) == 24
    assert POLICY.languages == ("en", "hi")
    assert all(set(t.languages) == {"en", "hi"} for t in POLICY.templates.values())
    for (_hardship, level), r in POLICY.rules.items():
        assert (r.action == "monitor") == (level == "LOW")
        assert bool(r.contact) == (level != "LOW")


def test_critical_offers_a_specialist_call_back_on_every_channel() -> None:
    for hardship in HARDSHIP_TYPES:
        rec = POLICY.recommend(hardship, "CRITICAL")
        assert rec.action == "specialist_referral"
        assert rec.channels == ("app", "sms", "email", "voice")
        assert rec.template_ids == ("specialist_app", "specialist_sms", "specialist_email", "specialist_voice")
    assert "call you back" in POLICY.templates["specialist_email"].languages["en"].body


def test_recommend_gives_the_rule_in_preference_order() -> None:
    rec = POLICY.recommend("Income Shock", "HIGH")
    assert (rec.action, rec.channels) == ("reduced_payment_plan", ("app", "email", "sms"))
    assert rec.template_ids == ("income_shock_app", "income_shock_email", "payment_options_sms")
    low = POLICY.recommend("Overspending", "LOW")
    assert (low.action, low.channels) == ("monitor", ())
    with pytest.raises(PolicyError, match="no policy rule for hardship 'Gambling'"):
        POLICY.recommend("Gambling", "HIGH")


# --- rules -------------------------------------------------------------------------------------------


def test_a_missing_pair_is_named() -> None:
    doc = shipped()
    doc["rules"].remove(rule(doc, "Overspending", "HIGH"))
    assert_problem(doc, "rule Overspending/HIGH is missing")


def test_a_pair_covered_twice_is_named() -> None:
    doc = shipped()
    doc["rules"].append(copy.deepcopy(rule(doc, "None", "MEDIUM")))
    assert_problem(doc, "rule None/MEDIUM appears 2 times")


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("hardship", "Income shock", "unknown hardship type 'Income shock'"),
        ("level", "SEVERE", "unknown level 'SEVERE'"),
        ("action", "send_letter", "unknown action 'send_letter'"),
    ],
)
def test_unknown_names_in_a_rule(field: str, value: str, needle: str) -> None:
    doc = shipped()
    rule(doc, "Income Shock", "MEDIUM")[field] = value
    assert_problem(doc, "rule ", needle)


def test_unknown_template_and_channel_in_a_rule() -> None:
    doc = shipped()
    rule(doc, "Income Shock", "MEDIUM")["contact"][0]["template"] = "income_shock_push"
    rule(doc, "Income Shock", "HIGH")["contact"].append({"channel": "fax", "template": "income_shock_email"})
    problems = assert_problem(doc, "rule Income Shock/MEDIUM: unknown template 'income_shock_push'")
    assert_problem(doc, "rule Income Shock/HIGH: contact.3.channel: unknown channel 'fax'")
    assert len(problems) == 2


def test_a_template_on_the_wrong_channel_or_for_another_action() -> None:
    doc = shipped()
    contact = rule(doc, "Overspending", "MEDIUM")["contact"]
    contact[0]["template"] = "overspending_email"  # listed for app
    contact[1]["template"] = "income_shock_email"  # approved for payment holidays, not budgeting
    assert_problem(doc, "rule Overspending/MEDIUM", "template overspending_email is for email, but listed for app")
    assert_problem(doc, "income_shock_email is not approved for action budgeting_support")


def test_medium_and_above_must_contact_the_customer() -> None:
    doc = shipped()
    r = rule(doc, "None", "MEDIUM")
    r["action"] = "monitor"
    del r["contact"]
    assert_problem(doc, "rule None/MEDIUM", "must be contacted")


# --- templates ---------------------------------------------------------------------------------------


def test_unknown_channel_in_a_template() -> None:
    doc = shipped()
    template(doc, "budgeting_sms")["channel"] = "fax"
    assert_problem(doc, "template budgeting_sms: channel: unknown channel 'fax'")


def test_unknown_and_undeclared_placeholders() -> None:
    doc = shipped()
    t = template(doc, "budgeting_app")
    t["languages"]["en"]["body"] += " Call {helpline_number}."
    t["languages"]["hi"]["body"] += " कॉल करें: {helpline}"
    assert_problem(doc, "template budgeting_app (en)", "unknown placeholder {helpline_number}")
    assert_problem(doc, "template budgeting_app (hi)", "placeholder {helpline}, which is not declared")


def test_a_declared_placeholder_no_variant_uses() -> None:
    doc = shipped()
    template(doc, "budgeting_app")["placeholders"].append("reference")
    assert_problem(doc, "template budgeting_app", "declares placeholder {reference} but no variant uses it")


def test_sms_over_two_segments_in_gsm7() -> None:
    doc = shipped()
    variant = template(doc, "budgeting_sms")["languages"]["en"]
    body = variant["body"]
    # 237 septets with every placeholder at its maximum length: 69 more fit in 2 x 153, 70 do not.
    variant["body"] = body + " " + "x" * 68
    assert validate_policy(doc) == []
    variant["body"] = body + " " + "x" * 69
    assert_problem(doc, "template budgeting_sms (en)", "3 segments in GSM-7", "307 septets", "306 fit")


def test_gsm7_extension_characters_count_double() -> None:
    doc = shipped()
    variant = template(doc, "budgeting_sms")["languages"]["en"]
    body = variant["body"]
    variant["body"] = body + " " + "e" * 35  # 273 septets
    assert validate_policy(doc) == []
    variant["body"] = body + " " + "€" * 35  # 308 septets
    assert_problem(doc, "template budgeting_sms (en)", "3 segments in GSM-7", "308 septets", "count as two")


def test_sms_over_two_segments_in_ucs2_for_hindi() -> None:
    doc = shipped()
    variant = template(doc, "budgeting_sms")["languages"]["hi"]
    body = variant["body"]
    variant["body"] = body + "।" * 23  # 134 UTF-16 units: exactly 2 x 67
    assert validate_policy(doc) == []
    variant["body"] = body + "।" * 24
    assert_problem(doc, "template budgeting_sms (hi)", "3 segments in UCS-2", "135 UTF-16 units", "134 fit")


def test_one_curly_apostrophe_turns_an_english_sms_into_ucs2() -> None:
    doc = shipped()
    variant = template(doc, "budgeting_sms")["languages"]["en"]
    variant["body"] = variant["body"].replace("we're", "we’re")
    assert_problem(doc, "template budgeting_sms (en)", "in UCS-2", "because of '’'")


@pytest.mark.parametrize(
    ("template_id", "language", "text", "needle"),
    [
        ("budgeting_sms", "en", "About your overdue payment.", "reveals debt details with 'overdue'"),
        ("budgeting_sms", "en", "We can help with your Debts.", "reveals debt details with 'debt'"),
        ("budgeting_sms", "en", "Your credit card is fine.", "reveals debt details with 'credit card'"),
        ("budgeting_sms", "hi", "आपका बकाया।", "reveals debt details with 'बकाया'"),
        ("specialist_voice", "hi", "आपके क़र्ज़ के बारे में।", "reveals debt details with 'कर्ज़'"),
        ("specialist_voice", "en", "About your loan.", "reveals debt details with 'loan'"),
        ("budgeting_sms", "en", "You have £50 left.", "reveals an amount '£'"),
        ("specialist_voice", "en", "Your payment of 120.50 is due.", "reveals an amount '120.50'"),
        ("budgeting_sms", "hi", "500 रुपये", "reveals an amount '500 रुपये'"),
    ],
)
def test_sms_and_voice_reveal_no_debt_details(template_id: str, language: str, text: str, needle: str) -> None:
    doc = shipped()
    channel = template(doc, template_id)["channel"]
    template(doc, template_id)["languages"][language]["body"] += " " + text
    assert_problem(doc, f"template {template_id} ({language}): {channel} {needle}")


def test_email_may_talk_about_debt_advice() -> None:
    assert "debt advice" in POLICY.templates["income_shock_email"].languages["en"].body


@pytest.mark.parametrize("template_id", ["budgeting_sms", "specialist_voice"])
def test_financial_placeholders_are_kept_out_of_sms_and_voice(template_id: str) -> None:
    doc = shipped()
    t = template(doc, template_id)
    t["placeholders"].append("amount")
    t["languages"]["en"]["body"] += " {amount}"
    assert_problem(doc, f"template {template_id}: placeholder {{amount}} carries financial data")


def test_financial_placeholders_are_fine_in_email() -> None:
    doc = shipped()
    t = template(doc, "income_shock_email")
    t["placeholders"].append("amount")
    t["languages"]["en"]["body"] += " Your next payment is {amount}."
    assert validate_policy(doc) == []


def test_medium_and_above_must_signpost_free_debt_advice() -> None:
    doc = shipped()
    en = template(doc, "budgeting_app")["languages"]["en"]
    en["body"] = en["body"].replace("{advice_name} ({advice_url})", "a charity")
    assert_problem(doc, "template budgeting_app (en): used at MEDIUM or above but does not signpost free debt advice")
    hi = template(doc, "check_in_app")["languages"]["hi"]
    hi["body"] = hi["body"].replace("मुफ़्त और ", "")  # names the service but no longer says it is free
    assert_problem(doc, "template check_in_app (hi): used at MEDIUM or above but does not signpost")


def test_a_template_used_only_at_low_needs_no_signposting_or_forbearance() -> None:
    doc = shipped()
    doc["templates"].append(
        {
            "id": "hello_app",
            "version": 1,
            "approval": "COMP-2026-099",
            "channel": "app",
            "purpose": ["wellbeing_check_in"],
            "placeholders": ["first_name"],
            "languages": {"en": {"body": "Hi {first_name}, thanks for banking with us."}},
        }
    )
    r = rule(doc, "None", "LOW")
    r["action"] = "wellbeing_check_in"
    r["contact"] = [{"channel": "app", "template": "hello_app"}]
    assert validate_policy(doc) == []
    rule(doc, "None", "MEDIUM")["contact"][0]["template"] = "hello_app"
    assert_problem(doc, "template hello_app: used at MEDIUM or above but declares no forbearance option")
    assert_problem(doc, "template hello_app (en): used at MEDIUM or above but does not signpost")


def test_medium_and_above_must_offer_forbearance() -> None:
    doc = shipped()
    template(doc, "budgeting_app")["forbearance"] = []
    assert_problem(doc, "template budgeting_app: used at MEDIUM or above but declares no forbearance option")


def test_declared_forbearance_must_be_mentioned_in_every_language() -> None:
    doc = shipped()
    hi = template(doc, "budgeting_app")["languages"]["hi"]
    hi["body"] = hi["body"].replace("बजट टूल", "टूल")
    problems = assert_problem(
        doc, "template budgeting_app (hi): forbearance budgeting_support is declared but the body does not mention it"
    )
    assert len(problems) == 1  # English still mentions it


@pytest.mark.parametrize(
    ("language", "part", "text", "phrase"),
    [
        ("en", "body", "Please act now.", "act now"),
        ("en", "subject", "URGENT: ", "urgent"),
        ("en", "body", "We may take legal action.", "legal action"),
        ("en", "body", "This is your final notice.", "final notice"),
        ("hi", "body", "तुरंत संपर्क करें।", "तुरंत"),
        ("hi", "subject", "अंतिम सूचना: ", "अंतिम सूचना"),
        ("hi", "body", "नहीं तो क़ानूनी कार्रवाई होगी।", "कानूनी कार्रवाई"),
    ],
)
def test_pressure_wording_is_rejected_in_every_language(language: str, part: str, text: str, phrase: str) -> None:
    doc = shipped()
    variant = template(doc, "expense_email")["languages"][language]
    variant[part] = text + variant[part] if part == "subject" else variant[part] + " " + text
    assert_problem(doc, f"template expense_email ({language}): pressure wording {phrase!r} in the {part}")


def test_every_template_needs_english() -> None:
    doc = shipped()
    del template(doc, "liquidity_sms")["languages"]["en"]
    assert_problem(doc, "template liquidity_sms: has no 'en' variant")


def test_unknown_language_and_wrong_script() -> None:
    doc = shipped()
    languages = template(doc, "budgeting_app")["languages"]
    languages["fr"] = copy.deepcopy(languages["en"])
    languages["hi"]["body"] = languages["en"]["body"]
    assert_problem(doc, "template budgeting_app (fr): unknown language 'fr'")
    assert_problem(doc, "template budgeting_app (hi): body is not written in the language's script")


def test_only_email_has_a_subject() -> None:
    doc = shipped()
    template(doc, "budgeting_sms")["languages"]["en"]["subject"] = "Hello"
    del template(doc, "expense_email")["languages"]["hi"]["subject"]
    assert_problem(doc, "template budgeting_sms (en): only email has a subject")
    assert_problem(doc, "template expense_email (hi): an email needs a subject")


def test_approval_reference_and_version_are_required() -> None:
    doc = shipped()
    t = template(doc, "budgeting_app")
    t["approval"] = "approved by Sam"
    del t["version"]
    assert_problem(doc, "template budgeting_app: approval:")
    assert_problem(doc, "template budgeting_app: version: Field required")
    # The rules using it are not also reported as naming an unknown template.
    assert not [p for p in validate_policy(doc) if "unknown template" in p]


def test_a_default_that_would_reveal_debt_in_an_sms() -> None:
    doc = shipped()
    doc["defaults"]["advice_name"] = "National Debtline"
    assert_problem(doc, "defaults.advice_name: sms/voice reveals debt details with 'debt'")


def test_every_problem_is_listed_at_once() -> None:
    doc = shipped()
    doc["rules"].remove(rule(doc, "None", "HIGH"))
    template(doc, "budgeting_app")["languages"]["en"]["body"] += " Act now."
    with pytest.raises(PolicyError) as caught:
        build_policy(doc, "policy.yaml")
    assert len(caught.value.problems) == 2
    assert str(caught.value).startswith("policy.yaml: ")
    assert str(caught.value).endswith("(and 1 more: `equilibrate policy check` lists them)")


def test_a_repeated_key_refuses_to_load(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    text = yaml.safe_dump(RAW, allow_unicode=True, sort_keys=False)
    path.write_text(text.replace("templates:\n", "rules: []\ntemplates:\n", 1), encoding="utf-8")
    with pytest.raises(PolicyError, match=r"not valid YAML .*duplicate key 'rules'"):
        load_policy(path)


# --- SMS size ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),
        ("[" * 81, "GSM-7", 162, 2),
        ("é£@ñ", "GSM-7", 4, 1),
        ("अ" * 70, "UCS-2", 70, 1),
        ("अ" * 134, "UCS-2", 134, 2),
        ("a" * 134 + "’", "UCS-2", 135, 3),
        ("😀" * 35, "UCS-2", 70, 1),  # outside the BMP: two UTF-16 units each
    ],
)
def test_sms_size(text: str, encoding: str, units: int, segments: int) -> None:
    size = sms_size(text)
    assert (size.encoding, size.units, size.segments) == (encoding, units, segments)


# --- rendering ---------------------------------------------------------------------------------------


def test_render_fills_values_and_carries_the_approval() -> None:
    msg = POLICY.message("budgeting_sms", "en", VALUES)
    assert msg.body.startswith("Equilibrate Bank: Hi Priya, if money feels tight")
    assert "MoneyHelper, moneyhelper.org.uk" in msg.body  # bank-wide defaults
    assert "{" not in msg.body
    assert (msg.template_id, msg.version, msg.approval, msg.channel) == ("budgeting_sms", 1, "COMP-2026-016", "sms")
    assert (msg.language, msg.subject, msg.sms_segments) == ("en", None, 2)


def test_render_email_subject_and_hindi() -> None:
    values = VALUES | {"helpline": "0800 123 4567", "opening_hours": "Mon-Fri 8am-8pm", "reference": "CB-12345"}
    contact = POLICY.recommend("Income Shock", "CRITICAL").contacts[2]
    msg = POLICY.message(contact, "hi", values)
    assert (msg.template_id, msg.language) == ("specialist_email", "hi")
    assert msg.subject == "क्या हमारी विशेषज्ञ टीम आपको वापस कॉल करे?"
    assert "नमस्ते Priya," in msg.body and "CB-12345" in msg.body


def test_render_falls_back_to_english() -> None:
    assert POLICY.message("budgeting_app", "fr", VALUES).language == "en"
    doc = shipped()
    del template(doc, "budgeting_app")["languages"]["hi"]
    msg = build_policy(doc).message("budgeting_app", "hi", VALUES)
    assert msg.language == "en"
    assert msg.body.startswith("Hi Priya,")


def test_render_a_missing_or_too_long_value_raises() -> None:
    with pytest.raises(PolicyError, match=r"template budgeting_sms \(en\) needs a value for \{first_name\}"):
        POLICY.message("budgeting_sms", "en", VALUES | {"first_name": " "})
    with pytest.raises(PolicyError, match=r"needs a value for \{bank_name\}, \{app_link\}"):
        POLICY.message("budgeting_sms", "en", {"first_name": "Priya"})
    with pytest.raises(PolicyError, match=r"\{first_name\} is 25 characters, over the 20"):
        POLICY.message("budgeting_sms", "en", VALUES | {"first_name": "A" * 25})
    with pytest.raises(PolicyError, match="unknown template 'nope'"):
        POLICY.message("nope", "en", VALUES)


# --- the command -------------------------------------------------------------------------------------


def test_policy_check_command(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(RAW, allow_unicode=True, sort_keys=False), encoding="utf-8")
    ok = run_cli("policy", "check", str(good), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "policy OK: 24 rules, 18 templates, languages en, hi"

    doc = shipped()
    template(doc, "budgeting_sms")["languages"]["hi"]["body"] += " तुरंत"
    template(doc, "specialist_voice")["languages"]["en"]["body"] += " About your loan."
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    failed = run_cli("policy", "check", str(bad), cwd=tmp_path)
    assert failed.returncode == 2
    assert "Traceback" not in failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert lines == [
        f"equilibrate policy: {bad}: template budgeting_sms (hi): pressure wording 'तुरंत' in the body",
        f"equilibrate policy: {bad}: template specialist_voice (en): voice reveals debt details with 'loan'"
        " (a third party may see or hear it)",
    ]

    nope = tmp_path / "nope.yaml"
    missing = run_cli("policy", "check", str(nope), cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"equilibrate policy: cannot read policy {nope}: No such file or directory"
