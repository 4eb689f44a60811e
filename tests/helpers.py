"""Fakes and builders the tests share; the unit layer's (`pytest -m unit`: no Redis, no sockets).

The fakes stand in for the two edges of the hot path, never for Redis itself:

* `FakeRoundtrip` has the interface of `smsbot.roundtrip.Roundtrip` (fileno, done, buffered, poll,
  wait, replies, cmds). Its replies are what the test scripted for each command — an
  `MoResult`-shaped reply per MO script, error replies as exception instances as hiredis gives
  them — and it answers only when the test says (`arrive`), or its answer is lost (a connection
  failure, as `Roundtrip.poll` raises it).
* `ScriptedStore` is a real `Store` (it builds every call and command) whose `start_roundtrip`
  hands out `FakeRoundtrip`s and keeps each one, so a test reads the commands in the order Redis
  would have received them.
* `FakeSocket` is what a `smsbot.session.Link` and its write side `smsbot.outgoing.Outgoing` use
  of a socket (recv, sendall, fileno, close), in memory: the test feeds bytes the SMSC "sent" and
  reads the PDUs the write side wrote.
* `FakeSessions` is the pipeline's `Sessions` (identity, new_session, suspect).
* `Clock` is a clock the test moves (nothing here sleeps or reads the wall clock).

Builders: PDUs as an SMSC sends them (`deliver_sm`, `receipt_pdu`, ...), outbox entries (`entry`,
`template_entry`) and a real `OutboxSender` on a `Clock` (`outbox_sender`).

`HotPath` wires the real `Dispatcher`, `OutboxSender` and `Pipeline` to these fakes, with a
`Link` and its `Outgoing` on a `FakeSocket`, and does what the transport does with what each of
them returns.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import hiredis
import redis

import commands
from smsbot import connections, pdu
from smsbot.config import Settings
from smsbot.dispatch import Dispatcher
from smsbot.identity import SenderIdentity
from smsbot.keys import Keys
from smsbot.live import Live
from smsbot.messages import CommandId, DeliverSm, Inbound, Receipt
from smsbot.outbox import OutboxSender
from smsbot.outgoing import Outgoing
from smsbot.pipeline import Pipeline, Resp
from smsbot.records import read_mark
from smsbot.router import Router
from smsbot.session import Link, Received, ReplyTo, SequenceGenerator
from smsbot.steps import MO, MoArgv, MoKeys, MoResult
from smsbot.store import Store

UNIT_OVERRIDES: dict[str, Any] = {
    # records go by their own rules in these tests, never because a wall-clock interval passed
    # (the pipeline reads time.monotonic for it: see `HotPath.settle_records`)
    "delivery.ack_flush_seconds": 3600,
}


def wait_until(predicate: Any, timeout: float, interval: float = 0.02) -> bool:
    """For the end-to-end tests: poll `predicate` until it holds or `timeout` seconds pass (a
    condition awaited, never a fixed sleep); its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


# -- Redis round trips ------------------------------------------------------------------------------
def error_reply(text: str) -> Exception:
    """An error reply as hiredis hands it back inside a pipeline's replies (not raised)."""
    return hiredis.ReplyError(text)


class FakeRoundtrip:
    """`smsbot.roundtrip.Roundtrip`'s interface; answers when the test calls `arrive` (then `poll` reads
    it, as when select says the socket is readable), or `wait` (blocking)."""

    def __init__(self, cmds: list[tuple[Any, ...]], answer: Callable[[tuple[Any, ...]], Any], *, lost: bool = False,
                 give_back: range = range(0)):
        self.cmds = cmds
        self.give_back = give_back  # the commands whose TRYAGAIN the caller takes back (`ClusterRoundtrip`)
        self.pause: float | None = None  # a pause between tries of a redirected command runs this long (`retry_in`)
        self.replies: list[Any] = []
        self.lost = lost  # the connection fails before the replies are read: the outcome is unknown
        self.arrived = False
        self._answer = answer
        self._done = False

    def fileno(self) -> int:
        return -1  # never handed to select in the unit layer

    @property
    def done(self) -> bool:
        return self._done

    def buffered(self) -> bool:
        return False

    def retry_in(self) -> float | None:
        return self.pause

    def arrive(self) -> None:
        self.arrived = True

    def poll(self) -> bool:
        if not self.arrived:
            return False  # nothing readable yet
        return self._complete()

    def wait(self) -> list[Any]:
        self.arrived = True
        self._complete()
        return self.replies

    def _complete(self) -> bool:
        self._done = True
        if self.lost:
            raise redis.ConnectionError("Redis closed the connection")
        self.replies = [self._answer(c) for c in self.cmds]
        return True


