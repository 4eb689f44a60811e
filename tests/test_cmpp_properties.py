"""Properties of the CMPP codec (hypothesis): every PDU of both versions survives encode → frame →
decode; decoding arbitrary bytes raises nothing but CmppError; fields padded with spaces instead
of NULs read the same; a stream cut anywhere frames the same."""

from __future__ import annotations

import dataclasses
import string
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smsbot import cmpp
from smsbot.cmpp.codec import decode, encode
from smsbot.cmpp.fields import layout
from smsbot.cmpp.framing import Framer

pytestmark = pytest.mark.unit

VERSIONS = st.sampled_from([0x30, 0x20])
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def octets(width: int) -> st.SearchStrategy[str]:
    """What a field of `width` octets can hold and read back: ASCII without padding characters."""
    return st.text(alphabet=string.ascii_letters + string.digits + "-_.:+", max_size=width)


def uint(width: int) -> st.SearchStrategy[int]:
    return st.integers(0, (1 << (8 * width)) - 1)


@st.composite
def fees(draw, version: int) -> cmpp.Fee:
    kind = draw(st.sampled_from(["01", "02", "03", "04", "05"]))
    fen = 0 if kind == "01" else draw(st.integers(0, 999999))
    user_type = draw(st.integers(0, 3))
    terminal = draw(octets(layout(version).terminal_id).filter(bool)) if user_type == 3 else ""
    terminal_type = draw(st.integers(0, 1)) if version == 0x30 else 0
    return cmpp.Fee(kind, f"{fen:06d}", user_type, terminal, terminal_type)


@st.composite
def submits(draw, version: int) -> cmpp.Submit:
    lay = layout(version)
    fmt = draw(st.sampled_from([0, 8, 15, 4, 3, 200]))
    total = draw(st.integers(1, 255))
    return cmpp.Submit(
        dest_terminal_ids=draw(st.lists(octets(lay.terminal_id), min_size=1, max_size=5)),
        msg_content=draw(st.binary(max_size=159 if fmt == 0 else 140)),
        msg_fmt=fmt, src_id=draw(octets(21)), msg_src=draw(octets(6)), service_id=draw(octets(10)),
        fee=draw(fees(version)), registered_delivery=draw(uint(1)), pk_total=total,
        pk_number=draw(st.integers(1, total)), tp_udhi=draw(st.integers(0, 1)), tp_pid=draw(uint(1)),
        msg_level=draw(uint(1)), valid_time=draw(octets(17)), at_time=draw(octets(17)),
        dest_terminal_type=draw(st.integers(0, 1)) if lay.terminal_types else 0,
        link_id=draw(octets(20)) if lay.terminal_types else "", msg_id=draw(uint(8)),
    )


@st.composite
def reports(draw, version: int) -> cmpp.StatusReport:
    return cmpp.StatusReport(draw(uint(8)), draw(octets(7)), draw(octets(10)), draw(octets(10)),
                             draw(octets(layout(version).terminal_id)), draw(uint(4)))


@st.composite
def delivers(draw, version: int) -> cmpp.Deliver:
    lay = layout(version)
    report = draw(st.none() | reports(version))
    fmt = draw(st.sampled_from([0, 8, 15, 4, 200]))
    return cmpp.Deliver(
        msg_id=draw(uint(8)), dest_id=draw(octets(21)), src_terminal_id=draw(octets(lay.terminal_id)),
        msg_content=b"" if report else draw(st.binary(max_size=159 if fmt == 0 else 140)), msg_fmt=fmt,
        service_id=draw(octets(10)), tp_pid=draw(uint(1)), tp_udhi=draw(st.integers(0, 1)),
        src_terminal_type=draw(st.integers(0, 1)) if lay.terminal_types else 0,
        link_id=draw(octets(20)) if lay.terminal_types else "", report=report,
    )


@st.composite
def pdus(draw, version: int) -> cmpp.Pdu:
    width = layout(version).result
    return draw(st.one_of(
        st.builds(cmpp.Connect, octets(6), st.binary(min_size=16, max_size=16), uint(1), uint(4)),
        st.builds(cmpp.ConnectResp, uint(width), st.binary(min_size=16, max_size=16), uint(1)),
        submits(version), delivers(version),
        st.builds(cmpp.SubmitResp, uint(8), uint(width)), st.builds(cmpp.DeliverResp, uint(8), uint(width)),
        st.builds(cmpp.ActiveTest), st.builds(cmpp.ActiveTestResp, uint(1)),
        st.builds(cmpp.Terminate), st.builds(cmpp.TerminateResp),
    ))


