"""Security: a Redis ACL user limited to the project's keys, wrong credentials, secrets kept out of output,
owner-only files."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest
import redis

from equilibrate.features import store as feature_store
from equilibrate.kafka.transport import make_producer
from equilibrate.ops.net import free_port
from equilibrate.settings import Settings
from equilibrate.storage import customer_registry
from equilibrate.storage.redis_server import redis_server_binary
from tests.conftest import settings_env
from tests.factories import encode, varied_stream
from tests.processes import start_component, wait_until

PASSWORD = "s3cret-Pa55word"  # noqa: S105  # the test's own throwaway Redis
#: The project's keys and nothing else; no FLUSHALL, CONFIG, KEYS and the other dangerous commands.
ACL = "on >{pw} ~customer:* ~cstate:* ~case:* ~eq:* &* +@all -@dangerous +info"


def _acl_redis(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    tmp_path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [redis_server_binary("redis-server"), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path), "--user", "default", "off",
         "--user", "equilibrate", *ACL.format(pw=PASSWORD).split()],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    admin = redis.Redis(port=port, username="equilibrate", password=PASSWORD)
    wait_until(lambda: _answers(admin), 20, "the ACL redis-server")
    return proc, port


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_the_pipeline_runs_as_an_acl_user_limited_to_its_keys(settings: Settings, tmp_path: Path) -> None:
    server, port = _acl_redis(tmp_path / "redis")
    url = f"redis://equilibrate:{PASSWORD}@127.0.0.1:{port}/0"
    s = settings.model_copy(update={"redis_url": url, "features_batch": 500})
    client = redis.Redis.from_url(url)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):  # the ACL keeps it to the project's keys
            client.set("someone-elses-key", "x")
        events = varied_stream(20, 40, seed=2)
        customer_registry.register_ids(client, sorted({e["customer_id"] for e in events}))
        producer = make_producer(s)
        for e in events:
            producer.produce(s.topic_transactions, encode(e), key=e["customer_id"].encode())
        assert producer.flush(30) == 0
        log = tmp_path / "features.log"
        proc = start_component(s, "features", log_path=log)
        try:
            wait_until(lambda: int(client.hget(feature_store.STATS_KEY, "events") or 0) >= len(events), 90,
                       "the feature engine working as the ACL user")  # fmt: skip
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        text = log.read_text()
        assert "Traceback" not in text and PASSWORD not in text

        status = subprocess.run([*_cli(), "status"], env=_env(s), capture_output=True, text=True, check=False)
        assert PASSWORD not in status.stdout + status.stderr and "equilibrate:****" in status.stdout

        wrong = s.model_copy(update={"redis_url": f"redis://equilibrate:wrong@127.0.0.1:{port}/0"})
        refused = subprocess.run(
            [*_cli(), "features"], env=_env(wrong), capture_output=True, text=True, check=False, timeout=60
        )
        assert refused.returncode == 2, refused.stderr
        assert (
            refused.stderr.strip()
            .splitlines()[-1]
            .startswith("equilibrate features: Redis at redis://equilibrate:****")
        )
        assert (
            "refused the credentials" in refused.stderr
            and "Traceback" not in refused.stderr
            and "wrong" not in refused.stderr
        )
    finally:
        client.close()
        server.terminate()
        server.wait(10)


def test_data_and_audit_files_are_the_owners_only(settings: Settings, tmp_path: Path) -> None:
    data = tmp_path / "fresh-data"
    s = settings.model_copy(update={"data_dir": data})
    done = subprocess.run([*_cli(), "produce", "--customers", "20", "--backfill-days", "2", "--days", "0"],
                          env=_env(s), capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    from equilibrate.alert.audit import AuditRecord
    from equilibrate.alert.audit_log import AuditLog

    os.umask(0o022)  # even a process with a permissive umask writes the audit log owner-only
    AuditLog(data).append(AuditRecord(customer_id="C1", action="proposed"))
    for path in [data, *data.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.name.startswith("intervention_log") or data in {path, path.parent}:
            assert mode & 0o077 == 0, f"{path} is {oct(mode)}"


def _cli() -> list[str]:
    import sys

    return [sys.executable, "-m", "equilibrate"]


def _env(s: Settings) -> dict[str, str]:
    return {**os.environ, **settings_env(s), "REDIS_URL": s.redis_url}