@dataclass
class MoCall:
    """An MO script call as Redis would receive it, read back by name (`smsbot.steps.MO`)."""

    keys: MoKeys
    argv: MoArgv
    extra_keys: tuple[str, ...]


def parse_mo_command(cmd: tuple[Any, ...]) -> MoCall:
    nkeys = int(cmd[2])
    declared = len(MO.key_names)
    keys = cmd[3:3 + nkeys]
    return MoCall(MoKeys._make(keys[:declared]), MoArgv._make(cmd[3 + nkeys:3 + nkeys + len(MO.arg_names)]),
                  tuple(keys[declared:]))


class ScriptedStore(Store):
    """A real `Store` (calls and commands built as in production) whose round trips are fakes.

    What Redis "answers" is scripted: `mo_replies[msisdn]` holds the next replies of that
    subscriber's MO scripts (an `MoResult`, or an exception instance for a script error, e.g.
    ``error_reply("TRYAGAIN ...")`` for a slot mid-migration); without
    one, the script answers `menu_sent` with one reply entry on the subscriber's outbox.
    `refuse` round trips fail to start (Redis unreachable); `lose` lose their answer. Lease
    renewals (SET ... PX ... NX|XX) answer OK unless `lease_gone`."""

    def __init__(self, settings: Settings):
        client, where = connections.client(settings)  # never dialled: every round trip is a fake
        super().__init__(settings, client, where, commands.lua_sources())
        self.roundtrips: list[FakeRoundtrip] = []
        self.mo_replies: dict[str, deque[Any]] = {}
        self.command_errors: dict[str, Exception] = {}  # command kind (`kind`) -> its error reply
        self.refuse = 0
        self.lose = 0
        self.lease_gone = False
        self.on_start: Callable[[list[tuple[Any, ...]]], None] | None = None  # e.g. move a clock
        self._entry_ids = itertools.count(1)

    # -- scripting ----------------------------------------------------------------------------------
    def script_mo(self, msisdn: str, *replies: Any) -> None:
        self.mo_replies.setdefault(msisdn, deque()).extend(replies)

    def mo_reply(self, outcome: str = "menu_sent", entries: Iterable[tuple[str, str, dict]] = (),
                 extra: Any = False) -> list[Any]:
        """An `MoResult`-shaped reply: the outcome, the reply entries (id, template, data), extra."""
        sent = [[eid.encode(), tpl.encode(), json.dumps(data).encode()] for eid, tpl, data in entries]
        return list(MoResult(outcome.encode(), sent, extra))

    def next_entry_id(self) -> str:
        return f"{next(self._entry_ids)}-0"

    # -- what the fake round trips see ------------------------------------------------------------------
    def start_roundtrip(self, cmds, give_back=range(0)):
        if self.refuse:
            self.refuse -= 1
            raise redis.ConnectionError("Redis round trip failed: [Errno 111] Connection refused (scripted)")
        if self.on_start is not None:
            self.on_start(list(cmds))
        lost = self.lose > 0
        self.lose -= lost
        rt = FakeRoundtrip(list(cmds), self._answer, lost=lost, give_back=give_back)
        self.roundtrips.append(rt)
        return rt

    def kind(self, cmd: tuple[Any, ...]) -> str:
        """'mo', 'receipt' for the scripts; else the command's name ('DEL', 'XDEL', 'SET', ...)."""
        if cmd[0] == "EVALSHA":
            if cmd[1] == self.receipt_sha:
                return "receipt"
            if cmd[1] == self.mo_sha or cmd[1] in self.handler_shas.values():
                return "mo"
            return "EVALSHA?"
        return str(cmd[0])

    def kinds(self, rt: FakeRoundtrip) -> list[str]:
        return [self.kind(c) for c in rt.cmds]

    def mo_calls(self, rt: FakeRoundtrip) -> list[MoCall]:
        return [parse_mo_command(c) for c in rt.cmds if self.kind(c) == "mo"]

    def deleted(self, rt: FakeRoundtrip) -> list[str]:
        return [k for c in rt.cmds if c[0] == "DEL" for k in c[1:]]

    def marks(self, rt: FakeRoundtrip) -> dict[str, int]:
        """The session watermarks `rt` writes (HSET of ``Keys.marks``): token -> batch number."""
        return {c[i]: read_mark(c[i + 1]) for c in rt.cmds if c[0] == "HSET" for i in range(2, len(c), 2)}

    def recorded(self, rt: FakeRoundtrip) -> dict[str, list[str]]:
        """The entries `rt` records as sent: its XDELs' ids per stream."""
        out: dict[str, list[str]] = {}
        for c in rt.cmds:
            if c[0] == "XDEL":
                out.setdefault(c[1], []).extend(c[2:])
        return out

    def _answer(self, cmd: tuple[Any, ...]) -> Any:
        kind = self.kind(cmd)
        if kind in self.command_errors:
            return self.command_errors[kind]
        if kind == "mo":
            call = parse_mo_command(cmd)
            queued = self.mo_replies.get(call.argv.msisdn)
            if queued:
                return queued.popleft()
            return self.mo_reply("menu_sent", [(self.next_entry_id(), "notice", {"text": "ok"})])
        if kind in ("XDEL", "XACK"):
            return len(cmd) - (2 if kind == "XDEL" else 3)
        if kind == "receipt":
            return b"DELIVRD"
        if kind == "SET" and any(a in ("NX", "XX") for a in cmd[3:]):
            return None if self.lease_gone else b"OK"
        if kind == "DEL":
            return len(cmd) - 1
        if kind in ("RPUSH", "EXPIRE"):
            return 1
        return b"OK"


