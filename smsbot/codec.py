"""Text ⇄ SMS payload bytes: GSM 03.38, data_coding, UDH concatenation, long-MT splitting, receipts.

This module owns the meaning of short_message / message_payload bytes; `smsbot.pdu` owns the
PDU layout around them. Nothing here does I/O.

Choices worth knowing:

* GSM 03.38 is handled unpacked (one septet per octet), as SMPP data_coding 0 usually is, with
  the standard table (0x5F is '§'; smpplib's table wrongly has '`' there) and the extension
  table behind ESC (0x1B). Decoding never raises: octets >= 0x80 become '?'; ESC followed by a
  code outside the extension table decodes as the main-table character (3GPP TS 23.038 6.2.1.1);
  an ESC at the very end, or ESC ESC, is dropped. Parts of a long MO may be cut inside a GSM-7
  escape pair or a UTF-16 surrogate pair when the sender split it badly: `join_parts` joins the
  raw payloads (`Inbound.payload`) first, then decodes once.
* Binary codings (2 and 4) are not text: `decode_text` returns the payload as lowercase hex,
  which can be logged and never matches a keyword. Callers that care check data_coding first.
* `encode_text` never splits a GSM escape pair nor a UTF-16 surrogate pair across parts (the
  FIXME in smpplib.gsm.make_parts).
"""

from __future__ import annotations

import random
import re
from datetime import datetime, timezone

from smsbot.messages import DeliverSm, EsmClass, Inbound, Receipt, Segment, Tag, strip_trailing_nuls

__all__ = [
    "GSM7_SINGLE",
    "GSM7_PART",
    "UCS2_SINGLE",
    "UCS2_PART",
    "gsm7_encode",
    "gsm7_decode",
    "gsm7_len",
    "is_gsm7",
    "decode_text",
    "split_udh",
    "segment_from_tlvs",
    "inbound_from_deliver_sm",
    "join_parts",
    "encode_text",
    "segment_text",
    "with_udh",
    "MESSAGE_STATES",
    "receipt_text",
    "parse_receipt",
    "format_receipt_text",
]

GSM7_SINGLE = 160  # septets in one SMS
GSM7_PART = 153  # septets per part after a 6-octet concatenation UDH
UCS2_SINGLE = 140  # octets (70 UTF-16 code units)
UCS2_PART = 134  # octets (67 UTF-16 code units)
MAX_PARTS = 255
_OCTET = [bytes((n,)) for n in range(MAX_PARTS + 1)]

# plain ints: `int & IntFlag` and `Enum.MEMBER` lookups cost ~0.1-0.7 us each on the hot path
_UDHI = int(EsmClass.UDHI)
_RECEIPT = int(EsmClass.DELIVERY_RECEIPT)
_T_PAYLOAD = int(Tag.MESSAGE_PAYLOAD)
_T_UMR = int(Tag.USER_MESSAGE_REFERENCE)
_T_SAR_REF = int(Tag.SAR_MSG_REF_NUM)
_T_SAR_TOTAL = int(Tag.SAR_TOTAL_SEGMENTS)
_T_SAR_SEQ = int(Tag.SAR_SEGMENT_SEQNUM)
_T_RECEIPTED_ID = int(Tag.RECEIPTED_MESSAGE_ID)
_T_STATE = int(Tag.MESSAGE_STATE)

# ---------------------------------------------------------------------------------------------
# GSM 03.38

_GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
assert len(_GSM_BASIC) == 128

