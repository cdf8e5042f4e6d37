"""The contact policy's checked vocabularies, and how its checks measure text.

Actions, channels, placeholders with their longest values, and per language the words for free
advice and each forbearance option; the pressure and debt words no template may use; the GSM-7
tables that decide an SMS's encoding and segments. These live here, not in the policy file, so a
policy edit cannot loosen them. Pure logic; no I/O.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

Channel = Literal["email", "sms", "app", "voice"]
CHANNELS: tuple[str, ...] = ("email", "sms", "app", "voice")
#: Channels a third party may read (a phone's lock screen) or hear (a voicemail): no debt details.
DISCREET_CHANNELS = frozenset({"sms", "voice"})
ACTIONS: tuple[str, ...] = (
    "monitor",  # no contact
    "wellbeing_check_in",
    "budgeting_support",
    "payment_holiday_offer",
    "short_term_payment_plan",
    "reduced_payment_plan",
    "specialist_referral",
)
CONTACT_ACTIONS: tuple[str, ...] = tuple(a for a in ACTIONS if a != "monitor")
CONTACT_FROM = "MEDIUM"  # from this level up a rule must contact the customer, with signposting and forbearance
FALLBACK_LANGUAGE = "en"
MAX_SMS_SEGMENTS = 2


@dataclass(frozen=True, slots=True)
class Placeholder:
    max_length: int  # longest value `Policy.message` accepts; SMS lengths are checked with every placeholder this long
    financial: bool = False  # carries account data: never in sms or voice


PLACEHOLDERS: dict[str, Placeholder] = {
    "first_name": Placeholder(20),
    "bank_name": Placeholder(20),
    "helpline": Placeholder(14),  # "0800 123 4567"
    "app_link": Placeholder(30),
    "advice_name": Placeholder(20),  # MoneyHelper, StepChange, National Debtline
    "advice_url": Placeholder(20),
    "opening_hours": Placeholder(32),
    "reference": Placeholder(12),
    "amount": Placeholder(12, financial=True),
    "due_date": Placeholder(12, financial=True),
}
SIGNPOST_PLACEHOLDERS = ("advice_name", "advice_url")


@dataclass(frozen=True, slots=True)
class LanguageWords:
    """How a language says what the checks look for. A phrase ending in * matches as a word prefix."""

    free: tuple[str, ...]  # the advice is free
    forbearance: Mapping[str, tuple[str, ...]]  # option -> ways a body names it
    script: tuple[str, str] | None = None  # first and last code point of the script the body is written in


LANGUAGES: dict[str, LanguageWords] = {
    "en": LanguageWords(
        free=("free",),
        forbearance={
            "payment_holiday": ("payment holiday*", "payment break*"),
            "reduced_payment_plan": ("reduced payment plan*", "lower payment plan*", "smaller monthly payments"),
            "short_term_payment_plan": ("short-term payment plan*", "short-term plan*"),
            "budgeting_support": ("budgeting support", "budgeting tool*", "budget planner*", "help with budgeting"),
        },
    ),
    "hi": LanguageWords(
        free=("मुफ़्त", "निःशुल्क"),
        forbearance={
            "payment_holiday": ("भुगतान अवकाश", "पेमेंट हॉलिडे"),
            "reduced_payment_plan": ("कम भुगतान वाली योजना", "कम भुगतान योजना"),
            "short_term_payment_plan": ("थोड़े समय की भुगतान योजना", "अल्पकालिक भुगतान योजना"),
            "budgeting_support": ("बजट बनाने में मदद", "बजट टूल", "बजट सहायता"),
        },
        script=("\u0900", "\u097f"),  # Devanagari
    ),
}
FORBEARANCE_OPTIONS: tuple[str, ...] = tuple(LANGUAGES[FALLBACK_LANGUAGE].forbearance)

#: Rejected in every template, in every language (a Hindi body may borrow an English word).
PRESSURE_WORDS: tuple[str, ...] = (
    *("urgent*", "immediate*", "final notice", "final demand", "final warning", "final reminder", "last chance"),
    *("act now", "pay now", "respond now", "without delay", "asap", "deadline*", "or else", "consequences"),
    *("legal action", "legal proceedings", "court", "bailiff*", "enforcement", "debt collector*"),
    *("must pay", "failure to pay", "fail to pay", "failed to pay"),
    *("तुरंत", "तुरन्त", "फ़ौरन", "अभी भुगतान", "अंतिम सूचना", "अन्तिम सूचना", "अंतिम चेतावनी", "अंतिम नोटिस"),
    *("कानूनी कार्रवाई", "कानूनी कार्यवाही", "अदालत", "आख़िरी मौका", "अंतिम अवसर", "भुगतान करना होगा"),
    *("भुगतान न करने पर", "ज़ब्ती", "चेतावनी", "जल्द से जल्द", "वसूली एजेंट"),
)
#: Rejected in sms and voice bodies, in every language.
DEBT_WORDS: tuple[str, ...] = (
    *("debt*", "arrear*", "overdue", "missed payment*", "late payment*", "owe", "owed", "owes", "owing"),
    *("loan*", "credit card*", "balance*", "overdraft*", "overdrawn", "collection*", "default*", "borrow*"),
    *("कर्ज़", "ऋण", "बकाया", "उधार", "लोन", "क्रेडिट कार्ड", "बैलेंस", "ओवरड्राफ़्ट", "वसूली", "भुगतान में चूक"),
)
MONEY_PATTERN = (
    r"[£$€₹¥]|\b(?:gbp|eur|usd|inr)\b|\d[\d,]*\.\d\d\b|\d{1,3}(?:,\d{3})+"
    r"|\d+(?:\.\d+)?\s*(?:%|p\b|k\b|pence\b|pounds?\b|quid\b|rupees?\b|रुपये|रुपए|रुपया|पाउंड)"
)
PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")
_NUKTA = "\u093c"

# GSM 03.38: the basic set costs one septet a character, the extension set two (escape + character).
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("\f^{}\\[~]|€")


# --- text checks -----------------------------------------------------------------------------------


def fold(text: str) -> str:
    """Case-folded, with Hindi's nukta dropped so कर्ज़, क़र्ज़ and कर्ज all match."""
    return unicodedata.normalize("NFC", text).replace(_NUKTA, "").casefold()


