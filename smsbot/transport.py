"""The SMPP session: bind (smpplib), our own read loop, batching, enquire_link, reconnect.

smpplib binds (its Client does connect + bind_* + checks the resp, with our sequence generator);
after that this module owns the socket, because smpplib's `listen()` cannot be stopped, dies on a
handler exception, reads one PDU with two blocking reads and writes each PDU with its own
`sendall`. One loop iteration:

1. wait (select) until a link is readable or a timer is due;
2. read everything the socket has, frame and decode every complete PDU (`smsbot.pdu`);
3. hand all MOs of the read to the dispatcher: ONE Redis round trip for the whole batch;
4. write every deliver_sm_resp of the batch and every submit_sm the outbox may send, in ONE
   `sendall` per link.

A deliver_sm is answered only after its effect and reply are stored (or with ESME_RX_T_APPN when
Redis is unreachable). A malformed deliver_sm gets ESME_RX_P_APPN; vendor TLVs are skipped; a
handler exception is logged and answered with a temporary error; the loop never dies of one MO.
The link is declared dead when enquire_link or submit_sm responses are overdue; then we
reconnect with exponential backoff and jitter, and unanswered submit_sm go out again.
"""

from __future__ import annotations

import random
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import smpplib.client
import smpplib.exceptions

from smsbot import codec, log, pdu
from smsbot.config import BindMode, Settings
from smsbot.dispatch import Dispatcher, PreparedBatch
from smsbot.messages import CommandId, Inbound, Receipt, Status
from smsbot.outbox import OutboxSender, SequenceGenerator
from smsbot.store import KeyWrite, Store

_log = log.get("smsbot.transport")
READ_CHUNK = 262144
OUTBOX_POLL_S = 0.25
CLAIM_EVERY_S = 5.0
CLAIM_MIN_IDLE_MS = 300_000  # safety net for a live but stuck sender; dead ones are found by heartbeat
ORPHAN_AGE_MS = 10_000  # an outbox entry this old whose sender has no heartbeat is moved to the queue
HEARTBEAT_EVERY_S = 5.0
MAX_IN_FLIGHT = 2  # Redis round trips in flight at once (each on its own pooled connection)
# MOs per round trip at most: under sustained load Redis works on one batch while the bot finishes
# the other; 50 kept both busy best on the benchmark (100: each waited longer for the other)
BATCH_MAX = 50
SPLIT_FROM = 8  # with nothing in flight, this many ready MOs are split into two batches
HEARTBEAT_TTL_S = 15
ACK_FLUSH_S = 0.05
ACKS_PER_FLUSH = 512


class LinkDown(Exception):
    """The SMSC went away or stopped answering."""


@dataclass(eq=False)
class Link:
    """One bound socket: receiver, transmitter or both."""

    sock: socket.socket
    client: smpplib.client.Client
    can_receive: bool
    can_transmit: bool
    framer: pdu.Framer = field(default_factory=pdu.Framer)
    out: list[bytes] = field(default_factory=list)
    last_rx: float = field(default_factory=time.monotonic)
    enquire_sent_at: float | None = None

    def fileno(self) -> int:
        return self.sock.fileno()


@dataclass
class _PendingBatch:
    """A batch whose Redis round trip is in flight."""

    batch: PreparedBatch
    inbound: list[tuple[Inbound, Link]]
    receipts: list[tuple[Receipt, int, Link]]
    acks: list[tuple[str, str]]
    writes: list[KeyWrite]
    started: float


