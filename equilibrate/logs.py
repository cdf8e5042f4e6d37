"""Logging set-up, called only by entry points (never at import time)."""

from __future__ import annotations

import logging
import os
import sys

#: Client libraries whose own error records carry tracebacks (kafka-python logs one when a socket
#: closes under it while a component stops): one line each, like every other record.
LIBRARIES = ("kafka", "urllib3", "faker")


class OneLine(logging.Filter):
    """A library's record with an exception: the exception on the message's line, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.name.split(".", 1)[0] in LIBRARIES:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({type(exc).__name__}: {exc})"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


def configure(level: str = "INFO", component: str | None = None) -> None:
    """One line per record on stderr; the component name when running under `up`."""
    name = component or os.environ.get("EQUILIBRATE_COMPONENT", "")
    prefix = f"{name} " if name and not os.environ.get("EQUILIBRATE_SUPERVISED") else ""
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)-7s {prefix}%(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(OneLine())
    for noisy in LIBRARIES:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    # librdkafka logs every retry; its error callbacks already report each problem once.
    logging.getLogger("equilibrate.kafka.librdkafka").setLevel(
        logging.DEBUG if logging.getLogger().level <= logging.DEBUG else logging.CRITICAL
    )
