"""The contact policy: hardship type x risk level -> action, channels in order, and approved templates.

Templates are compliance artefacts, so a policy file refuses to load unless every rule and every
language variant passes the checks compliance relies on (policy_checks.py), against word lists that
live in code, not in the file (policy_words.py), so a policy edit cannot loosen them. This module
reads the file, builds the Policy, and renders messages. Pure logic and file reading; no Redis or Kafka.
"""

from __future__ import annotations

import importlib.resources
import logging
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from equilibrate.errors import ConfigError
from equilibrate.risk.policy_checks import Contact, Rule, Template, validate, validate_policy
from equilibrate.risk.policy_words import (
    FALLBACK_LANGUAGE,
    LANGUAGES,
    PLACEHOLDER_RE,
    PLACEHOLDERS,
    placeholders_in,
    sms_size,
)

# validate_policy and sms_size are re-exported: callers check and measure through this module.
__all__ = [
    "Policy",
    "PolicyError",
    "Recommendation",
    "RenderedMessage",
    "build_policy",
    "load_policy",
    "read_policy",
    "sms_size",
    "validate_policy",
]

log = logging.getLogger(__name__)


class PolicyError(ConfigError):
    """The policy file is unusable, or a message cannot be rendered; `problems` lists every problem found."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems) or [message]


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
    return PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], text)


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
    problems, shape, templates, rules = validate(raw)
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
