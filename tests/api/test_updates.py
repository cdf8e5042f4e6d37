"""WS /api/v1/ws/updates: a level change made by the real risk engine, and a case step, pushed live."""

from __future__ import annotations

import json
import threading
import time

from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from equilibrate.features import store as feature_store
from equilibrate.ops.stopping import StopFlag
from equilibrate.risk.engine import RiskEngine
from equilibrate.risk.keys import LEVELS_KEY
from tests.api.conftest import Api

V1 = "/api/v1"


def test_live_level_changes_and_case_steps_reach_the_socket(api: Api, http: TestClient) -> None:
    from equilibrate.dashboard import queries

    cid = str(queries.queue_page(api.redis, queries.QueueFilter(levels=("HIGH",)), 1, 1).rows[0]["customer_id"])
    case_id = api.cases[6]

    def pipeline_moves() -> None:
        time.sleep(1.5)  # the socket is reading by now
        # The risk engine forgets the customer's level and re-scores them: a real level change event.
        api.redis.hdel(LEVELS_KEY, cid)
        engine = RiskEngine(api.settings, StopFlag())
        engine.score([cid], feature_store.watermark_ms(api.redis))
        engine.producer.close()
        http.post(f"{V1}/interventions/{case_id}/approve", json={}, headers={"X-API-Key": api.writer})

    mover = threading.Thread(target=pipeline_moves)
    with http.websocket_connect(f"{V1}/ws/updates?api_key={api.reader}") as ws:
        mover.start()
        first, second = json.loads(ws.receive_text()), json.loads(ws.receive_text())
    mover.join(30)
    assert first["type"] == "risk_level_changed" and first["customer_id"] == cid and first["risk_level"] == "HIGH"
    assert first["previous_level"] is None and first["reasons"]
    assert second["type"] == "case_changed" and second["case_id"] == case_id and second["state"] == "approved"


def test_the_socket_needs_a_key_with_the_read_scope(api: Api, http: TestClient) -> None:
    try:
        with http.websocket_connect(f"{V1}/ws/updates?api_key=eqk_bad_key") as ws:
            ws.receive_text()
        raise AssertionError("the socket accepted a bad key")
    except WebSocketDisconnect as closed:
        assert closed.code == 4401
