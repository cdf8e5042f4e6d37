"""Several API processes on one port (API_WORKERS): /metrics reports the whole host, whichever worker answers."""

from __future__ import annotations

import os
import re
import signal
import socket
from pathlib import Path
from typing import cast

import httpx
import orjson

from equilibrate.api import workers
from equilibrate.api.metrics import RequestMetrics
from equilibrate.ops.net import free_port
from equilibrate.storage.customer_registry import KNOWN_CUSTOMERS_KEY
from tests.api.conftest import Api
from tests.processes import start_component, wait_until

ROUTE = "/api/v1/customers/{customer_id}"


def _requests_total(text: str, route: str) -> int:
    labels = r'\{method="GET",route="' + re.escape(route) + r'",status="\d+"\}'
    pattern = re.compile(r"^equilibrate_api_requests_total" + labels + r" (\d+)$")
    return sum(int(m.group(1)) for line in text.splitlines() if (m := pattern.match(line)))


def _render(raw: bytes) -> list[str]:
    """A worker's published counters as Prometheus lines."""
    metrics = RequestMetrics()
    metrics.add(orjson.loads(raw)["metrics"])
    return list(metrics.render())


def test_snapshots_add_up_counts_histograms_and_sums() -> None:
    a, b = RequestMetrics(), RequestMetrics()
    a.observe("GET", ROUTE, 200, 0.003)
    a.observe("GET", ROUTE, 404, 0.0005)
    b.observe("GET", ROUTE, 200, 0.2)
    total = RequestMetrics()
    total.add(a.snapshot())
    total.add(b.snapshot())
    text = "\n".join(total.render())
    assert _requests_total(text, ROUTE) == 3
    assert f'equilibrate_api_request_seconds_count{{method="GET",route="{ROUTE}"}} 3' in text
    assert f'equilibrate_api_request_seconds_bucket{{method="GET",route="{ROUTE}",le="0.005"}} 2' in text
    assert f'equilibrate_api_request_seconds_sum{{method="GET",route="{ROUTE}"}} 0.203500' in text


def test_host_metrics_add_live_workers_and_leave_out_silent_ones(api: Api) -> None:
    client = api.redis
    client.delete(workers.metrics_key())
    live, gone, own = RequestMetrics(), RequestMetrics(), RequestMetrics()
    live.observe("GET", ROUTE, 200, 0.001)
    gone.observe("GET", ROUTE, 200, 0.001)
    own.observe("GET", ROUTE, 200, 0.001)
    own.observe("GET", ROUTE, 200, 0.001)
    workers.publish(client, live, pid=101, now=1_000.0)
    workers.publish(client, gone, pid=102, now=1_000.0 - workers.STALE_S - 1)
    workers.publish(client, RequestMetrics(), pid=103, now=1_000.0)  # this worker's own stale copy: not counted twice
    total = workers.host_metrics(client, own, pid=103, now=1_000.0)
    assert _requests_total("\n".join(total.render()), ROUTE) == 3  # own 2 + live 1; the silent one left out
    workers.forget(client, pid=101)
    assert client.hkeys(workers.metrics_key()) and b"101" not in client.hkeys(workers.metrics_key())
    client.delete(workers.metrics_key())


def test_two_worker_processes_serve_one_port_and_report_the_host(api: Api, tmp_path: Path) -> None:
    port = free_port()
    api.redis.delete(workers.metrics_key())
    proc = start_component(
        api.settings,
        "api",
        "--port",
        str(port),
        log_path=tmp_path / "api.log",
        extra_env={"API_WORKERS": "2", "API_RATE_PER_IP": "10000", "API_RATE_PER_KEY": "10000"},
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    try:

        def up() -> bool:
            try:
                return httpx.get(f"{base}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 60, "the API workers to answer")
        # a second `equilibrate api` on the same port is refused, not let in beside the first
        second_log = tmp_path / "second.log"
        second = start_component(
            api.settings, "api", "--port", str(port), log_path=second_log, extra_env={"API_WORKERS": "2"}
        )
        assert second.wait(60) == 2
        assert f"another `equilibrate api` already serves 127.0.0.1:{port}" in second_log.read_text()
        # both workers publish their counters (each right after it starts)
        wait_until(lambda: len(api.redis.hkeys(workers.metrics_key())) == 2, 30, "two workers' metrics in Redis")
        customer = api.redis.srandmember(KNOWN_CUSTOMERS_KEY)
        assert isinstance(customer, bytes)
        sent = 40
        for _ in range(sent):  # a new connection each time: the kernel spreads them over the workers
            answer = httpx.get(f"{base}/customers/{customer.decode()}", headers={"X-API-Key": api.reader}, timeout=10)
            assert answer.status_code == 200

        def reported() -> int:
            return _requests_total(httpx.get(f"{base}/metrics", timeout=5).text, ROUTE)

        wait_until(lambda: reported() == sent, 3 * workers.PUBLISH_S, f"/metrics to count all {sent} requests")

        # each worker listens with its own socket: the kernel gave both some of the connections
        def each() -> dict[str, int]:
            published = cast(dict[bytes, bytes], api.redis.hgetall(workers.metrics_key()))
            return {pid.decode(): _requests_total("\n".join(_render(raw)), ROUTE) for pid, raw in published.items()}

        wait_until(lambda: sum(each().values()) == sent, 3 * workers.PUBLISH_S, "both workers' counters published")
        assert len(each()) == 2 and all(n > 0 for n in each().values()), each()

        # a worker killed outright is replaced, and the port keeps answering
        killed = next(iter(each()))
        os.kill(int(killed), signal.SIGKILL)
        wait_until(lambda: api.redis.hlen(workers.metrics_key()) == 3, 60, "a new worker in place of the killed one")
        assert up()
        log = (tmp_path / "api.log").read_text()
        assert "2 worker processes" in log and f"API worker {killed} exited" in log and "Traceback" not in log
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert proc.returncode == 0
    # workers stopping take their counters out (the killed one could not)
    assert api.redis.hkeys(workers.metrics_key()) == [killed.encode()]
    api.redis.delete(workers.metrics_key())


def test_a_port_taken_by_another_program_is_one_line_and_exit_2(api: Api, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        log = tmp_path / "api.log"
        proc = start_component(api.settings, "api", "--port", str(port), log_path=log, extra_env={"API_WORKERS": "2"})
        assert proc.wait(60) == 2
    text = log.read_text()
    assert f"cannot listen on 127.0.0.1:{port}" in text and "Traceback" not in text, text
