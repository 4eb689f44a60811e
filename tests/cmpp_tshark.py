"""Wireshark's CMPP dissector as the tests' second opinion: wrap PDUs in TCP (``text2pcap -T``),
decode them (``tshark -d tcp.port==PORT,cmpp -T json``), and what tshark should show for a PDU we
meant to send (`meant`, in its order and words). Shared by tests/test_cmpp_tshark.py (the tests'
SP and the simulator) and tests/test_e2e_cmpp_tshark.py (the bot's own session). What the
dissector cannot show, and how that is handled, is in tests/test_cmpp_tshark.py's docstring.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

from smsbot import cmpp

TSHARK, TEXT2PCAP = shutil.which("tshark"), shutil.which("text2pcap")
SKIP_REASON = "tshark/text2pcap not installed: Debian's tshark package (.ci/run installs it)"
TREE = "<tree>"
SHOWN_RAW = {"cmpp.connect.AuthenticatorSource", "cmpp.connect_resp.AuthenticatorISMG", "cmpp.Msg_Content"}


def tshark_frames(records: list[tuple[bool, bytes]], sp_port: int, port: int, tmp: Path,
                  malformed_ok: bool = False) -> list[tuple[int, list[tuple[str, str]]]]:
    """(TCP source port, the cmpp fields tshark shows) of every PDU in `records` ((from the SP?,
    its octets), in capture order)."""
    hexdump = tmp / "session.txt"
    hexdump.write_text("".join(f"{'I' if from_sp else 'O'} {data.hex()}\n" for from_sp, data in records))
    pcap = tmp / "session.pcapng"
    subprocess.run([TEXT2PCAP, "-q", "-D", "-r", r"^(?<dir>[IO])\s(?<data>[0-9a-fA-F]+)$", "-T", f"{sp_port},{port}",
                    str(hexdump), str(pcap)], check=True, capture_output=True)
    out = subprocess.run([TSHARK, "-r", str(pcap), "-d", f"tcp.port=={port},cmpp", "-T", "json", "-x"],
                         check=True, capture_output=True, text=True).stdout
    packets = json.loads(out, object_pairs_hook=list)  # keeps repeated keys in order
    frames = []
    for packet in packets:
        layers = dict(dict(dict(packet)["_source"])["layers"])
        assert "_ws.malformed" not in layers or malformed_ok, layers.get("_ws.malformed")
        frames.append((int(dict(layers["tcp"])["tcp.srcport"]), flatten(layers["cmpp"])))
    assert len(frames) == len(records)
    return frames


def flatten(pairs: list) -> list[tuple[str, str]]:
    raws = {k[:-4]: v for k, v in pairs if k.endswith("_raw")}
    out: list[tuple[str, str]] = []
    for key, value in pairs:
        if key.endswith("_raw"):
            continue
        if isinstance(value, list):
            out.append((key, TREE))
            out.extend(flatten(value))
        else:
            out.append((key, raws.get(key, [value])[0] if key in SHOWN_RAW else value))
    return out


# ---------------------------------------------------------------------------------------------- what was meant


def header(command: int, sequence: int, length: int) -> list[tuple[str, str]]:
    return [("cmpp.Total_Length", str(length)), ("cmpp.Command_Id", f"0x{command:08x}"),
            ("cmpp.Sequence_Id", str(sequence))]


def msg_id(value: int, now: datetime, gateway: int) -> list[tuple[str, str]]:
    """A Msg_Id: 0 from the SP, else the gateway's (code `gateway`), made at `now` (the ISMG code as
    tshark computes it)."""
    when, code = ("00/00 00:00:00", 0) if value == 0 else (now.strftime("%m/%d %H:%M:%S"), gateway >> 8)
    return [("cmpp.Msg_Id", f"0x{value:016x}"), ("cmpp.Msg_Id_tree", TREE), ("cmpp.Msg_Id.timestamp", when),
            ("cmpp.Msg_Id.ismg_code", str(code)), ("cmpp.Msg_Id.sequence_id", str(value & 0xFFFF))]


def version_text(v: int) -> str:
    return f"{v >> 4:02d}.{v & 15:02d}"


def meant(pdu: cmpp.Pdu, sequence: int, length: int, *, now: datetime, gateway: int,
          connect_time: datetime | None = None) -> list[tuple[str, str]]:
    """The fields tshark should show for `pdu` (3.0 layout), in its order."""
    fields = header(pdu.COMMAND, sequence, length)
    if isinstance(pdu, cmpp.Connect):
        fields += [("cmpp.connect.Source_Addr", pdu.source_addr),
                   ("cmpp.connect.AuthenticatorSource", pdu.authenticator.hex()),
                   ("cmpp.Version", version_text(pdu.version)),
                   ("cmpp.connect.Timestamp", (connect_time or now).strftime("%m/%d %H:%M:%S"))]
    elif isinstance(pdu, cmpp.ConnectResp):
        fields += [("cmpp.connect_resp.Status", str(pdu.status)),
                   ("cmpp.connect_resp.AuthenticatorISMG", pdu.authenticator.hex()),
                   ("cmpp.Version", version_text(pdu.version))]
    elif isinstance(pdu, cmpp.Submit):
        (dest,) = pdu.dest_terminal_ids
        fields += [*msg_id(pdu.msg_id, now, gateway), ("cmpp.submit.Pk_total", str(pdu.pk_total)),
                   ("cmpp.submit.Pk_number", str(pdu.pk_number)),
                   ("cmpp.submit.Registered_Delivery", str(pdu.registered_delivery)),
                   ("cmpp.submit.Msg_level", str(pdu.msg_level)), ("cmpp.Servicd_Id", pdu.service_id),
                   ("cmpp.submit.Fee_UserType", str(pdu.fee.user_type)),
                   ("cmpp.submit.Fee_terminal_Id", pdu.fee.terminal_id),
                   ("cmpp.submit.Fee_terminal_type", str(pdu.fee.terminal_type)), ("cmpp.TP_pId", str(pdu.tp_pid)),
                   ("cmpp.TP_udhi", str(pdu.tp_udhi)), ("cmpp.Msg_Fmt", str(pdu.msg_fmt)),
                   ("cmpp.submit.Msg_src", pdu.msg_src), ("cmpp.submit.FeeType", pdu.fee.fee_type),
                   ("cmpp.submit.FeeCode", pdu.fee.fee_code), ("cmpp.submit.Valld_Time", pdu.valid_time),
                   ("cmpp.submit.At_time", pdu.at_time), ("cmpp.submit.Src_Id", pdu.src_id[:17]),
                   ("cmpp.submit.DestUsr_tl", "1"), ("cmpp.Dest_terminal_Id", dest),
                   ("cmpp.submit.Dest_terminal_type", str(pdu.dest_terminal_type)),
                   ("cmpp.Msg_Length", str(len(pdu.msg_content))), ("cmpp.Msg_Content", pdu.msg_content.hex()),
                   ("cmpp.LinkID", pdu.link_id)]
    elif isinstance(pdu, cmpp.Deliver):
        fields += [*msg_id(pdu.msg_id, now, gateway), ("cmpp.deliver.Dest_Id", pdu.dest_id), ("cmpp.Servicd_Id", pdu.service_id),
                   ("cmpp.TP_pId", str(pdu.tp_pid)), ("cmpp.TP_udhi", str(pdu.tp_udhi)),
                   ("cmpp.Msg_Fmt", str(pdu.msg_fmt)), ("cmpp.deliver.Src_terminal_Id", pdu.src_terminal_id),
                   ("cmpp.deliver.Src_terminal_type", str(pdu.src_terminal_type)),
                   ("cmpp.deliver.Registered_Delivery", str(pdu.registered_delivery))]
        r = pdu.report
        if r is None:
            fields += [("cmpp.Msg_Length", str(len(pdu.msg_content))), ("cmpp.Msg_Content", pdu.msg_content.hex())]
        else:
            fields += [("cmpp.Msg_Length", "71"), ("cmpp.deliver.Report", TREE), *msg_id(r.msg_id, now, gateway),
                       ("cmpp.deliver.Report.Status", r.stat), ("cmpp.deliver.Report.Submit_time", r.submit_time),
                       ("cmpp.deliver.Report.Done_time", r.done_time), ("cmpp.Dest_terminal_Id", r.dest_terminal_id),
                       ("cmpp.Report.SMSC_sequence", str(r.smsc_sequence))]
        fields.append(("cmpp.LinkID", pdu.link_id))
    elif isinstance(pdu, (cmpp.SubmitResp, cmpp.DeliverResp)):
        name = "submit_resp" if isinstance(pdu, cmpp.SubmitResp) else "deliver_resp"
        fields += [*msg_id(pdu.msg_id, now, gateway), (f"cmpp.{name}.Result", str(pdu.result))]
    return fields  # ACTIVE_TEST(_RESP), TERMINATE(_RESP): the header only


#: on 2.0, the last field tshark reads where 2.0 has it (see the module docstring)
LAST_SHARED_20 = {cmpp.CommandId.SUBMIT: "cmpp.submit.Fee_UserType", cmpp.CommandId.DELIVER: "cmpp.Msg_Fmt",
                  cmpp.CommandId.SUBMIT_RESP: "cmpp.Msg_Id.sequence_id",
                  cmpp.CommandId.DELIVER_RESP: "cmpp.Msg_Id.sequence_id", cmpp.CommandId.CONNECT_RESP: "cmpp.Sequence_Id"}


def shared_with_20(command: int, fields: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last = LAST_SHARED_20.get(command)
    if last is None:
        return fields
    names = [name for name, _v in fields]
    return fields[:names.index(last) + 1]


