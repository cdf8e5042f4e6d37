"""`equilibrate interventions`: the engine, and the operator's steps on cases from a terminal.

    equilibrate interventions                         run the engine (risk events -> cases -> sends)
    equilibrate interventions list [--state S]        cases, highest risk first for proposed ones
    equilibrate interventions show CASE               one case, every field
    equilibrate interventions approve CASE --by NAME [--note TEXT]
    equilibrate interventions reject CASE --by NAME --reason TEXT
    equilibrate interventions close CASE --outcome OUTCOME --by NAME [--note TEXT]
    equilibrate interventions retry CASE --by NAME
    equilibrate interventions cure-rates              missed payments 30 / 60 days after a send

The operator's steps are the console's and the API's: the same checks, the same audit rows (written
to the log before the command returns).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from equilibrate.settings import Settings

if TYPE_CHECKING:
    import redis

_ACTIONS = ("approve", "reject", "close", "retry")


def _flush(client: redis.Redis, settings: Settings) -> None:
    from equilibrate.alert import audit_queue
    from equilibrate.alert.audit_log import AuditLog

    audit_queue.flush(client, AuditLog(settings.data_dir))


def _act(args: argparse.Namespace, settings: Settings) -> int:
    from equilibrate.alert.actions import CaseActions
    from equilibrate.storage.redis_client import connect

    client = connect(settings)
    actions = CaseActions(client)
    sub = args.interventions_command
    if sub == "approve":
        case = actions.approve(args.case, args.by, args.note or "")
    elif sub == "reject":
        case = actions.reject(args.case, args.by, args.reason)
    elif sub == "close":
        case = actions.close(args.case, args.outcome, args.by, args.note or "")
    else:
        case = actions.retry(args.case, args.by)
    _flush(client, settings)
    extra = f" ({case['outcome']})" if case.get("outcome") else ""
    print(f"case {case['case_id']} ({case['customer_id']}): {case['state']}{extra}")
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from equilibrate.alert.cases import CaseStore
    from equilibrate.storage.redis_client import connect

    store = CaseStore(connect(settings))
    cases = store.recent(args.limit, state=args.state)
    if not cases:
        print("no cases" + (f" in state {args.state}" if args.state else ""))
        return 0
    print(f"{'case':10} {'customer':12} {'state':10} {'level':8} {'score':>5}  {'route':10} {'channel':7} action")
    for c in cases:
        print(
            f"{c['case_id']:10} {c['customer_id']:12} {c['state']:10} {c.get('risk_level', ''):8} "
            f"{float(c.get('risk_score') or 0):5.1f}  {c.get('route', ''):10} {c.get('channel', ''):7} "
            f"{c.get('action', '')}"
        )
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    from equilibrate.alert.cases import CaseStore
    from equilibrate.alert.lifecycle import TransitionError
    from equilibrate.storage.redis_client import connect

    case = CaseStore(connect(settings)).get(args.case)
    if case is None:
        raise TransitionError(f"no case {args.case}")
    width = max(map(len, case))
    for name in sorted(case):
        print(f"{name:{width}}  {case[name]}")
    return 0


def _cure_rates(_args: argparse.Namespace, settings: Settings) -> int:
    from equilibrate.alert.outcomes import cure_rates
    from equilibrate.storage.redis_client import connect

    rates = cure_rates(connect(settings))
    if not rates:
        print("no follow-ups yet: they come 30 and 60 days (event time) after a send")
        return 0
    print(f"{'days':>4}  {'action':28} {'hardship':14} {'channel':7} {'followed':>8} {'missed':>6} {'cure':>6}")
    for r in rates:
        print(f"{r.days:>4}  {r.action:28} {r.hardship_type:14} {r.channel:7} {r.followed:>8} {r.missed:>6} "
              f"{r.cure_rate:6.1%}")  # fmt: skip
    return 0


def _run_engine(_args: argparse.Namespace, settings: Settings) -> int:
    from equilibrate.alert.engine import InterventionEngine
    from equilibrate.kafka.topics import ensure_topics
    from equilibrate.ops.stopping import StopFlag
    from equilibrate.risk.policy import load_policy

    policy = load_policy(settings.policy_file)  # a broken policy file is named before anything starts
    ensure_topics(settings)
    InterventionEngine(settings, StopFlag().install(), policy=policy).run()
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    sub = getattr(args, "interventions_command", None)
    if sub in _ACTIONS:
        return _act(args, settings)
    if sub == "list":
        return _list(args, settings)
    if sub == "show":
        return _show(args, settings)
    if sub == "cure-rates":
        return _cure_rates(args, settings)
    return _run_engine(args, settings)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from equilibrate.alert.lifecycle import OUTCOMES, STATES

    p = sub.add_parser("interventions", help="intervention engine: cases, approvals, sends, outcomes, audit log")
    p.set_defaults(func=run)
    inner = p.add_subparsers(dest="interventions_command", metavar="[list|show|approve|reject|close|retry|cure-rates]")
    ls = inner.add_parser("list", help="cases, newest first (proposed: highest risk first)")
    ls.add_argument("--state", choices=STATES, default=None)
    ls.add_argument("--limit", type=int, default=50)
    ls.set_defaults(func=run)
    show = inner.add_parser("show", help="every field of one case")
    show.add_argument("case")
    show.set_defaults(func=run)
    for name, text in (
        ("approve", "approve a proposed (or blocked) case's message; the contact policy is checked again at send"),
        ("reject", "reject a proposed case (with the reason, for the audit log)"),
        ("close", "close a case with its outcome"),
        ("retry", "send a failed case's message again now"),
    ):
        a = inner.add_parser(name, help=text)
        a.add_argument("case")
        a.add_argument("--by", required=True, help="who acts (operator id; goes into the audit log)")
        if name == "approve":
            a.add_argument("--note", default="")
        if name == "reject":
            a.add_argument("--reason", required=True)
        if name == "close":
            a.add_argument("--outcome", required=True, choices=OUTCOMES)
            a.add_argument("--note", default="")
        a.set_defaults(func=run)
    cr = inner.add_parser("cure-rates", help="missed payments 30 and 60 days after a send, by action and hardship")
    cr.set_defaults(func=run)
