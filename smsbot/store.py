"""Redis access over a client `smsbot.connections` built: the MO script, batched round trips, scripts.

This module owns how smsbot talks to Redis; what the keys are called is `smsbot.keys`, what the
scripts do is in the Lua files. The hot path is `Store.run_batch`: every script call and every
outbox acknowledgement of a batch goes out in ONE pipelined round trip; a script the server does
not know (NOSCRIPT, e.g. after a Redis restart) is loaded and just those calls are retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import redis
import redis.cluster
import redis.sentinel

from smsbot.config import Settings
from smsbot.identity import SenderIdentity
from smsbot.keys import OUTBOX_GROUP, Keys
from smsbot.roundtrip import HOT_CONNECTIONS_KEPT, ClusterRoundtrip, Roundtrip, _KeptConnections
from smsbot.scripts import assemble_handler_scripts, assemble_mo_script
from smsbot.steps import MO, RECEIPT, MoArgv, MoKeys, ReceiptArgv, ReceiptKeys, Step
_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(slots=True)
class ScriptCall:
    """One EVALSHA of the MO script (`smsbot.steps.MO`): its KEYS, the extra keys its handler
    declared (after them), its ARGV."""

    keys: MoKeys
    argv: MoArgv
    extra_keys: tuple[str, ...] = ()

    def command(self, sha: str) -> tuple[Any, ...]:
        return ("EVALSHA", sha, len(self.keys) + len(self.extra_keys), *self.keys, *self.extra_keys, *self.argv)


@dataclass(slots=True)
class ScriptResult:
    outcome: str
    entries: list[tuple[str, str, dict[str, str]]]  # (stream, entry id, fields) picked up for sending
    extra: str | None


class Store:
    def __init__(self, settings: Settings, client: Any, where: str, command_lua_files: Iterable[Path | str] = ()):
        """`client`: a blocking redis-py client for `redis.mode` (`smsbot.connections` builds it),
        `where`: where it points, for people (no password)."""
        self.settings = settings
        self.redis, self.url = client, where
        self.cluster = isinstance(self.redis, redis.cluster.RedisCluster)
        self._refresh_topology = False
        # one outbox stream for every shard's replies where scripts need not stay in one slot
        self.keys = Keys(settings.redis.key_prefix, settings.redis.shards, one_outbox=not self.cluster)
        files = list(command_lua_files)
        self.mo_source = assemble_mo_script(files)
        self.mo_sha = _sha1(self.mo_source)
        self.handler_sources = assemble_handler_scripts(files)
        self.handler_shas = {h: _sha1(src) for h, src in self.handler_sources.items()}
        self.receipt_source = RECEIPT.source()
        self.receipt_sha = _sha1(self.receipt_source)
        self._json_cache: dict[int, tuple[dict[str, Any], str]] = {}
        self._step_shas: dict[str, str] = {}  # run_step's loaded scripts
        self._names_cache: dict[tuple[str, ...], str] = {}
        self._local = threading.local()  # a read buffer per thread (event consumers share the Store)

    # -- set-up -------------------------------------------------------------------------------
    def ping(self) -> bool:
        return bool(self.redis.ping())

    def load_scripts(self) -> None:
        self.receipt_sha = self.script_load(self.receipt_source)
        self.mo_sha = self.script_load(self.mo_source)
        for src in set(self.handler_sources.values()):
            self.script_load(src)

    def run_step(self, step: Step, keys: tuple[Any, ...], argv: tuple[Any, ...]) -> Any:
        """One EVALSHA of `step` (any but the MO script, whose calls ride the hot path's round
        trips): loaded on first use, and again when Redis no longer knows it (a restart, a
        failover, a new cluster node)."""
        sha = self._step_shas.get(step.name)
        if sha is None:
            sha = self._step_shas[step.name] = self.script_load(step.source())
        try:
            return self.redis.evalsha(sha, len(keys), *keys, *argv)
        except redis.exceptions.NoScriptError:
            self._step_shas.pop(step.name, None)
            return self.run_step(step, keys, argv)

    async def run_step_async(self, aclient: Any, step: Step, keys: tuple[Any, ...], argv: tuple[Any, ...]) -> Any:
        """`run_step` on `aclient`, an asyncio client to the same Redis (the HTTP API's handlers on its
        event loop), sharing its scripts: EVALSHA of the step's SHA first (Redis knows it when any
        process loaded it), loaded on NOSCRIPT by `script_load` on a worker thread, so the loop never
        waits on the blocking client."""
        sha = self._step_shas.get(step.name) or _sha1(step.source())
        try:
            reply = await aclient.evalsha(sha, len(keys), *keys, *argv)
        except redis.exceptions.NoScriptError:
            sha = await asyncio.to_thread(self.script_load, step.source())
            reply = await aclient.evalsha(sha, len(keys), *keys, *argv)
        self._step_shas[step.name] = sha
        return reply

    def script_load(self, source: str) -> str:
        """SCRIPT LOAD; in cluster mode on every primary (EVALSHA runs on the node owning its key)."""
        if not self.cluster:
            return _s(self.redis.script_load(source))
        sha = ""
        for node in self.redis.get_primaries():
            sha = _s(self.redis.get_redis_connection(node).script_load(source))
        return sha

    def ensure_groups(self) -> None:
        for stream in self.keys.all_queues():
            try:
                self.redis.xgroup_create(stream, OUTBOX_GROUP, id="0", mkstream=True)
            except redis.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    def close(self) -> None:
        self.redis.close()

    # -- building calls --------------------------------------------------------------------------
    def mo_call(
        self,
        handler: str,
        msisdn: str,
        short_code: str,
        *,
        lang: str = "zh-CN",
        correlation: str = "",
        args: dict[str, Any] | None = None,
        guard_fp: str | None = None,
        guard_ms: int = 0,
        batch: int = 1,
        mark: int = 0,
        sender: SenderIdentity | None = None,
        reply_to: str = "",
        parts_key: str = "",
        delete_parts: bool = False,
        now_ms: int | None = None,
        extra_keys: Sequence[str] = (),
    ) -> ScriptCall:
        """One MO-script call (KEYS and ARGV as `smsbot.steps.MoKeys`/`MoArgv` declare them). `guard_fp`
        names the MO's redelivery guard (main.lua), kept `guard_ms` and marked with the `sender`'s
        token and the MO's `batch` number in its session, whose watermark is `mark` (`smsbot.pipeline`);
        `sender` will send the replies while it holds its lease (None: not an MO, the replies go to
        the queue); `reply_to`: the address replies go to when it is not `msisdn` (the MO's source
        address as sent). `extra_keys` names per-subscriber keys (``Keys.named``) the handler uses; they
        follow the declared KEYS and reach Lua as ``ctx.key[name]``."""
        sk = self.keys.subscriber(msisdn)
        if not (guard_fp and guard_ms > 0):  # no guard: the script sets none
            guard_fp, guard_ms, old_guard = "", 0, sk.none
        else:
            old_guard = sk.guard_prefix + guard_fp
        if sender is None:
            lease, consumer, token = sk.none, "", ""
        else:
            # the lease in the reply stream's shard: the one adoption checks for the entry
            lease = sender.lease_key(0 if self.keys.one_outbox else sk.shard) if sender.lease_prefixes else sk.none
            consumer, token = sender.consumer, sender.token
        keys = MoKeys(
            subs=sk.subs,
            state=sk.conv_prefix + short_code,
            old_guard=old_guard,
            marks=sk.marks,
            outbox=sk.outbox,
            audit=sk.audit,
            queue=sk.queue,
            parts=parts_key or sk.none,
            live=sk.live,
            lease=lease,
        )
        argv = MoArgv(
            handler=handler,
            now=now_ms if now_ms is not None else int(time.time() * 1000),
            msisdn=msisdn,
            short_code=short_code,
            lang=lang,
            mo=correlation,
            guard_ms=guard_ms,
            guard_fp=guard_fp,
            batch=batch,
            mark=mark,
            args=self._args_json(args),
            consumer=consumer,
            token=token,
            reply_to=reply_to,
            delete_parts="1" if delete_parts else "0",
            extra_keys=self._names_json(extra_keys) if extra_keys else "",
        )
        if extra_keys:
            return ScriptCall(keys, argv, tuple(self.keys.named(name, msisdn) for name in extra_keys))
        return ScriptCall(keys, argv)

    def _names_json(self, names: Sequence[str]) -> str:
        """JSON of a handler's extra key names (the same few tuples, encoded once each)."""
        text = self._names_cache.get(names)
        if text is None:
            text = self._names_cache[tuple(names)] = _DUMPS(list(names))
        return text

    def _args_json(self, args: dict[str, Any] | None) -> str:
        """JSON of a handler's arguments; constant intents (the same dict object) are encoded once."""
        if not args:
            return "{}"
        hit = self._json_cache.get(id(args))
        if hit is not None and hit[0] is args:
            return hit[1]
        text = _DUMPS(args)
        if len(self._json_cache) > 256:
            self._json_cache.clear()
        self._json_cache[id(args)] = (args, text)
        return text

    # -- round trips -----------------------------------------------------------------------------
    def run_batch(
        self, calls: Sequence[ScriptCall], acks: Sequence[tuple[str, str]] = (), writes: Sequence[KeyWrite] = ()
    ) -> list[ScriptResult | Exception]:
        """One pipelined round trip: all script calls, XDEL/XACK of sent outbox entries, MT records.

        Raises redis.ConnectionError/TimeoutError when Redis is unreachable (nothing is known to be
        stored); per-call script errors come back in the list as exceptions.
        """
        rt = self.begin_batch(calls, acks, writes)
        return self.finish_batch(calls, rt.wait(), rt.cmds)

    def begin_batch(self, calls: Sequence[ScriptCall], acks: Sequence[tuple[str, str]] = (),
                    writes: Sequence[KeyWrite] = (), tail: Sequence[tuple[Any, ...]] = (),
                    head: Sequence[tuple[Any, ...]] = (), give_back_tryagain: bool = False) -> Roundtrip:
        """Send a batch now (`head`: session watermarks to write, before the scripts that may meet their guards; the
        script calls; records of sent entries; MT records; then `tail`: receipts); the caller
        collects the replies when the socket is readable (`finish_batch` with ``head=len(head)``).
        `give_back_tryagain`: in a cluster, a script call whose slot is mid-migration comes back
        as its TRYAGAIN reply after a short try (`ClusterRoundtrip.give_back`) for the caller to
        run it again later; else it is followed for up to 10 s like every other command."""
        shas = self.handler_shas
        cmds: list[tuple[Any, ...]] = list(head)
        cmds.extend(c.command(shas.get(c.argv.handler, self.mo_sha)) for c in calls)
        cmds.extend(self.ack_commands(acks))
        cmds.extend(_write_commands(writes))
        cmds.extend(tail)
        give_back = range(len(head), len(head) + len(calls)) if give_back_tryagain else range(0)
        return self.start_roundtrip(cmds, give_back)

    def ack_commands(self, acks: Sequence[tuple[str, str]]) -> list[tuple[Any, ...]]:
        """Sent entries: one XDEL per stream with all its ids; from a queue an XACK first (they are
        in the group's pending list). On a single Redis every MO reply is in one outbox stream
        (`Keys.one_outbox`): a flush of many replies is one command (a script wrapping them would
        be one more)."""
        if not acks:
            return []
        by_stream: dict[str, list[str]] = {}
        for stream, entry_id in acks:
            by_stream.setdefault(stream, []).append(entry_id)
        cmds: list[tuple[Any, ...]] = []
        for stream, ids in by_stream.items():
            if stream.endswith(":queue"):
                cmds.append(("XACK", stream, OUTBOX_GROUP, *ids))
            cmds.append(("XDEL", stream, *ids))
        return cmds

    def receipt_command(self, receipt: Any, bind: str, at_ms: int, ttl: int) -> tuple[Any, ...]:
        """Apply a delivery receipt to the most recent unsettled MT sent under its message id on
        `bind` (receipt.lua): an SMSC that reuses ids cannot make one MT's receipt land on another."""
        mid = receipt.message_id
        keys = ReceiptKeys(records=self.keys.mt(mid), unmatched=self.keys.mt_receipt(mid))
        argv = ReceiptArgv(bind=bind, state=receipt.state, err=receipt.error, at=at_ms, ttl=ttl)
        return ("EVALSHA", self.receipt_sha, len(keys), *keys, *argv)

    def start_roundtrip(self, cmds: Sequence[tuple[Any, ...]],
                        give_back: range = range(0)) -> Roundtrip | ClusterRoundtrip:
        """Send `cmds` now (one pipelined write per node); collect with `poll`/`wait`. `give_back`:
        the commands whose TRYAGAIN comes back soon (`ClusterRoundtrip`; a single Redis has none)."""
        if not self.cluster:
            return Roundtrip(self, cmds)
        if self._refresh_topology:  # a node failed or answered MOVED: re-read the slot map first
            self._refresh_topology = False
            try:
                self.redis.nodes_manager.initialize()
            except redis.RedisError:
                self._refresh_topology = True
        return ClusterRoundtrip(self, cmds, give_back)

    def finish_batch(self, calls: Sequence[ScriptCall], raw: list[Any], cmds: Sequence[tuple[Any, ...]] = (),
                     head: int = 0) -> list[ScriptResult | Exception]:
        """Results of a batch's script calls (`raw`: the replies to `cmds`, the commands sent, the
        first `head` of them before the calls). A script Redis no longer knows (NOSCRIPT: it
        restarted) is loaded and that command sent again; any other error outside the calls
        (guard deletions, records, receipts) fails the whole batch."""
        end = head + len(calls)
        others = [i for i in (*range(head), *range(end, len(raw))) if isinstance(raw[i], Exception)]
        if others and cmds and all(str(raw[i]).startswith("NOSCRIPT") for i in others):
            self.load_scripts()
            for i, r in zip(others, self.roundtrip([cmds[i] for i in others])):
                raw[i] = r
        for r in (*raw[:head], *raw[end:]):
            if isinstance(r, Exception):
                raise redis.ResponseError(f"guard deletion / outbox ack / MT record / receipt failed: {r}")
        results: list[Any] = raw[head:end]
        retry = [i for i, r in enumerate(results) if isinstance(r, Exception) and str(r).startswith("NOSCRIPT")]
        if retry:
            self.load_scripts()
            shas = self.handler_shas
            again = self.roundtrip([calls[i].command(shas.get(calls[i].argv.handler, self.mo_sha)) for i in retry])
            for i, r in zip(retry, again):
                results[i] = r
        out: list[ScriptResult | Exception] = []
        for c, r in zip(calls, results):
            if isinstance(r, Exception):
                out.append(redis.ResponseError(str(r)))
            else:
                out.append(_parse_result(c, r))
        return out

    def roundtrip(self, cmds: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Send every command in one write and read every reply (see `Roundtrip`)."""
        if not cmds:
            return []
        return self.start_roundtrip(cmds).wait()

    def hot_connection(self, pool: redis.ConnectionPool) -> Any:
        """A connected connection of `pool` for one round trip: one this thread keeps from an
        earlier round trip, else one from the pool (connects). Checking a connection out of the
        pool per batch costs a health probe and locking each time; this costs a list pop."""
        idle = self._hot_idle(pool)
        while idle:
            conn = idle.pop()
            if conn._sock is not None:
                return conn
            pool.release(conn)
        conn = pool.get_connection()
        if conn._sock is None:
            conn.connect()
        return conn

    def hot_connection_done(self, pool: redis.ConnectionPool, conn: Any) -> None:
        """Every reply of a round trip is in: keep the connection for this thread's next one."""
        idle = self._hot_idle(pool)
        if len(idle) < HOT_CONNECTIONS_KEPT:
            idle.append(conn)
        else:
            pool.release(conn)

    def _hot_idle(self, pool: redis.ConnectionPool) -> list[Any]:
        kept = getattr(self._local, "hot", None)
        if kept is None:
            kept = self._local.hot = _KeptConnections()
        entry = kept.by_pool.get(id(pool))
        if entry is None:
            entry = kept.by_pool[id(pool)] = (pool, [])
        return entry[1]

    def read_buffer(self) -> bytearray:
        buf = getattr(self._local, "buf", None)
        if buf is None:
            buf = self._local.buf = bytearray(1 << 16)
        return buf

    def run_one(self, call: ScriptCall) -> ScriptResult:
        res = self.run_batch([call])[0]
        if isinstance(res, Exception):
            raise res
        return res

    def mt_records(self, message_id: str) -> list[dict[str, str]]:
        """Every MT part sent under SMSC message id `message_id` (several when the SMSC reused the
        id), oldest first, each with its delivery receipt; a receipt that matched none comes last."""
        key = self.keys.mt(message_id)
        sent, orphan, rejected = self.roundtrip([("LRANGE", key, 0, -1), ("GET", self.keys.mt_receipt(message_id)),
                                                 ("GET", self.keys.mt_rejected(message_id))])
        for r in (sent, orphan, rejected):
            if isinstance(r, Exception):
                raise redis.ResponseError(str(r))
        out: list[dict[str, str]] = [json.loads(r) for r in sent or []]
        if rejected:
            out.append(json.loads(rejected))
        if orphan:
            out.append({"receipt_without_mt": "1", **json.loads(orphan)})
        return out

    def read_outbox(self, consumer: str, count: int, block_ms: int | None = None) -> list[tuple[str, str, dict[str, str]]]:
        """Queue entries nobody has picked up yet (reminders, alerts, adopted replies of a dead sender)."""
        if self.cluster:
            return self._read_outbox_per_stream(consumer, count)
        streams = {s: ">" for s in self.keys.all_queues()}
        try:
            res = self.redis.xreadgroup(OUTBOX_GROUP, consumer, streams, count=count, block=block_ms)
        except redis.ResponseError as e:
            if "NOGROUP" not in str(e):
                raise
            self.ensure_groups()
            res = self.redis.xreadgroup(OUTBOX_GROUP, consumer, streams, count=count, block=block_ms)
        return _flatten_streams(res)

    def _read_outbox_per_stream(self, consumer: str, count: int) -> list[tuple[str, str, dict[str, str]]]:
        """Cluster: one XREADGROUP per queue stream (each stream is its own slot), all of them in
        one round trip per node; non-blocking (the transport polls)."""
        queues = self.keys.all_queues()
        cmds = [("XREADGROUP", "GROUP", OUTBOX_GROUP, consumer, "COUNT", count, "STREAMS", q, ">") for q in queues]
        replies = self.roundtrip(cmds)
        if any(isinstance(r, Exception) and "NOGROUP" in str(r) for r in replies):
            self.ensure_groups()
            replies = self.roundtrip(cmds)
        out: list[tuple[str, str, dict[str, str]]] = []
        for r in replies:
            if isinstance(r, Exception):
                raise redis.ResponseError(str(r))
            for stream, entries in r or []:
                for entry_id, flat in entries:
                    if flat is None:
                        continue
                    out.append((_s(stream), _s(entry_id), {_s(flat[i]): _s(flat[i + 1]) for i in range(0, len(flat), 2)}))
        return out



@dataclass(slots=True)
class KeyWrite:
    """SET key <JSON fields> EX ttl, or with `push` RPUSH it to a list (+ EXPIRE): MT records; with
    `stream` XADD the fields to a stream (`ttl` unused): a webhook event (`smsbot.webhooks.events`)."""

    key: str
    fields: dict[str, str]
    ttl: int
    push: bool = False
    stream: bool = False


def _write_commands(writes: Sequence[KeyWrite]) -> list[tuple[Any, ...]]:
    cmds: list[tuple[Any, ...]] = []
    for w in writes:
        if w.stream:
            cmds.append(("XADD", w.key, "*", *(x for kv in w.fields.items() for x in kv)))
        elif w.push:
            cmds.append(("RPUSH", w.key, _DUMPS(w.fields)))
            cmds.append(("EXPIRE", w.key, w.ttl))
        else:
            cmds.append(("SET", w.key, _DUMPS(w.fields), "EX", w.ttl))
    return cmds


def _s(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _parse_result(call: ScriptCall, r: Any) -> ScriptResult:
    """The MO script's reply (`steps.MoResult`): the reply entries this sender sends itself."""
    res = MO.parse(r)
    entries: list[tuple[str, str, dict[str, str]]] = []
    if res.sent:
        stream = call.keys.outbox
        argv = call.argv
        to, short_code, lang, mo = argv.reply_to or argv.msisdn, argv.short_code, argv.lang, argv.mo
        for entry_id, tpl, data in res.sent:  # a loop: a comprehension's own frame costs more than one entry
            entries.append((stream, entry_id.decode(), {"to": to, "from": short_code, "lang": lang, "mo": mo,
                                                       "tpl": tpl.decode(), "data": data.decode("utf-8", "replace")}))
    return ScriptResult(res.outcome.decode(), entries, _s(res.extra) if res.extra else None)


def _flatten_streams(res: Any) -> list[tuple[str, str, dict[str, str]]]:
    """XREADGROUP's RESP2 reply [[stream, [[id, {field: value}], ...]], ...] as (stream, id, fields)."""
    out: list[tuple[str, str, dict[str, str]]] = []
    for stream, entries in res or []:
        for entry_id, fields in entries:
            if fields is None:
                continue
            out.append((_s(stream), _s(entry_id), {_s(k): _s(v) for k, v in fields.items()}))
    return out


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()
