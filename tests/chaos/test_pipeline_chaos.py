"""Chaos: the whole pipeline as real processes, each component killed with SIGKILL mid-run and restarted.

The simulator feeds 300 customers x 60 days at a capped rate while the archive, the feature engine,
the risk engine and the intervention engine (AUTO_INTERVENE on email, a real SMTP relay) run. Each of
the four is killed once in the middle of the stream and started again. Afterwards:

- no transaction lost or counted twice: the archive holds exactly what the feature engine counted,
  and every customer's rolling state and profile equal a clean rebuild from that archive;
- scores are current: a fresh full re-score changes nothing;
- no intervention sent twice: every email's Message-ID is unique, one per sent case;
- the audit chain verifies.
"""

from __future__ import annotations

import email
import email.policy
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import cast

import redis

from equilibrate.alert.audit_log import AuditLog
from equilibrate.alert.cases import CaseStore
from equilibrate.features import store as feature_store
from equilibrate.features.compute import FEATURES
from equilibrate.features.rebuild import rebuild
from equilibrate.ops.stopping import StopFlag
from equilibrate.risk.engine import RiskEngine
from equilibrate.risk.keys import QUEUE_KEY
from equilibrate.settings import Settings
from equilibrate.storage.archive_store import ArchiveStore
from equilibrate.storage.customer_registry import KNOWN_CUSTOMERS_KEY
from tests.alert.gateways import running_smtp
from tests.conftest import Services, make_settings
from tests.processes import start_component, wait_until

COMPARED = (*FEATURES, "last_txn_ts", "feature_version")
KILLED = ("features", "risk", "archive", "interventions")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def _queue(client: redis.Redis) -> dict[bytes, float]:
    return dict(cast(list[tuple[bytes, float]], client.zrange(QUEUE_KEY, 0, -1, withscores=True)))


def _events(client: redis.Redis) -> int:
    return int(client.hget(feature_store.STATS_KEY, "events") or 0)


def test_kill_9_of_each_component_mid_run_loses_and_repeats_nothing(
    services: Services, settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    log = tmp_path / "pipeline.log"
    with running_smtp() as (inbox, port):
        s = settings.model_copy(update={
            "smtp_url": f"smtp://127.0.0.1:{port}", "auto_intervene": True, "auto_intervene_min_score": 30.0,
            "auto_intervene_channels": "email", "interventions_consumer": "chaos", "outbox_claim_idle_s": 2.0,
            "features_batch": 2_000, "archive_flush_interval_s": 0.5,
            # No quiet hours: when the stream ends at night, a send deferred to the morning would wait
            # for an event time that never comes, and how many did depends on when the engine caught up.
            "contact_quiet_start": "00:00", "contact_quiet_end": "00:00",
        })  # fmt: skip
        procs = {name: start_component(s, name, log_path=log) for name in KILLED}
        produce = start_component(
            s, "produce", "--customers", "300", "--backfill-days", "60", "--days", "0", "--rate", "1500",
            "--seed", "5", "--start", "2026-01-05", log_path=log,
        )  # fmt: skip
        try:
            wait_until(lambda: _events(redis_client) > 2_000, 90, "the stream to be under way")
            for name in KILLED:  # one at a time, each while events keep arriving
                _kill(procs[name])
                time.sleep(0.5)
                procs[name] = start_component(s, name, log_path=log)
                time.sleep(2.0)
            assert produce.poll() is None, "the stream ended before every component was killed: slow it down"
            assert produce.wait(180) == 0, log.read_text()[-3000:]
            archive = ArchiveStore(s.data_dir / "archive")

            def settled() -> bool:
                rows = archive.load().rows
                return rows > 0 and rows == _events(redis_client) and redis_client.scard(feature_store.DIRTY_KEY) == 0

            wait_until(settled, 120, "archive and feature engine caught up, every change scored")

            def drained() -> bool:
                groups = redis_client.xinfo_groups("eq:outbox") if redis_client.exists("eq:outbox") else []
                unsent = sum(int(g["pending"]) + int(g.get("lag") or 0) for g in groups)
                return unsent == 0 and redis_client.xlen("eq:audit:queue") == 0

            wait_until(drained, 60, "the outbox and audit queue drained")
        finally:
            for proc in (*procs.values(), produce):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in (*procs.values(), produce):
                proc.wait(30)
        messages = [str(email.message_from_bytes(e.content, policy=email.policy.default)["Message-ID"])  # type: ignore[arg-type]
                    for e in inbox.received]  # fmt: skip

    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]

    # Transactions: the archive equals what the feature engine counted; states equal a clean rebuild.
    ids = sorted(x.decode() for x in cast(set[bytes], redis_client.smembers(KNOWN_CUSTOMERS_KEY)))
    archive = ArchiveStore(s.data_dir / "archive")
    assert archive.load().rows == _events(redis_client)
    other = make_settings(services, tmp_path / "rebuild")
    clean = redis.Redis.from_url(other.redis_url)
    clean.flushdb()
    rebuild(clean, archive, "unused", set_offsets=False)
    assert feature_store.load_states(clean, ids) == feature_store.load_states(redis_client, ids)
    live = feature_store.read_profiles(redis_client, ids)
    rebuilt = feature_store.read_profiles(clean, ids)
    for cid in ids:
        assert {k: live[cid].get(k) for k in COMPARED} == {k: rebuilt[cid].get(k) for k in COMPARED}, cid
    clean.close()

    # Scores: every customer scored, and a fresh full pass finds nothing to change.
    assert redis_client.zcard(QUEUE_KEY) == len(ids)
    before = _queue(redis_client)
    engine = RiskEngine(s, StopFlag())
    engine.rescore_all()
    engine.producer.close()
    assert _queue(redis_client) == before

    # Interventions: one email per sent case, none twice; the audit chain intact.
    assert len(messages) == len(set(messages)), "an email was sent twice"
    cases = CaseStore(redis_client).recent(10_000)
    sent = [c for c in cases if c.get("sent_message_id") and c.get("channel") == "email"]
    summary = Counter((c.get("state"), c.get("channel"), c.get("outcome", "")) for c in cases)
    stats = redis_client.hgetall("eq:interventions:stats")
    assert sent and len(sent) == len(messages), f"cases {dict(summary)}; stats {stats}; log {text[-2000:]}"
    assert {c["sent_message_id"] for c in sent} == {m.strip("<>").split("@")[0] for m in messages}
    assert AuditLog(s.data_dir).verify().ok
