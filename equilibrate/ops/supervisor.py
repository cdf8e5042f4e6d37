"""`equilibrate up`: embedded services plus every pipeline component as supervised children.

Each child is `python -m equilibrate <component>`: its output is prefixed with its name, a crash
is restarted with exponential backoff, and SIGINT/SIGTERM stop all of them (children also die
with the supervisor through PR_SET_PDEATHSIG, so even kill -9 leaves no orphan).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

import orjson

from equilibrate.errors import ServiceUnavailableError
from equilibrate.kafka.topics import ensure_topics
from equilibrate.ops.child import spawn, stop
from equilibrate.ops.components import ComponentSpec, pipeline_components
from equilibrate.ops.net import free_port, is_loopback, port_open, wait_for_port
from equilibrate.settings import Settings

log = logging.getLogger(__name__)

STABLE_AFTER_S = 30.0  # a child that ran this long has its backoff reset
_COLOURS = ["36", "33", "35", "32", "34", "31", "96", "93", "95", "92"]


@dataclass
class Child:
    spec: ComponentSpec
    colour: str
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    done: bool = False  # a one-shot job that finished
    backoff_s: float = 1.0
    next_start_at: float = 0.0
    last_exit: int | None = None
    reader: threading.Thread | None = field(default=None, repr=False)


def _pump(child: Child, stream: IO[bytes], out: IO[str], lock: threading.Lock, plain: bool) -> None:
    """Copy a child's output line by line with its name in front."""
    name = f"{child.spec.name:<13}"
    prefix = name + "| " if plain else f"\033[{child.colour}m{name}|\033[0m "
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\n")
        with lock:
            out.write(prefix + line + "\n")
            out.flush()
    stream.close()


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        specs: list[ComponentSpec],
        *,
        state_file: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.env = env or {}  # given to every child, before its own spec's
        self.children = [Child(spec, _COLOURS[i % len(_COLOURS)]) for i, spec in enumerate(specs)]
        self.state_file = state_file
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._plain = not sys.stdout.isatty()

    # -- child lifecycle ---------------------------------------------------------------------
    def _start(self, child: Child) -> None:
        env = {
            **os.environ,
            **self.env,
            **child.spec.env,
            "EQUILIBRATE_SUPERVISED": "1",
            "EQUILIBRATE_COMPONENT": child.spec.name,
            "PYTHONUNBUFFERED": "1",
        }
        argv = [sys.executable, "-m", "equilibrate", *child.spec.argv]
        child.proc = spawn(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        child.started_at = time.monotonic()
        if child.proc.stdout is None:  # pragma: no cover - PIPE always gives a stream
            raise RuntimeError("child output pipe missing")
        child.reader = threading.Thread(
            target=_pump, args=(child, child.proc.stdout, sys.stdout, self._lock, self._plain), daemon=True
        )
        child.reader.start()
        log.info("started %s (pid %d)", child.spec.name, child.proc.pid)

    def _check(self, child: Child) -> None:
        now = time.monotonic()
        if child.proc is None:
            if child.done:
                return
            if now >= child.next_start_at:
                self._start(child)
                self._write_state()
            return
        code = child.proc.poll()
        if code is None:
            if now - child.started_at > STABLE_AFTER_S:
                child.backoff_s = 1.0
            return
        child.last_exit = code
        child.proc = None
        if code == 0 and child.spec.oneshot:
            child.done = True
            log.info("%s finished", child.spec.name)
            self._write_state()
            return
        child.restarts += 1
        child.next_start_at = now + child.backoff_s
        log.warning("%s exited with code %s; restarting in %.0fs", child.spec.name, code, child.backoff_s)
        child.backoff_s = min(self.settings.up_restart_backoff_max_s, child.backoff_s * 2)
        self._write_state()

    def _write_state(self) -> None:
        state = {
            "supervisor_pid": os.getpid(),
            "updated": time.time(),
            "children": [
                {
                    "name": c.spec.name,
                    "pid": c.proc.pid if c.proc else None,
                    "restarts": c.restarts,
                    "last_exit": c.last_exit,
                    "kind": c.spec.kind,
                    "done": c.done,
                }
                for c in self.children
            ],
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(state, option=orjson.OPT_INDENT_2))
        tmp.replace(self.state_file)

    # -- main loop ---------------------------------------------------------------------------
    def request_stop(self, signum: int, _frame: FrameType | None) -> None:
        if not self._stopping.is_set():
            log.info("received signal %d: stopping every component", signum)
        self._stopping.set()

    def start_services(self) -> None:
        """Start the service children (broker, redis, demo gateway) and wait until they accept connections."""
        for child in self.children:
            if child.spec.kind != "service":
                continue
            self._start(child)
            for host, port in child.spec.ports:
                if not wait_for_port(host, port, timeout=20):
                    raise ServiceUnavailableError(f"{child.spec.name} did not come up on {host}:{port}")

    def run(self) -> int:
        self._write_state()
        try:
            while not self._stopping.is_set():
                for child in self.children:
                    self._check(child)
                self._stopping.wait(0.5)
        finally:
            self.shutdown()
        return 0

    def shutdown(self) -> None:
        # Pipeline components first (they flush and commit), then the services they depend on.
        for child in reversed(self.children):
            if child.proc is not None:
                code = stop(child.proc, timeout=15)
                log.info("stopped %s (exit %s)", child.spec.name, code)
                child.proc = None
        self.state_file.unlink(missing_ok=True)


def start_clean_if_stale(settings: Settings) -> None:
    """Both services embedded: a new, empty broker beside a Redis that remembers an earlier run.

    The earlier run's offsets and profiles refer to events the memory-only broker no longer has,
    and a simulator with the same seed would send the same history again, counting it twice. So
    start clean: flush the embedded Redis and move the old archive and demo-gateway inbox aside
    (nothing is deleted): the new run's cases start again at the first case id.
    """
    from equilibrate.alert.demo_inbox import inbox_path
    from equilibrate.features.store import WATERMARK_KEY
    from equilibrate.storage.archive import archive_root
    from equilibrate.storage.redis_client import connect

    client = connect(settings)
    try:
        if not client.exists(WATERMARK_KEY):
            return
        stamp = time.strftime("%Y%m%d-%H%M%S")
        archive = archive_root(settings)
        if archive.exists():
            archive.rename(archive.with_name(f"archive.{stamp}"))
        inbox = inbox_path(settings.data_dir)
        if inbox.exists():
            inbox.rename(inbox.with_name(f"inbox.{stamp}.jsonl"))
        client.flushdb()
        log.warning(
            "the embedded broker starts empty: cleared the embedded Redis of the previous run's state "
            "(previous archive kept as %s)",
            archive.with_name(f"archive.{stamp}"),
        )
    finally:
        client.close()


def service_specs(settings: Settings) -> list[ComponentSpec]:
    """The embedded broker and Redis, where no external ones are configured."""
    specs = []
    mode = settings.embedded_services
    for name, (host, port) in (("broker", settings.bootstrap_host_port), ("redis", settings.redis_host_port)):
        answering = port_open(host, port)
        if mode == "always" or (mode == "auto" and not answering and is_loopback(host)):
            specs.append(ComponentSpec(name, (name,), kind="service", ports=((host, port),)))
        elif not answering:
            raise ServiceUnavailableError(
                f"{name} does not answer at {host}:{port} and is not local, so it will not be started here: "
                f"check {'KAFKA_BOOTSTRAP_SERVERS' if name == 'broker' else 'REDIS_URL'}"
            )
        else:
            log.info("using the %s already answering at %s:%d", name, host, port)
    return specs


def demo_gateway(settings: Settings, *, simulator: bool) -> tuple[ComponentSpec, dict[str, str]] | None:
    """The demo gateway and the settings that point every channel at it, when `up` runs the demo
    (the simulator) with no delivery channel of its own; None otherwise.

    Never in API_MODE=production, and never beside a configured channel: a bank's own relay or
    gateway is not replaced, and a half-real set-up would be confusing.
    """
    if settings.demo_gateway == "never" or not simulator or settings.api_mode == "production":
        return None
    configured = [
        name
        for name, value in (
            ("SMTP_URL", settings.smtp_url),
            ("SMS_WEBHOOK_URL", settings.sms_webhook_url),
            ("APP_WEBHOOK_URL", settings.app_webhook_url),
        )
        if value
    ]
    if configured:
        log.info("demo gateway not started: %s set", ", ".join(configured))
        return None
    host = "127.0.0.1"
    smtp, http = (
        port if not port_open(host, port) else free_port()
        for port in (settings.demo_gateway_smtp_port, settings.demo_gateway_http_port)
    )
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else secrets.token_urlsafe(24)
    env = {
        "SMTP_URL": f"smtp://{host}:{smtp}",
        "SMS_WEBHOOK_URL": f"http://{host}:{http}/sms",
        "APP_WEBHOOK_URL": f"http://{host}:{http}/app",
        "WEBHOOK_SECRET": secret,
    }
    argv = ("demo-gateway", "--smtp-port", str(smtp), "--http-port", str(http))
    return ComponentSpec("demo-gateway", argv, kind="service", ports=((host, smtp), (host, http))), env


def run(args: argparse.Namespace, settings: Settings) -> int:
    specs = service_specs(settings)
    simulator = not args.no_simulator
    gateway = demo_gateway(settings, simulator=simulator)
    shared_env: dict[str, str] = {}
    if gateway is not None:
        specs.append(gateway[0])
        shared_env = gateway[1]
    specs += pipeline_components(simulator=simulator, speed=args.speed, customers=args.customers)
    sup = Supervisor(settings, specs, state_file=settings.data_dir / "run" / "supervisor.json", env=shared_env)
    signal.signal(signal.SIGINT, sup.request_stop)
    signal.signal(signal.SIGTERM, sup.request_stop)
    started = time.monotonic()
    try:
        sup.start_services()
        if {s.name for s in specs} >= {"broker", "redis"}:
            start_clean_if_stale(settings)
        ensure_topics(settings)
    except BaseException:
        sup.shutdown()
        raise
    names = ", ".join(s.name for s in specs) or "nothing (broker and Redis are external)"
    log.info("up in %.1fs: %s", time.monotonic() - started, names)
    log.info(
        "Kafka %s | Redis %s:%d | `equilibrate status` for health | Ctrl-C stops everything",
        settings.kafka_bootstrap_servers,
        *settings.redis_host_port,
    )
    if any(s.name == "dashboard" for s in specs):
        log.info("operations console: http://127.0.0.1:%d", settings.dashboard_port)
    if gateway is not None:
        log.info(
            "approved messages go to the demo gateway (%s, %s): nothing leaves this machine",
            shared_env["SMTP_URL"],
            shared_env["SMS_WEBHOOK_URL"].removesuffix("/sms"),
        )
    return sup.run()


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("up", help="start broker, Redis and every pipeline component, supervised")
    p.add_argument("--no-simulator", action="store_true", help="do not start the transaction simulator")
    p.add_argument("--speed", type=float, default=None, help="simulated seconds per real second")
    p.add_argument("--customers", type=int, default=None, help="simulated customers (default 5000)")
    p.set_defaults(func=run)
