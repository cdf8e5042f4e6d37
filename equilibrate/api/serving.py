"""How `equilibrate api` serves: one process, or API_WORKERS processes that each listen on the port
with a socket of their own (SO_REUSEPORT), so that the kernel spreads connections evenly over them.

With uvicorn's own workers every process accepts from one shared socket, and the first awake takes
every connection waiting (the event loop accepts up to the backlog in one go): a client's pool of
64 connections opened at once went almost all to one worker (15 s of CPU against 0.2 s in a 15 s
run at 500 requests/s), which then saturated its core while the other idled.

The parent starts the workers, starts another in place of one that dies, passes SIGINT/SIGTERM on
(each worker finishes its requests and stops) and waits for them. A worker that fails while
starting (a bad config, the port taken by another program) stops them all: restarting it would
fail the same way.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import socket
import sys
import threading
import time
from types import FrameType
from typing import Any

from equilibrate.errors import ConfigError

log = logging.getLogger(__name__)
#: How long workers get to finish their requests after SIGTERM before they are killed.
STOP_GRACE_S = 30.0


def listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A bound, listening TCP socket; with `reuse_port`, one of several on the same port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    return sock


def _follow_parent(parent: int) -> None:
    """Stop (as on SIGTERM) when the parent is gone, killed without a chance to stop the workers."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def _report_started(server: Any, ready: Any) -> None:
    while not server.started and not server.should_exit:
        time.sleep(0.05)
    if server.started:
        ready.set()


def run_worker(host: str, port: int, ready: Any) -> None:
    """One worker process: its own socket on the port, the app built from the environment;
    `ready` (an Event) is set once it serves."""
    import uvicorn

    os.setpgrp()  # Ctrl-C in the terminal reaches the parent only, which stops each worker once
    threading.Thread(target=_follow_parent, args=(os.getppid(),), daemon=True).start()
    try:
        sock = listening_socket(host, port, reuse_port=True)
    except ConfigError as exc:
        logging.getLogger(__name__).error("API worker %d: %s", os.getpid(), exc)
        raise SystemExit(2) from None
    config = uvicorn.Config(
        "equilibrate.api.app:worker_app", factory=True, log_config=None, access_log=False, server_header=False
    )
    server = uvicorn.Server(config)
    threading.Thread(target=_report_started, args=(server, ready), daemon=True).start()
    server.run(sockets=[sock])


class Workers:
    """API_WORKERS processes serving one port, kept running until SIGINT or SIGTERM."""

    def __init__(self, count: int, host: str, port: int) -> None:
        if not hasattr(socket, "SO_REUSEPORT"):
            raise ConfigError("API_WORKERS > 1 needs SO_REUSEPORT (Linux, BSD): run one worker per port instead")
        self.count, self.host, self.port = count, host, port
        self.context = multiprocessing.get_context("spawn")
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self.ready: list[Any] = []  # each worker's Event, set once it serves
        self.stopping = False

    def _start(self) -> tuple[multiprocessing.process.BaseProcess, Any]:
        ready = self.context.Event()
        proc = self.context.Process(
            target=run_worker, args=(self.host, self.port, ready), name="equilibrate-api-worker"
        )
        proc.start()
        return proc, ready

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def _claim(self) -> socket.socket | None:
        """Hold the port for this command: SO_REUSEPORT would let a second `equilibrate api` (same
        user) quietly share it, so the parent binds a name for it in Linux's abstract socket
        namespace, which only one process can hold (None where there is no such namespace)."""
        if not sys.platform.startswith("linux"):
            return None
        claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            claim.bind(f"\0equilibrate-api-{self.host}:{self.port}")
        except OSError:
            claim.close()
            raise ConfigError(f"another `equilibrate api` already serves {self.host}:{self.port}") from None
        return claim

    def run(self) -> int:
        claim = self._claim()
        # The port is checked here first, so that a port in use is one line from the command.
        try:
            listening_socket(self.host, self.port, reuse_port=True).close()
        except ConfigError:
            if claim is not None:
                claim.close()
            raise
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for _ in range(self.count):
                proc, ready = self._start()
                self.procs.append(proc)
                self.ready.append(ready)
            log.info("API: %d worker processes on %s:%d", self.count, self.host, self.port)
            return self._watch()
        finally:
            self._shut_down()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if claim is not None:
                claim.close()

    def _watch(self) -> int:
        while not self.stopping:
            for i, proc in enumerate(self.procs):
                if proc.is_alive():
                    continue
                code = proc.exitcode
                if not self.ready[i].is_set():
                    log.error("API worker %s failed while starting (exit code %s): stopping", proc.pid, code)
                    return 2
                log.warning("API worker %s exited (code %s): starting another", proc.pid, code)
                self.procs[i], self.ready[i] = self._start()
            time.sleep(0.2)
        return 0

    def _shut_down(self) -> None:
        for proc in self.procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.procs:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                log.warning("API worker %s did not stop in %.0f s: killed", proc.pid, STOP_GRACE_S)
                proc.kill()
                proc.join(5)
