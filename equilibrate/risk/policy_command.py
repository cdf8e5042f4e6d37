"""`equilibrate policy check [FILE]`: check a contact policy file before it goes live."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from equilibrate.settings import Settings


def run(args: argparse.Namespace, settings: Settings) -> int:
    from equilibrate.risk.policy import PolicyError, load_policy

    try:
        policy = load_policy(args.file)
    except PolicyError as exc:
        if len(exc.problems) == 1:
            raise
        for problem in exc.problems:  # every problem, so one edit-and-check round fixes them all
            print(f"equilibrate policy: {problem}", file=sys.stderr)
        return 2
    print(
        f"policy OK: {len(policy.rules)} rules, {len(policy.templates)} templates, "
        f"languages {', '.join(policy.languages)}"
    )
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("policy", help="the contact policy: hardship x level -> action, channels and templates")
    inner = p.add_subparsers(dest="policy_command", metavar="check", required=True)
    c = inner.add_parser("check", help="validate a policy file (every rule and template); exit 2 listing each problem")
    c.add_argument(
        "file", nargs="?", type=Path, default=None, help="policy YAML (default: the packaged policy_templates.yaml)"
    )
    c.set_defaults(func=run)
