"""Graceful stop for long-running components: SIGINT/SIGTERM set a flag the loop checks."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

log = logging.getLogger(__name__)


class StopFlag:
    """Set by SIGINT/SIGTERM (or by a test); the component finishes its batch, flushes and exits."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def install(self) -> StopFlag:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if not self._event.is_set():
            log.info("signal %d: finishing the current batch, then stopping", signum)
        self._event.set()

    def set(self) -> None:
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)