_GSM_EXT = {
    0x0A: "\x0c",  # form feed (page break)
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

# encode: str.translate table char → latin-1 string of the octets. Every code point < 256 that is
# not GSM maps to a poison char (> 0xFF) so the latin-1 step fails; unmapped chars > 0xFF fail too.
_POISON = "\u0100"
_ENC: dict[int, str] = {i: _POISON for i in range(256)}
for _code, _ch in enumerate(_GSM_BASIC):
    if _code != 0x1B:
        _ENC[ord(_ch)] = chr(_code)
for _code, _ch in _GSM_EXT.items():
    _ENC[ord(_ch)] = "\x1b" + chr(_code)
_GSM_CHARS = frozenset(ch for i, ch in enumerate(_GSM_BASIC) if i != 0x1B) | frozenset(_GSM_EXT.values())
_GSM_EXT_CHARS = frozenset(_GSM_EXT.values())
# fast path for ASCII text: ASCII octets that are basic GSM chars, and a bytes.translate table
_ASCII_BASIC = bytes(i for i in range(128) if chr(i) in _GSM_BASIC and i != 0x1B)
_ASCII_TABLE = bytes(_GSM_BASIC.index(chr(i)) if i in _ASCII_BASIC else 0 for i in range(256))

# decode: octet (as latin-1 char) → GSM char; ESC itself handled separately
_DEC: dict[int, str] = {i: (_GSM_BASIC[i] if i < 128 else "?") for i in range(256)}
_DEC_MAIN = [_DEC[i] for i in range(256)]
_DEC_MAIN[0x1B] = "?"
_DEC_EXT = [_GSM_EXT.get(i, _DEC_MAIN[i]) for i in range(256)]


def is_gsm7(text: str) -> bool:
    """True when every character is in the GSM 03.38 default alphabet or its extension table."""
    return _GSM_CHARS.issuperset(text)


def gsm7_len(text: str) -> int:
    """Septets `text` takes in GSM-7 (extension characters count 2). Assumes is_gsm7(text)."""
    return len(text) + sum(1 for ch in text if ch in _GSM_EXT_CHARS)


def _gsm7_or_none(text: str) -> bytes | None:
    if text.isascii():
        raw = text.encode("ascii")
        if not raw.translate(None, _ASCII_BASIC):  # only basic-table chars: one C pass
            return raw.translate(_ASCII_TABLE)
    if not _GSM_CHARS.issuperset(text):
        return None
    return text.translate(_ENC).encode("latin-1")


def gsm7_encode(text: str) -> bytes:
    """Unpacked GSM 03.38 (one septet per octet, escapes as 0x1B + code).

    Raises UnicodeEncodeError (a ValueError) naming the first character that has no GSM code."""
    data = _gsm7_or_none(text)
    if data is None:
        for i, ch in enumerate(text):
            if ch not in _GSM_CHARS:
                raise UnicodeEncodeError("gsm0338", text, i, i + 1, "not in the GSM 03.38 alphabet")
    return data


def gsm7_decode(data: bytes) -> str:
    """Unpacked GSM 03.38 → str. Never raises (see the module docstring for odd input)."""
    if 0x1B not in data:
        return bytes(data).decode("latin-1").translate(_DEC)
    chunks = bytes(data).split(b"\x1b")
    out = [chunks[0].decode("latin-1").translate(_DEC)]
    for chunk in chunks[1:]:
        if chunk:
            out.append(_DEC_EXT[chunk[0]])
            if len(chunk) > 1:
                out.append(chunk[1:].decode("latin-1").translate(_DEC))
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# data_coding → text

_SMPP_CHARSETS = {
    1: None,  # IA5 / ASCII: special-cased below
    3: "latin-1",
    6: "iso8859-5",  # Cyrillic
    7: "iso8859-8",  # Latin/Hebrew
    10: "iso2022_jp",
    14: "euc_kr",  # KS C 5601
}


def _ucs2(data: bytes) -> str:
    return bytes(data).decode("utf-16-be", "replace")


def _fallback(data: bytes) -> str:
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        return bytes(data).decode("latin-1")


def decode_text(data_coding: int, data: bytes) -> str:
    """Payload bytes → str by SMPP data_coding. Never raises.

    0 GSM-7 (unpacked); 1 IA5/ASCII (latin-1 for octets >= 0x80, since SMSCs that send them mean
    it); 3 Latin-1; 6/7 ISO-8859-5/-8; 8 UCS-2 read as UTF-16-BE (an odd trailing octet or a lone
    surrogate becomes U+FFFD); 10 ISO-2022-JP; 14 EUC-KR; 2 and 4 (binary) → lowercase hex of the
    octets. GSM DCS coding groups (0x10-0x3F uncompressed, 0xC0-0xEF, 0xF0-0xFF) by their alphabet
    bits; anything else: UTF-8 if valid, else Latin-1."""
    try:
        if data_coding == 0:
            return gsm7_decode(data)
        if data_coding == 8:
            return _ucs2(data)
        if data_coding == 1:
            return bytes(data).decode("latin-1")  # ASCII is a subset; high octets kept readable
        if data_coding in (2, 4):
            return bytes(data).hex()
        charset = _SMPP_CHARSETS.get(data_coding)
        if charset is not None:
            return bytes(data).decode(charset, "replace")
        if 0x10 <= data_coding <= 0x3F and not data_coding & 0x20:  # general group, uncompressed
            alphabet = (data_coding >> 2) & 3
            if alphabet == 0:
                return gsm7_decode(data)
            if alphabet == 2:
                return _ucs2(data)
            if alphabet == 1:
                return bytes(data).hex()
        elif 0xC0 <= data_coding <= 0xDF:  # message waiting, GSM-7
            return gsm7_decode(data)
        elif 0xE0 <= data_coding <= 0xEF:  # message waiting, UCS-2
            return _ucs2(data)
        elif data_coding >= 0xF0:  # data coding / message class
            return bytes(data).hex() if data_coding & 0x04 else gsm7_decode(data)
        return _fallback(data)
    except Exception:  # noqa: BLE001 - last resort: a codec surprise must not kill the reader
        return bytes(data).decode("latin-1")


# ---------------------------------------------------------------------------------------------
# concatenation


def _segment(ref: int, total: int, seq: int) -> Segment | None:
    if total >= 2 and 1 <= seq <= total:
        return Segment(ref, total, seq)
    return None


def split_udh(payload: bytes) -> tuple[bytes, Segment | None]:
    """Strip a UDH (first octet = its length) and read a concatenation element (IEI 0x00 with an
    8-bit ref, IEI 0x08 with a 16-bit ref; the first one wins).

    Malformed UDH (length past the payload, an element running past the header, a concatenation
    element of the wrong length) → (payload unchanged, None). A well-formed UDH whose
    concatenation numbers are insane (total < 2, seq outside 1..total) is stripped, segment None."""
    n = len(payload)
    if n == 0:
        return payload, None
    udhl = payload[0]
    end = 1 + udhl
    if end > n:
        return payload, None
    segment: Segment | None = None
    found = False
    p = 1
    while p < end:
        if p + 2 > end:
            return payload, None
        iei = payload[p]
        iel = payload[p + 1]
        q = p + 2
        if q + iel > end:
            return payload, None
        if not found and iei in (0x00, 0x08):
            if iei == 0x00:
                if iel != 3:
                    return payload, None
                ref, total, seq = payload[q], payload[q + 1], payload[q + 2]
            else:
                if iel != 4:
                    return payload, None
                ref, total, seq = (payload[q] << 8) | payload[q + 1], payload[q + 2], payload[q + 3]
            found = True
            segment = _segment(ref, total, seq)
        p = q + iel
    return payload[end:], segment


def _uint(value: bytes | None) -> int | None:
    if value is None or not 1 <= len(value) <= 4:
        return None
    return int.from_bytes(value, "big")


def segment_from_tlvs(tlvs: dict[int, bytes]) -> Segment | None:
    """Segment from sar_msg_ref_num / sar_total_segments / sar_segment_seqnum (all three needed)."""
    ref = _uint(tlvs.get(_T_SAR_REF))
    total = _uint(tlvs.get(_T_SAR_TOTAL))
    seq = _uint(tlvs.get(_T_SAR_SEQ))
    if ref is None or total is None or seq is None:
        return None
    return _segment(ref, total, seq)


def inbound_from_deliver_sm(pdu: DeliverSm) -> Inbound:
    """A deliver_sm MO → Inbound: payload (message_payload wins, its trailing NUL padding
    stripped as in `DeliverSm.payload`), UDH stripped when esm_class has
    UDHI, text decoded by data_coding, segment from the UDH else from sar_* TLVs, and the
    user_message_reference TLV (1-2 octets) when present. `payload` is the raw user data of this
    PDU (UDH stripped) and `data_coding` the PDU's, so parts can be joined by `join_parts`."""
    tlvs = pdu.tlvs
    payload = tlvs.get(_T_PAYLOAD) if tlvs else None
    if payload is None:
        payload = pdu.short_message
    elif payload and payload[-1] == 0:  # NUL padding after message_payload (`0000\0`)
        payload = strip_trailing_nuls(pdu.data_coding, payload)
    segment = None
    if pdu.esm_class & _UDHI:
        payload, segment = split_udh(payload)
    if segment is None and _T_SAR_SEQ in tlvs:
        segment = segment_from_tlvs(tlvs)
    umr = None
    if tlvs:
        raw = tlvs.get(_T_UMR)
        if raw is not None and 1 <= len(raw) <= 2:
            umr = int.from_bytes(raw, "big")
    dc = pdu.data_coding
    return Inbound(
        pdu.source_addr, pdu.destination_addr, decode_text(dc, payload), pdu.sequence, segment, umr, payload, dc,
    )


def join_parts(data_coding: int, parts: list[bytes]) -> str:
    """The text of a long MO from the raw payloads of its parts (`Inbound.payload`, in order):
    the octets are concatenated first and decoded once, so a GSM-7 escape (ESC + code) or a
    UTF-16 surrogate pair cut between two parts comes out right. Never raises (`decode_text`)."""
    return decode_text(data_coding, b"".join(parts))


def _split_gsm(data: bytes, size: int) -> list[bytes]:
    out = []
    i, n = 0, len(data)
    while i < n:
        end = i + size
        if end < n and data[end - 1] == 0x1B:  # never leave ESC without its code
            end -= 1
        out.append(data[i:end])
        i = end
    return out


def _split_ucs2(data: bytes, size: int) -> list[bytes]:
    out = []
    i, n = 0, len(data)
    while i < n:
        end = i + size
        if end < n and 0xD8 <= data[end - 2] <= 0xDB:  # high surrogate: keep the pair together
            end -= 2
        out.append(data[i:end])
        i = end
    return out


def segment_text(text: str) -> tuple[int, list[bytes]]:
    """text → (data_coding, bodies): one body when the text fits one SMS, else the bodies of its
    parts without their UDH (`with_udh` adds it). The costly half of `encode_text`; a caller that
    sends the same text again can keep this and only add a fresh reference."""
    data = _gsm7_or_none(text)
    if data is not None:
        if len(data) <= GSM7_SINGLE:
            return 0, [data]
        chunks = _split_gsm(data, GSM7_PART)
        coding = 0
    else:
        data = text.encode("utf-16-be", "surrogatepass")
        if len(data) <= UCS2_SINGLE:
            return 8, [data]
        chunks = _split_ucs2(data, UCS2_PART)
        coding = 8
    if len(chunks) > MAX_PARTS:
        raise ValueError(f"text needs {len(chunks)} parts (max {MAX_PARTS})")
    return coding, chunks


def with_udh(bodies: list[bytes], ref: int) -> tuple[int, list[bytes]]:
    """(esm_class, parts) for the bodies of `segment_text`: a single body as it is, several behind
    a `05 00 03 ref total seq` UDH with esm_class 0x40."""
    total = len(bodies)
    if total == 1:
        return 0, bodies
    if not 0 <= ref <= 255:
        raise ValueError(f"ref {ref} outside 0..255")
    udh = bytes((5, 0, 3, ref, total))  # + the part's number
    parts, seq = [], 0
    for c in bodies:  # a loop, not a comprehension: per MT, and the comprehension's frame costs more than its work
        seq += 1
        parts.append(udh + _OCTET[seq] + c)
    return _UDHI, parts


def encode_text(text: str, ref: int | None = None) -> tuple[int, int, list[bytes]]:
    """text → (data_coding, esm_class, parts).

    GSM-7 (data_coding 0) when every character has a GSM code, else UCS-2 (8). One part without a
    UDH when it fits (160 septets / 70 UTF-16 units); otherwise parts of at most 153 septets /
    134 octets each behind a `05 00 03 ref total seq` UDH, esm_class 0x40. `ref` (0-255) is random
    when None. More than 255 parts → ValueError."""
    coding, bodies = segment_text(text)
    if ref is None:
        ref = random.randint(0, 255)
    esm, parts = with_udh(bodies, ref)
    return coding, esm, parts


# ---------------------------------------------------------------------------------------------
# delivery receipts

#: SMPP 3.4 message_state values (5.2.28) → the 7-letter receipt `stat:` names
MESSAGE_STATES = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}
_STATE_ALIASES = {
    "DELIVERED": "DELIVRD",
    "UNDELIVERABLE": "UNDELIV",
    "UNDELIVERED": "UNDELIV",
    "ACCEPTED": "ACCEPTD",
    "REJECTED": "REJECTD",
}

