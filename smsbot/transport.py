"""The transport: one thread that turns the links, the pipeline and delivery into a loop.

It owns the order of a loop turn and the lifecycle, nothing else — reading the links is
`smsbot.session`'s, writing them `smsbot.outgoing`'s, batching and round trips
`smsbot.pipeline`'s, who sends which reply `smsbot.delivery`'s, the submit window
`smsbot.outbox`'s. Values go one way: each stage returns what it produced and the transport hands
it to the next; no stage calls back. Each link has its write side (`Outgoing`, made when it is
bound), which the transport finds by the link a `ReplyTo` names. One turn:

1. wait (select) until a link or a Redis round trip is readable, or a timer is due;
2. read every readable link: what it returns (`Received`) goes on — MOs and receipts to the
   pipeline, submit_sm_resps to the sender, the answers it owes the peer to its write side, the
   sequences of our questions answered to its write side, whose confirmed redelivery guards go to
   the pipeline;
3. collect the round trips Redis answered: the pipeline returns their resps, which are queued on
   the write side of the links they came from (`ReplyTo`), and hands their replies to the sender;
4. start batches while the pipeline may; record accepted replies when they are due;
5. take what the worker of `delivery` read; queue the submit_sm the window and the lease allow;
6. each write side writes its queued PDUs in one `sendall` (with an enquire_link behind new resps:
   once the read side returns its answer, the SMSC has read them, and their guards may go).

`run` binds, serves, and on a dead link waits (exponential backoff with jitter) and binds again
until `stop` is set; then it drains the outbox for `smsc.drain_timeout` and unbinds. While
`suspended` is set (runtime control, `smsbot.control`) it drains and unbinds the same way, then
stays unbound until it is cleared.
"""

from __future__ import annotations

import random
import select
import threading
import time
from typing import Callable

from smsbot import log, outgoing
from smsbot.delivery import Delivery
from smsbot.live import Live
from smsbot.messages import Status
from smsbot.outbox import OutboxSender
from smsbot.pipeline import Pipeline, Resp
from smsbot.config import SmscSettings
from smsbot.outgoing import Outgoing
from smsbot.session import Link, LinkDown, Received, SequenceGenerator, open_links

_log = log.get("smsbot.transport")
MAX_WAIT_S = 0.5


