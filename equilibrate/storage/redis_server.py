"""The embedded Redis: Debian's redis-server with AOF persistence under data/redis/."""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
from pathlib import Path

from equilibrate.errors import MissingDependencyError, PortInUseError, ServiceUnavailableError
from equilibrate.ops.child import run_foreground, spawn, stop
from equilibrate.ops.net import port_open, wait_for_port
from equilibrate.settings import Settings

log = logging.getLogger(__name__)


def redis_server_binary(name: str = "redis-server") -> str:
    path = shutil.which(name)
    if path is None:
        raise MissingDependencyError(
            f"{name} is not installed: run `sudo apt-get install redis-server` (or `make setup`), "
            "or set REDIS_URL to a Redis you run"
        )
    return path


#: Redis's `hash-max-listpack-value` for Equilibrate's data (see start_redis).
HASH_MAX_LISTPACK_VALUE = 256


def start_redis(
    host: str,
    port: int,
    data_dir: Path,
    *,
    binary: str = "redis-server",
    quiet: bool = True,
    password: str | None = None,
    databases: int = 16,
) -> subprocess.Popen[bytes]:
    """Start redis-server with AOF on (appendfsync everysec) and wait until it answers."""
    if port_open(host, port):
        raise PortInUseError(
            f"port {host}:{port} is already in use: stop what listens there, or set REDIS_URL to another port"
        )
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    argv = [
        redis_server_binary(binary),
        "--bind",
        host,
        "--port",
        str(port),
        "--dir",
        str(data_dir.resolve()),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
        "--databases",
        str(databases),
        # A customer hash holds ~60 short fields and the risk engine's reasons text (often > 64 B,
        # Redis's default limit for the compact listpack encoding): 256 keeps the hashes compact,
        # ~0.9 KB less per customer (bench/bench_scale.py). Set the same on a managed Redis.
        "--hash-max-listpack-value",
        str(HASH_MAX_LISTPACK_VALUE),
    ]
    if password:
        argv += ["--requirepass", password]
    proc = spawn(argv, stdout=subprocess.DEVNULL if quiet else None, stderr=None)
    if not wait_for_port(host, port, timeout=15):
        stop(proc)
        raise ServiceUnavailableError(f"redis-server did not start listening on {host}:{port}")
    return proc


def run(args: argparse.Namespace, settings: Settings) -> int:
    """`equilibrate redis`: run the embedded redis-server in the foreground."""
    host, port = settings.redis_host_port
    proc = start_redis(
        host, port, settings.data_dir / "redis", binary=settings.redis_server_bin, quiet=not args.verbose
    )
    log.info("embedded Redis listening on %s:%d (AOF in %s)", host, port, settings.data_dir / "redis")

    return run_foreground(proc, "redis")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("redis", help="run the embedded redis-server (AOF persistence under data/redis)")
    p.add_argument("--verbose", action="store_true", help="show redis-server's own log")
    p.set_defaults(func=run)
