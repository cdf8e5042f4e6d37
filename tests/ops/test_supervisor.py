"""`equilibrate up` for real: services come up, a killed child is restarted, SIGINT leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from equilibrate.ops.net import free_port
from tests.conftest import run_cli


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}")


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.slow
def test_up_status_restart_and_clean_stop(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "EMBEDDED_SERVICES": "auto",
        "DASHBOARD_PORT": str(free_port()),
        "API_PORT": str(free_port()),
    }
    log = (tmp_path / "up.log").open("w")
    started = time.monotonic()
    sup = subprocess.Popen(
        [sys.executable, "-m", "equilibrate", "up", "--no-simulator"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    state_file = tmp_path / "data" / "run" / "supervisor.json"
    try:
        _wait(lambda: run_cli("status", env=env, cwd=tmp_path).returncode == 0, 30, "status healthy")
        assert time.monotonic() - started < 30
        status = run_cli("status", "--json", env=env, cwd=tmp_path)
        report = json.loads(status.stdout)
        assert report["kafka"]["ok"] and report["redis"]["ok"]
        assert {"transactions", "transactions.dlq", "risk-events", "interventions"} <= set(report["kafka"]["topics"])

        # kill -9 the real redis-server: the supervisor restarts its component
        redis_proc = next(p for p in _descendants(sup.pid) if p.name() == "redis-server")
        redis_proc.kill()
        _wait(lambda: json.loads(state_file.read_text())["children"][1]["restarts"] >= 1, 15, "a restart")
        _wait(
            lambda: any(p.name() == "redis-server" and p.pid != redis_proc.pid for p in _descendants(sup.pid)),
            15,
            "redis-server back",
        )
        _wait(lambda: run_cli("status", env=env, cwd=tmp_path).returncode == 0, 20, "healthy again")

        everything = [sup.pid] + [p.pid for p in _descendants(sup.pid)]
        assert len(everything) >= 5  # supervisor, 2 component wrappers, tansu, redis-server
        sup.send_signal(signal.SIGINT)
        assert sup.wait(30) == 0
        _wait(
            lambda: (
                not any(
                    psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                    for pid in everything
                )
            ),
            15,
            "every process gone",
        )
        assert not state_file.exists()
    finally:
        if sup.poll() is None:
            sup.kill()
        log.close()
    output = (tmp_path / "up.log").read_text()
    assert "redis exited with code" in output
    assert "broker       |" in output  # child output is prefixed by component


@pytest.mark.slow
def test_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
    }
    sup = subprocess.Popen(
        [sys.executable, "-m", "equilibrate", "up", "--no-simulator"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: len(_descendants(sup.pid)) >= 4, 30, "children started")
        kids = [p.pid for p in _descendants(sup.pid)]
        sup.kill()
        sup.wait(10)
        _wait(
            lambda: (
                not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in kids)
            ),
            20,
            "orphans gone",
        )
    finally:
        if sup.poll() is None:
            sup.kill()


def test_a_one_shot_job_that_succeeds_is_not_restarted_and_a_failing_one_is(tmp_path: Path) -> None:
    from equilibrate.ops.components import ComponentSpec
    from equilibrate.ops.supervisor import Supervisor
    from equilibrate.settings import Settings

    specs = [
        ComponentSpec("ok-job", ("policy", "check"), oneshot=True),  # validates the packaged policy, exits 0
        ComponentSpec("bad-job", ("policy", "check", str(tmp_path / "missing.yaml")), oneshot=True),
    ]
    sup = Supervisor(Settings(_env_file=None, up_restart_backoff_max_s=1.0), specs, state_file=tmp_path / "state.json")
    ok, bad = sup.children
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (ok.done and bad.restarts >= 2):
        for child in sup.children:
            sup._check(child)
        time.sleep(0.1)
    assert ok.done and ok.restarts == 0 and ok.last_exit == 0
    assert not bad.done and bad.restarts >= 2 and bad.last_exit != 0
    state = json.loads((tmp_path / "state.json").read_text())
    assert [c["done"] for c in state["children"]] == [True, False]
    for child in sup.children:
        if child.proc is not None:
            child.proc.kill()
