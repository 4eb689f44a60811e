"""A reply's text -> the submit PDUs that carry it, per link protocol (the outbox's encoder).

`OutboxSender` (`smsbot.outbox`) renders a reply and asks its encoder for the parts (`parts`: each
part's body, encoded once) and, when a part goes out, for the whole PDU with its sequence number
(`with_sequence`). What is per protocol is only here; no command, Lua step or billing rule knows
which one carries a reply.

* `SmppSubmits`: submit_sm, GSM-7 when it fits else UCS-2, long texts behind a UDH with a fresh
  concatenation reference per message.
* `CmppSubmits`: CMPP_SUBMIT (3.0 or 2.0): Msg_Fmt 0 for ASCII else 8, long texts in parts with
  Pk_total / Pk_number and the same UDH (`smsbot.cmpp.text`); Src_Id the short code, Msg_src the
  SP_Id; the fee fields and Service_Id from the catalogue (`fee_of`): a reply whose template is in
  `smsc.cmpp.charged_templates` (a charge reminder) charges the service its data names — FeeType
  03 with the monthly price for a monthly service, 02 with the price for an on-demand one, FeeCode
  in fen, Service_Id that service's; a long one carries the fee on its first part only, the others
  free (FeeType 01), so a per-message fee is not charged once per part — and every other reply
  (menus, help, answers) is free (FeeType 01, the free Service_Id). The codec encodes a text's
  parts once (per short code, fee and settings); each reply then fills in its Dest_terminal_Id and
  UDH reference.
"""

from __future__ import annotations

import itertools
import json
import random
from typing import Mapping, Protocol

from smsbot import cmpp, codec, pdu
from smsbot.cmpp import text as cmpp_text
from smsbot.cmpp.codec import submit_dest_at
from smsbot.cmpp.constants import Version
from smsbot.cmpp.fields import layout
from smsbot.config import BillingKind, CmppFee, LinkProtocol, Settings
from smsbot.live import Live
from smsbot.messages import SubmitSm
from smsbot.msisdn import destination

SEGMENT_CACHE_SIZE = 4096  # rendered texts whose encoding is kept (cleared when full: memory stays bounded)


class Submits(Protocol):
    def parts(self, to: str, short_code: str, text: str, fields: Mapping[str, str]) -> list[bytes]: ...

    def with_sequence(self, body: bytes, sequence: int) -> bytes: ...


class SmppSubmits:
    def __init__(self, live: Live):
        self.live = live
        self._segmented: dict[str, tuple[int, list[bytes]]] = {}  # rendered text -> its coding and part bodies
        self._concat_refs = itertools.count(random.randrange(256))
        self._templates_for: Settings | None = None  # the settings `_templates` and `_to` were made with
        self._templates: dict[tuple[str, int, int], pdu.SubmitSmTemplate] = {}  # (short code, coding, esm)
        self._to = (1, "")  # (smsc.dest_addr_ton, subscribers.country_code): how `destination` writes the number

    def parts(self, to: str, short_code: str, text: str, fields: Mapping[str, str]) -> list[bytes]:
        segmented = self._segmented.get(text)
        if segmented is None:
            segmented = codec.segment_text(text)
            if len(self._segmented) >= SEGMENT_CACHE_SIZE:
                self._segmented.clear()
            self._segmented[text] = segmented
        coding, bodies = segmented
        esm, payloads = codec.with_udh(bodies, next(self._concat_refs) & 0xFF)  # a fresh reference per message
        template = self._template(short_code, coding, esm)
        ton, country_code = self._to
        return template.bodies(destination(to, ton, country_code), payloads)

    def _template(self, short_code: str, coding: int, esm: int) -> pdu.SubmitSmTemplate:
        """The submit_sm fields of a reply from `short_code` but its destination and text, encoded
        once for the settings in force (a reload starts afresh)."""
        settings = self.live.settings
        if settings is not self._templates_for or len(self._templates) >= SEGMENT_CACHE_SIZE:
            self._templates.clear()
            self._templates_for = settings
            self._to = (settings.smsc.dest_addr_ton, settings.subscribers.country_code)
        key = (short_code, coding, esm)
        found = self._templates.get(key)
        if found is None:
            s = settings.smsc
            found = self._templates[key] = pdu.SubmitSmTemplate(SubmitSm(
                source_addr=short_code, destination_addr="", short_message=b"", data_coding=coding, esm_class=esm,
                source_addr_ton=s.source_addr_ton, source_addr_npi=s.source_addr_npi,
                dest_addr_ton=s.dest_addr_ton, dest_addr_npi=s.dest_addr_npi,
                registered_delivery=s.registered_delivery,
            ))
        return found

    @staticmethod
    def with_sequence(body: bytes, sequence: int) -> bytes:
        return pdu.submit_sm_with_sequence(body, sequence)