class Transport:
    def __init__(
        self,
        live: Live,
        pipeline: Pipeline,
        delivery: Delivery,
        sender: OutboxSender,
        sequences: SequenceGenerator,
        stop: threading.Event,
        *,
        on_bound: Callable[[bool], None] | None = None,
        on_reload: Callable[[], bool] | None = None,
        suspended: threading.Event | None = None,
        connect: Callable[[SmscSettings, SequenceGenerator], list[Link]] = open_links,
        write_side: Callable[[Link, SequenceGenerator], Outgoing] = outgoing.for_link,
    ):
        """`on_bound`: told when the bind is made and lost (metrics); `on_reload`: runs a reload
        requested by `reload_requested`, between two loop turns; `suspended`: while set, drain,
        unbind and stay unbound; `connect`: opens the links of the configured protocol (SMPP
        binds, or a CMPP connection: `smsbot.cmpp_session.open_cmpp_links`); `write_side`: makes
        a bound link's write side (in the link's protocol)."""
        self.live = live
        self.pipeline = pipeline
        self.delivery = delivery
        self.sender = sender
        self.sequences = sequences
        self.stop = stop
        self.on_bound = on_bound
        self.on_reload = on_reload
        self.connect = connect
        self.write_side = write_side
        self.force_stop = threading.Event()
        self.reload_requested = threading.Event()
        self.suspended = suspended if suspended is not None else threading.Event()
        self.links: list[Link] = []
        self.outgoing: dict[Link, Outgoing] = {}  # each bound link's write side
        self.bound = threading.Event()
        self.reconnects = 0

    def describe(self) -> dict:
        """For the heartbeat (status pages): this instance's binds and what waits to be sent."""
        binds = [f"{link.name} {link.kind}" for link in list(self.links)]
        return {"bound": self.bound.is_set(), "binds": binds, "reconnects": self.reconnects,
                "outbox_backlog": self.sender.backlog, "outbox_inflight": self.sender.inflight}

    # -- what a link read, handed on ----------------------------------------------------------------------
    def _take(self, got: Received, out: Outgoing) -> None:
        """MOs and receipts to the pipeline, submit_sm_resps to the sender; our questions answered to
        the link's write side `out`, and the guards it confirms to the pipeline; what the link owes
        the peer to `out`; then LinkDown when the link died after them."""
        pipeline = self.pipeline
        for mo, reply in got.mos:
            pipeline.on_mo(mo, reply)
        for receipt, reply in got.receipts:
            pipeline.on_receipt(receipt, reply)
        self._submit_resps(got)
        if got.answered:
            pipeline.confirmed(out.answered(got.answered))
        self._owe(got, out)

    def _take_draining(self, got: Received, out: Outgoing) -> None:
        """While draining, MOs and receipts are refused for now (the SMSC delivers them again, to us
        later or to a sibling); submit_sm_resps still count."""
        for _x, reply in (*got.mos, *got.receipts):
            out.answer(reply, Status.RX_T_APPN)
        self._submit_resps(got)
        self._owe(got, out)

    @staticmethod
    def _owe(got: Received, out: Outgoing) -> None:
        """What the link owes the peer to its write side; LinkDown when the link died (the answer to
        the peer's goodbye is written first, if it can be)."""
        if got.owed or got.refused:
            out.owe(got.owed, got.refused)
        if got.down:
            if got.owed:
                try:
                    out.flush(time.monotonic())
                except LinkDown:
                    pass
            raise LinkDown(got.down)

    def _submit_resps(self, got: Received) -> None:
        on_submit_resp = self.sender.on_submit_resp
        for sequence, status, message_id in got.submit_resps:
            if not on_submit_resp(sequence, status, message_id):
                _log.warning("submit_sm_resp_unmatched", sequence=sequence, status=hex(status))

    def _answer(self, resps: list[Resp]) -> None:
        """Queue each resp the pipeline returned on the write side of the link its MO or receipt
        came from (a link gone since: the resp is lost with it, and its guard stays)."""
        outgoing = self.outgoing
        for reply, status, guard in resps:
            out = outgoing.get(reply.link)
            if out is not None:
                out.answer(reply, status, guard)

    # -- lifecycle -------------------------------------------------------------------------------------
    def run(self) -> None:
        """Bind, serve, rebind on failure, until `stop` is set; then drain and unbind."""
        self.delivery.start()
        try:
            self._run()
        finally:
            self.delivery.stop()

    def _run(self) -> None:
        delay = self.live.settings.smsc.reconnect_initial
        while not self.stop.is_set():
            if self.suspended.is_set():
                self._stay_unbound()
                continue
            try:
                self._bind_all()
                delay = self.live.settings.smsc.reconnect_initial
                self._serve()
            except LinkDown as e:
                _log.warning("smsc_link_down", error=str(e))
            except OSError as e:
                _log.warning("smsc_link_down", error=str(e) or type(e).__name__)
            except Exception as e:  # a bug must not end the process: log it, rebind, carry on
                _log.exception("transport_error", error=repr(e))
            finally:
                self._close_all()
            if self.stop.is_set():
                break
            if self.suspended.is_set():  # unbound on purpose: no reconnect wait
                continue
            self.reconnects += 1
            s = self.live.settings.smsc
            wait = min(s.reconnect_max, delay) * random.uniform(0.5, 1.0)
            _log.info("smsc_reconnect_wait", seconds=round(wait, 2))
            end = time.monotonic() + wait
            while not self.stop.is_set() and (left := end - time.monotonic()) > 0:
                self.delivery.alive(time.monotonic())
                self.stop.wait(min(left, 1.0))
            delay = min(s.reconnect_max, delay * 2)

    def _stay_unbound(self) -> None:
        _log.info("smsc_suspended")
        while self.suspended.is_set() and not self.stop.is_set():
            self.delivery.alive(time.monotonic())
            self.stop.wait(0.1)
        if not self.stop.is_set():
            _log.info("smsc_resumed")

    def _bind_all(self) -> None:
        s = self.live.settings.smsc
        self.delivery.alive(time.monotonic())
        self.links = self.connect(s, self.sequences)
        self.outgoing = {link: self.write_side(link, self.sequences) for link in self.links}
        self.sender.bound(self.links[0].name)
        self.delivery.new_session()
        self.bound.set()
        if self.on_bound is not None:
            self.on_bound(True)
        resent = self.sender.requeue_inflight()
        for link, out in self.outgoing.items():
            self._take(link.replay(), out)
        _log.info("smsc_bound", host=s.host, port=s.port, protocol=s.protocol.value,
                  mode="connection" if s.is_cmpp else s.bind_mode.value,
                  system_id=s.cmpp.sp_id if s.is_cmpp else s.system_id, tls=s.tls, requeued=resent)

    def _close_all(self) -> None:
        self.pipeline.link_lost()
        if self.bound.is_set() and self.on_bound is not None:
            self.on_bound(False)
        self.bound.clear()
        for link in self.links:
            link.close()
        self.links = []
        self.outgoing = {}

    # -- the loop --------------------------------------------------------------------------------------
    def _serve(self) -> None:
        pipeline, delivery, outgoing = self.pipeline, self.delivery, self.outgoing
        while True:
            if self.stop.is_set() or self.suspended.is_set():
                self._answer(pipeline.complete_all())
                self._flush()
                self._drain_and_unbind()
                return
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                if self.on_reload is not None:
                    self.on_reload()
            waiting = pipeline.roundtrips()
            timeout = 0.0 if pipeline.buffered() or pipeline.startable() else self._select_timeout()
            readable, _, _ = select.select(self.links + waiting, [], [], timeout)
            now = time.monotonic()
            for link, out in outgoing.items():
                if link in readable or link.pending_tls():
                    self._take(link.read(now), out)
            answered, resps = pipeline.poll(readable)
            self._answer(resps)
            if answered and len(pipeline.deferred) < 8:
                # A small window: the SMSC sends nothing new until it has these resps and replies, so
                # they go out before the next batch is prepared (+10-15% at window 10). Under a
                # flood (many MOs ready) one write per loop turn is cheaper.
                self._send_outbox(now)
                self._flush()
            self._answer(pipeline.start_batches())
            delivery.tick(now)
            if not pipeline.pending and (pipeline.clears_due(now) or delivery.acks_due(now)) or (
                    self.sender.blocked_by_records and delivery.acks_due(now)):
                # records alone: nothing else is going to Redis, or submits wait for them; guards the
                # SMSC confirmed go within 50 ms (a repeated text must not meet a guard whose resp was read)
                pipeline.record()
            s = self.live.settings.smsc
            for link, out in outgoing.items():
                if link.check(now, s):
                    out.keepalive()
                out.check(now, s)
            if self.sender.expired(s.response_timeout):
                raise LinkDown("submit_sm_resp overdue")
            self._send_outbox(now)
            self._flush()

    def _select_timeout(self) -> float:
        now = time.monotonic()
        t = MAX_WAIT_S
        w = self.sender.next_wakeup()
        if w is not None and self.delivery.may_send(now):
            t = min(t, w)
        a = self.delivery.wakeup_in(now)
        if a is not None:
            t = min(t, a)
        c = self.pipeline.clears_wakeup(now)
        if c is not None:
            t = min(t, c)
        r = self.pipeline.retry_wakeup(now)  # an MO waiting for its slot, a redirected command (Redis Cluster)
        if r is not None:
            t = min(t, r)
        s = self.live.settings.smsc
        for link, out in self.outgoing.items():
            if link.pending_tls():
                return 0.0
            t = min(t, max(0.0, link.next_deadline(s) - now))
            asked = out.next_deadline(s)
            if asked is not None:
                t = min(t, max(0.0, asked - now))
        return t

    def _send_outbox(self, now: float) -> None:
        pdus = self.sender.take(self.delivery.may_send(now))
        if pdus:
            tx = next(out for link, out in self.outgoing.items() if link.can_transmit)
            tx.submit(pdus)

    def _flush(self) -> None:
        now = time.monotonic()
        for out in self.outgoing.values():
            out.flush(now)

    def _drain_and_unbind(self) -> None:
        """Stop taking MOs; send what the outbox holds within the drain timeout; record; unbind."""
        _log.info("smsc_draining", parts=self.sender.backlog + self.sender.inflight, suspend=not self.stop.is_set())
        self._answer(self.pipeline.refuse_deferred())
        deadline = time.monotonic() + (0 if self.force_stop.is_set() else self.live.settings.smsc.drain_timeout)
        while not self.sender.idle and time.monotonic() < deadline and not self.force_stop.is_set():
            self._send_outbox(time.monotonic())
            self._flush()
            readable, _, _ = select.select(self.links, [], [], 0.1)
            for link in readable:
                self._take_draining(link.read(time.monotonic()), self.outgoing[link])
            if self.delivery.acks_due(time.monotonic()) and not self.pipeline.pending:
                self.pipeline.record()
                self._answer(self.pipeline.complete_all())
        self.pipeline.record()
        self._answer(self.pipeline.complete_all())
        for out in self.outgoing.values():
            out.goodbye()
        try:
            self._flush()
            end = time.monotonic() + 2.0
            waiting = set(self.links)
            while waiting and time.monotonic() < end:
                readable, _, _ = select.select(list(waiting), [], [], 0.1)
                for link in readable:
                    got = link.goodbye_read()
                    self.outgoing[link].owe(got.owed, got.refused)
                    if got.down:  # the goodbye answered, or the SMSC closed
                        waiting.discard(link)
                self._flush()
        except (OSError, LinkDown, ValueError):  # a framing error of either protocol is a ValueError
            pass
        _log.info("smsc_unbound", unsent=self.sender.backlog + self.sender.inflight)
