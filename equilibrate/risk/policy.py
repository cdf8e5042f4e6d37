"""The contact policy: hardship type x risk level -> action, channels in order, and approved templates.

Templates are compliance artefacts, so a policy file refuses to load unless every rule and every
language variant passes the checks compliance relies on: all 24 hardship x level pairs covered once,
signposting to free debt advice and a forbearance option at MEDIUM and above, no pressure wording,
SMS within two segments with placeholders at their longest, and nothing an SMS or voicemail could
reveal about a customer's debts to whoever reads or hears it. The word lists live here, not in the
file, so a policy edit cannot loosen them. Pure logic and file reading; no Redis or Kafka.
"""

from __future__ import annotations

import functools
import importlib.resources
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from equilibrate.errors import ConfigError
from equilibrate.risk.keys import HARDSHIP_TYPES, LEVELS

log = logging.getLogger(__name__)

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
    max_length: int  # longest value `render` accepts; SMS lengths are checked with every placeholder this long
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
_MONEY = (
    r"[£$€₹¥]|\b(?:gbp|eur|usd|inr)\b|\d[\d,]*\.\d\d\b|\d{1,3}(?:,\d{3})+"
    r"|\d+(?:\.\d+)?\s*(?:%|p\b|k\b|pence\b|pounds?\b|quid\b|rupees?\b|रुपये|रुपए|रुपया|पाउंड)"
)
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_NUKTA = "\u093c"

# GSM 03.38: the basic set costs one septet a character, the extension set two (escape + character).
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("\f^{}\\[~]|€")


class PolicyError(ConfigError):
    """The policy file is unusable, or a message cannot be rendered; `problems` lists every problem found."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems) or [message]


# --- the file's shape ------------------------------------------------------------------------------


def _known(value: str, known: Iterable[str], what: str) -> str:
    names = tuple(known)
    if value not in names:
        raise ValueError(f"unknown {what} {value!r} (known: {', '.join(names)})")
    return value


def _one_of(known: Iterable[str], what: str) -> AfterValidator:
    names = tuple(known)
    return AfterValidator(lambda value: _known(value, names, what))


def _channel(value: object) -> object:
    """Before the Literal check, so an unknown channel gets the same message as every other unknown name."""
    return _known(value, CHANNELS, "channel") if isinstance(value, str) else value


ChannelName = Annotated[Channel, BeforeValidator(_channel)]


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    subject: str | None = Field(default=None, min_length=1)
    body: str = Field(min_length=1)


class Template(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    version: int = Field(ge=1)
    approval: str = Field(pattern=r"^[A-Z][A-Z0-9]*-\d{4}-\d{3,}$")  # e.g. COMP-2026-014
    channel: ChannelName
    # The actions compliance approved it for: a rule may use it only for one of them.
    purpose: list[Annotated[str, _one_of(CONTACT_ACTIONS, "action")]] = Field(min_length=1)
    forbearance: list[Annotated[str, _one_of(FORBEARANCE_OPTIONS, "forbearance option")]] = Field(default_factory=list)
    placeholders: list[Annotated[str, _one_of(PLACEHOLDERS, "placeholder")]] = Field(default_factory=list)
    languages: dict[str, Variant]


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: ChannelName
    template: str


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hardship: Annotated[str, _one_of(HARDSHIP_TYPES, "hardship type")]
    level: Annotated[str, _one_of(LEVELS, "level")]
    action: Annotated[str, _one_of(ACTIONS, "action")]
    contact: list[Contact] = Field(default_factory=list)  # preference order


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: dict[str, str] = Field(default_factory=dict)  # bank-wide values, e.g. advice_name
    templates: list[dict[str, Any]] = Field(min_length=1)
    rules: list[dict[str, Any]] = Field(min_length=1)


# --- text checks -----------------------------------------------------------------------------------


def _fold(text: str) -> str:
    """Case-folded, with Hindi's nukta dropped so कर्ज़, क़र्ज़ and कर्ज all match."""
    return unicodedata.normalize("NFC", text).replace(_NUKTA, "").casefold()


@functools.cache
def _phrase_re(phrase: str) -> re.Pattern[str]:
    core = _fold(phrase.rstrip("*"))
    start = r"\b" if core[0].isascii() and core[0].isalnum() else ""
    end = r"\b" if not phrase.endswith("*") and core[-1].isascii() and core[-1].isalnum() else ""
    return re.compile(start + r"\s+".join(re.escape(w) for w in core.split()) + end)


