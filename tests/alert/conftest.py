"""Fixtures of the alert tests: real local gateways (see gateways.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.alert.gateways import Gateway, Inbox, running_gateway, running_smtp


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    with running_smtp() as server:
        yield server


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    with running_gateway() as gw:
        yield gw
