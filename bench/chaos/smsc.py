"""The chaos SMSC: a second, independent SMPP 3.4 server that drives conversations and counts
what comes back.

It shares no code with smsbot (not its PDU codec, text codec or simulator): the PDU framing and
the few bodies it needs are written here with `struct`, so a bug in smsbot's codec cannot hide
itself by being on both sides of the wire.

What it does, like a real SMSC
    * accepts ``bind_transceiver``, ``bind_receiver`` and ``bind_transmitter`` (any credentials
      unless `system_id`/`password` are given), answers ``enquire_link`` and ``unbind``, answers
      unknown requests with ``generic_nack``;
    * takes ``submit_sm`` (short_message or message_payload; UDH 8- or 16-bit concatenation, or
      ``sar_*`` TLVs) and answers each with ``submit_sm_resp`` carrying a unique message_id; the
      parts of a concatenated message are joined per destination and reference, and only a whole
      message counts as "received";
    * sends MOs as ``deliver_sm`` at a configured rate to the bound receivers (transceiver or
      receiver binds, round robin), at most `mo_window` unacknowledged per bind, each with a
      ``user_message_reference`` TLV unique per subscriber (a redelivery carries the same one,
      exactly as a handset's retry would);
    * REDELIVERS every MO not acknowledged with status 0: after `retry_delay` seconds on a
      temporary error (``ESME_RX_T_APPN``, ``ESME_RTHROTTLED``, ``ESME_RMSGQFUL``,
      ``ESME_RSYSERR``, or a generic_nack), and at once on the next bind for every MO whose
      deliver_sm was unacknowledged when its link went down. Any other status is a permanent
      reject (counted; that MO is not sent again).

Conversations are deterministic
    A subscriber never gets an MO while their previous MO is unacknowledged or unanswered, so
    what every subscriber must see is fixed by the sequence of their MOs: the `conversation`
    object (see `bench.chaos.model.ChaosConversation`) chooses each MO's text, predicts its reply
    when the MO is first sent, and classifies received messages (a reply, or a charge reminder).

Counting rule for replies ("sent twice")
    Every MO to the short code gets exactly one reply, and a subscriber has at most one MO
    waiting for its reply. A whole message that arrives for a subscriber is therefore:
    * the ANSWER of the subscriber's waiting MO, if there is one and the text is the one the
      model predicted for it, or the text differs from every message this subscriber has already
      received (then it is counted as answered but WRONG: a reply the model did not predict);
    * a DUPLICATE ("twice") otherwise: nothing is waiting for a reply, or the text repeats one
      already received while the waiting MO's predicted text is different (a late copy of an
      earlier reply).
    So per subscriber ``replies = answered + twice`` and ``twice = replies - answered``; summed,
    ``replies_twice = replies - answered MOs``. A duplicate whose subscriber's last answered MO was
    delivered more than once (the SMSC redelivered it: its resp was lost with a link, a crash or a
    temporary error) also counts in ``replies_twice_redelivered``, and its submits in
    ``redelivered_copy_submits``: smsbot answers a suspected redelivery again rather than leave a
    person who repeated a text unanswered (README: "Duplicates and redeliveries"). A late copy whose text happens to equal the
    waiting MO's prediction is taken as the answer and the real answer then counts as the
    duplicate: the count is the same either way. Charge reminders (classified by text) are
    counted apart, per (destination, service): more than one for the same pair is a reminder
    sent twice. Parts of an already completed message that arrive again (same destination,
    reference, count, number and bytes) are ``parts_twice``; if all of them arrive again they also
    make a whole duplicate message. ``submits_twice`` = parts_twice + the submit_sm of every whole
    duplicate (reply or reminder) not already among them: the "submits sent twice" of the targets
    (a resent copy may carry a new reference, so its parts are only known as a duplicate once whole).

Link drops
    `drop_links()` (or `set_drop_every(seconds)`) ends every bound link. In the default
    ``clean`` mode the SMSC stops processing the link's input at once, flushes every response
    it already wrote (so a submit_sm it counted always has its submit_sm_resp delivered, and a
    submit_sm it did not process is never counted), half-closes (FIN after the data), discards
    whatever still arrives and closes when the peer does (at most 2 s later). Responses that
    arrive after the drop are not processed: their MOs are redelivered on the next bind. With
    ``abort`` mode the socket is reset instead (responses in flight can be lost either way,
    like a network failure: expect duplicates that no ESME can avoid).

Threading: the server runs its own asyncio loop in a daemon thread; every public method is
thread-safe (it runs the work on the loop and waits for it).
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import random
import struct
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

# -- SMPP 3.4 constants (this module's own) ---------------------------------------------------------
GENERIC_NACK = 0x80000000
BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
BIND_TRANSCEIVER = 0x00000009
ENQUIRE_LINK = 0x00000015
RESP = 0x80000000
BINDS = {BIND_RECEIVER: "rx", BIND_TRANSMITTER: "tx", BIND_TRANSCEIVER: "trx"}
COUNTRY_CODE = b"86"  # the bot's subscribers.country_code (its default)

ESME_ROK = 0x00
ESME_RINVCMDID = 0x03
ESME_RINVBNDSTS = 0x04
ESME_RALYBND = 0x05
ESME_RSYSERR = 0x08
ESME_RBINDFAIL = 0x0D
ESME_RINVPASWD = 0x0E
ESME_RINVSYSID = 0x0F
ESME_RMSGQFUL = 0x14
ESME_RTHROTTLED = 0x58
ESME_RX_T_APPN = 0x64
TEMPORARY = frozenset({ESME_RSYSERR, ESME_RMSGQFUL, ESME_RTHROTTLED, ESME_RX_T_APPN})

TLV_USER_MESSAGE_REFERENCE = 0x0204
TLV_SAR_MSG_REF_NUM = 0x020C
TLV_SAR_TOTAL_SEGMENTS = 0x020E
TLV_SAR_SEGMENT_SEQNUM = 0x020F
TLV_SC_INTERFACE_VERSION = 0x0210
TLV_MESSAGE_PAYLOAD = 0x0424
ESM_UDHI = 0x40

_HDR = struct.Struct(">IIII")
_TLV = struct.Struct(">HH")
MAX_PDU = 65536
TICK_S = 0.005
DROP_LINGER_S = 2.0

# -- GSM 03.38 default alphabet, unpacked (data_coding 0): decoding only -----------------------------
_GSM = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
        "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
_GSM_EXT = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~", 0x3E: "]",
            0x40: "|", 0x65: "€"}
assert len(_GSM) == 128


def gsm7_decode(data: bytes) -> str:
    out, esc = [], False
    for b in data:
        if esc:
            out.append(_GSM_EXT.get(b, _GSM[b & 0x7F]))
            esc = False
        elif b == 0x1B:
            esc = True
        else:
            out.append(_GSM[b] if b < 128 else "?")
    return "".join(out)


def decode_text(data_coding: int, data: bytes) -> str:
    if data_coding == 8:
        return data.decode("utf-16-be", errors="replace")
    if data_coding == 0:
        return gsm7_decode(data)
    if data_coding == 1:
        return data.decode("ascii", errors="replace")
    return data.decode("latin-1")


def encode_mo_text(text: str) -> tuple[int, bytes]:
    """MO text -> (data_coding, bytes): ASCII digits/letters as GSM-7 (identical octets), else UCS-2."""
    if all(ch.isascii() and (ch.isalnum() or ch in " ,;?") for ch in text):
        return 0, text.encode("ascii")
    return 8, text.encode("utf-16-be")


# -- PDU helpers --------------------------------------------------------------------------------------
def pdu(command_id: int, status: int, seq: int, body: bytes = b"") -> bytes:
    return _HDR.pack(16 + len(body), command_id, status, seq) + body


def _cstr(body: bytes, off: int) -> tuple[bytes, int]:
    end = body.index(b"\0", off)
    return bytes(body[off:end]), end + 1


@dataclass
class ShortMessage:
    """The fields of a submit_sm (or deliver_sm) body this SMSC cares about."""

    source: str
    destination: str  # the handset: the national number (86… under TON 1 read as the bot's home network)
    esm_class: int
    data_coding: int
    payload: bytes  # short_message, or message_payload when short_message is empty (UDH included)
    tlvs: dict[int, bytes]


def parse_sm(body: bytes) -> ShortMessage:
    """Parse a submit_sm / deliver_sm body (SMPP 3.4 5.2). Raises ValueError when malformed."""
    try:
        _, off = _cstr(body, 0)  # service_type
        off += 2  # source_addr_ton, source_addr_npi
        src, off = _cstr(body, off)
        dst_ton = body[off]
        off += 2
        dst, off = _cstr(body, off)
        if dst_ton == 1 and dst.startswith(COUNTRY_CODE):  # international: our subscriber's national number
            dst = dst[len(COUNTRY_CODE):]
        esm = body[off]
        off += 3  # esm_class, protocol_id, priority_flag
        _, off = _cstr(body, off)  # schedule_delivery_time
        _, off = _cstr(body, off)  # validity_period
        dc, sm_len = body[off + 2], body[off + 4]  # registered_delivery, replace_if_present, dc, default_msg_id, sm_length
        off += 5
        sm = bytes(body[off:off + sm_len])
        if len(sm) != sm_len:
            raise ValueError("short_message runs past the PDU")
        off += sm_len
        tlvs: dict[int, bytes] = {}
        while off + 4 <= len(body):
            tag, ln = _TLV.unpack_from(body, off)
            tlvs[tag] = bytes(body[off + 4:off + 4 + ln])
            off += 4 + ln
    except (IndexError, ValueError, struct.error) as e:
        raise ValueError(f"malformed short message body: {e}") from None
    if not sm and TLV_MESSAGE_PAYLOAD in tlvs:
        sm = tlvs[TLV_MESSAGE_PAYLOAD]
    return ShortMessage(src.decode("latin-1"), dst.decode("latin-1"), esm, dc, sm, tlvs)


def split_concat(sm: ShortMessage) -> tuple[bytes, tuple[int, int, int] | None]:
    """(user data without UDH, (ref, total, seq) or None) from a UDH or from sar_* TLVs."""
    data = sm.payload
    if sm.esm_class & ESM_UDHI and data:
        udhl = data[0]
        udh, rest = data[1:1 + udhl], data[1 + udhl:]
        i = 0
        while i + 2 <= len(udh):
            iei, ln = udh[i], udh[i + 1]
            ie = udh[i + 2:i + 2 + ln]
            if iei == 0x00 and ln == 3 and len(ie) == 3:
                return rest, (ie[0], ie[1], ie[2])
            if iei == 0x08 and ln == 4 and len(ie) == 4:
                return rest, ((ie[0] << 8) | ie[1], ie[2], ie[3])
            i += 2 + ln
        return rest, None
    t = sm.tlvs
    if TLV_SAR_MSG_REF_NUM in t and TLV_SAR_TOTAL_SEGMENTS in t and TLV_SAR_SEGMENT_SEQNUM in t:
        return data, (int.from_bytes(t[TLV_SAR_MSG_REF_NUM], "big"), t[TLV_SAR_TOTAL_SEGMENTS][0],
                      t[TLV_SAR_SEGMENT_SEQNUM][0])
    return data, None


def deliver_sm_body(source: str, destination: str, text: str, umr: int) -> bytes:
    dc, sm = encode_mo_text(text)
    return b"".join((
        b"\0",  # service_type
        bytes((1, 1)), source.encode("ascii"), b"\0",  # international / ISDN subscriber number
        bytes((0, 0)), destination.encode("ascii"), b"\0",  # short code: unknown ton/npi
        bytes((0, 0, 0)),  # esm_class, protocol_id, priority_flag
        b"\0", b"\0",  # schedule_delivery_time, validity_period
        bytes((0, 0, dc, 0, len(sm))), sm,
        _TLV.pack(TLV_USER_MESSAGE_REFERENCE, 2), struct.pack(">H", umr & 0xFFFF),
    ))


# -- the conversation the SMSC drives -----------------------------------------------------------------
class Conversation(Protocol):
    def next_text(self, msisdn: str, k: int) -> str: ...

    def expect(self, msisdn: str, text: str) -> Any: ...  # applied once, when MO k is first sent

    def matches(self, expected: Any, text: str) -> bool: ...

    def reminder_key(self, text: str) -> str | None: ...  # a charge reminder: its service; else None


class Mo:
    __slots__ = ("sub", "k", "text", "umr", "expected", "sends", "acked", "answered", "rejected", "wrong",
                 "first_sent", "acked_at", "answered_at", "first_sent_wall", "acked_wall", "session")

    def __init__(self, sub: "Sub", k: int, text: str, expected: Any):
        self.sub, self.k, self.text, self.umr, self.expected = sub, k, text, (k + 1) & 0xFFFF, expected
        self.sends = 0
        self.acked = self.answered = self.rejected = self.wrong = False
        self.first_sent = self.acked_at = self.answered_at = 0.0
        self.first_sent_wall = self.acked_wall = 0.0  # time.time(), for the billing model
        self.session: Session | None = None

    @property
    def done(self) -> bool:
        return self.rejected or (self.acked and self.answered)


class Sub:
    __slots__ = ("msisdn", "mos", "cur", "last", "replies", "answered", "twice", "wrong", "seen", "pos")

    def __init__(self, msisdn: str):
        self.msisdn = msisdn
        self.mos: list[Mo] = []
        self.cur: Mo | None = None
        self.last: Mo | None = None  # the last MO answered
        self.replies = self.answered = self.twice = self.wrong = 0
        self.seen: set[str] = set()
        self.pos = -1  # index in the ready list, -1 when not ready


@dataclass
class Counters:
    binds: int = 0
    bind_refused: int = 0
    link_drops: int = 0
    links_lost: int = 0  # links that ended without a drop by us (peer closed or died)
    mos: int = 0
    deliveries: int = 0
    redeliveries: int = 0
    acked: int = 0
    temp_errors: int = 0
    rejected: int = 0
    resps_discarded: int = 0  # responses that arrived on a dropped link (not processed)
    submits: int = 0
    submits_refused: int = 0
    parts_twice: int = 0
    dup_message_parts: int = 0  # submits of whole duplicate messages not already in parts_twice
    messages: int = 0
    replies: int = 0
    answered: int = 0
    replies_twice: int = 0
    replies_twice_redelivered: int = 0  # of replies_twice: copies answering an MO delivered more than once
    redelivered_copy_submits: int = 0  # of the submits sent twice: those of such copies
    wrong_replies: int = 0
    unexpected_messages: int = 0  # not a reminder, to a number that is not a conversation subscriber
    reminders: int = 0
    enquire_links: int = 0
    generic_nacks: int = 0
    malformed: int = 0


class Session(asyncio.Protocol):
    """One SMPP connection."""

    def __init__(self, smsc: "ChaosSmsc"):
        self.smsc = smsc
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.kind: str | None = None  # rx / tx / trx once bound
        self.system_type = ""  # the bind's: the chaos runner names each bot by it (`ChaosSmsc.first_acks_after`)
        self.inflight: dict[int, Mo] = {}
        self.closing = False
        self.out: list[bytes] = []

    # receivers get MOs, transmitters may submit
    @property
    def rx(self) -> bool:
        return not self.closing and self.kind in ("rx", "trx")

    @property
    def tx(self) -> bool:
        return not self.closing and self.kind in ("tx", "trx")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.smsc.sessions.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        smsc = self.smsc
        smsc.sessions.discard(self)
        if not self.closing:
            smsc.c.links_lost += 1
            self.closing = True
            smsc._session_gone(self)

    def eof_received(self) -> bool:
        return False  # close our side too

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # a dropped link: what still arrives is not processed
        buf = self.buf
        buf += data
        smsc = self.smsc
        while len(buf) >= 16:
            length, cmd, status, seq = _HDR.unpack_from(buf, 0)
            if length < 16 or length > MAX_PDU:
                smsc.c.malformed += 1
                self.abort()
                return
            if len(buf) < length:
                break
            body = bytes(buf[16:length])
            del buf[:length]
            smsc._handle(self, cmd, status, seq, body)
            if self.closing:
                break
        self.flush()

    def send(self, data: bytes) -> None:
        self.out.append(data)

    def flush(self) -> None:
        if self.out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self.out))
        self.out.clear()

    def abort(self) -> None:
        self.out.clear()
        if self.transport is not None:
            self.transport.abort()

    def drop(self, mode: str) -> None:
        """End this link now (see the module doc for `clean` and `abort`)."""
        if self.closing:
            return
        self.closing = True
        self.smsc._session_gone(self)
        if mode == "abort" or self.transport is None:
            self.abort()
            return
        self.flush()
        try:
            self.transport.write_eof()  # FIN after everything already written
        except (OSError, RuntimeError):
            self.abort()
            return
        self.smsc.loop.call_later(DROP_LINGER_S, self.abort)


class ChaosSmsc:
    """See the module doc. `subscribers`: the MSISDNs that send MOs to `short_code`."""

    session_class: type[Session] = Session  # the wire (`bench.chaos.ismg.CmppSession` for CMPP)

    def __init__(self, subscribers: list[str], conversation: Conversation, *, short_code: str = "10086",
                 rate: float = 800.0, mo_window: int = 100, retry_delay: float = 1.0, host: str = "127.0.0.1",
                 port: int = 0, system_id: str | None = None, password: str | None = None, seed: int = 11,
                 drop_mode: str = "clean"):
        if drop_mode not in ("clean", "abort"):
            raise ValueError("drop_mode must be 'clean' or 'abort'")
        self.conv = conversation
        self.short_code = short_code
        self.rate = float(rate)
        self.mo_window = int(mo_window)
        self.retry_delay = float(retry_delay)
        self.host, self.port = host, port
        self.system_id, self.password = system_id, password
        self.drop_mode = drop_mode
        self.rng = random.Random(seed)
        self.subs: dict[str, Sub] = {m: Sub(m) for m in subscribers}
        self.ready: list[Sub] = []
        self.sessions: set[Session] = set()
        self.c = Counters()
        self.reminders: Counter[tuple[str, str]] = Counter()
        self.unexpected: Counter[str] = Counter()
        self.wrong_examples: list[dict[str, Any]] = []
        self.duplicates: list[tuple[float, str, str]] = []  # (loop time = time.monotonic(), kind, to)
        self.temp_errors_at: list[float] = []  # wall-clock time of each temporary error (refused MO), to match bot logs
        self.generating = False
        self.tokens = 0.0
        self._last_tick = 0.0
        self._rr = 0
        self._redeliver: list[tuple[float, int, Mo]] = []  # heap of (not before, tiebreak, MO)
        self._tie = itertools.count()
        self._seq = itertools.count(1)
        self._msgid = itertools.count(1)
        self._parts: dict[tuple[str, int, int], dict[int, tuple[int, bytes]]] = {}
        self._done_parts: dict[tuple[str, int, int], dict[int, bytes]] = {}
        self._flagged: dict[tuple[str, int, int], int] = {}
        self._drop_every: float | None = None
        self._drop_handle: asyncio.TimerHandle | None = None
        self.last_message_at = 0.0  # loop time of the last whole message
        self._acked_at: defaultdict[str, list[float]] = defaultdict(list)  # bind system_type -> loop times of MOs acked 0
        self.last_activity_at = 0.0  # loop time of the last PDU from any ESME
        self.loop: asyncio.AbstractEventLoop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None

    # -- lifecycle (thread-safe) -----------------------------------------------------------------------
    def start(self) -> int:
        """Listen and start the loop thread; returns the port."""
        started = threading.Event()
        err: list[BaseException] = []

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self._server = self.loop.run_until_complete(
                    self.loop.create_server(lambda: self.session_class(self), self.host, self.port, reuse_address=True))
                self.port = self._server.sockets[0].getsockname()[1]
                self._last_tick = self.loop.time()
                self.loop.call_soon(self._tick)
            except BaseException as e:  # noqa: BLE001 - reported to start()
                err.append(e)
                started.set()
                return
            started.set()
            self.loop.run_forever()
            # stopped: close what is left
            for s in list(self.sessions):
                s.abort()
            if self._server is not None:
                self._server.close()
            self.loop.run_until_complete(asyncio.sleep(0))
            self.loop.close()

        self._thread = threading.Thread(target=main, name="chaos-smsc", daemon=True)
        self._thread.start()
        started.wait(10)
        if err:
            raise err[0]
        return self.port

    def stop(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def call(self, fn: Any, *args: Any, timeout: float = 30.0) -> Any:
        """Run fn(*args) on the loop thread and return its result."""
        async def run() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    # -- control (thread-safe) -------------------------------------------------------------------------
    def start_traffic(self) -> None:
        self.call(self._start_traffic)

    def stop_traffic(self) -> None:
        self.call(setattr, self, "generating", False)

    def drop_links(self) -> int:
        return self.call(self._drop_links)

    def set_drop_every(self, seconds: float | None) -> None:
        self.call(self._set_drop_every, seconds)

    def bound(self) -> dict[str, int]:
        return self.call(lambda: dict(Counter(s.kind for s in self.sessions if s.kind and not s.closing)))

    def first_acks_after(self, at: float, names: list[str]) -> dict[str, float | None]:
        """For each bind `system_type` in `names`: when (the loop's clock: `time.monotonic`) it first
        acknowledged an MO with status 0 at or after `at` (its effect and reply stored), None if never."""
        def first() -> dict[str, float | None]:
            out: dict[str, float | None] = {}
            for name in names:
                times = self._acked_at.get(name, [])
                i = bisect.bisect_left(times, at)
                out[name] = times[i] if i < len(times) else None
            return out
        return self.call(first)

    def progress(self) -> dict[str, Any]:
        """Cheap figures for waiting: MOs not done, in flight, queued for redelivery, idle times."""
        return self.call(self._progress)

    def results(self) -> dict[str, Any]:
        """Totals, the reminder counts and each subscriber's MOs (for the model)."""
        return self.call(self._results, timeout=120)

    # -- loop-thread internals -------------------------------------------------------------------------
    def _start_traffic(self) -> None:
        self.generating = True
        self._last_tick = self.loop.time()
        self.tokens = 0.0
        for sub in self.subs.values():
            if sub.cur is None and sub.pos < 0:
                self._ready_add(sub)

    def _ready_add(self, sub: Sub) -> None:
        sub.pos = len(self.ready)
        self.ready.append(sub)

    def _ready_pop_random(self) -> Sub:
        i = self.rng.randrange(len(self.ready))
        sub, last = self.ready[i], self.ready.pop()
        if last is not sub:
            self.ready[i] = last
            last.pos = i
        sub.pos = -1
        return sub

    def _set_drop_every(self, seconds: float | None) -> None:
        if self._drop_handle is not None:
            self._drop_handle.cancel()
            self._drop_handle = None
        self._drop_every = seconds
        if seconds:
            self._drop_handle = self.loop.call_later(seconds, self._drop_tick)

    def _drop_tick(self) -> None:
        self._drop_links()
        if self._drop_every:
            self._drop_handle = self.loop.call_later(self._drop_every, self._drop_tick)

    def _drop_links(self) -> int:
        n = 0
        for s in list(self.sessions):
            if s.kind and not s.closing:
                s.drop(self.drop_mode)
                self.c.link_drops += 1
                n += 1
        return n

    def _session_gone(self, s: Session) -> None:
        """A link ended (dropped by us or lost): its unacknowledged MOs go out again on the next bind."""
        now = self.loop.time()
        for mo in s.inflight.values():
            mo.session = None
            heapq.heappush(self._redeliver, (now, next(self._tie), mo))
        s.inflight.clear()
        s.kind = None

    def _progress(self) -> dict[str, Any]:
        now = self.loop.time()
        waiting = sum(1 for sub in self.subs.values() if sub.cur is not None)
        return {
            "waiting": waiting,
            "unacked": sum(1 for sub in self.subs.values() if sub.cur is not None and not sub.cur.acked
                           and not sub.cur.rejected),
            "inflight": sum(len(s.inflight) for s in self.sessions),
            "redeliver_queued": len(self._redeliver),
            "mos": self.c.mos, "acked": self.c.acked, "replies": self.c.replies, "reminders": self.c.reminders,
            "replies_twice": self.c.replies_twice, "idle_s": now - self.last_message_at if self.last_message_at else None,
            "bound": sum(1 for s in self.sessions if s.kind and not s.closing),
        }

    def _results(self) -> dict[str, Any]:
        subs = {}
        for m, sub in self.subs.items():
            if sub.mos:
                subs[m] = [(mo.text, mo.acked, mo.rejected, mo.answered, mo.first_sent_wall, mo.acked_wall)
                           for mo in sub.mos]
        totals = dict(self.c.__dict__)
        totals["unanswered"] = sum(1 for sub in self.subs.values() for mo in sub.mos if not mo.rejected and not mo.answered)
        totals["unacked"] = sum(1 for sub in self.subs.values() for mo in sub.mos if not mo.rejected and not mo.acked)
        totals["orphan_parts"] = sum(len(p) for p in self._parts.values())
        totals["submits_twice"] = self.c.parts_twice + self.c.dup_message_parts
        return {"totals": totals, "reminders": dict(self.reminders), "subscribers": subs,
                "unexpected": dict(self.unexpected),
                "wrong_examples": list(self.wrong_examples), "duplicates": list(self.duplicates),
                "temp_errors_at": list(self.temp_errors_at),
                "unanswered_examples": [
                    {"to": sub.msisdn, "mo": mo.k, "text": mo.text, "acked": mo.acked, "sends": mo.sends}
                    for sub in self.subs.values() for mo in sub.mos if not mo.rejected and not mo.answered][:10]}

    def _tick(self) -> None:
        now = self.loop.time()
        try:
            self._pump(now)
        finally:
            self.loop.call_later(TICK_S, self._tick)

    def _receivers(self) -> list[Session]:
        return [s for s in self.sessions if s.rx and len(s.inflight) < self.mo_window]

    def _pump(self, now: float) -> None:
        dt, self._last_tick = now - self._last_tick, now
        rx = self._receivers()
        if self.generating and rx:
            self.tokens = min(self.tokens + self.rate * dt, max(1.0, self.rate * 0.05))
        if not rx:
            return
        touched: set[Session] = set()
        heap = self._redeliver
        while heap and heap[0][0] <= now and rx:
            _, _, mo = heapq.heappop(heap)
            if mo.acked or mo.rejected:
                continue
            self._send_mo(self._pick(rx), mo, touched)
            rx = [s for s in rx if len(s.inflight) < self.mo_window]
        while self.generating and self.tokens >= 1.0 and self.ready and rx:
            sub = self._ready_pop_random()
            k = len(sub.mos)
            text = self.conv.next_text(sub.msisdn, k)
            mo = Mo(sub, k, text, self.conv.expect(sub.msisdn, text))
            sub.mos.append(mo)
            sub.cur = mo
            self.c.mos += 1
            self.tokens -= 1.0
            self._send_mo(self._pick(rx), mo, touched)
            rx = [s for s in rx if len(s.inflight) < self.mo_window]
        for s in touched:
            s.flush()

    def _pick(self, rx: list[Session]) -> Session:
        self._rr += 1
        return rx[self._rr % len(rx)]

    def _send_mo(self, s: Session, mo: Mo, touched: set[Session]) -> None:
        seq = next(self._seq) & 0x7FFFFFFF or 1
        if mo.sends == 0:
            mo.first_sent = self.loop.time()
            mo.first_sent_wall = time.time()
        else:
            self.c.redeliveries += 1
        mo.sends += 1
        mo.session = s
        s.inflight[seq] = mo
        self.c.deliveries += 1
        s.send(self._mo_pdu(s, seq, mo))
        touched.add(s)

    def _mo_pdu(self, s: Session, seq: int, mo: Mo) -> bytes:
        """The PDU that delivers `mo` (a subclass speaking another protocol writes its own)."""
        return pdu(DELIVER_SM, 0, seq, deliver_sm_body(mo.sub.msisdn, self.short_code, mo.text, mo.umr))

    def _release(self, sub: Sub) -> None:
        mo = sub.cur
        if mo is not None and mo.done:
            sub.cur = None
            if sub.pos < 0:
                self._ready_add(sub)

    # -- PDUs from an ESME ----------------------------------------------------------------------------
    def _handle(self, s: Session, cmd: int, status: int, seq: int, body: bytes) -> None:
        self.last_activity_at = self.loop.time()
        if cmd in BINDS:
            self._bind(s, cmd, seq, body)
        elif cmd == DELIVER_SM | RESP or cmd == GENERIC_NACK:
            if cmd == GENERIC_NACK:
                self.c.generic_nacks += 1
                status = status or ESME_RSYSERR
            mo = s.inflight.pop(seq, None)
            if mo is not None:
                mo.session = None
                acked = mo.acked
                self._mo_resp(mo, status)
                if mo.acked and not acked:
                    self._acked_at[s.system_type].append(self.loop.time())
        elif cmd == SUBMIT_SM:
            if not s.tx:
                self.c.submits_refused += 1
                s.send(pdu(SUBMIT_SM | RESP, ESME_RINVBNDSTS, seq))
                return
            try:
                sm = parse_sm(body)
            except ValueError:
                self.c.malformed += 1
                s.send(pdu(SUBMIT_SM | RESP, 0x01, seq))  # ESME_RINVMSGLEN
                return
            self.c.submits += 1
            s.send(pdu(SUBMIT_SM | RESP, ESME_ROK, seq, b"%x\0" % next(self._msgid)))
            self._submitted(sm)
        elif cmd == ENQUIRE_LINK:
            self.c.enquire_links += 1
            s.send(pdu(ENQUIRE_LINK | RESP, ESME_ROK, seq))
        elif cmd == UNBIND:
            s.send(pdu(UNBIND | RESP, ESME_ROK, seq))
            s.flush()
            s.closing = True
            self._session_gone(s)
            if s.transport is not None:
                s.transport.close()
        elif cmd & RESP:
            pass  # enquire_link_resp, unbind_resp, ...
        else:
            s.send(pdu(GENERIC_NACK, ESME_RINVCMDID, seq))

    def _bind(self, s: Session, cmd: int, seq: int, body: bytes) -> None:
        if s.kind is not None:
            s.send(pdu(cmd | RESP, ESME_RALYBND, seq))
            return
        try:
            sysid, off = _cstr(body, 0)
            pwd, off = _cstr(body, off)
            system_type, off = _cstr(body, off)
        except ValueError:
            self.c.bind_refused += 1
            s.send(pdu(cmd | RESP, ESME_RBINDFAIL, seq))
            return
        if self.system_id is not None and sysid.decode("latin-1") != self.system_id:
            self.c.bind_refused += 1
            s.send(pdu(cmd | RESP, ESME_RINVSYSID, seq))
            return
        if self.password is not None and pwd.decode("latin-1") != self.password:
            self.c.bind_refused += 1
            s.send(pdu(cmd | RESP, ESME_RINVPASWD, seq))
            return
        s.kind = BINDS[cmd]
        s.system_type = system_type.decode("latin-1")
        self.c.binds += 1
        s.send(pdu(cmd | RESP, ESME_ROK, seq, b"chaos\0" + _TLV.pack(TLV_SC_INTERFACE_VERSION, 1) + b"\x34"))

    def _mo_resp(self, mo: Mo, status: int) -> None:
        if mo.acked or mo.rejected:
            return
        if status == ESME_ROK:
            mo.acked = True
            mo.acked_at = self.loop.time()
            mo.acked_wall = time.time()
            self.c.acked += 1
            self._release(mo.sub)
        elif status in TEMPORARY:
            self.c.temp_errors += 1
            self.temp_errors_at.append(time.time())
            heapq.heappush(self._redeliver, (self.loop.time() + self.retry_delay, next(self._tie), mo))
        else:
            mo.rejected = True
            self.c.rejected += 1
            self._release(mo.sub)

    def _submitted(self, sm: ShortMessage) -> None:
        data, seg = split_concat(sm)
        dest = sm.destination
        if seg is None or seg[1] <= 1:
            self._message(dest, decode_text(sm.data_coding, data))
            return
        ref, total, seq = seg
        key = (dest, ref, total)
        done = self._done_parts.get(key)
        if done is not None and done.get(seq) == data:
            self.c.parts_twice += 1
            self._flagged[key] = self._flagged.get(key, 0) + 1
        parts = self._parts.setdefault(key, {})
        parts[seq] = (sm.data_coding, data)
        if len(parts) == total and all(i in parts for i in range(1, total + 1)):
            del self._parts[key]
            flagged = self._flagged.pop(key, 0)
            self._done_parts[key] = {i: parts[i][1] for i in parts}
            if len(self._done_parts) > 100_000:
                self._done_parts.pop(next(iter(self._done_parts)))
            dc = parts[1][0]
            self._message(dest, decode_text(dc, b"".join(parts[i][1] for i in range(1, total + 1))), total, flagged)

    def _message(self, dest: str, text: str, parts: int = 1, flagged: int = 0) -> None:
        """A whole message. `parts`: its submit_sm count; `flagged`: how many of them were already
        counted in parts_twice (so a duplicate message adds only the rest to the submits sent twice)."""
        c = self.c
        c.messages += 1
        self.last_message_at = self.loop.time()
        key = self.conv.reminder_key(text)
        if key is not None:
            c.reminders += 1
            self.reminders[(dest, key)] += 1
            if self.reminders[(dest, key)] > 1:
                c.dup_message_parts += parts - flagged
                self._dup_at(dest, "reminder")
            return
        sub = self.subs.get(dest)
        if sub is None:
            c.unexpected_messages += 1
            self.unexpected[text[:60]] += 1
            return
        c.replies += 1
        sub.replies += 1
        mo = sub.cur
        if mo is not None and not mo.answered and not mo.rejected:
            if self.conv.matches(mo.expected, text):
                self._answer(sub, mo, text, wrong=False)
                return
            if text not in sub.seen:
                self._answer(sub, mo, text, wrong=True)
                return
        sub.twice += 1
        c.replies_twice += 1
        c.dup_message_parts += parts - flagged
        if sub.last is not None and sub.last.sends > 1:
            c.replies_twice_redelivered += 1
            c.redelivered_copy_submits += parts
        self._dup_at(dest, "reply")
        sub.seen.add(text)

    def _dup_at(self, dest: str, kind: str) -> None:
        if len(self.duplicates) < 20_000:
            self.duplicates.append((self.loop.time(), kind, dest))

    def _answer(self, sub: Sub, mo: Mo, text: str, wrong: bool) -> None:
        mo.answered = True
        mo.answered_at = self.loop.time()
        mo.wrong = wrong
        sub.answered += 1
        sub.last = mo
        self.c.answered += 1
        if wrong:
            sub.wrong += 1
            self.c.wrong_replies += 1
            if len(self.wrong_examples) < 10:
                self.wrong_examples.append({"to": sub.msisdn, "mo": mo.k, "mo_text": mo.text,
                                            "expected": repr(mo.expected), "got": text[:120]})
        sub.seen.add(text)
        self._release(sub)
