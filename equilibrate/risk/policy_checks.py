"""Validation of a parsed contact policy file: its shape, and the checks compliance relies on.

A policy file is usable only if every rule and every language variant passes: all 24 hardship x level
pairs covered once, signposting to free debt advice and a forbearance option at MEDIUM and above, no
pressure wording, SMS within two segments with placeholders at their longest, and nothing an SMS or
voicemail could reveal about a customer's debts to whoever reads or hears it. Every problem is
collected, one line each, so one edit-and-check round can fix them all. Pure logic; no I/O.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from equilibrate.risk.keys import HARDSHIP_TYPES, LEVELS
from equilibrate.risk.policy_words import (
    ACTIONS,
    CHANNELS,
    CONTACT_ACTIONS,
    CONTACT_FROM,
    DEBT_WORDS,
    DISCREET_CHANNELS,
    FALLBACK_LANGUAGE,
    FORBEARANCE_OPTIONS,
    LANGUAGES,
    MONEY_PATTERN,
    PLACEHOLDER_RE,
    PLACEHOLDERS,
    PRESSURE_WORDS,
    SIGNPOST_PLACEHOLDERS,
    Channel,
    fold,
    found_phrases,
    placeholders_in,
    sms_problem,
)

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


def _discretion_problems(where: str, channel: str, text: str) -> list[str]:
    problems = [
        f"{where}: {channel} reveals debt details with {w!r} (a third party may see or hear it)"
        for w in found_phrases(DEBT_WORDS, text)
    ]
    problems += [f"{where}: {channel} reveals an amount {m.group(0)!r}" for m in re.finditer(MONEY_PATTERN, fold(text))]
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
        plain = PLACEHOLDER_RE.sub(" ", text)
        problems += [f"{where}: pressure wording {w!r} in the {part}" for w in found_phrases(PRESSURE_WORDS, plain)]
        if t.channel in DISCREET_CHANNELS:
            problems += _discretion_problems(where, t.channel, plain)
    body = PLACEHOLDER_RE.sub(" ", v.body)
    if words.script and not any(words.script[0] <= c <= words.script[1] for c in body):
        problems.append(f"{where}: body is not written in the language's script")
    for option in t.forbearance:
        if not found_phrases(words.forbearance[option], body):
            expected = ", ".join(repr(w.rstrip("*")) for w in words.forbearance[option])
            problems.append(f"{where}: forbearance {option} is declared but the body does not mention it ({expected})")
    used = set(placeholders_in(v.body)[0])
    if serious and (used.isdisjoint(SIGNPOST_PLACEHOLDERS) or not found_phrases(words.free, body)):
        problems.append(
            f"{where}: used at {CONTACT_FROM} or above but does not signpost free debt advice "
            f"(needs {{advice_name}} or {{advice_url}} and the word {words.free[0]!r})"
        )
    if t.channel == "sms" and used <= PLACEHOLDERS.keys() and (problem := sms_problem(where, v.body)):
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


def validate(raw: object) -> tuple[list[str], _Shape | None, dict[str, Template], list[Rule]]:
    """Problems, and the parts build_policy assembles: one pass, so loading checks what `policy check` checks."""
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
    return validate(raw)[0]


def edited_message_problems(channel: str, language: str, body: str, subject: str | None = None) -> list[str]:
    """What an operator's edit of a rendered message breaks of the policy's text rules (empty: none).

    The same rules as a template: no pressure wording; on sms and voice no debt details or amounts;
    an sms within its segment budget; an email keeps a subject; the free-advice signpost stays.
    """
    where = f"edited {channel} message ({language})"
    problems = []
    if not body.strip():
        return [f"{where}: the message is empty"]
    if channel == "email" and not (subject or "").strip():
        problems.append(f"{where}: an email needs a subject")
    for part, text in (("subject", subject or ""), ("body", body)):
        problems += [f"{where}: pressure wording {w!r} in the {part}" for w in found_phrases(PRESSURE_WORDS, text)]
    if channel in DISCREET_CHANNELS:
        problems += _discretion_problems(where, channel, body)
    words = LANGUAGES.get(language, LANGUAGES[FALLBACK_LANGUAGE])
    if not found_phrases(words.free, body):
        problems.append(f"{where}: keep the signpost to free advice (the word {words.free[0]!r})")
    if channel == "sms" and (problem := sms_problem(where, body)):
        problems.append(problem)
    return problems
