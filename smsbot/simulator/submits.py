"""The simulated SMSC's MT side: what happens to each submit_sm the ESME sends.

`Submits.on_submit` decodes it, has the fault plan judge it (`faults.Faults.judge`: answer now or
after a delay, throttle, reject, or drop the link before or after the resp) and answers it. An
accepted one gets a message id (unique, or reused every `message_id_cycle` with that profile flag)
and is stored just before its resp is written: its parts are joined (UDH or sar_* TLVs,
`mailbox.Reassembler`) into whole messages kept in the handset's `Mailbox` (`addresses` says which
handset a destination is). When the submit_sm asked for one, a delivery receipt as the profile
writes it is handed to `Deliveries.queue_receipt`. `log()` keeps what each submit_sm was judged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable

from smsbot import codec, pdu
from smsbot.messages import CommandId, DeliverSm, EsmClass, Segment, Status, SubmitSm, Tag

from . import profiles
from .addresses import handset_number
from .deliveries import TEMPORARY_STATUSES, Deliveries
from .events import SimEvents
from .faults import Delayer, Faults, Verdict
from .mailbox import Mailbox, Reassembler, StoredMessage
from .smpp_conn import SmppConn

log = logging.getLogger("smsbot.simulator")

SUBMITS_KEPT = 10000  # submit_sm log entries kept (`log`)
MESSAGE_STATE_DELIVERED = 2


class Submits:
    def __init__(
        self,
        *,
        faults: Faults,
        mailbox: Mailbox,
        reassembler: Reassembler,
        events: SimEvents,
        deliveries: Deliveries,
        delayer: Delayer,
        behaviour: Callable[[], profiles.Behaviour],
        count: Callable[..., None],
        raise_to: Callable[[str, int], None],
        country_code: str | None,
        send_receipts: bool,
    ) -> None:
        """`delayer`: the simulator's thread of delayed resps (started and stopped by it; resps
        it has not written at the stop never are); `behaviour()`: the profile in force;
        `count(name)` / `raise_to(name, value)` the simulator's counters."""
        self._faults = faults
        self._mailbox = mailbox
        self._reassembler = reassembler
        self._events = events
        self._deliveries = deliveries
        self._behaviour = behaviour
        self._count = count
        self._raise_to = raise_to
        self._country_code = country_code
        self._send_receipts = send_receipts
        self._delayer = delayer
        self._lock = threading.Lock()
        self._log: deque[dict[str, Any]] = deque(maxlen=SUBMITS_KEPT)
        self._msg_counter = 0  # message ids handed out since the start (or restart_message_ids)

    def log(self) -> list[dict[str, Any]]:
        """Every submit_sm judged (latest SUBMITS_KEPT): {"t" (epoch s), "n", "conn", "seq", "to" (the
        handset), "addr" ([destination_addr, TON, NPI] as written), "status"}; status 0 accepted,
        non-zero the error answered, None never answered (dropped)."""
        with self._lock:
            return [dict(e) for e in self._log]

    def restart_message_ids(self) -> None:
        with self._lock:
            self._msg_counter = 0

    def _new_message_id(self) -> str:
        """Unique ids (00000001, 00000002, ...), or with `message_id_cycle` N the same N again and again."""
        with self._lock:
            self._msg_counter += 1
            n = self._msg_counter
        cycle = self._behaviour().message_id_cycle
        if cycle:
            n = (n - 1) % cycle + 1
        return f"{n:08x}"

    # ---------------------------------------------------------------- answering
    def on_submit(self, conn: SmppConn, seq: int, body: bytes) -> None:
        """A submit_sm from `conn`'s reader: decode, judge by the fault plan, answer now or later."""
        self._count("submits_received")
        try:
            sm, tlvs = pdu.decode_submit_sm(seq, body)
        except pdu.PduError as e:
            log.info("simsmsc conn %s bad submit_sm: %s", conn.id, e)
            self._count("submits_rejected")
            conn.resp(CommandId.SUBMIT_SM_RESP, Status.RINVMSGLEN, seq, b"\x00")
            return
        if not sm.destination_addr:
            self._count("submits_rejected")
            conn.send(pdu.encode_submit_sm_resp(seq, Status.RINVDSTADR, ""))
            return
        to = handset_number(sm.destination_addr, sm.dest_addr_ton, self._country_code)
        now = time.monotonic()
        v = self._faults.judge(conn.id, to, now)
        entry: dict[str, Any] = {"t": time.time(), "n": v.n, "conn": conn.id, "seq": seq, "to": to, "status": v.status,
                                 "addr": [sm.destination_addr, sm.dest_addr_ton, sm.dest_addr_npi]}
        with self._lock:
            self._log.append(entry)
        if v.drop_before:
            entry["status"] = None
            self._count("submits_dropped")
            self._events.submit(entry)
            conn.drop(f"drop_after_submit={v.n}")
            return
        with self._lock:
            conn.outstanding += 1
            outstanding = conn.outstanding
        self._raise_to("max_outstanding_submits", outstanding)
        if v.delay > 0:
            self._delayer.call_at(now + v.delay, lambda: self._answer(conn, seq, sm, tlvs, v, entry))
        else:
            self._answer(conn, seq, sm, tlvs, v, entry)

    def _answer(self, conn: SmppConn, seq: int, sm: SubmitSm, tlvs: dict[int, bytes], v: Verdict,
                entry: dict[str, Any]) -> None:
        """Answer one submit_sm as judged; an accepted one is stored only if its resp is written."""
        with self._lock:
            # no longer outstanding from here: counted down BEFORE the resp is written, or the ESME's
            # next submit (sent on reading this resp) could be counted while this one still is
            conn.outstanding -= 1
        if v.status:
            counter = "submits_throttled" if v.status in TEMPORARY_STATUSES else "submits_rejected"
            answered = conn.answer(pdu.encode_submit_sm_resp(seq, v.status, ""), commit=lambda: self._count(counter))
        else:
            message_id = self._new_message_id()
            answered = conn.answer(pdu.encode_submit_sm_resp(seq, Status.ROK, message_id),
                                   commit=lambda: self._accept(sm, tlvs, message_id, entry["to"]))
            if answered and sm.registered_delivery & 1 and self._send_receipts:
                payload = tlvs.get(Tag.MESSAGE_PAYLOAD, sm.short_message)
                if sm.esm_class & EsmClass.UDHI:
                    payload = codec.split_udh(payload)[0]
                self._queue_receipt(conn, sm, entry["to"], message_id, payload)
        if not answered:  # the connection went first: never answered, nothing stored, the ESME resends
            entry["status"] = None
            self._count("submits_dropped")
        if entry["status"] != 0:
            self._events.submit(entry)
        if v.drop_after:
            conn.drop(f"drop_after_resp={v.n}")

    # ---------------------------------------------------------------- storing
    def _accept(self, sm: SubmitSm, tlvs: dict[int, bytes], message_id: str, to: str) -> None:
        """Into handset `to`'s mailbox (whole messages; parts wait in the reassembler). Runs before
        the resp is written."""
        self._count("mt_parts_received")
        payload = tlvs.get(Tag.MESSAGE_PAYLOAD, sm.short_message)
        segment: Segment | None = None
        if sm.esm_class & EsmClass.UDHI:
            payload, segment = codec.split_udh(payload)
        if segment is None:
            segment = codec.segment_from_tlvs(tlvs)
        if segment is not None and segment.total > 1:
            joined = self._reassembler.add(
                sm.source_addr, to, segment.ref, segment.total, segment.seq,
                sm.data_coding, payload, message_id,
            )
            if joined is not None:
                data, dc, ids = joined
                self._store(sm.source_addr, to, dc, data, ids, bool(sm.registered_delivery & 1))
        else:
            self._store(sm.source_addr, to, sm.data_coding, payload, [message_id], bool(sm.registered_delivery & 1))

    def _store(self, source: str, dest: str, data_coding: int, data: bytes, ids: list[str], receipt_asked: bool) -> None:
        try:
            text = codec.decode_text(data_coding, data)
        except Exception as e:  # noqa: BLE001 - keep the message, show what went wrong
            text = f"<undecodable data_coding={data_coding}: {data.hex()} ({e})>"
        msg = StoredMessage(
            id=ids[0], sender=source, to=dest, text=text, parts=len(ids), data_coding=data_coding,
            received_at=time.time(), message_ids=ids,
        )
        self._count("mt_received")
        self._events.mt_stored(msg, receipt_asked)
        self._mailbox.put(msg)

    def _queue_receipt(self, conn: SmppConn, sm: SubmitSm, handset: str, message_id: str, payload: bytes) -> None:
        """A delivery receipt for MT `message_id` (submit `sm`, to `handset`), as the profile writes
        it: from the MT's destination address as the ESME wrote it, stat/err from `receipt_outcomes`,
        data_coding `receipt_data_coding` (the text is ASCII whatever it says), receipted_message_id
        + message_state TLVs only with `receipt_tlvs`."""
        b = self._behaviour()
        now = time.strftime("%y%m%d%H%M")
        try:
            sample = codec.decode_text(sm.data_coding, payload)
        except Exception:  # noqa: BLE001
            sample = ""
        stat, err = b.receipt_outcome(handset)
        text = codec.format_receipt_text(message_id, stat, err, now, now, sample)
        tlvs: dict[int, bytes] = {}
        if b.receipt_tlvs:
            tlvs = {
                Tag.RECEIPTED_MESSAGE_ID: message_id.encode("ascii") + b"\x00",
                Tag.MESSAGE_STATE: bytes([profiles.MESSAGE_STATES.get(stat, MESSAGE_STATE_DELIVERED)]),
            }
        receipt = DeliverSm(
            sequence=0,
            service_type=b.service_type,
            source_addr_ton=sm.dest_addr_ton,
            source_addr_npi=sm.dest_addr_npi,
            source_addr=sm.destination_addr,
            destination_addr=sm.source_addr,
            esm_class=EsmClass.DELIVERY_RECEIPT,
            data_coding=b.receipt_data_coding,
            short_message=text.encode("ascii", "replace") if isinstance(text, str) else bytes(text),
            tlvs=tlvs,
        )
        self._deliveries.queue_receipt(receipt, message_id=message_id, handset=handset, system_id=conn.system_id,
                                       stat=stat, err=err)