class Transport:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        dispatcher: Dispatcher,
        sender: OutboxSender,
        sequences: SequenceGenerator,
        stop: threading.Event,
        instance: str,
        on_batch: Callable[..., None] | None = None,
        on_receipt: Callable[..., None] | None = None,
    ):
        self.settings = settings
        self.store = store
        self.dispatcher = dispatcher
        self.sender = sender
        self.sequences = sequences
        self.stop = stop
        self.force_stop = threading.Event()
        self.instance = instance
        self.on_batch = on_batch
        self.on_receipt = on_receipt
        self.on_bound: Callable[[bool], None] | None = None
        self.on_reload: Callable[[], bool] | None = None
        self.reload_requested = threading.Event()
        self._receipts: list[tuple[Receipt, int, Link]] = []
        self._deferred: list[tuple[Inbound, Link]] = []
        self._pending: list[_PendingBatch] = []  # round trips in flight, oldest first
        self._stalled = False  # the ready MOs all belong to subscribers with a batch in flight
        self.links: list[Link] = []
        self.bound = threading.Event()
        self.reconnects = 0
        self._next_poll = 0.0
        self._acks_flushed_at = 0.0
        self._next_claim = 0.0
        self._redis_down_since: float | None = None
        self._next_heartbeat = 0.0

    # -- lifecycle -------------------------------------------------------------------------------
    def run(self) -> None:
        """Bind, serve, rebind on failure, until `stop` is set; then drain and unbind."""
        delay = self.settings.smsc.reconnect_initial
        while not self.stop.is_set():
            try:
                self._bind_all()
                delay = self.settings.smsc.reconnect_initial
                self._serve()
            except (LinkDown, OSError, smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError) as e:
                _log.warning("smsc_link_down", error=str(e) or type(e).__name__)
            except Exception as e:  # a bug must not end the process: log it, rebind, carry on
                _log.exception("transport_error", error=repr(e))
            finally:
                self._close_all()
            if self.stop.is_set():
                break
            self.reconnects += 1
            wait = min(self.settings.smsc.reconnect_max, delay) * random.uniform(0.5, 1.0)
            _log.info("smsc_reconnect_wait", seconds=round(wait, 2))
            self.stop.wait(wait)
            delay = min(self.settings.smsc.reconnect_max, delay * 2)

    def _bind_all(self) -> None:
        s = self.settings.smsc
        if s.bind_mode is BindMode.TRANSCEIVER:
            self.links = [self._bind("bind_transceiver", True, True)]
        else:
            self.links = [self._bind("bind_receiver", True, False), self._bind("bind_transmitter", False, True)]
        self._next_heartbeat = 0.0
        self._heartbeat(time.monotonic())  # before the first XREADGROUP, so no sibling takes us for dead
        self.bound.set()
        if self.on_bound is not None:
            self.on_bound(True)
        resent = self.sender.requeue_inflight()
        _log.info("smsc_bound", host=s.host, port=s.port, mode=s.bind_mode.value, system_id=s.system_id, requeued=resent)

    def _bind(self, how: str, rx: bool, tx: bool) -> Link:
        s = self.settings.smsc
        ctx = None
        if s.tls:
            ctx = ssl.create_default_context()
            if not s.tls_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
        client = smpplib.client.Client(
            s.host, s.port, timeout=s.response_timeout, sequence_generator=self.sequences,
            logger_name="smpplib.client", ssl_context=ctx, allow_unknown_opt_params=True,
        )
        client.connect()
        try:
            getattr(client, how)(system_id=s.system_id, password=s.password, system_type=s.system_type)
        except smpplib.exceptions.PDUError as e:
            client.disconnect()
            raise LinkDown(f"{how} refused: {e.args[0]}") from None
        except BaseException:
            client.disconnect()
            raise
        sock = client._socket
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return Link(sock=sock, client=client, can_receive=rx, can_transmit=tx)

    @property
    def _high_water(self) -> int:
        """Queued parts beyond which no more MOs are dispatched until the SMSC takes replies."""
        return 2 * self.settings.smsc.window + 16

    @property
    def _batch_cap(self) -> int:
        return BATCH_MAX

    def _close_all(self) -> None:
        if self._pending:
            # its effects are (being) stored: keep its replies; its resps are lost with the link,
            # so the SMSC redelivers those MOs and the redelivery guard answers them as duplicates
            self._complete_pending()
        for link in self.links:
            link.out.clear()
        self._deferred = []  # never acknowledged: the SMSC delivers them again
        if self.bound.is_set() and self.on_bound is not None:
            self.on_bound(False)
        self.bound.clear()
        for link in self.links:
            try:
                link.client.state = smpplib.consts.SMPP_CLIENT_STATE_OPEN
                link.client.disconnect()
            except Exception:  # closing a broken socket: nothing more to do
                pass
        self.links = []

    # -- the loop --------------------------------------------------------------------------------
    def _serve(self) -> None:
        s = self.settings.smsc
        while True:
            if self.stop.is_set():
                self._complete_pending()
                self._flush()
                self._drain_and_unbind()
                return
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                if self.on_reload is not None:
                    self.on_reload()
                s = self.settings.smsc
            waiting = [p.batch.roundtrip for p in self._pending if p.batch.roundtrip is not None and not p.batch.roundtrip.done]
            startable = len(self._pending) < MAX_IN_FLIGHT and self._ready_to_start() and not self._stalled
            if any(rt.buffered() for rt in waiting) or startable:
                timeout = 0.0
            else:
                timeout = self._select_timeout()
            readable, _, _ = select.select(self.links + waiting, [], [], timeout)
            now = time.monotonic()
            for link in readable:
                if isinstance(link, Link):
                    self._read(link, now, self._deferred)
                    self._stalled = False
            answered = False
            for p in list(self._pending):
                rt = p.batch.roundtrip
                if rt is not None and (rt.done or rt in readable or rt.buffered()):
                    self._poll_pending(p)
                    answered = True
            if answered and len(self._deferred) < SPLIT_FROM:
                # A small window: the SMSC sends nothing new until it has these resps and replies, so
                # they go out before the next batch is prepared (+10-15% at window 10). Under a
                # flood (many MOs ready) one write per loop turn is cheaper.
                self._send_outbox()
                self._flush()
            # Pipelining: while Redis works on a batch the loop keeps reading the SMSC and may send
            # a second batch; replies go out as each batch is answered.
            while len(self._pending) < MAX_IN_FLIGHT and self._ready_to_start():
                if not self._start_batch():
                    self._stalled = True  # what waits belongs to subscribers in flight: no busy loop
                    break
            if now >= self._next_poll:  # also under load: reminders and alerts must not starve
                self._poll_outbox(now)
            self._timers(now, s)
            self._send_outbox()
            self._flush()

    def _ready_to_start(self) -> bool:
        # Flow control: replies not yet handed to the SMSC above the high-water mark hold further
        # MOs back (read, not yet acknowledged, so the SMSC's window fills and it waits).
        return bool(self._receipts or (self._deferred and self.sender.backlog <= self._high_water))

    def _select_timeout(self) -> float:
        t = max(0.0, min(self._next_poll, self._next_claim) - time.monotonic())
        w = self.sender.next_wakeup()
        if w is not None:
            t = min(t, w)
        for link in self.links:
            if isinstance(link.sock, ssl.SSLSocket) and link.sock.pending():
                return 0.0
        return min(t, 0.5)

    def _read(self, link: Link, now: float, inbound: list[tuple[Inbound, Link]]) -> None:
        try:
            data = link.sock.recv(READ_CHUNK)
        except (BlockingIOError, ssl.SSLWantReadError, socket.timeout):
            return
        except OSError as e:
            raise LinkDown(f"recv failed: {e}") from None
        if not data:
            raise LinkDown("SMSC closed the connection")
        link.last_rx = now
        link.enquire_sent_at = None
        try:
            frames = link.framer.feed(data)
        except pdu.FramingError as e:
            raise LinkDown(f"unframeable stream: {e}") from None
        for command_id, status, seq, body in frames:
            self._on_pdu(link, command_id, status, seq, body, inbound)

    def _on_pdu(self, link: Link, command_id: int, status: int, seq: int, body: bytes, inbound: list[tuple[Inbound, Link]]) -> None:
        if command_id == CommandId.DELIVER_SM:
            try:
                d = pdu.decode_deliver_sm(seq, body)
            except pdu.PduError as e:
                _log.error("deliver_sm_malformed", error=str(e), length=len(body))
                link.out.append(pdu.encode_deliver_sm_resp(seq, Status.RX_P_APPN))
                return
            if d.is_receipt:
                receipt = codec.parse_receipt(d)
                if receipt is None:
                    _log.warning("delivery_receipt_unparsable", length=len(d.payload))
                    link.out.append(pdu.encode_deliver_sm_resp(seq, Status.ROK))
                    return
                self._receipts.append((receipt, seq, link))
                return
            try:
                inbound.append((codec.inbound_from_deliver_sm(d), link))
            except Exception as e:  # decoding never should raise; if it does, ask for a redelivery
                _log.error("deliver_sm_undecodable", error=repr(e))
                link.out.append(pdu.encode_deliver_sm_resp(seq, Status.RX_T_APPN))
        elif command_id == CommandId.SUBMIT_SM_RESP:
            try:
                mid = pdu.decode_submit_sm_resp(body) if status == 0 else ""
            except pdu.PduError:
                mid = ""
            if not self.sender.on_submit_resp(seq, status, mid):
                _log.warning("submit_sm_resp_unmatched", sequence=seq, status=hex(status))
        elif command_id == CommandId.ENQUIRE_LINK:
            link.out.append(pdu.encode_header(CommandId.ENQUIRE_LINK_RESP, 0, seq))
        elif command_id == CommandId.ENQUIRE_LINK_RESP:
            link.enquire_sent_at = None
        elif command_id == CommandId.UNBIND:
            link.out.append(pdu.encode_header(CommandId.UNBIND_RESP, 0, seq))
            self._flush()
            raise LinkDown("SMSC sent unbind")
        elif command_id == CommandId.GENERIC_NACK:
            if not self.sender.on_submit_resp(seq, status or Status.RSYSERR, ""):
                _log.warning("generic_nack", sequence=seq, status=hex(status))
        elif command_id & 0x80000000:
            pass  # responses we do not wait for (unbind_resp outside drain, data_sm_resp, ...)
        else:
            _log.warning("pdu_unsupported", command_id=hex(command_id))
            link.out.append(pdu.encode_header(CommandId.GENERIC_NACK, Status.RINVCMDID, seq))

    def _start_batch(self) -> bool:
        """One Redis round trip for a batch of MOs, receipts, outbox acks and MT records: sent now,
        answered in `_finish_batch` when Redis replies."""
        started = time.monotonic()
        cap = self._batch_cap if self.sender.backlog <= self._high_water else 0
        if not self._pending and len(self._deferred) >= SPLIT_FROM:
            cap = min(cap, (len(self._deferred) + 1) // 2)  # two halves in flight overlap with the SMSC
        # a subscriber with an MO in a batch still in flight waits for it: batches travel on
        # different connections, and one subscriber's MOs must be applied in order
        if not self._pending:
            inbound, self._deferred = self._deferred[:cap], self._deferred[cap:]
        else:
            busy = {mo.msisdn for p in self._pending for mo, _ in p.inbound}
            inbound, keep = [], []
            deferred = self._deferred
            for i, item in enumerate(deferred):
                if len(inbound) >= cap:
                    keep.extend(deferred[i:])
                    break
                (keep if item[0].msisdn in busy else inbound).append(item)
            self._deferred = keep
        if not inbound and not self._receipts:
            return False
        # Sent replies are XDELed from the outbox in a later round trip, but not in every one: one
        # XDEL per stream carrying many ids costs Redis less than one per small batch. They wait at
        # most ACK_FLUSH_S (an unacked entry is only ever adopted after ORPHAN_AGE_MS); MT records
        # go in the next round trip (a delivery receipt may follow its submit_sm_resp at once).
        sender = self.sender
        if sender.has_writes or sender.pending_count >= ACKS_PER_FLUSH or started - self._acks_flushed_at >= ACK_FLUSH_S:
            acks, writes = self.sender.take_pending()
            self._acks_flushed_at = started
        else:
            acks, writes = [], []
        receipts, self._receipts = self._receipts, []
        ttl = self.settings.dispatch.mt_record_seconds
        receipt_writes = [
            KeyWrite(self.store.keys.mt_receipt(r.message_id), {"state": r.state, "err": r.error, "receipt_at": str(int(time.time() * 1000))}, ttl)
            for r, _seq, _link in receipts
        ]
        try:
            batch = self.dispatcher.prepare([mo for mo, _ in inbound], acks, writes + receipt_writes)
            self.dispatcher.start(batch)
        except Exception as e:  # never let one batch kill the loop; the SMSC will redeliver
            self._batch_failed(e, inbound, receipts, acks, writes)
            return True
        pending = _PendingBatch(batch, inbound, receipts, acks, writes, started)
        self._pending.append(pending)
        if batch.roundtrip is None or batch.roundtrip.done:
            self._finish_batch(pending)
        return True

    def _batch_failed(self, error: Exception, inbound: list[tuple[Inbound, Link]], receipts: list[tuple[Receipt, int, Link]],
                      acks: list[tuple[str, str]], writes: list[KeyWrite]) -> None:
        """A bug in handling a batch: log it, keep the outbox acks for later, ask the SMSC to redeliver."""
        _log.exception("dispatch_failed", error=repr(error))
        self.sender.restore_pending(acks, writes)
        for mo, link in inbound:
            link.out.append(pdu.encode_deliver_sm_resp(mo.sequence, Status.RX_T_APPN))
        for _r, seq, link in receipts:
            link.out.append(pdu.encode_deliver_sm_resp(seq, Status.RX_T_APPN))

    def _poll_pending(self, p: _PendingBatch) -> None:
        assert p.batch.roundtrip is not None
        try:
            if p.batch.roundtrip.done or p.batch.roundtrip.poll():
                p.batch.raw = p.batch.roundtrip.replies
                self._finish_batch(p)
        except (OSError, Exception) as e:  # Redis failed mid-batch: temporary error for its MOs
            p.batch.error = e
            self._finish_batch(p)

    def _complete_pending(self) -> None:
        """Wait for the batches in flight (stop, lost link): their effects are stored; never drop their replies."""
        for p in list(self._pending):
            rt = p.batch.roundtrip
            if rt is not None and not rt.done:
                try:
                    p.batch.raw = rt.wait()
                except Exception as e:
                    p.batch.error = e
            elif rt is not None:
                p.batch.raw = rt.replies
            self._finish_batch(p)

    def _finish_batch(self, p: _PendingBatch) -> None:
        self._pending.remove(p)
        self._stalled = False
        inbound, receipts, acks, writes = p.inbound, p.receipts, p.acks, p.writes
        try:
            result = self.dispatcher.finish(p.batch)
        except Exception as e:  # never let one batch kill the loop; the SMSC will redeliver
            self._batch_failed(e, inbound, receipts, acks, writes)
            return
        if not result.acks_flushed:
            self.sender.restore_pending(acks, writes)
        receipt_status = Status.ROK if result.acks_flushed else Status.RX_T_APPN
        for r, seq, link in receipts:
            link.out.append(pdu.encode_deliver_sm_resp(seq, receipt_status))
            if self.on_receipt is not None and result.acks_flushed:
                self.on_receipt(r)
        elapsed = time.monotonic() - p.started
        for (mo, link), oc in zip(inbound, result.outcomes):
            link.out.append(pdu.encode_deliver_sm_resp(mo.sequence, oc.status))
        if self.on_batch is not None and inbound:
            self.on_batch(result.outcomes, elapsed)
        self.sender.enqueue(result.entries)

    def _poll_outbox(self, now: float) -> None:
        """Pick up queue entries (reminders, alerts, replies of a dead instance); flush acks; adopt orphans."""
        self._next_poll = now + OUTBOX_POLL_S
        try:
            acks, writes = self.sender.take_pending()
            if acks or writes:
                try:
                    self.store.ack(acks, writes)
                except Exception:
                    self.sender.restore_pending(acks, writes)
                    raise
            if self.sender.backlog < self.settings.smsc.window * 10:
                self.sender.enqueue(self.store.read_outbox(self.dispatcher.consumer, count=100))
            if now >= self._next_claim:
                self._next_claim = now + CLAIM_EVERY_S
                self.store.adopt_orphans(self.dispatcher.consumer, ORPHAN_AGE_MS)
                self.sender.enqueue(self.store.claim_from_dead(self.dispatcher.consumer))
                self.sender.enqueue(self.store.claim_stale(self.dispatcher.consumer, CLAIM_MIN_IDLE_MS))
            if self._redis_down_since is not None:
                _log.info("redis_reachable_again", down_seconds=round(now - self._redis_down_since, 1))
                self._redis_down_since = None
        except Exception as e:
            if self._redis_down_since is None:
                self._redis_down_since = now
                _log.warning("outbox_poll_failed", error=str(e))

    def _heartbeat(self, now: float) -> None:
        if now < self._next_heartbeat:
            return
        self._next_heartbeat = now + HEARTBEAT_EVERY_S
        try:
            self.store.heartbeat(self.instance, HEARTBEAT_TTL_S)
        except Exception as e:
            _log.debug("heartbeat_failed", error=str(e))

    def _timers(self, now: float, s) -> None:
        self._heartbeat(now)
        for link in self.links:
            if link.enquire_sent_at is not None:
                if now - link.enquire_sent_at > s.response_timeout:
                    raise LinkDown("enquire_link unanswered")
            elif now - link.last_rx > s.enquire_link_interval:
                link.enquire_sent_at = now
                link.out.append(pdu.encode_header(CommandId.ENQUIRE_LINK, 0, self.sequences.next_sequence()))
        if self.sender.expired(s.response_timeout):
            raise LinkDown("submit_sm_resp overdue")

    def _send_outbox(self) -> None:
        pdus = self.sender.take()
        if pdus:
            tx = next(link for link in self.links if link.can_transmit)
            tx.out.extend(pdus)

    def _flush(self) -> None:
        for link in self.links:
            if link.out:
                data = b"".join(link.out)
                link.out.clear()
                try:
                    link.sock.sendall(data)
                except OSError as e:
                    raise LinkDown(f"send failed: {e}") from None

    def _drain_and_unbind(self) -> None:
        """Stop reading MOs; send what the outbox holds within the drain timeout; unbind."""
        for mo, link in self._deferred:
            link.out.append(pdu.encode_deliver_sm_resp(mo.sequence, Status.RX_T_APPN))
        self._deferred = []
        deadline = time.monotonic() + (0 if self.force_stop.is_set() else self.settings.smsc.drain_timeout)
        while not self.sender.idle and time.monotonic() < deadline and not self.force_stop.is_set():
            self._send_outbox()
            self._flush()
            readable, _, _ = select.select(self.links, [], [], 0.1)
            for link in readable:
                data = link.sock.recv(READ_CHUNK)
                if not data:
                    raise LinkDown("SMSC closed the connection during drain")
                for command_id, status, seq, body in link.framer.feed(data):
                    if command_id == CommandId.SUBMIT_SM_RESP:
                        self.sender.on_submit_resp(seq, status, pdu.decode_submit_sm_resp(body) if status == 0 else "")
                    elif command_id == CommandId.ENQUIRE_LINK:
                        link.out.append(pdu.encode_header(CommandId.ENQUIRE_LINK_RESP, 0, seq))
                    elif command_id == CommandId.DELIVER_SM:
                        # shutting down: ask the SMSC to deliver it again later (to us or a sibling)
                        link.out.append(pdu.encode_deliver_sm_resp(seq, Status.RX_T_APPN))
        acks, writes = self.sender.take_pending()
        try:
            self.store.ack(acks, writes)
        except Exception as e:
            _log.warning("final_ack_failed", error=str(e), pending=len(acks))
        for link in self.links:
            link.out.append(pdu.encode_header(CommandId.UNBIND, 0, self.sequences.next_sequence()))
        try:
            self._flush()
            end = time.monotonic() + 2.0
            waiting = set(self.links)
            while waiting and time.monotonic() < end:
                readable, _, _ = select.select(list(waiting), [], [], 0.1)
                for link in readable:
                    data = link.sock.recv(READ_CHUNK)
                    if not data:
                        waiting.discard(link)
                        continue
                    for command_id, _st, seq, _b in link.framer.feed(data):
                        if command_id == CommandId.UNBIND_RESP:
                            waiting.discard(link)
                        elif command_id == CommandId.DELIVER_SM:
                            link.out.append(pdu.encode_deliver_sm_resp(seq, Status.RX_T_APPN))
                self._flush()
        except (OSError, LinkDown):
            pass
        _log.info("smsc_unbound", unsent=self.sender.backlog + self.sender.inflight)
        try:  # our unsent entries are free for others at once, not after the heartbeat expires
            self.store.clear_heartbeat(self.instance)
        except Exception:
            pass
