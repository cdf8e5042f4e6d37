"""`equilibrate status`: broker and Redis health, components, consumer lag, Redis memory and keys.

Exit code 0 when the broker and Redis answer and every recorded component is alive, 1 otherwise.
Secrets never appear: URLs are shown with their password masked.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import orjson
import redis

from equilibrate.errors import EquilibrateError
from equilibrate.features.freshness import LATENCY_KEY
from equilibrate.features.store import STATS_KEY, WATERMARK_KEY
from equilibrate.kafka.dlq import DLQ_COUNTS_KEY
from equilibrate.kafka.transport import make_admin
from equilibrate.ops.heartbeat import read_heartbeats
from equilibrate.risk.keys import QUEUE_KEY as RISK_QUEUE_KEY
from equilibrate.risk.keys import STATS_KEY as RISK_STATS_KEY
from equilibrate.settings import Settings, redact_url
from equilibrate.storage.customer_registry import KNOWN_CUSTOMERS_KEY
from equilibrate.storage.redis_client import connect


def kafka_health(settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {"bootstrap": settings.kafka_bootstrap_servers, "client": settings.kafka_client}
    try:
        admin = make_admin(settings)
        try:
            out["topics"] = admin.list_topics()
            out["lag"] = [
                {
                    "group": p.group,
                    "topic": p.topic,
                    "partition": p.partition,
                    "committed": p.committed,
                    "end": p.end,
                    "lag": p.lag,
                }
                for p in admin.consumer_lag()
            ]
        finally:
            admin.close()
        out["ok"] = True
    except EquilibrateError as exc:
        out.update(ok=False, error=str(exc))
    except Exception as exc:  # any client error means "not healthy", reported on one line
        out.update(ok=False, error=f"{type(exc).__name__}: {exc}")
    return out


def _interventions(client: redis.Redis) -> dict[str, Any]:
    from equilibrate.alert import audit_queue, outbox
    from equilibrate.alert.cases import CaseStore
    from equilibrate.alert.proposer import STATS_KEY as INTERVENTION_STATS_KEY

    return {
        "cases": CaseStore(client).counts(),
        "outbox": outbox.waiting(client),
        "audit_queue": audit_queue.pending(client),
        "stats": _decoded(client.hgetall(INTERVENTION_STATS_KEY)),
    }


def _redis_health(settings: Settings) -> tuple[dict[str, Any], redis.Redis | None]:
    out: dict[str, Any] = {"url": redact_url(settings.redis_url)}
    try:
        client = connect(settings)
        mem = client.info("memory")
        keyspace = client.info("keyspace")
        out.update(
            ok=True,
            used_memory=mem.get("used_memory"),
            used_memory_human=mem.get("used_memory_human"),
            keys=sum(int(db.get("keys", 0)) for db in keyspace.values() if isinstance(db, dict)),
            customers=client.scard(KNOWN_CUSTOMERS_KEY),
            dlq=_decoded(client.hgetall(DLQ_COUNTS_KEY)),
            features=_decoded(client.hgetall(STATS_KEY)),
            freshness=_decoded(client.hgetall(LATENCY_KEY)),
            risk=_decoded(client.hgetall(RISK_STATS_KEY)) | {"queue": str(client.zcard(RISK_QUEUE_KEY))},
            watermark_ms=max((int(v) for v in client.hvals(WATERMARK_KEY)), default=None),
            interventions=_interventions(client),
        )
        return out, client
    except EquilibrateError as exc:
        out.update(ok=False, error=str(exc))
    except redis.RedisError as exc:
        out.update(ok=False, error=f"{type(exc).__name__}: {exc}")
    return out, None


def _decoded(raw: dict[Any, Any]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): (v.decode() if isinstance(v, bytes) else str(v))
        for k, v in raw.items()
    }


def collect(settings: Settings) -> dict[str, Any]:
    kafka = kafka_health(settings)
    red, client = _redis_health(settings)
    components = read_heartbeats(client) if client is not None else []
    supervisor_file = settings.data_dir / "run" / "supervisor.json"
    supervisor = orjson.loads(supervisor_file.read_bytes()) if supervisor_file.exists() else None
    healthy = bool(kafka["ok"] and red["ok"] and all(c["alive"] for c in components))
    return {
        "healthy": healthy,
        "kafka": kafka,
        "redis": red,
        "components": components,
        "supervisor": supervisor,
        "checked_at": time.time(),
    }


def _mark(ok: bool) -> str:
    return "OK  " if ok else "DOWN"


def render(report: dict[str, Any]) -> str:
    k, r = report["kafka"], report["redis"]
    lines = [f"Equilibrate status: {'healthy' if report['healthy'] else 'NOT healthy'}", ""]
    topics = ", ".join(f"{n}({p})" for n, p in sorted(k.get("topics", {}).items()))
    lines.append(
        f"  Kafka  {_mark(k['ok'])} {k['bootstrap']} [{k['client']}]  "
        + (f"topics: {topics or 'none'}" if k["ok"] else k.get("error", ""))
    )
    if r["ok"]:
        lines.append(
            f"  Redis  {_mark(True)} {r['url']}  memory {r['used_memory_human']}, "
            f"{r['keys']} keys, {r['customers']} customers"
        )
    else:
        lines.append(f"  Redis  {_mark(False)} {r['url']}  {r.get('error', '')}")
    if r["ok"]:
        feats, fresh = r.get("features") or {}, r.get("freshness") or {}
        if feats:
            mark = r.get("watermark_ms")
            when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(mark / 1000)) if mark else "-"
            lines.append(
                f"  Features: {feats.get('events', 0)} events, {feats.get('late_dropped', 0)} too late, "
                f"watermark {when} UTC, freshness p50 {fresh.get('p50_ms', '-')} ms "
                f"p99 {fresh.get('p99_ms', '-')} ms"
            )
        risk = r.get("risk") or {}
        if risk.get("scored"):
            lines.append(
                f"  Risk: {risk['scored']} scores, {risk.get('level_changes', 0)} level changes, "
                f"{risk.get('sweeps', 0)} sweeps, {risk.get('queue', 0)} customers in the queue"
            )
        lines += _intervention_lines(r.get("interventions") or {})
        dlq = r.get("dlq") or {}
        total = sum(int(v) for v in dlq.values())
        detail = ", ".join(f"{k} {v}" for k, v in sorted(dlq.items()))
        lines.append(f"  Dead letters: {total}" + (f" ({detail})" if detail else ""))
    sup = report.get("supervisor")
    if sup:
        lines += ["", f"  Supervisor pid {sup['supervisor_pid']}:"]
        for c in sup["children"]:
            state = f"pid {c['pid']}" if c["pid"] else "finished" if c.get("done") else "restarting"
            lines.append(f"    {c['name']:<14} {state:<12} restarts {c['restarts']}")
    lines += ["", "  Components (heartbeats):"]
    if not report["components"]:
        lines.append("    none recorded")
    for c in report["components"]:
        extra = " ".join(
            f"{key}={val}"
            for key, val in c.items()
            if key not in {"name", "pid", "host", "started", "beat", "interval", "age_s", "alive"}
        )
        lines.append(f"    {c['name']:<14} {_mark(c['alive'])} pid {c['pid']:<8} beat {c['age_s']}s ago  {extra}")
    lines += ["", "  Consumer lag:"]
    lag = k.get("lag", [])
    if not lag:
        lines.append("    no consumer groups")
    for p in lag:
        lines.append(
            f"    {p['group']:<28} {p['topic']}[{p['partition']}] committed {p['committed']} "
            f"end {p['end']} lag {p['lag']}"
        )
    return "\n".join(lines)


def component_alive(settings: Settings, name: str) -> bool:
    """Is a component of this name beating on this host (a container's health check)?"""
    import socket

    try:
        client = connect(settings)
        return any(
            b["name"] == name and b["alive"] and b["host"] == socket.gethostname() for b in read_heartbeats(client)
        )
    except (EquilibrateError, redis.RedisError):
        return False


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.component:
        alive = component_alive(settings, args.component)
        print(f"{args.component}: {'alive' if alive else 'no fresh heartbeat on this host'}")
        return 0 if alive else 1
    report = collect(settings)
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print(render(report))
    return 0 if report["healthy"] else 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="health of broker, Redis and components; consumer lag; Redis memory")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--component", default=None, help="only: is this component beating on this host (exit 0/1)")
    p.set_defaults(func=run)


def _intervention_lines(info: dict[str, Any]) -> list[str]:
    cases = {k: v for k, v in (info.get("cases") or {}).items() if v}
    if not cases:
        return []
    box = info.get("outbox") or {}
    by_state = ", ".join(f"{state} {n}" for state, n in cases.items())
    return [
        f"  Interventions: {by_state}; outbox {box.get('unsent', 0)} to send, {box.get('deferred', 0)} deferred "
        f"(quiet hours), {box.get('retrying', 0)} awaiting a retry; audit rows queued {info.get('audit_queue', 0)}"
    ]