# -- the SMSC side of a link ---------------------------------------------------------------------------
class FakeSocket:
    """What a link uses of a socket, in memory: `feed` what the SMSC sends, `written` what its write side sent."""

    def __init__(self) -> None:
        self.incoming: deque[bytes] = deque()
        self.sends: list[bytes] = []  # one item per sendall
        self.peer_closed = False
        self.recv_error: OSError | None = None
        self.send_error: OSError | None = None
        self.closed = False
        self._framer = pdu.Framer()
        self._read = 0

    def feed(self, *chunks: bytes) -> None:
        self.incoming.extend(chunks)

    def recv(self, n: int) -> bytes:
        if self.recv_error is not None:
            raise self.recv_error
        if self.incoming:
            chunk = self.incoming.popleft()
            if len(chunk) > n:
                self.incoming.appendleft(chunk[n:])
                chunk = chunk[:n]
            return chunk
        if self.peer_closed:
            return b""
        raise BlockingIOError(11, "Resource temporarily unavailable")

    def sendall(self, data: bytes) -> None:
        if self.send_error is not None:
            raise self.send_error
        self.sends.append(bytes(data))

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        self.closed = True

    def written(self) -> list[tuple[int, int, int, bytes]]:
        """The PDUs written since the last call, as (command_id, status, sequence, body)."""
        new = self.sends[self._read:]
        self._read = len(self.sends)
        return self._framer.feed(b"".join(new))


def make_link(sock: FakeSocket | None = None, *, now: float = 1000.0, max_pdu_bytes: int = 65536,
              rx: bool = True, tx: bool = True, name: str = "smsc:2775/smsbot") -> Link:
    """The read side of a bound SMPP link on `sock` (its write side: `Outgoing(sock, sequences)`)."""
    return Link(sock or FakeSocket(), rx, tx, name, pdu.Framer(max_pdu_bytes), last_pdu=now)  # type: ignore[arg-type]


class Reads:
    """What a link's reads returned, gathered (`Link.read` returns a `Received` per read)."""

    def __init__(self) -> None:
        self.mos: list[tuple[Inbound, bool]] = []
        self.receipts: list[tuple[Receipt, int, bool]] = []
        self.submit_resps: list[tuple[int, int, str]] = []
        self.answered: list[int] = []
        self.owed: list[bytes] = []
        self.refused: list[tuple[int, int, Any]] = []  # sequence, status, the ReplyTo's detail
        self.down: str | None = None

    def add(self, got: Received) -> Received:
        self.mos += [(mo, reply.detail) for mo, reply in got.mos]
        self.receipts += [(r, reply.sequence, reply.detail) for r, reply in got.receipts]
        self.submit_resps += got.submit_resps
        self.answered += got.answered
        self.owed += got.owed
        self.refused += [(reply.sequence, status, reply.detail) for reply, status in got.refused]
        self.down = got.down or self.down
        return got