_RE_ID = re.compile(r"(?:^|\s)id:(\S+)", re.IGNORECASE)
_RE_STAT = re.compile(r"\bstat:(\w+)", re.IGNORECASE)
_RE_ERR = re.compile(r"\berr:(\w+)", re.IGNORECASE)


_RE_RECEIPT_KEY = re.compile(r"(?:^|\s)id:|\bstat:", re.IGNORECASE)


def receipt_text(data_coding: int, payload: bytes) -> str:
    """The text of a receipt, read whatever the data_coding claims.

    data_coding 8 → UCS-2, but when that has neither `id:` nor `stat:` (an SMSC that copied the
    MT's data_coding into an ASCII receipt) the octets are read as Latin-1 instead. Any other
    data_coding → Latin-1 (not GSM-7, so ids with '_', '@' or '$' survive), but when the octets
    hold NULs and Latin-1 shows no `id:`/`stat:`, UTF-16-BE is tried (a UCS-2 receipt sent with
    data_coding 0). Whichever reading is kept, NULs left in it become spaces."""
    data = bytes(payload)
    if data_coding == 8:
        text = _ucs2(data)
        if not _RE_RECEIPT_KEY.search(text):
            alt = data.decode("latin-1")
            if _RE_RECEIPT_KEY.search(alt):
                text = alt
    else:
        text = data.decode("latin-1")
        if "\0" in text and not _RE_RECEIPT_KEY.search(text):
            alt = _ucs2(data)
            if _RE_RECEIPT_KEY.search(alt):
                text = alt
    if "\0" in text:
        text = text.replace("\0", " ")
    return text


