"""Real component processes for integration and crash tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from equilibrate.settings import Settings
from tests.conftest import settings_env


def start_component(
    settings: Settings,
    *args: str,
    log_path: Path,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings_env(settings), **(extra_env or {})}
    log = log_path.open("ab")
    return subprocess.Popen([sys.executable, "-m", "equilibrate", *args], env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