def _found(phrases: Iterable[str], text: str) -> list[str]:
    folded = _fold(text)
    return [p.rstrip("*") for p in phrases if _phrase_re(p).search(folded)]


def placeholders_in(text: str) -> tuple[list[str], bool]:
    """Placeholder names a text uses, and whether it has a brace that is not part of one."""
    names = _PLACEHOLDER.findall(text)
    return names, "{" in _PLACEHOLDER.sub("", text) or "}" in _PLACEHOLDER.sub("", text)


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


def _sms_problem(where: str, body: str) -> str | None:
    longest = _PLACEHOLDER.sub(lambda m: "x" * PLACEHOLDERS[m.group(1)].max_length, body)
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


def _discretion_problems(where: str, channel: str, text: str) -> list[str]:
    problems = [
        f"{where}: {channel} reveals debt details with {w!r} (a third party may see or hear it)"
        for w in _found(DEBT_WORDS, text)
    ]
    problems += [f"{where}: {channel} reveals an amount {m.group(0)!r}" for m in re.finditer(_MONEY, _fold(text))]
    return problems


# --- validation ------------------------------------------------------------------------------------


def _shape_problems(name: str, exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "entry"
        out.append(f"{name}: {field}: {err['msg'].removeprefix('Value error, ')}")
    return out


def _variant_problems(t: Template, lang: str, v: Variant, serious: bool) -> list[str]:
    where = f"template {t.id} ({lang})"
    if lang not in LANGUAGES:
        return [f"{where}: unknown language {lang!r} (known: {', '.join(LANGUAGES)})"]
    words = LANGUAGES[lang]
    problems = []
    if (v.subject is None) == (t.channel == "email"):
        problems.append(
            f"{where}: " + ("an email needs a subject" if v.subject is None else "only email has a subject")
        )
    for part, text in (("subject", v.subject), ("body", v.body)):
        if text is None:
            continue
        names, stray = placeholders_in(text)
        if stray:
            problems.append(f"{where}: {part} has a brace that is not part of a {{placeholder}}")
        for name in names:
            if name not in PLACEHOLDERS:
                problems.append(
                    f"{where}: {part} uses unknown placeholder {{{name}}} (known: {', '.join(PLACEHOLDERS)})"
                )
            elif name not in t.placeholders:
                problems.append(f"{where}: {part} uses placeholder {{{name}}}, which is not declared in placeholders")
        plain = _PLACEHOLDER.sub(" ", text)
        problems += [f"{where}: pressure wording {w!r} in the {part}" for w in _found(PRESSURE_WORDS, plain)]
        if t.channel in DISCREET_CHANNELS:
            problems += _discretion_problems(where, t.channel, plain)
    body = _PLACEHOLDER.sub(" ", v.body)
    if words.script and not any(words.script[0] <= c <= words.script[1] for c in body):
        problems.append(f"{where}: body is not written in the language's script")
    for option in t.forbearance:
        if not _found(words.forbearance[option], body):
            expected = ", ".join(repr(w.rstrip("*")) for w in words.forbearance[option])
            problems.append(f"{where}: forbearance {option} is declared but the body does not mention it ({expected})")
    used = set(placeholders_in(v.body)[0])
    if serious and (used.isdisjoint(SIGNPOST_PLACEHOLDERS) or not _found(words.free, body)):
        problems.append(
            f"{where}: used at {CONTACT_FROM} or above but does not signpost free debt advice "
            f"(needs {{advice_name}} or {{advice_url}} and the word {words.free[0]!r})"
        )
    if t.channel == "sms" and used <= PLACEHOLDERS.keys() and (problem := _sms_problem(where, v.body)):
        problems.append(problem)
    return problems


def _template_problems(t: Template, serious: bool) -> list[str]:
    problems = []
    if FALLBACK_LANGUAGE not in t.languages:
        problems.append(f"template {t.id}: has no {FALLBACK_LANGUAGE!r} variant (every template needs English)")
    for name, count in Counter(t.placeholders).items():
        if count > 1:
            problems.append(f"template {t.id}: placeholder {{{name}}} is declared {count} times")
        if t.channel in DISCREET_CHANNELS and PLACEHOLDERS[name].financial:
            problems.append(
                f"template {t.id}: placeholder {{{name}}} carries financial data, not allowed in {t.channel}"
            )
    used = {n for v in t.languages.values() for text in (v.subject or "", v.body) for n in placeholders_in(text)[0]}
    problems += [
        f"template {t.id}: declares placeholder {{{n}}} but no variant uses it" for n in t.placeholders if n not in used
    ]
    if serious and not t.forbearance:
        problems.append(
            f"template {t.id}: used at {CONTACT_FROM} or above but declares no forbearance option "
            f"(one or more of {', '.join(FORBEARANCE_OPTIONS)})"
        )
    for lang, variant in t.languages.items():
        problems += _variant_problems(t, lang, variant, serious)
    return problems


def _rule_problems(rule: Rule, templates: Mapping[str, Template], broken: set[str]) -> list[str]:
    where = f"rule {rule.hardship}/{rule.level}"
    problems = []
    if rule.action == "monitor" and rule.contact:
        problems.append(f"{where}: action monitor means no contact, but contact lists {len(rule.contact)} channel(s)")
    if rule.action != "monitor" and not rule.contact:
        problems.append(f"{where}: action {rule.action} needs at least one contact channel")
    if LEVELS.index(rule.level) >= LEVELS.index(CONTACT_FROM) and rule.action == "monitor":
        problems.append(f"{where}: at {CONTACT_FROM} or above the customer must be contacted (action is monitor)")
    for channel, count in Counter(c.channel for c in rule.contact).items():
        if count > 1:
            problems.append(f"{where}: channel {channel} is listed {count} times")
    for c in rule.contact:
        t = templates.get(c.template)
        if c.template in broken:
            continue  # its own problems are listed already
        if t is None:
            problems.append(f"{where}: unknown template {c.template!r}")
        elif t.channel != c.channel:
            problems.append(f"{where}: template {t.id} is for {t.channel}, but listed for {c.channel}")
        elif rule.action not in t.purpose:
            problems.append(
                f"{where}: template {t.id} is not approved for action {rule.action} (purpose: {', '.join(t.purpose)})"
            )
    return problems


def _validate(raw: object) -> tuple[list[str], _Shape | None, dict[str, Template], list[Rule]]:
    if not isinstance(raw, dict):
        return ["the file must be a mapping with templates and rules (and optional defaults)"], None, {}, []
    try:
        shape = _Shape.model_validate(raw)
    except ValidationError as exc:
        return _shape_problems("file", exc), None, {}, []
    problems: list[str] = []
    templates: dict[str, Template] = {}
    broken: set[str] = set()
    for i, item in enumerate(shape.templates):
        name = f"template {item['id']}" if isinstance(item.get("id"), str) else f"templates[{i}]"
        try:
            t = Template.model_validate(item)
        except ValidationError as exc:
            problems += _shape_problems(name, exc)
            broken.add(str(item.get("id")))
            continue
        if t.id in templates:
            problems.append(f"{name}: the id is used by more than one template")
        templates[t.id] = t
    rules: list[Rule] = []
    for i, item in enumerate(shape.rules):
        try:
            rules.append(Rule.model_validate(item))
        except ValidationError as exc:
            pair = f"rule {item.get('hardship')}/{item.get('level')}" if "hardship" in item else f"rules[{i}]"
            problems += _shape_problems(pair, exc)
    pairs = Counter((r.hardship, r.level) for r in rules)
    for hardship in HARDSHIP_TYPES:
        for level in LEVELS:
            if pairs[hardship, level] != 1 and len(rules) == len(shape.rules):
                how = "is missing" if not pairs[hardship, level] else f"appears {pairs[hardship, level]} times"
                problems.append(f"rule {hardship}/{level} {how} (every hardship x level pair needs exactly one rule)")
    for rule in rules:
        problems += _rule_problems(rule, templates, broken)
    serious = {c.template for r in rules if LEVELS.index(r.level) >= LEVELS.index(CONTACT_FROM) for c in r.contact}
    for t in templates.values():
        problems += _template_problems(t, t.id in serious)
    discreet = {n for t in templates.values() if t.channel in DISCREET_CHANNELS for n in t.placeholders}
    problems += _defaults_problems(shape.defaults, discreet)
    return problems, shape, templates, rules


def _defaults_problems(defaults: Mapping[str, str], discreet: set[str]) -> list[str]:
    problems = []
    for name, value in defaults.items():
        spec = PLACEHOLDERS.get(name)
        if spec is None:
            problems.append(f"defaults.{name}: unknown placeholder (known: {', '.join(PLACEHOLDERS)})")
        elif spec.financial:
            problems.append(f"defaults.{name}: carries financial data, so it cannot have a default")
        elif len(value) > spec.max_length:
            problems.append(f"defaults.{name}: {len(value)} characters, over the {spec.max_length} allowed")
        elif name in discreet:
            problems += _discretion_problems(f"defaults.{name}", "sms/voice", value)
    return problems


def validate_policy(raw: object) -> list[str]:
    """Every problem in a parsed policy file, one line each; empty when it is usable."""
    return _validate(raw)[0]


# --- the policy ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recommendation:
    hardship: str
    level: str
    action: str
    contacts: tuple[Contact, ...]  # preference order; empty for monitor

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(c.channel for c in self.contacts)

    @property
    def template_ids(self) -> tuple[str, ...]:
        return tuple(c.template for c in self.contacts)


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """What was sent and under which approval: the audit trail records all of it."""

    template_id: str
    version: int
    approval: str
    channel: str
    language: str  # the variant used (en when the customer's language has none)
    subject: str | None
    body: str
    sms_segments: int | None  # sms only


@dataclass(frozen=True)
class Policy:
    templates: Mapping[str, Template]
    rules: Mapping[tuple[str, str], Rule]
    defaults: Mapping[str, str]

    @property
    def languages(self) -> tuple[str, ...]:
        found = {lang for t in self.templates.values() for lang in t.languages}
        return tuple(lang for lang in LANGUAGES if lang in found)

    def recommend(self, hardship: str, level: str) -> Recommendation:
        rule = self.rules.get((hardship, level))
        if rule is None:
            raise PolicyError(f"no policy rule for hardship {hardship!r} at level {level!r}")
        return Recommendation(rule.hardship, rule.level, rule.action, tuple(rule.contact))

    def message(self, template_id: str | Contact, language: str, values: Mapping[str, str]) -> RenderedMessage:
        """The template in the customer's language (else English) with every placeholder filled."""
        tid = template_id.template if isinstance(template_id, Contact) else template_id
        t = self.templates.get(tid)
        if t is None:
            raise PolicyError(f"unknown template {tid!r}")
        lang = language if language in t.languages else FALLBACK_LANGUAGE
        variant = t.languages[lang]
        merged = {**self.defaults, **values}
        where = f"template {t.id} ({lang})"
        subject = None if variant.subject is None else _fill(variant.subject, merged, where)
        body = _fill(variant.body, merged, where)
        segments = sms_size(body).segments if t.channel == "sms" else None
        return RenderedMessage(t.id, t.version, t.approval, t.channel, lang, subject, body, segments)


def _fill(text: str, values: Mapping[str, str], where: str) -> str:
    names = placeholders_in(text)[0]
    missing = [n for n in dict.fromkeys(names) if not values.get(n, "").strip()]
    if missing:
        raise PolicyError(f"{where} needs a value for " + ", ".join(f"{{{n}}}" for n in missing))
    for name in names:
        if len(values[name]) > PLACEHOLDERS[name].max_length:
            raise PolicyError(
                f"{where}: the value for {{{name}}} is {len(values[name])} characters, over the "
                f"{PLACEHOLDERS[name].max_length} the policy's checks allow"
            )
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


# --- loading ---------------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a repeated key: otherwise a second `en:` would silently replace the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _read(path: Path | None) -> tuple[str, Any]:
    if path is None:
        where = "equilibrate/risk/policy_templates.yaml"
        text = importlib.resources.files("equilibrate.risk").joinpath("policy_templates.yaml").read_text("utf-8")
    else:
        where = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"cannot read policy {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise PolicyError(f"{where}: not UTF-8 text") from None
    try:
        return where, yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{where}: not valid YAML ({' '.join(str(exc).split())})") from None


def read_policy(path: Path | None = None) -> Any:
    """The parsed, unvalidated policy file (default: the packaged policy_templates.yaml)."""
    return _read(path)[1]


def build_policy(raw: object, where: str = "policy") -> Policy:
    """A Policy from a parsed file, or PolicyError listing every problem."""
    problems, shape, templates, rules = _validate(raw)
    if problems or shape is None:
        more = f" (and {len(problems) - 1} more: `equilibrate policy check` lists them)" if len(problems) > 1 else ""
        raise PolicyError(f"{where}: {problems[0]}{more}", [f"{where}: {p}" for p in problems])
    policy = Policy(templates, {(r.hardship, r.level): r for r in rules}, dict(shape.defaults))
    log.debug("policy %s: %d rules, %d templates", where, len(rules), len(templates))
    return policy


def load_policy(path: Path | None = None) -> Policy:
    """The policy at `path` (default: the packaged policy_templates.yaml), or PolicyError naming each problem."""
    where, raw = _read(path)
    return build_policy(raw, where)