def parse_receipt(pdu: DeliverSm) -> Receipt | None:
    """A delivery receipt (esm_class 0x04) → Receipt, else None.

    message_id: receipted_message_id TLV (C-string) else `id:` in the text. state: message_state
    TLV (1..8) else `stat:` in the text (long names like DELIVERED normalised), "UNKNOWN" when
    neither says. error: `err:` in the text as written (err:000, err:0b1), else "". None when not
    a receipt or no id is found. The text is read by `receipt_text`: UCS-2 for data_coding 8 and
    Latin-1 otherwise, each falling back to the other when it shows no `id:`/`stat:`, with and
    without the receipt TLVs."""
    if not pdu.esm_class & _RECEIPT:
        return None
    tlvs = pdu.tlvs
    text = receipt_text(pdu.data_coding, pdu.payload)

    message_id = ""
    raw = tlvs.get(_T_RECEIPTED_ID)
    if raw:
        message_id = raw.split(b"\0", 1)[0].decode("latin-1").strip()
    if not message_id:
        m = _RE_ID.search(text)
        if m:
            message_id = m.group(1)
    if not message_id:
        return None

    state = ""
    raw = tlvs.get(_T_STATE)
    if raw is not None and len(raw) == 1:
        state = MESSAGE_STATES.get(raw[0], "")
    if not state:
        m = _RE_STAT.search(text)
        if m:
            s = m.group(1).upper()
            state = _STATE_ALIASES.get(s, s)
    m = _RE_ERR.search(text)
    return Receipt(message_id=message_id, state=state or "UNKNOWN", error=m.group(1) if m else "")


def _receipt_date(value: datetime | str | None) -> str:
    if value is None:
        value = datetime.now(timezone.utc)
    if isinstance(value, datetime):
        return value.strftime("%y%m%d%H%M")
    return str(value)


def format_receipt_text(
    message_id: str,
    state: str,
    err: str = "000",
    submit_date: datetime | str | None = None,
    done_date: datetime | str | None = None,
    text: str = "",
) -> str:
    """The de-facto standard receipt text (SMPP 3.4 appendix B):
    `id:IIII sub:001 dlvrd:001 submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DELIVRD err:000 text:...`

    Dates may be datetimes or preformatted strings (None → now, UTC); `text` is cut to 20 chars;
    dlvrd is 001 only for DELIVRD."""
    dlvrd = "001" if state == "DELIVRD" else "000"
    return (
        f"id:{message_id} sub:001 dlvrd:{dlvrd} submit date:{_receipt_date(submit_date)}"
        f" done date:{_receipt_date(done_date)} stat:{state} err:{err} text:{text[:20]}"
    )