def fee_of(settings: Settings, tpl: str, data_json: str) -> tuple[cmpp.Fee, str]:
    """(the fee fields, the Service_Id) of a reply: see the module docstring."""
    c = settings.smsc.cmpp
    if tpl not in c.charged_templates:
        return cmpp.FREE, c.service_id
    code = json.loads(data_json or "{}").get("code")
    svc = next((x for x in settings.services if x.code == code), None)
    entry = c.services.get(str(code))
    if svc is None or entry is None:
        return cmpp.FREE, c.service_id  # a service no longer in the catalogue: not charged
    if entry.fee is CmppFee.FREE:
        return cmpp.FREE, entry.service_id
    fee = cmpp.Fee.monthly(svc.price_fen) if svc.kind is BillingKind.MONTHLY else cmpp.Fee.per_message(svc.price_fen)
    return fee, entry.service_id


class CmppSubmits:
    def __init__(self, live: Live):
        self.live = live
        self.version = Version.V20 if live.settings.smsc.protocol is LinkProtocol.CMPP2 else Version.V30
        self._refs = itertools.count(random.randrange(256))
        lay = layout(self.version)
        self._dest_at = submit_dest_at(self.version) + 1  # the first (only) Dest_terminal_Id
        self._dest_width = lay.terminal_id
        # the UDH reference: after Dest_terminal_type (3.0), Msg_Length and the UDH's 05 00 03
        self._ref_at = self._dest_at + lay.terminal_id + (1 if lay.terminal_types else 0) + 1 + 3
        self._templates_for: Settings | None = None  # the settings the templates were encoded with
        self._templates: dict[tuple, tuple[int, list[bytes]]] = {}  # see `_template`

    def parts(self, to: str, short_code: str, text: str, fields: Mapping[str, str]) -> list[bytes]:
        settings = self.live.settings
        s = settings.smsc
        fee, service_id = fee_of(settings, fields.get("tpl", ""), fields.get("data") or "{}")
        tp_udhi, bodies = self._template(settings, text, short_code, fee, service_id)
        dest = destination(to, s.dest_addr_ton, settings.subscribers.country_code).encode("ascii")
        at, width = self._dest_at, self._dest_width
        if len(dest) > width:
            raise ValueError(f"Dest_terminal_Id {dest.decode()!r} is longer than its {width} octets")
        dest = dest.ljust(width, b"\0")
        if not tp_udhi:
            return [b[:at] + dest + b[at + width:] for b in bodies]
        ref, ref_at = next(self._refs) & 0xFF, self._ref_at  # a fresh concatenation reference per message
        return [b[:at] + dest + b[at + width:ref_at] + bytes((ref,)) + b[ref_at + 1:] for b in bodies]

    def _template(self, settings: Settings, text: str, short_code: str, fee: cmpp.Fee,
                  service_id: str) -> tuple[int, list[bytes]]:
        """(TP_udhi, the part bodies) of `text` from `short_code` with `fee`: encoded (and checked)
        by the codec once, with an empty Dest_terminal_Id and UDH reference 0 that `parts` fills
        in per message — the field-by-field encoding and the cut of the text a character at a time
        cost ~100 µs per MO. Kept per text, for the settings in force (a reload starts afresh)."""
        if settings is not self._templates_for or len(self._templates) >= SEGMENT_CACHE_SIZE:
            self._templates.clear()
            self._templates_for = settings
        key = (text, short_code, fee, service_id)
        found = self._templates.get(key)
        if found is not None:
            return found
        s = settings.smsc
        split = cmpp_text.split_text(text, ref=0)
        total = len(split.contents)
        found = self._templates[key] = (split.tp_udhi, [cmpp.encode_body(cmpp.Submit(
            dest_terminal_ids=[""], msg_content=content, msg_fmt=split.msg_fmt, src_id=short_code,
            msg_src=s.cmpp.sp_id, service_id=service_id, fee=fee if i == 1 else cmpp.FREE,  # charged once
            registered_delivery=s.registered_delivery, pk_total=total, pk_number=i, tp_udhi=split.tp_udhi,
        ), self.version) for i, content in enumerate(split.contents, 1)])
        return found

    @staticmethod
    def with_sequence(body: bytes, sequence: int) -> bytes:
        return cmpp.encode_header(cmpp.CommandId.SUBMIT, sequence, body)


def for_protocol(live: Live) -> Submits:
    """The encoder of the configured `smsc.protocol` (a change needs a restart)."""
    return CmppSubmits(live) if live.settings.smsc.is_cmpp else SmppSubmits(live)
