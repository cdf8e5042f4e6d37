"""Security: Kafka SASL against the embedded broker with authentication required.

What Tansu 0.6.0 (the embedded broker) supports, found by trying it with both clients: with
`--authentication` it offers SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER, not PLAIN, and answers
nothing but the login to a client that has not logged in. Its only compiled-in storage engine
(memory or S3) does not keep SCRAM credentials: `tansu user create` (AlterUserScramCredentials)
answers success and stores nothing, so no login can succeed on this build. What this file proves:

- the SASL settings reach the wire from both clients: the broker's own log shows a SCRAM login
  attempt for the configured user with the configured mechanism;
- a refused login (wrong or unknown credentials, or PLAIN, which the broker does not offer) ends a
  component with exit code 2 and one clear last line naming the broker, the user, the mechanism and
  the settings to check; no traceback and no password anywhere in the output, nor in `status`.

What it cannot prove here: the pipeline running with correct credentials, since no user can exist
on this broker. With a real Kafka the same settings pass unchanged to librdkafka and kafka-python.

Run: `.venv/bin/pytest -q tests/chaos/test_kafka_sasl.py` (about 35 s: kafka-python gives up
bootstrapping after its 30 s timeout; the cases run side by side).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from equilibrate.kafka.broker import start_broker
from equilibrate.ops.child import stop
from equilibrate.ops.net import free_port
from equilibrate.settings import Settings
from tests.conftest import settings_env

PASSWORD = "Sc4am-Pa55word"  # noqa: S105  # a throwaway: no user can exist on this broker anyway
#: (client, mechanism, user): each case logs in as its own user, so the broker's log tells them apart.
CASES = (
    ("confluent", "SCRAM-SHA-512", "eq-confluent"),
    ("kafka-python", "SCRAM-SHA-256", "eq-kafka-python"),
    ("confluent", "PLAIN", "eq-plain"),
)
SCRAM_LOG = {"SCRAM-SHA-256": "Scram256", "SCRAM-SHA-512": "Scram512"}


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Tansu with authentication on, its login attempts logged; yields (bootstrap, broker log)."""
    log = tmp_path_factory.mktemp("sasl") / "broker.log"
    port = free_port()
    env = {"RUST_LOG": "tansu_auth=debug", "NO_COLOR": "1"}
    broker = start_broker("127.0.0.1", port, authentication=True, env=env, log_path=log)
    try:
        yield f"127.0.0.1:{port}", log
    finally:
        stop(broker)


def _env(s: Settings, client: str, mechanism: str, user: str) -> dict[str, str]:
    return {
        **os.environ,
        **settings_env(s),
        "KAFKA_CLIENT": client,
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": mechanism,
        "KAFKA_SASL_USERNAME": user,
        "KAFKA_SASL_PASSWORD": PASSWORD,
    }


def test_a_refused_sasl_login_is_one_clear_line_without_the_password(
    settings: Settings, sasl_broker: tuple[str, Path]
) -> None:
    bootstrap, broker_log = sasl_broker
    s = settings.model_copy(update={"kafka_bootstrap_servers": bootstrap})
    cli = [sys.executable, "-m", "equilibrate"]
    runs = {
        case: subprocess.Popen([*cli, "features"], env=_env(s, *case), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        for case in CASES
    }  # fmt: skip
    status = subprocess.run([*cli, "status"], env=_env(s, *CASES[0]), capture_output=True, text=True,
                            check=False, timeout=60)  # fmt: skip
    done = {case: (proc.communicate(timeout=90), proc.returncode) for case, proc in runs.items()}

    for (client, mechanism, user), ((out, err), code) in done.items():
        where = f"{client} {mechanism}: {err[-2000:]}"
        assert code == 2, where
        assert "Traceback" not in err and PASSWORD not in out + err, where
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"equilibrate features: Kafka broker at {bootstrap} "), where
        assert f"SASL login of user '{user}' ({mechanism})" in last and "KAFKA_SASL_PASSWORD" in last, where
        if client == "confluent":  # librdkafka's own retries stay out of sight: the line is the whole output
            assert err.strip() == last, where

    # `status` names the refusal and masks the password.
    assert PASSWORD not in status.stdout + status.stderr
    assert f"refused the SASL login of user '{CASES[0][2]}'" in status.stdout, status.stdout

    # The settings reached the wire: the broker saw a SCRAM login for each SCRAM case's user and mechanism.
    seen = re.sub(r"\x1b\[[0-9;]*m", "", broker_log.read_text(errors="replace"))  # no colours
    for _client, mechanism, user in CASES:
        if mechanism in SCRAM_LOG:
            assert f'auth_id="{user}" mechanism={SCRAM_LOG[mechanism]}' in seen, (user, mechanism)
    assert PASSWORD not in seen
