"""kill -9 of `equilibrate interventions` between an approval and its send: nothing lost, nothing twice."""

from __future__ import annotations

import email
import email.policy
import signal
import subprocess
import time
import uuid
from pathlib import Path

import orjson
import redis

from equilibrate.alert import outbox
from equilibrate.alert.actions import CaseActions
from equilibrate.alert.audit_log import AuditLog
from equilibrate.alert.cases import CaseStore
from equilibrate.alert.engine import InterventionEngine
from equilibrate.alert.proposer import read_risk_event
from equilibrate.ops.stopping import StopFlag
from equilibrate.risk.policy import load_policy
from equilibrate.settings import Settings
from tests.alert.gateways import Inbox, running_smtp
from tests.alert.test_engine import NOON, customer, register, risk_event, set_time
from tests.processes import start_component, wait_until


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def _message_ids(inbox: Inbox) -> list[str]:
    ids = []
    for envelope in inbox.received:
        mail = email.message_from_bytes(envelope.content, policy=email.policy.default)  # type: ignore[arg-type]
        ids.append(str(mail["Message-ID"]))
    return ids


def test_kill_9_between_approval_and_send_neither_loses_nor_duplicates(settings: Settings, tmp_path: Path) -> None:
    with running_smtp() as (inbox, port):
        s = settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{port}", "interventions_consumer": "engine-a",
                                        "outbox_claim_idle_s": 1.0})  # fmt: skip
        client = redis.Redis.from_url(s.redis_url)
        set_time(client, NOON)
        proposer = InterventionEngine(s, StopFlag(), policy=load_policy(), group=f"g-{uuid.uuid4().hex[:8]}")
        cases = []
        for n in range(4):
            register(client, f"C10{n}", customer(email=f"c10{n}@example.com"))
            case = proposer.propose(read_risk_event(orjson.dumps(risk_event(f"C10{n}"))))
            assert case is not None
            cases.append(case["case_id"])
        proposer.producer.close()
        proposer.consumer.close()
        actions, store = CaseActions(client), CaseStore(client)
        log = tmp_path / "engine.log"

        # 1. Killed in the middle of the send: the relay has the connection, not the message.
        engine = start_component(s, "interventions", log_path=log)
        try:
            inbox.stall.set()
            actions.approve(cases[0], "ops:alice")
            assert inbox.stalled.wait(30), log.read_text()
            _kill(engine)
        finally:
            if engine.poll() is None:
                _kill(engine)
        inbox.stall.clear()
        assert (store.get(cases[0]) or {})["state"] == "approved" and not inbox.received
        assert client.xpending(outbox.OUTBOX_KEY, outbox.GROUP)["pending"] == 1  # taken, not finished

        # 2. Killed straight after approvals, before or while sending them.
        engine = start_component(s, "interventions", log_path=log)
        try:
            for case_id, pause in zip(cases[1:], (0.0, 0.05, 0.3), strict=True):
                actions.approve(case_id, "ops:bob")
                time.sleep(pause)
            _kill(engine)
        finally:
            if engine.poll() is None:
                _kill(engine)

        # A restart (another engine name: it takes over engine-a's unfinished sends once they are idle).
        other = s.model_copy(update={"interventions_consumer": "engine-b"})
        engine = start_component(other, "interventions", log_path=log)
        try:
            wait_until(lambda: all((store.get(c) or {})["state"] == "sent" for c in cases), 60,
                       "every approved case sent")  # fmt: skip
            wait_until(lambda: client.xlen("eq:audit:queue") == 0, 10, "the audit queue written")
        finally:
            engine.send_signal(signal.SIGTERM)
            engine.wait(20)

    ids = _message_ids(inbox)
    assert len(ids) == len(set(ids)), f"a message was sent twice: {ids}"
    assert len(inbox.received) == 4 and all(any(f"{c}-1" in i for i in ids) for c in cases)
    audit = AuditLog(s.data_dir)
    for case_id in cases:
        actions_seen = [r.record.action for r in audit.rows() if r.record.case_id == case_id]
        assert actions_seen == ["proposed", "approved", "sent"], (case_id, actions_seen)
    interrupted = next(r for r in audit.rows() if r.record.case_id == cases[0] and r.record.action == "sent")
    assert "sent again after an interrupted send" in interrupted.record.detail
    assert audit.verify().ok
    assert "Traceback" not in log.read_text()
