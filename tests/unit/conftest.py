"""The unit layer: every module here is marked `unit` (pytestmark) and no test may open a socket
(Redis included).

`hot_path` is the real Dispatcher, OutboxSender and Pipeline on the fakes of `tests.helpers`.
"""

from __future__ import annotations

import socket
from typing import Any, Callable

import pytest

from tests.helpers import UNIT_OVERRIDES, HotPath


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit test that opens a socket (a Redis client dialling, a socketpair) fails at once."""
    def refuse(*_a: Any, **_k: Any) -> None:
        raise AssertionError("the unit layer opens no sockets")

    monkeypatch.setattr(socket.socket, "__init__", refuse)
    monkeypatch.setattr(socket, "socketpair", refuse)


@pytest.fixture
def hot_path(unit_settings: Callable[..., Any]) -> Callable[..., HotPath]:
    def make(**overrides: Any) -> HotPath:
        return HotPath.build(unit_settings(**{**UNIT_OVERRIDES, **overrides}))

    return make