@st.composite
def version_and_pdu(draw) -> tuple[int, cmpp.Pdu]:
    version = draw(VERSIONS)
    return version, draw(pdus(version))


def expected_after_decode(pdu: cmpp.Pdu, version: int) -> cmpp.Pdu:
    """A report's Msg_Content reads back as the report's octets."""
    if isinstance(pdu, cmpp.Deliver) and pdu.report is not None:
        return dataclasses.replace(pdu, msg_content=cmpp.encode_report(pdu.report, version))
    return pdu


@SETTINGS
@given(version_and_pdu(), uint(4))
def test_every_pdu_round_trips(vp, sequence):
    version, pdu = vp
    raw = encode(pdu, sequence, version)
    (frame,) = Framer().feed(raw)
    assert (frame.command_id, frame.sequence) == (pdu.COMMAND, sequence)
    assert decode(frame.command_id, frame.body, version) == expected_after_decode(pdu, version)


COMMANDS = st.sampled_from([int(c) for c in cmpp.CommandId]) | uint(4)


@SETTINGS
@given(COMMANDS, st.binary(max_size=400), VERSIONS)
def test_decoding_arbitrary_bytes_raises_only_cmpp_error(command_id, body, version):
    try:
        decode(command_id, body, version)
    except cmpp.CmppError:
        pass


@SETTINGS
@given(version_and_pdu(), VERSIONS)
def test_decoding_any_pdu_on_the_other_version_raises_only_cmpp_error(vp, other):
    version, pdu = vp
    (frame,) = Framer().feed(encode(pdu, 1, version))
    for cut in (len(frame.body), len(frame.body) // 2, 3):
        try:
            decode(frame.command_id, frame.body[:cut], other)
        except cmpp.CmppError:
            pass


@SETTINGS
@given(st.lists(version_and_pdu(), min_size=1, max_size=6), st.lists(st.integers(1, 300), max_size=20))
def test_a_stream_cut_anywhere_frames_the_same(vps, cuts):
    stream = b"".join(encode(pdu, i, version) for i, (version, pdu) in enumerate(vps))
    framer, frames, pos = Framer(), [], 0
    for size in cuts:
        frames += framer.feed(stream[pos:pos + size])
        pos += size
    frames += framer.feed(stream[pos:])
    assert framer.buffered == 0
    assert [(f.command_id, f.sequence) for f in frames] == [(p.COMMAND, i) for i, (_v, p) in enumerate(vps)]


# -- liberal padding: a DELIVER (and its report) and the responses written by hand, padded as a gateway may


def field(value: str, width: int, pad: bytes) -> bytes:
    return value.encode("ascii").ljust(width, pad)


def hand_written_deliver(d: cmpp.Deliver, version: int, pad: bytes) -> bytes:
    """A DELIVER body written here from the specification's table, not by the codec."""
    lay = layout(version)
    if d.report is not None:
        r = d.report
        content = (struct.pack(">Q", r.msg_id) + field(r.stat, 7, pad) + field(r.submit_time, 10, pad)
                   + field(r.done_time, 10, pad) + field(r.dest_terminal_id, lay.terminal_id, pad)
                   + struct.pack(">I", r.smsc_sequence))
    else:
        content = d.msg_content
    return (struct.pack(">Q", d.msg_id) + field(d.dest_id, 21, pad) + field(d.service_id, 10, pad)
            + bytes([d.tp_pid, d.tp_udhi, d.msg_fmt]) + field(d.src_terminal_id, lay.terminal_id, pad)
            + (bytes([d.src_terminal_type]) if lay.terminal_types else b"")
            + bytes([1 if d.report else 0, len(content)]) + content
            + (field(d.link_id, 20, pad) if lay.terminal_types else pad * 8))


@SETTINGS
@given(VERSIONS.flatmap(lambda v: st.tuples(st.just(v), delivers(v))), st.sampled_from([b"\0", b" "]))
def test_deliver_padded_with_spaces_or_nuls_reads_the_same(vd, pad):
    version, d = vd
    body = hand_written_deliver(d, version, pad)
    got = decode(cmpp.CommandId.DELIVER, body, version)
    want = expected_after_decode(d, version)
    if d.report is not None:
        want.msg_content = body[-len(want.msg_content) - layout(version).tail:-layout(version).tail]
    assert got == want
