"""Fixtures for the transport tests: real peers on loopback (an aiosmtpd server, pytest-httpserver)."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from engine.contracts import SendRequest

KEY = "0123456789abcdef0123456789abcdef"  # an idempotency key as SendContext makes them (32 hex digits)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(channel: str, to: str, body: Mapping[str, Any], key: str = KEY) -> SendRequest:
    """A send request as ``engine.transport_send`` builds it."""
    return SendRequest(channel, to, body, key, {})


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port with no server (connections are refused)."""
    yield free_port()