# -- PDU and message builders ---------------------------------------------------------------------------
def deliver_sm(seq: int, text: str = "0000", msisdn: str = "13800138000", short_code: str = "10086") -> bytes:
    return pdu.encode_deliver_sm(DeliverSm(seq, source_addr=msisdn, destination_addr=short_code,
                                           short_message=text.encode("ascii")))


def data_sm(seq: int, text: str = "0000", msisdn: str = "13800138000", short_code: str = "10086") -> bytes:
    return pdu.encode_data_sm(DeliverSm(seq, source_addr=msisdn, destination_addr=short_code,
                                        short_message=text.encode("ascii")))


def receipt_pdu(seq: int, message_id: str = "m1", stat: str = "DELIVRD", *, as_data_sm: bool = False) -> bytes:
    text = f"id:{message_id} sub:001 dlvrd:001 submit date:2601010000 done date:2601010001 stat:{stat} err:000 text:"
    d = DeliverSm(seq, source_addr="13800138000", destination_addr="10086", esm_class=0x04,
                  short_message=text.encode("ascii"))
    return pdu.encode_data_sm(d) if as_data_sm else pdu.encode_deliver_sm(d)


def header(command_id: int, seq: int, status: int = 0, body: bytes = b"") -> bytes:
    return pdu.encode_header(command_id, status, seq, body)


def submit_sm_resp(seq: int, status: int = 0, message_id: str = "") -> bytes:
    return pdu.encode_submit_sm_resp(seq, status, message_id or f"mid{seq}")


def inbound(seq: int, msisdn: str = "13800138000", text: str = "0000", short_code: str = "10086",
            umr: int | None = None) -> Inbound:
    return Inbound(msisdn=msisdn, short_code=short_code, text=text, sequence=seq, user_message_reference=umr,
                   payload=text.encode(), data_coding=0)


def entry(i: int, text: str = "hello", stream: str = "smsbot:{0}:outbox") -> tuple[str, str, dict[str, str]]:
    """An outbox entry (stream, id, fields) whose reply is `text` (`notice`: 160 GSM-7 characters a part)."""
    return (stream, f"{1000 + i}-0", {"to": f"1380000{i:04d}", "from": "10086", "lang": "zh-CN", "tpl": "notice",
                                      "data": json.dumps({"text": text}), "mo": f"c{i}"})


def template_entry(i: int, tpl: str = "help", data: dict[str, Any] | None = None) -> tuple[str, str, dict[str, str]]:
    """An outbox entry (stream, id, fields) whose reply is template `tpl` rendered with `data`."""
    return ("stream", f"{1000 + i}-0", {"to": f"1380000{i:04d}", "from": "10086", "lang": "zh-CN", "tpl": tpl,
                                      "data": json.dumps(data or {}), "mo": f"c{i}"})


def outbox_sender(make_settings: Callable[..., Settings], on_failed: Callable[..., Any] | None = None,
                  **overrides: Any) -> tuple[OutboxSender, Clock]:
    """A real `OutboxSender` for settings with `overrides` (the `make_settings` fixture), on a `Clock`
    the test moves; both."""
    settings = make_settings(**overrides)
    clock = Clock()
    sender = OutboxSender(Live(settings, Router(settings, commands.all_commands())), SequenceGenerator(),
                          Keys(settings.redis.key_prefix), on_failed=on_failed, clock=clock)
    return sender, clock


def sequences_of(pdus: list[bytes]) -> list[int]:
    return [int.from_bytes(p[12:16], "big") for p in pdus]


def destination_of(part: bytes) -> str:
    """The destination address of a submit_sm PDU."""
    sm, _tlvs = pdu.decode_submit_sm(sequences_of([part])[0], part[16:])
    return sm.destination_addr


def make_live(settings: Settings) -> Live:
    return Live(settings, Router(settings, commands.all_commands()))


# -- the pipeline's sender side, and the whole hot path on fakes -------------------------------------------
class FakeSessions:
    """The pipeline's `Sessions`: an identity that moves on as `smsbot.delivery.Delivery` moves it."""

    def __init__(self, identity: SenderIdentity) -> None:
        self.identity = identity
        self.new_sessions = 0
        self.suspicions = 0

    def new_session(self) -> None:
        self.new_sessions += 1
        self.identity = self.identity.next_session()

    def suspect(self) -> None:
        self.suspicions += 1


