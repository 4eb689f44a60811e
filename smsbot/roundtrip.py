"""The lean pipelined round trip of the hot path: every command of a batch packed by hiredis and
sent in one write on a connection the thread keeps, the replies parsed as the socket becomes
readable (`Roundtrip`); for Redis Cluster one per node, merged back in order, MOVED followed
(`ClusterRoundtrip`). A `Store` starts them (`Store.start_roundtrip`) and keeps each thread's idle
connections (`_KeptConnections`)."""

from __future__ import annotations

import select
import socket
import weakref
from typing import TYPE_CHECKING, Any, Sequence

import hiredis
import redis

from smsbot.config import Durability

if TYPE_CHECKING:
    from smsbot.store import Store

HOT_CONNECTIONS_KEPT = 4  # per thread and pool: round trips in flight at once (transport: 2) plus spare


def _s(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


class Roundtrip:
    """A pipelined request in flight: the lean hot-path pipeline.

    Every command is packed by hiredis and sent in one write on a connection the thread keeps
    (`Store.hot_connection`: no pool checkout per batch); the replies are parsed by a hiredis
    Reader as the socket becomes readable, so the transport can go on reading the SMSC while Redis
    works (`fileno` + `poll`), or simply `wait`. Error replies come back as exception instances,
    not raised. redis-py still owns connecting (AUTH, TLS) and the pool; a connection that failed
    is disconnected and handed back to the pool, never kept.
    """

    def __init__(self, store: Store, cmds: Sequence[tuple[Any, ...]], pool: redis.ConnectionPool | None = None):
        self.pool = pool if pool is not None else store.redis.connection_pool
        self.cmds = cmds  # kept to send a command again (NOSCRIPT after a Redis restart)
        self.wait_replicas = replicas_to_wait_for(store, cmds)  # durability replica: a WAIT ends the round trip
        self.want = len(cmds) + (1 if self.wait_replicas else 0)
        self.replies: list[Any] = []
        self.reader = hiredis.Reader()
        self._buf = store.read_buffer()
        self._store = store
        self.conn = None
        try:
            self.conn = store.hot_connection(self.pool)
            self.sock = self.conn._sock
            packed = [hiredis.pack_command(c) for c in cmds]
            if self.wait_replicas:
                packed.append(hiredis.pack_command(("WAIT", self.wait_replicas, store.settings.redis.wait_timeout_ms)))
            self.sock.sendall(b"".join(packed))
        except BaseException as e:
            self._fail()
            if isinstance(e, (OSError, redis.ConnectionError, redis.TimeoutError)):
                raise redis.ConnectionError(f"Redis round trip failed: {e}") from None
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def done(self) -> bool:
        return self.conn is None

    def buffered(self) -> bool:
        """Data already inside the TLS layer (select would not see it)."""
        pending = getattr(self.sock, "pending", None)
        return bool(pending and pending())

    def poll(self) -> bool:
        """Read what the socket has (call when readable); True once every reply is in."""
        try:
            n = self.sock.recv_into(self._buf)
        except (BlockingIOError, InterruptedError):
            return False
        except (OSError, socket.timeout) as e:
            self._fail()
            raise redis.ConnectionError(f"Redis round trip failed: {e}") from None
        if n == 0:
            self._fail()
            raise redis.ConnectionError("Redis closed the connection")
        self.reader.feed(self._buf, 0, n)
        while len(self.replies) < self.want:
            reply = self.reader.gets()
            if reply is False:
                return False
            self.replies.append(reply)
        self._store.hot_connection_done(self.pool, self.conn)
        self.conn = None
        if self.wait_replicas:
            acked = self.replies.pop()
            if not isinstance(acked, int) or acked < self.wait_replicas:
                raise ReplicasBehind(self.wait_replicas, acked)
        return True

    def wait(self) -> list[Any]:
        while not self.done:
            self.poll()  # blocking read (socket timeout applies)
        return self.replies

    def _fail(self) -> None:
        if self.conn is not None:
            self.conn.disconnect()
            self.pool.release(self.conn)
            self.conn = None


# Commands smsbot sends that change nothing: a round trip of only these needs no WAIT.
READ_ONLY = frozenset({"GET", "MGET", "EXISTS", "TTL", "PTTL", "TYPE", "STRLEN", "HGET", "HMGET", "HGETALL", "HLEN",
                       "LRANGE", "LLEN", "SMEMBERS", "SCARD", "SISMEMBER", "ZRANGE", "ZRANGEBYSCORE", "ZCARD", "ZSCORE",
                       "XLEN", "XRANGE", "XREVRANGE", "XREAD", "XINFO", "XPENDING", "PING", "INFO", "SCAN"})


def replicas_to_wait_for(store: Store, cmds: Sequence[tuple[Any, ...]]) -> int:
    """How many replicas must acknowledge this round trip before its replies count (`redis.durability:
    replica`, and the round trip writes): `min_replicas`; otherwise 0, no WAIT."""
    r = store.settings.redis
    if r.durability is not Durability.REPLICA:
        return 0
    if all(_s(c[0]).upper() in READ_ONLY for c in cmds):
        return 0
    return r.min_replicas


class ReplicasBehind(redis.ConnectionError):
    """Fewer replicas than `redis.min_replicas` acknowledged a round trip's writes within
    `redis.wait_timeout_ms`: to its callers the same as a Redis that failed mid-round trip (the
    outcome is not durable), so the MOs it carried get a temporary error and the SMSC redelivers
    them; the redelivery guard answers them without applying them twice."""

    def __init__(self, wanted: int, acked: Any):
        super().__init__(f"Redis round trip not durable: {acked} of {wanted} replicas acknowledged (WAIT)")


class ClusterRoundtrip:
    """`Roundtrip` for Redis Cluster: the commands are grouped by the primary owning each one's
    first key (`_first_key`), one pipelined `Roundtrip` per node is sent at once, and the replies
    come back in the original order. Same interface: `fileno` is the first node still answering,
    so a `select` loop wakes for it, then for the next. A MOVED reply (slots moved, failover) makes
    the store re-read the slot map and resend just those commands (they were not executed)."""

    MAX_REDIRECTS = 3

    def __init__(self, store: Store, cmds: Sequence[tuple[Any, ...]]):
        self.store = store
        self.cmds = cmds
        self.replies: list[Any] = []
        self._done = False
        rc = store.redis
        by_node: dict[str, tuple[Any, list[int]]] = {}
        try:
            for i, c in enumerate(cmds):
                key = _first_key(c)
                node = rc.get_node_from_key(key) if key is not None else rc.get_default_node()
                by_node.setdefault(node.name, (node, []))[1].append(i)
        except redis.RedisError as e:
            store._refresh_topology = True
            raise redis.ConnectionError(f"Redis round trip failed: {e}") from None
        self.parts: list[tuple[list[int], Roundtrip]] = []
        try:
            for node, idx in by_node.values():
                pool = rc.get_redis_connection(node).connection_pool
                self.parts.append((idx, Roundtrip(store, [cmds[i] for i in idx], pool)))
        except BaseException:
            self._fail()
            raise
        if not self.parts:
            self._merge()

    def _current(self) -> Roundtrip | None:
        for _idx, rt in self.parts:
            if not rt.done:
                return rt
        return None

    def fileno(self) -> int:
        rt = self._current()
        return rt.fileno() if rt is not None else self.parts[-1][1].sock.fileno()

    @property
    def done(self) -> bool:
        return self._done

    def buffered(self) -> bool:
        rt = self._current()
        return rt is not None and rt.buffered()

    def poll(self) -> bool:
        """Read from the node `fileno` named (call when readable), then from any other node whose
        answer is already there; True once every node has answered."""
        rt = self._current()
        try:
            while rt is not None:
                if not rt.poll():
                    return False
                rt = self._current()
                if rt is not None and not rt.buffered() and not select.select([rt], [], [], 0)[0]:
                    return False
        except redis.ConnectionError:
            self._fail()
            raise
        self._merge()
        return True

    def wait(self) -> list[Any]:
        try:
            for _idx, rt in self.parts:
                rt.wait()
        except redis.ConnectionError:
            self._fail()
            raise
        if not self._done:
            self._merge()
        return self.replies

    def _merge(self) -> None:
        out: list[Any] = [None] * len(self.cmds)
        for idx, rt in self.parts:
            for i, r in zip(idx, rt.replies):
                out[i] = r
        for _attempt in range(self.MAX_REDIRECTS):
            moved = [i for i, r in enumerate(out) if isinstance(r, Exception) and str(r).startswith(("MOVED", "TRYAGAIN", "CLUSTERDOWN"))]
            if not moved:
                break
            self.store._refresh_topology = True
            again = self.store.start_roundtrip([self.cmds[i] for i in moved]).wait()
            for i, r in zip(moved, again):
                out[i] = r
        self.replies = out
        self._done = True

    def _fail(self) -> None:
        self.store._refresh_topology = True
        for _idx, rt in self.parts:
            rt._fail()
        self._done = True


def _first_key(cmd: tuple[Any, ...]) -> Any:
    """The key a command is routed by: EVALSHA/EVAL the first KEY (None without keys),
    XREADGROUP/XREAD the first stream, everything else smsbot pipelines its first argument."""
    name = cmd[0].upper() if isinstance(cmd[0], str) else _s(cmd[0]).upper()
    if name in ("EVALSHA", "EVAL"):
        return cmd[3] if int(cmd[2]) > 0 else None
    if name in ("XREADGROUP", "XREAD"):
        for i, a in enumerate(cmd):
            if isinstance(a, (str, bytes)) and _s(a).upper() == "STREAMS":
                return cmd[i + 1]
    return cmd[1] if len(cmd) > 1 else None


class _KeptConnections:
    """One thread's idle hot connections, per pool. When the thread ends its thread-local data
    goes, and with it this object: the connections go back to their pools (a thread that did a
    round trip or two, an API worker thread, a billing run, must not strand them in use)."""

    __slots__ = ("by_pool", "__weakref__")

    def __init__(self) -> None:
        self.by_pool: dict[int, tuple[redis.ConnectionPool, list[Any]]] = {}
        weakref.finalize(self, _release_kept, self.by_pool)


def _release_kept(by_pool: dict[int, tuple[redis.ConnectionPool, list[Any]]]) -> None:
    for pool, idle in by_pool.values():
        while idle:
            pool.release(idle.pop())
