"""Text → the deliver_sm PDUs a handset's MO turns into (what a phone and its SMSC would send).

Short text is one PDU. Long text is split like the bot's own codec does (`codec.encode_text`) and
carried with a UDH (IEI 0x00, 8-bit ref, or IEI 0x08, 16-bit ref) or with sar_* TLVs and no UDH.
A forced data_coding encodes the text with that alphabet instead of GSM-7-else-UCS-2. Every part
carries the same user_message_reference TLV (the handset's TP-MR). With `naive_split` the text is
cut at the part size whatever falls there, as some phones and SMSCs do: a UCS-2 surrogate pair or a
GSM-7 escape pair may straddle two parts.
"""

from __future__ import annotations

import struct

from smsbot import codec, pdu
from smsbot.messages import DataCoding, DeliverSm, EsmClass, Tag

SPLIT_MODES = (None, "udh8", "udh16", "sar")


class PartsError(ValueError):
    """The text cannot be turned into PDUs as asked."""


def _encode_forced(data_coding: int, text: str) -> bytes:
    if data_coding == DataCoding.DEFAULT:
        return codec.gsm7_encode(text)
    if data_coding == DataCoding.IA5:
        return text.encode("ascii")
    if data_coding == DataCoding.LATIN1:
        return text.encode("latin-1")
    if data_coding == DataCoding.UCS2:
        return text.encode("utf-16-be")
    return text.encode("utf-8")  # binary codings: the caller asked for it


def _single_fits(data_coding: int, data: bytes) -> bool:
    return len(data) <= (160 if data_coding == DataCoding.DEFAULT else 140)


def _rechunk(data_coding: int, data: bytes, budget_octets: int, naive: bool = False) -> list[bytes]:
    """Split encoded text into parts of at most `budget_octets` octets of user data after the UDH,
    never cutting a UCS-2 surrogate pair or a GSM-7 escape (unless `naive`)."""
    if data_coding == DataCoding.DEFAULT:
        size = budget_octets * 8 // 7  # unpacked septets
    elif data_coding == DataCoding.UCS2:
        size = budget_octets - budget_octets % 2
    else:
        size = budget_octets
    out: list[bytes] = []
    i = 0
    while i < len(data):
        end = min(i + size, len(data))
        if end < len(data) and not naive:
            if data_coding == DataCoding.UCS2 and 0xD8 <= data[end - 2] <= 0xDB:
                end -= 2
            elif data_coding == DataCoding.DEFAULT and data[end - 1] == 0x1B:
                end -= 1
        out.append(data[i:end])
        i = end
    return out


def build_mo_parts(
    msisdn: str,
    short_code: str,
    text: str,
    *,
    split: str | None,
    ref: int,
    umr: int,
    data_coding: int | None = None,
    extra_tlvs: dict[int, bytes] | None = None,
    naive_split: bool = False,
    source_ton: int = 2,
) -> list[DeliverSm]:
    """The deliver_sm PDUs a handset's MO turns into (in order; the caller may shuffle), from
    `msisdn` as the source_addr under `source_ton` (2 national, 1 international; NPI 1, E.164)."""
    if split not in SPLIT_MODES:
        raise PartsError(f"split must be one of udh8, udh16, sar (got {split!r})")
    if data_coding is None:
        try:
            dc, esm, encoded = codec.encode_text(text, ref & 0xFF)
        except ValueError as e:
            raise PartsError(f"cannot encode text: {e}") from None
        if len(encoded) == 1 and not esm & EsmClass.UDHI:
            payloads, full = encoded, None
        else:
            stripped = [codec.split_udh(p)[0] for p in encoded]
            full = b"".join(stripped)
            payloads = encoded if split in (None, "udh8") else stripped if split == "sar" else None
            if naive_split:
                payloads = None
    else:
        dc = data_coding
        try:
            full = _encode_forced(dc, text)
        except (UnicodeEncodeError, ValueError) as e:
            raise PartsError(f"text cannot be encoded with data_coding {dc}: {e}") from None
        if _single_fits(dc, full):
            payloads, full = [full], None
        else:
            payloads = None
    dc = int(dc)
    base_tlvs: dict[int, bytes] = {Tag.USER_MESSAGE_REFERENCE: struct.pack(">H", umr & 0xFFFF)}
    for tag, value in (extra_tlvs or {}).items():
        base_tlvs[int(tag)] = bytes(value)

    def deliver(payload: bytes, esm: int, tlvs: dict[int, bytes]) -> DeliverSm:
        return DeliverSm(
            sequence=0,
            source_addr_ton=source_ton,
            source_addr_npi=1,
            source_addr=msisdn,
            dest_addr_ton=0,
            dest_addr_npi=0,
            destination_addr=short_code,
            esm_class=esm,
            data_coding=dc,
            short_message=payload,
            tlvs=tlvs,
        )

    if full is None:  # one SMS
        return [deliver(payloads[0], 0, dict(base_tlvs))]
    mode = split or "udh8"
    if payloads is not None and mode == "udh8":  # codec's own split, UDH included
        return [deliver(p, EsmClass.UDHI, dict(base_tlvs)) for p in payloads]
    # udh16 has a 7-octet UDH, one octet less for text; sar keeps the udh8 part sizes
    chunks = payloads if payloads is not None else _rechunk(dc, full, 133 if mode == "udh16" else 134, naive_split)
    n = len(chunks)
    if n > 255:
        raise PartsError(f"text too long: {n} parts (max 255)")
    out = []
    for i, c in enumerate(chunks, 1):
        if mode == "udh8":
            out.append(deliver(bytes([5, 0x00, 3, ref & 0xFF, n, i]) + c, EsmClass.UDHI, dict(base_tlvs)))
        elif mode == "udh16":
            out.append(deliver(bytes([6, 0x08, 4, (ref >> 8) & 0xFF, ref & 0xFF, n, i]) + c, EsmClass.UDHI, dict(base_tlvs)))
        else:
            out.append(deliver(c, 0, {**base_tlvs, **dict(pdu.sar_tlvs(ref & 0xFFFF, n, i))}))
    return out
