"""Operators get one clear line and exit code 2, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from equilibrate.ops.net import free_port
from tests.conftest import run_cli


def _assert_one_clear_line(stderr: str, *needles: str) -> None:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) >= 1
    last = lines[-1]
    for needle in needles:
        assert needle in last, (needle, last)


def test_port_in_use_for_broker(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run_cli("broker", env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"}, cwd=tmp_path)
    assert result.returncode == 2
    _assert_one_clear_line(result.stderr, "already in use", str(port))


def test_missing_redis_server_binary(tmp_path: Path) -> None:
    result = run_cli(
        "redis",
        env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "REDIS_SERVER_BIN": "redis-server-not-installed"},
        cwd=tmp_path,
    )
    assert result.returncode == 2
    _assert_one_clear_line(result.stderr, "not installed", "apt-get install redis-server")


def test_bad_config_value(tmp_path: Path) -> None:
    result = run_cli("status", env={"KAFKA_PARTITIONS": "-3"}, cwd=tmp_path)
    assert result.returncode == 2
    _assert_one_clear_line(result.stderr, "KAFKA_PARTITIONS")


def test_up_refuses_unreachable_remote_broker(tmp_path: Path) -> None:
    result = run_cli(
        "up",
        env={
            "KAFKA_BOOTSTRAP_SERVERS": "192.0.2.1:9092",  # TEST-NET: never answers
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        },
        cwd=tmp_path,
        timeout=30,
    )
    assert result.returncode == 2
    _assert_one_clear_line(result.stderr, "broker does not answer", "KAFKA_BOOTSTRAP_SERVERS")


def test_status_reports_down_services_without_traceback(tmp_path: Path) -> None:
    result = run_cli(
        "status",
        env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}", "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "NOT healthy" in result.stdout
    assert "Redis  DOWN" in result.stdout
    assert "Kafka  DOWN" in result.stdout


def test_components_say_what_to_run_when_the_broker_is_down(tmp_path: Path) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}", "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    for component in ("features", "archive", "risk"):
        result = run_cli(component, env=env, cwd=tmp_path, timeout=60)
        assert result.returncode == 2, component
        assert "%3|" not in result.stderr  # librdkafka's own retry lines stay out of the operator's way
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        _assert_one_clear_line(result.stderr, "does not answer", "equilibrate broker")


def test_a_broken_rules_or_policy_file_stops_the_risk_engine_with_its_name(tmp_path: Path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text("levels: {HIGH: 5, MEDIUM: 3}\nsignals: {}\nhardship: []\n")
    for env in ({"RISK_RULES_FILE": str(bad)}, {"POLICY_FILE": str(tmp_path / "missing.yaml")}):
        result = run_cli("risk", "rescore", env=env, cwd=tmp_path, timeout=60)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert str(tmp_path) in result.stderr and "Traceback" not in result.stderr


def test_output_cut_short_by_a_pipe_is_not_a_traceback(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
    }
    status = subprocess.Popen(
        [sys.executable, "-m", "equilibrate", "status"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    assert status.stdout is not None and status.stderr is not None
    status.stdout.close()  # the reader (say `| head`) is gone before status prints a thing
    err = status.stderr.read().decode()
    assert status.wait(60) == 141
    assert "Traceback" not in err
