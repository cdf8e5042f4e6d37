"""`equilibrate risk` (the streaming risk engine), `risk rescore` (everyone, now) and `risk evaluate`."""

from __future__ import annotations

import argparse
from pathlib import Path

from equilibrate.settings import Settings


def run(args: argparse.Namespace, settings: Settings) -> int:
    sub = getattr(args, "risk_command", None)
    if sub == "evaluate":
        from equilibrate.risk.evaluate import evaluate, rules_scorer
        from equilibrate.risk.rules import load_rules

        rules = load_rules(args.rules or settings.risk_rules_file)
        result = evaluate(rules_scorer(rules), customers=args.customers, days=args.days, seed=args.seed)
        print(f"rules {rules.version}")
        print(result.report())
        return 0
    from equilibrate.kafka.topics import ensure_topics
    from equilibrate.ops.stopping import StopFlag
    from equilibrate.risk.engine import RiskEngine
    from equilibrate.risk.policy import load_policy
    from equilibrate.risk.rules import load_rules

    # A broken rules or policy file is named before any service is contacted.
    rules, policy = load_rules(settings.risk_rules_file), load_policy(settings.policy_file)
    ensure_topics(settings)
    stop = StopFlag().install()
    engine = RiskEngine(settings, stop, rules=rules, policy=policy)
    if sub == "rescore":
        scored = engine.rescore_all()
        engine.producer.flush(10.0)
        print(f"re-scored {scored} customers with {engine.rules.version}")
        return 0
    engine.run()
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("risk", help="risk engine: scores, levels, hardship types and actions in Redis")
    p.set_defaults(func=run)
    inner = p.add_subparsers(dest="risk_command", metavar="[rescore|evaluate]")
    r = inner.add_parser("rescore", help="re-score every customer now (e.g. after changing the rules) and exit")
    r.set_defaults(func=run)
    e = inner.add_parser(
        "evaluate", help="grade the rules against a simulated population's missed payments (precision, recall)"
    )
    e.add_argument("--rules", type=Path, default=None, help="rules file (default RISK_RULES_FILE or the packaged one)")
    e.add_argument("--customers", type=int, default=2_000)
    e.add_argument("--days", type=int, default=150)
    e.add_argument("--seed", type=int, default=11)
    e.set_defaults(func=run)
