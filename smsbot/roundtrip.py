"""The lean pipelined round trip of the hot path: every command of a batch packed by hiredis and
sent in one write on a connection the thread keeps, the replies parsed as the socket becomes
readable (`Roundtrip`); for Redis Cluster one per node, merged back in order, redirections followed
(`ClusterRoundtrip`). A `Store` starts them (`Store.start_roundtrip`) and keeps each thread's idle
connections (`_KeptConnections`)."""

from __future__ import annotations

import itertools
import select
import socket
import time
import weakref
from collections import Counter
from typing import TYPE_CHECKING, Any, Sequence

import hiredis
import redis

from smsbot import sockio
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
            sockio.sendall(self.sock, b"".join(packed))
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

    def poll(self, block: bool = False) -> bool:
        """Read what the socket has (call when readable; with `block`, wait for it: the socket's
        timeout applies); True once every reply is in."""
        try:
            n = sockio.recv_into(self.sock, self._buf, block)
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
            self.poll(block=True)
        return self.replies

    def retry_in(self) -> float | None:
        """Seconds until a pause between tries runs out (a single Redis redirects nothing: None)."""
        return None

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
    so a `select` loop wakes for it, then for the next.

    A command Redis did not execute because its slot is elsewhere is sent again, so that no reply
    of a batch is a redirection (a batch whose other commands were applied must not be refused):
    MOVED (slots moved, failover): the slot map is read again and the command goes to the node
    named; ASK (the slot is being migrated and the key is already on the target): ``ASKING`` and the
    command to that node, pipelined; TRYAGAIN and CLUSTERDOWN: again after a pause, routed afresh.
    TRYAGAIN is Redis refusing a multi-key command on a slot mid-migration while its keys are not all
    on one node (an MO script declares keys that do not exist yet, its guard, so it meets TRYAGAIN
    from the first key moved to the last): it runs once the slot has moved. The pause does not hold
    the caller's loop: the round trip stays not `done`, `buffered` turns true when the next try is
    due (`retry_in` says when; `fileno` meanwhile a socket that never becomes readable), so the transport goes on reading
    the SMSC and answering its other batch. Followed for at most `REDIRECT_SECONDS` from the first
    answer, longer than a slot of many keys takes to migrate; what still is a redirection then
    comes back as an error reply: an MO script not run, so its MO is refused unapplied and
    redelivered. Single-key commands (records of sent replies) always get through with ASK.
    `followed` counts the commands sent again, per kind, for this process (`smsbot.topology`)."""

    REDIRECT_SECONDS = 10.0
    GIVE_BACK_SECONDS = 0.05  # TRYAGAIN of a command in `give_back` is tried this long, then is its reply
    PAUSES = (0.0, 0.002, 0.005, 0.01, 0.02, 0.05)  # before each further try of TRYAGAIN/CLUSTERDOWN (then the last)
    followed: Counter[str] = Counter()
    _never_readable: tuple[socket.socket, socket.socket] | None = None  # `fileno` while a pause runs (one per process)

    def __init__(self, store: Store, cmds: Sequence[tuple[Any, ...]], give_back: range = range(0)):
        """`give_back`: the commands (indices in `cmds`) whose TRYAGAIN comes back as their reply
        after `GIVE_BACK_SECONDS` instead of being followed up to `REDIRECT_SECONDS`."""
        self.store = store
        self.cmds = cmds
        self.give_back = give_back
        self.replies: list[Any] = []
        self._done = False
        self._out: list[Any] | None = None  # the replies so far, in order, once every node answered
        self._deadline = 0.0  # set once every node has answered
        self._give_back_at = 0.0  # the same, for the commands in `give_back`
        self._retry_at: float | None = None  # a pause runs until then
        self._pauses = 0
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
        if rt is not None:
            return rt.fileno()
        if ClusterRoundtrip._never_readable is None:
            ClusterRoundtrip._never_readable = socket.socketpair()  # kept open, and nothing writes to either end
        return ClusterRoundtrip._never_readable[0].fileno()

    @property
    def done(self) -> bool:
        return self._done

    def retry_in(self) -> float | None:
        """Seconds until the pause before the next try of a TRYAGAIN/CLUSTERDOWN runs out (then
        `buffered`), for the caller's select timeout; None: no pause runs."""
        return max(0.0, self._retry_at - time.monotonic()) if self._retry_at is not None else None

    def buffered(self) -> bool:
        """Data already inside the TLS layer (select would not see it), or a pause that has run out."""
        if self._retry_at is not None:
            return time.monotonic() >= self._retry_at
        rt = self._current()
        return rt is not None and rt.buffered()

    def poll(self) -> bool:
        """Read from the node `fileno` named (call when readable), then from any other node whose
        answer is already there; once every node has answered, follow the redirections (sent again
        at once; TRYAGAIN/CLUSTERDOWN once their pause ran out). True when every reply is in."""
        if self._done:
            return True
        if self._out is None:
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
        return self._done

    def wait(self) -> list[Any]:
        try:
            for _idx, rt in self.parts:
                rt.wait()
        except redis.ConnectionError:
            self._fail()
            raise
        while not self._done:
            if self._retry_at is not None:
                time.sleep(max(0.0, self._retry_at - time.monotonic()))
            self._merge()
        return self.replies

    def _merge(self) -> None:
        """The replies in order, the redirections among them followed until none is left or the
        deadline passed (then `done`), or until a pause must run (then not done: `poll` again once
        `buffered`)."""
        if self._out is None:
            out: list[Any] = [None] * len(self.cmds)
            for idx, rt in self.parts:
                for i, r in zip(idx, rt.replies):
                    out[i] = r
            self._out = out
            now = time.monotonic()
            self._deadline = now + self.REDIRECT_SECONDS
            self._give_back_at = now + self.GIVE_BACK_SECONDS
        out = self._out
        while True:
            now = time.monotonic()
            redirected = [i for i, r in enumerate(out) if _redirection(r)]
            kinds = {i: str(out[i]).split(" ", 1)[0] for i in redirected}
            back = [i for i in redirected if kinds[i] == "TRYAGAIN" and i in self.give_back]
            if back and now >= self._give_back_at:  # their TRYAGAIN is their reply: the caller runs them again later
                redirected = [i for i in redirected if i not in back]
            if not redirected or now > self._deadline:
                break
            if any(kinds[i] not in ("ASK", "MOVED") for i in redirected):
                self.store._refresh_topology = True  # read the slot map again before routing anew
            redirect = [i for i in redirected if kinds[i] in ("ASK", "MOVED")]
            if not redirect:  # TRYAGAIN/CLUSTERDOWN alone: again after a pause, the caller's loop going on
                if self._retry_at is None:
                    self._retry_at = now + self.PAUSES[min(self._pauses, len(self.PAUSES) - 1)]
                    self._pauses += 1
                    if len(back) == len(redirected):  # no try after the give-back time
                        self._retry_at = min(self._retry_at, self._give_back_at)
                if now < self._retry_at:
                    return
                self._retry_at = None
                redirect = redirected
            for i in redirect:
                self.followed[kinds[i]] += 1
            for i, r in zip(redirect, self._resend([(i, kinds[i], out[i]) for i in redirect])):
                out[i] = r
        self.replies = out
        self._retry_at = None
        self._done = True

    def _resend(self, redirected: list[tuple[int, str, Any]]) -> list[Any]:
        """The replies to the redirected commands sent again: ASK to the node it names, each command
        after an ``ASKING`` (one pipelined round trip per node); MOVED to the node it names;
        TRYAGAIN and CLUSTERDOWN routed by the slot map (read again)."""
        rc = self.store.redis
        routed = [i for i, kind, _r in redirected if kind != "ASK" and kind != "MOVED"]
        by_node: dict[str, list[tuple[int, bool]]] = {}
        for i, kind, r in redirected:
            if kind in ("ASK", "MOVED"):
                by_node.setdefault(str(r).split()[2], []).append((i, kind == "ASK"))
        replies: dict[int, Any] = {}
        if routed or any(not ask for items in by_node.values() for _i, ask in items):
            if self.store._refresh_topology:
                self.store._refresh_topology = False
                try:
                    rc.nodes_manager.initialize()
                except redis.RedisError:
                    self.store._refresh_topology = True
        for name, items in by_node.items():
            node = rc.get_node(node_name=name)
            if node is None:  # a node the slot map does not know yet
                rc.nodes_manager.initialize()
                node = rc.get_node(node_name=name)
            if node is None:
                routed.extend(i for i, _ask in items)
                continue
            cmds: list[tuple[Any, ...]] = []
            for i, ask in items:
                if ask:
                    cmds.append(("ASKING",))
                cmds.append(self.cmds[i])
            try:
                got = iter(Roundtrip(self.store, cmds, rc.get_redis_connection(node).connection_pool).wait())
            except redis.ConnectionError as e:
                got = iter([e] * len(cmds))
            for i, ask in items:
                if ask:
                    next(got)  # ASKING's OK
                replies[i] = next(got)
        if routed:
            for i, r in zip(routed, self._send_routed([self.cmds[i] for i in routed])):
                replies[i] = r
        return [replies[i] for i, _kind, _r in redirected]

    def _send_routed(self, cmds: list[tuple[Any, ...]]) -> list[Any]:
        """`cmds` sent by the slot map, one pipelined round trip per node, their replies as they
        are (redirections included: `_merge` follows them); a node that fails: its error each."""
        rc = self.store.redis
        by_node: dict[str, tuple[Any, list[int]]] = {}
        out: list[Any] = [None] * len(cmds)
        for i, c in enumerate(cmds):
            key = _first_key(c)
            try:
                node = rc.get_node_from_key(key) if key is not None else rc.get_default_node()
            except redis.RedisError as e:
                out[i] = e
                continue
            by_node.setdefault(node.name, (node, []))[1].append(i)
        for node, idx in by_node.values():
            try:
                got = Roundtrip(self.store, [cmds[i] for i in idx], rc.get_redis_connection(node).connection_pool).wait()
            except redis.ConnectionError as e:
                self.store._refresh_topology = True
                got = [e] * len(idx)
            for i, r in zip(idx, got):
                out[i] = r
        return out

    def _fail(self) -> None:
        self.store._refresh_topology = True
        for _idx, rt in self.parts:
            rt._fail()
        self._retry_at = None
        self._done = True


def _redirection(reply: Any) -> bool:
    """A reply saying the command was not executed there and should go elsewhere or again."""
    return isinstance(reply, Exception) and str(reply).startswith(("MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN"))


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
