"""The unit layer keeps its promise: no Redis and no sockets (tests/unit/conftest.py refuses them)."""

from __future__ import annotations

import socket

import pytest

pytestmark = pytest.mark.unit


def test_a_store_that_dials_redis_fails_the_test(make_unit_store):
    store = make_unit_store()  # builds calls and commands; connects only when asked to
    with pytest.raises(AssertionError, match="opens no sockets"):
        store.ping()


def test_no_socket_of_any_kind(make_unit_store):
    with pytest.raises(AssertionError, match="opens no sockets"):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(AssertionError, match="opens no sockets"):
        socket.socketpair()