@dataclass
class HotPath:
    """Dispatcher, OutboxSender and Pipeline as the bot wires them, on a `ScriptedStore`, a
    `Link` and its `Outgoing` on a `FakeSocket`, `FakeSessions` and a `Clock`; `take`, `write`
    and `flush` do the transport's part."""

    live: Live
    store: ScriptedStore
    clock: Clock
    sequences: SequenceGenerator
    dispatcher: Dispatcher
    sender: OutboxSender
    sessions: FakeSessions
    pipeline: Pipeline
    sock: FakeSocket
    link: Link
    out: Outgoing  # the link's write side
    batches: list[tuple[list, float]] = field(default_factory=list)
    receipts_stored: list[Receipt] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings) -> HotPath:
        live = make_live(settings)
        store = ScriptedStore(settings)
        clock = Clock()
        sequences = SequenceGenerator()
        sender = OutboxSender(live, sequences, store.keys, clock=clock)
        prefixes = tuple(store.keys.lease_prefix(n) for n in range(store.keys.shards))
        sessions = FakeSessions(SenderIdentity("bot-1", prefixes))
        dispatcher = Dispatcher(live, store, clock=lambda: 1_700_000_000.0 + clock())
        sock = FakeSocket()
        hp = cls(live, store, clock, sequences, dispatcher, sender, sessions, None, sock,  # type: ignore[arg-type]
                 make_link(sock, now=clock()), Outgoing(sock, sequences))
        hp.pipeline = Pipeline(live, store, dispatcher, sender, sessions,
                               on_batch=lambda outcomes, latency: hp.batches.append((outcomes, latency)),
                               on_receipt=hp.receipts_stored.append, clock=clock)
        return hp

    def rebind(self) -> None:
        """The link died and a new one is bound: a new socket, read side and write side."""
        self.sock = FakeSocket()
        self.link = make_link(self.sock, now=self.clock())
        self.out = Outgoing(self.sock, self.sequences)

    # the transport's part: what each stage returns goes to the next
    def take(self, got: Received) -> Received:
        for mo, reply in got.mos:
            self.pipeline.on_mo(mo, reply)
        for receipt, reply in got.receipts:
            self.pipeline.on_receipt(receipt, reply)
        for sequence, status, message_id in got.submit_resps:
            assert self.sender.on_submit_resp(sequence, status, message_id)
        if got.answered:
            self.pipeline.confirmed(self.out.answered(got.answered))
        self.out.owe(got.owed, got.refused)
        return got

    def write(self, resps: list[Resp]) -> None:
        """Each resp to the write side of its link (one of an earlier link: lost with it)."""
        for reply, status, guard in resps:
            if reply.link is self.link:
                self.out.answer(reply, status, guard)

    # steps of a loop turn
    def smsc_sends(self, *pdus: bytes) -> Received:
        """The SMSC writes `pdus`; the link reads them, and what it returns goes to the pipeline."""
        self.sock.feed(b"".join(pdus))
        return self.take(self.link.read(self.clock()))

    def mo(self, seq: int, msisdn: str = "13800138000", text: str = "0000", **kw: Any) -> None:
        self.pipeline.on_mo(inbound(seq, msisdn, text, **kw), ReplyTo(self.link, seq, False))

    def start_batches(self) -> None:
        self.write(self.pipeline.start_batches())

    def answer(self, rt: FakeRoundtrip | None = None) -> bool:
        """Redis answers `rt` (default: the latest round trip); the pipeline collects it and its
        resps are queued on their links."""
        rt = rt or self.store.roundtrips[-1]
        rt.arrive()
        answered, resps = self.pipeline.poll([rt])
        self.write(resps)
        return answered

    def flush(self) -> list[tuple[int, int, int, bytes]]:
        """The transport's write (a question behind guarded resps), one sendall; the PDUs written."""
        self.out.flush(self.clock())
        return self.sock.written()

    def settle_records(self) -> None:
        """Records pending from earlier go in a round trip of their own, answered: the pipeline's
        ack-flush interval (time.monotonic, not injectable) then starts now, and later batches carry
        records only by the rules that do not depend on time."""
        if self.pipeline.record():
            self.answer()


def resps(frames: list[tuple[int, int, int, bytes]]) -> list[tuple[int, int]]:
    """(sequence, status) of the deliver_sm_resps among `frames`."""
    return [(seq, status) for cid, status, seq, _b in frames if cid == CommandId.DELIVER_SM_RESP]


def kinds_of(frames: list[tuple[int, int, int, bytes]]) -> list[str]:
    return [CommandId(cid).name for cid, _s, _q, _b in frames]
