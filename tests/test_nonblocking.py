"""The hot path's sockets without a poll before every call (`smsbot.nonblocking`): CPython polls
before each send and recv of a socket with a timeout, so the bound SMSC link and the Redis round
trip's connection are non-blocking (timeout 0), their writes going through `send_all`, which still
waits for room, over TCP and over TLS, and still gives up when the peer takes nothing. Real
sockets, a real Redis, the real simulator."""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any, Callable

import pytest
import redis
import trustme

from smsbot.connections import open_store
from smsbot.nonblocking import send_all

from .conftest import World
from .helpers import wait_until

BIG = bytes(range(256)) * 16384  # 4 MiB: far more than a socket buffer holds


def read_all(sock: socket.socket, n: int, into: list[bytes]) -> None:
    got = 0
    while got < n:
        chunk = sock.recv(1 << 16)
        if not chunk:
            return
        into.append(chunk)
        got += len(chunk)


def test_send_all_waits_for_room_and_writes_everything_in_order():
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        got: list[bytes] = []
        reader = threading.Thread(target=read_all, args=(b, len(BIG), got))
        reader.start()
        send_all(a, BIG, 5.0)
        reader.join(10)
        assert b"".join(got) == BIG


def test_send_all_gives_up_when_the_peer_takes_nothing():
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        with pytest.raises(TimeoutError, match="no room to write within 0 s"):
            send_all(a, BIG, 0)  # the peer never reads: the buffer fills, and no room comes


def test_send_all_over_tls_on_a_non_blocking_socket():
    """A TLS write that cannot finish is retried with the same bytes (SSLWantWriteError)."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    a, b = socket.socketpair()
    got: list[bytes] = []

    def serve() -> None:
        with server_ctx.wrap_socket(b, server_side=True) as tls:
            read_all(tls, len(BIG), got)

    server = threading.Thread(target=serve)
    server.start()
    with client_ctx.wrap_socket(a, server_hostname="localhost") as tls:
        tls.setblocking(False)
        send_all(tls, BIG, 5.0)
        server.join(10)
    assert b"".join(got) == BIG


def test_a_round_trip_keeps_its_connection_non_blocking_and_hands_it_back_with_its_timeout(
        make_settings: Callable[..., Any]):
    store = open_store(make_settings())
    try:
        rt = store.start_roundtrip([("SET", "nb:k", "1"), ("GET", "nb:k")])
        assert rt.wait() == [b"OK", b"1"]
        assert rt.sock.gettimeout() == 0.0  # no poll before its send and recv
        again = store.start_roundtrip([("GET", "nb:k")])
        assert again.sock is rt.sock and again.wait() == [b"1"]  # the thread kept it
        conn = next(iter(store._local.hot.by_pool.values()))[1][-1]
        del store._local.hot  # the thread's kept connections go back to the pool
        assert conn._sock.gettimeout() == conn.socket_timeout
        assert store.redis.get("nb:k") == b"1"  # redis-py uses it as it always did
    finally:
        store.close()


def test_the_bound_link_is_non_blocking_and_a_conversation_needs_no_enquire_link(make_world: Callable[..., World]):
    """At window 1 one MO's resp and its reply's parts go in one write; the first submit_sm_resp
    confirms the resp was read, so its guard goes without an enquire_link each way."""
    w = make_world(**{"smsc.enquire_link_interval": 3600})
    bot = w.bot
    assert wait_until(bot.transport.bound.is_set, 5)
    [link] = bot.transport.links
    assert link.sock.gettimeout() == 0.0 and link.write_timeout == 3
    w.subscribe("13800138471", "VIDEO")
    assert "视频会员包月" in w.handset("13800138471").ask("0000")
    keys = bot.store.keys
    guards = f"{keys.prefix}:*:guard:13800138471:*"
    assert wait_until(lambda: not list(bot.store.redis.scan_iter(match=guards)), 5)
    assert w.sim.stats()["enquire_links_received"] == 0


def test_a_redis_that_stops_answering_fails_the_round_trip_after_its_socket_timeout(make_settings: Callable[..., Any]):
    """`wait` keeps the limit the socket's timeout gave: nothing for `socket_timeout` seconds is a
    failed round trip, not a wait for ever (Redis paused by CLIENT PAUSE answers nothing meanwhile)."""
    store = open_store(make_settings())
    pool = store.redis.connection_pool
    admin = redis.Redis(connection_pool=type(pool)(connection_class=pool.connection_class, **pool.connection_kwargs))
    try:
        pool.connection_kwargs["socket_timeout"] = 0.2
        pool.reset()  # the round trip's connection is made with it, and kept
        assert store.start_roundtrip([("PING",)]).wait() == [b"PONG"]
        admin.execute_command("CLIENT", "PAUSE", 5000, "ALL")
        with pytest.raises(redis.ConnectionError, match="Redis round trip failed: nothing to read within 0.2 s"):
            store.start_roundtrip([("SET", "nb:paused", "1")]).wait()
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.close()
        store.close()
