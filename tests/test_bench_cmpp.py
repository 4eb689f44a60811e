"""The benchmark's CMPP rows still run: `python -m bench --protocols cmpp3,cmpp2` at tiny sizes; the
load ISMG reads SUBMITs as the codec does, and the CMPP baseline does what the smpplib loop does.

Not a measurement (no assertion on the figures): it proves the CMPP load SMSC (`bench.load_ismg`),
the CMPP baseline (`bench.baseline_cmpp`) and smsbot over CMPP fit together in the report, with the
same fields as the SMPP rows (tests/test_bench_smoke.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench.baseline_cmpp import REPLY_TEXT
from bench.load_ismg import CmppLoadSmsc
from smsbot import cmpp
from smsbot.cmpp import auth, codec, fields

REPO = Path(__file__).resolve().parent.parent


def test_cmpp_rows_for_both_versions(tmp_path: Path):
    out = tmp_path / "bench.json"
    res = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--protocols", "cmpp3,cmpp2", "--workloads", "b", "--windows", "10",
         "--subscribers", "50", "--messages", "300", "--latency-seconds", "0", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["protocol"] for r in rows] == ["cmpp3", "cmpp2"]
    for row in rows:
        assert row.get("error") is None and row.get("baseline_error") is None, row
        assert row["mos_completed"] == row["mos_sent"] == 300 and row["baseline_mos_completed"] == 300, row
        assert row["mo_mt_per_s"] and row["baseline_mo_mt_per_s"] and row["p99_ms"] is not None, row
        assert 1.0 <= row["redis_commandstats_per_mo"]["evalsha"] < 1.2  # one script per MO, as over SMPP
    assert "b cmpp3" in res.stdout and "b cmpp2" in res.stdout  # the table names the protocol


@pytest.mark.parametrize("version", [0x30, 0x20])
def test_the_load_ismg_reads_a_submit_at_its_offsets_as_the_codec_does(version):
    """The load ISMG reads only Pk_number and the first Dest_terminal_Id of a SUBMIT, at fixed offsets
    (decoding each SUBMIT cost it ~5x the SMPP load's CPU per MO): they must be the codec's fields."""
    ismg = CmppLoadSmsc(version=version)
    try:
        at, width = codec.submit_dest_at(version), fields.layout(version).terminal_id
        for dest, total, number, content in [("8613900000007", 1, 1, b"hi"), ("13900000123", 3, 2, "长".encode("utf-16-be")),
                                             ("8613900000001", 2, 2, b"x" * 140)]:
            body = cmpp.encode_body(cmpp.Submit([dest], content, msg_fmt=0 if content.isascii() else 8, src_id="10086",
                                                msg_src="901234", pk_total=total, pk_number=number), version)
            sm = cmpp.decode(cmpp.CommandId.SUBMIT, body, version)
            assert body[at] == len(sm.dest_terminal_ids) == 1
            assert body[at + 1:at + 1 + width].rstrip(b"\0").decode() == sm.dest_terminal_ids[0] == dest
            assert body[codec.SUBMIT_PK_NUMBER_AT] == sm.pk_number == number
        # its SUBMIT_RESP is the codec's, packed at once
        resp = ismg._submit_resp
        assert resp.pack(resp.size, cmpp.CommandId.SUBMIT_RESP, 77, 12345) == cmpp.encode(cmpp.SubmitResp(12345, 0), 77, version)
    finally:
        ismg.close()


def _frames(sock: socket.socket, framer: cmpp.Framer, n: int) -> list[cmpp.Frame]:
    got: list[cmpp.Frame] = []
    while len(got) < n:
        data = sock.recv(65536)
        assert data, f"the baseline closed after {got}"
        got += framer.feed(data)
    return got


@pytest.mark.parametrize("version", [0x30, 0x20])
def test_the_cmpp_baseline_does_what_the_smpplib_loop_does(version):
    """smpplib's loop, PDU for PDU: the SUBMIT goes before the MO's DELIVER_RESP (smpplib calls the
    handler, then answers), a status report gets only its DELIVER_RESP, SUBMIT_RESPs are read, and
    the baseline leaves on the gateway's TERMINATE (answered)."""
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.settimeout(30)
    proc = subprocess.Popen([sys.executable, "-m", "bench.baseline_cmpp", "--port", str(lsock.getsockname()[1]),
                             "--version", hex(version)], cwd=REPO, stderr=subprocess.PIPE)
    try:
        sock, _ = lsock.accept()
        sock.settimeout(30)
        framer = cmpp.Framer()
        (f,) = _frames(sock, framer, 1)
        req = cmpp.decode(f.command_id, f.body, version)
        assert isinstance(req, cmpp.Connect) and auth.source_ok("901234", "secret", req.timestamp, req.authenticator)
        sock.sendall(cmpp.encode(cmpp.ConnectResp(0, auth.authenticator_ismg(0, req.authenticator, "secret", version), version),
                                 f.sequence, version))
        report = cmpp.StatusReport(9, "DELIVRD", "2512041830", "2512041830", "8613900000002", 1)
        sock.sendall(cmpp.encode(cmpp.Deliver(msg_id=501, dest_id="10086", src_terminal_id="13900000001", msg_content=b"0000"),
                                 41, version)
                     + cmpp.encode(cmpp.Deliver(msg_id=502, dest_id="10086", src_terminal_id="8613900000002",
                                                report=report), 42, version))
        got = [(fr.command_id, fr.sequence, cmpp.decode(fr.command_id, fr.body, version)) for fr in _frames(sock, framer, 3)]
        (c1, s1, submit), (c2, s2, resp1), (c3, s3, resp2) = got
        assert c1 == cmpp.CommandId.SUBMIT and submit.dest_terminal_ids == ["13900000001"] and submit.msg_content == REPLY_TEXT
        assert (c2, s2, resp1) == (cmpp.CommandId.DELIVER_RESP, 41, cmpp.DeliverResp(501, 0))
        assert (c3, s3, resp2) == (cmpp.CommandId.DELIVER_RESP, 42, cmpp.DeliverResp(502, 0))
        sock.sendall(cmpp.encode(cmpp.SubmitResp(1, 0), s1, version) + cmpp.encode(cmpp.Terminate(), 43, version))
        (bye,) = _frames(sock, framer, 1)
        assert (bye.command_id, bye.sequence) == (cmpp.CommandId.TERMINATE_RESP, 43)
        assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
        sock.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        lsock.close()


def test_the_cmpp_rows_bot_has_the_smpp_rows_submit_window(tmp_path: Path):
    """The bot's window of unanswered submits is the same in every row (an ISMG's default 16 against
    SMPP's 50 flushed records 3-4x as often with two-part replies, and held submits behind them)."""
    from bench.sut import write_config
    from smsbot.config import load

    windows = {}
    for protocol in ("smpp", "cmpp3", "cmpp2"):
        (tmp_path / protocol).mkdir()
        windows[protocol] = load(write_config(tmp_path / protocol, 2775, "redis://127.0.0.1:1", protocol)).smsc.submit_window
    assert windows["cmpp3"] == windows["cmpp2"] == windows["smpp"] > 16, windows
