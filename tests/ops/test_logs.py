"""Logging from the entry points: one line per record, a client library's traceback included."""

from __future__ import annotations

import logging

import pytest

from equilibrate.logs import configure


def test_a_library_error_with_a_traceback_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure("INFO")
    try:
        try:
            None.recv(4096)  # type: ignore[attr-defined]  # what kafka-python met when a socket closed
        except AttributeError:
            logging.getLogger("kafka.net.transport").exception("%s: Error receiving network data", "transport")
            logging.getLogger("equilibrate.features").exception("our own failure")
        err = capsys.readouterr().err
    finally:
        root.handlers[:] = handlers  # leave logging as pytest had it
        root.setLevel(level)
    library = [line for line in err.splitlines() if "kafka.net.transport" in line]
    summary = "transport: Error receiving network data (AttributeError: 'NoneType' object has no attribute 'recv')"
    assert len(library) == 1 and summary in library[0], err
    assert err.count("Traceback") == 1 and err.index("kafka.net.transport") < err.index("Traceback")  # ours keep theirs