@functools.cache
def _phrase_re(phrase: str) -> re.Pattern[str]:
    core = fold(phrase.rstrip("*"))
    start = r"\b" if core[0].isascii() and core[0].isalnum() else ""
    end = r"\b" if not phrase.endswith("*") and core[-1].isascii() and core[-1].isalnum() else ""
    return re.compile(start + r"\s+".join(re.escape(w) for w in core.split()) + end)


def found_phrases(phrases: Iterable[str], text: str) -> list[str]:
    folded = fold(text)
    return [p.rstrip("*") for p in phrases if _phrase_re(p).search(folded)]


def placeholders_in(text: str) -> tuple[list[str], bool]:
    """Placeholder names a text uses, and whether it has a brace that is not part of one."""
    names = PLACEHOLDER_RE.findall(text)
    return names, "{" in PLACEHOLDER_RE.sub("", text) or "}" in PLACEHOLDER_RE.sub("", text)


@dataclass(frozen=True, slots=True)
class SmsSize:
    encoding: Literal["GSM-7", "UCS-2"]
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int

    @property
    def unit_name(self) -> str:
        return "septets" if self.encoding == "GSM-7" else "UTF-16 units"


def sms_size(text: str) -> SmsSize:
    """Encoding and segments: GSM-7 160 / 153 a part (extension characters count two), else UCS-2 70 / 67."""
    if all(c in _GSM_BASIC or c in _GSM_EXTENSION for c in text):
        units = sum(2 if c in _GSM_EXTENSION else 1 for c in text)
        return SmsSize("GSM-7", units, 1 if units <= 160 else -(-units // 153))
    units = len(text.encode("utf-16-le")) // 2
    return SmsSize("UCS-2", units, 1 if units <= 70 else -(-units // 67))


def sms_problem(where: str, body: str) -> str | None:
    """Why an SMS body with every placeholder at its longest is over the segment limit; None when it fits."""
    longest = PLACEHOLDER_RE.sub(lambda m: "x" * PLACEHOLDERS[m.group(1)].max_length, body)
    size = sms_size(longest)
    if size.segments <= MAX_SMS_SEGMENTS:
        return None
    allowed = 153 * MAX_SMS_SEGMENTS if size.encoding == "GSM-7" else 67 * MAX_SMS_SEGMENTS
    why = ""
    if size.encoding == "UCS-2":
        odd = next(c for c in longest if c not in _GSM_BASIC and c not in _GSM_EXTENSION)
        why = f"; UCS-2 because of {odd!r}"
    elif any(c in _GSM_EXTENSION for c in longest):
        why = "; extension characters ^ { } \\ [ ~ ] | € count as two"
    return (
        f"{where}: SMS is {size.segments} segments in {size.encoding}, over the {MAX_SMS_SEGMENTS} allowed "
        f"({size.units} {size.unit_name} with placeholders at their maximum lengths; {allowed} fit{why})"
    )
