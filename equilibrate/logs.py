"""Logging set-up, called only by entry points (never at import time)."""

from __future__ import annotations

import logging
import os
import sys


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
    for noisy in ("kafka", "urllib3", "faker"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    # librdkafka logs every retry; its error callbacks already report each problem once.
    logging.getLogger("equilibrate.kafka.librdkafka").setLevel(
        logging.DEBUG if logging.getLogger().level <= logging.DEBUG else logging.CRITICAL
    )
