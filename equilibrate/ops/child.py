"""Child processes that die with their parent (Linux PR_SET_PDEATHSIG), so nothing is orphaned."""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import IO, Any

_PR_SET_PDEATHSIG = 1
log = logging.getLogger(__name__)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    cwd: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start argv as a child that receives SIGTERM if this process dies, even by kill -9."""
    # preexec_fn only calls prctl(2), which is safe after fork even in a threaded parent.
    return subprocess.Popen(
        list(argv),
        env=env,
        stdout=stdout,
        stderr=stderr,
        cwd=cwd,
        preexec_fn=_die_with_parent,  # noqa: PLW1509
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int | None:
    """SIGTERM, then SIGKILL after `timeout`; return the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def run_foreground(proc: subprocess.Popen[bytes], name: str) -> int:
    """Wait for a service child, forwarding SIGINT/SIGTERM to it; 0 when it stopped on request.

    The handler only forwards the signal: waiting inside a handler would re-enter Popen.wait.
    """

    def _forward(signum: int, _frame: object) -> None:
        log.info("stopping %s (signal %d)", name, signum)
        if proc.poll() is None:
            proc.terminate()

    signal.signal(signal.SIGTERM, _forward)
    signal.signal(signal.SIGINT, _forward)
    code = proc.wait()
    return 0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else code
