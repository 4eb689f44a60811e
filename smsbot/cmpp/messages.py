"""The CMPP PDUs as dataclasses: shapes only, one for both versions (no I/O, no encoding here).

`smsbot.cmpp.codec` turns them into bytes and back for 3.0 or 2.0. Fields that exist in one
version only (terminal types, LinkID) are kept on the shared shape: 2.0 writes them as absent
(and refuses non-default values), and reads them as their defaults. Octet strings are `str`
(ASCII when sent, Latin-1 when read), Msg_Content is `bytes` (its text is `smsbot.cmpp.text`'s).
`COMMAND` names each shape's Command_Id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Union

from .constants import CommandId, Version
from .fee import FREE, Fee


@dataclass(slots=True)
class Connect:
    COMMAND: ClassVar[int] = CommandId.CONNECT
    source_addr: str  # the SP_Id
    authenticator: bytes  # AuthenticatorSource (16 octets)
    version: int = Version.V30
    timestamp: int = 0  # MMDDHHMMSS as an integer


@dataclass(slots=True)
class ConnectResp:
    COMMAND: ClassVar[int] = CommandId.CONNECT_RESP
    status: int
    authenticator: bytes  # AuthenticatorISMG (16 octets; zeros when refused)
    version: int = Version.V30


@dataclass(slots=True)
class Submit:
    COMMAND: ClassVar[int] = CommandId.SUBMIT
    dest_terminal_ids: list[str]
    msg_content: bytes
    msg_fmt: int = 0
    src_id: str = ""  # the number the subscriber sees (the short code)
    msg_src: str = ""  # the SP_Id
    service_id: str = ""
    fee: Fee = FREE
    registered_delivery: int = 0
    pk_total: int = 1
    pk_number: int = 1
    tp_udhi: int = 0
    tp_pid: int = 0
    msg_level: int = 0
    valid_time: str = ""  # ValId_Time, 17 octets (SMPP absolute/relative time form)
    at_time: str = ""
    dest_terminal_type: int = 0  # 3.0 only
    link_id: str = ""  # 3.0 LinkID; 2.0 has an 8-octet Reserve instead
    msg_id: int = 0  # 0 from the SP


@dataclass(slots=True)
class SubmitResp:
    COMMAND: ClassVar[int] = CommandId.SUBMIT_RESP
    msg_id: int  # the gateway's id for this part: status reports carry it
    result: int = 0


@dataclass(slots=True)
class StatusReport:
    """The Msg_Content of a DELIVER with Registered_Delivery 1."""

    msg_id: int  # as the SUBMIT_RESP gave it
    stat: str  # DELIVRD, EXPIRED, UNDELIV, REJECTD, ...
    submit_time: str = ""  # YYMMDDHHMM
    done_time: str = ""
    dest_terminal_id: str = ""  # the MT's destination
    smsc_sequence: int = 0


@dataclass(slots=True)
class Deliver:
    COMMAND: ClassVar[int] = CommandId.DELIVER
    msg_id: int
    dest_id: str  # the short code the subscriber wrote to
    src_terminal_id: str  # the subscriber
    msg_content: bytes = b""  # for a report as read; ignored when encoding one (`report` is written)
    msg_fmt: int = 0
    service_id: str = ""
    tp_pid: int = 0
    tp_udhi: int = 0
    src_terminal_type: int = 0  # 3.0 only
    link_id: str = ""  # 3.0 only
    report: StatusReport | None = None  # set: a status report (Registered_Delivery 1)

    @property
    def registered_delivery(self) -> int:
        return 0 if self.report is None else 1


@dataclass(slots=True)
class DeliverResp:
    COMMAND: ClassVar[int] = CommandId.DELIVER_RESP
    msg_id: int
    result: int = 0


@dataclass(slots=True)
class ActiveTest:
    COMMAND: ClassVar[int] = CommandId.ACTIVE_TEST


@dataclass(slots=True)
class ActiveTestResp:
    COMMAND: ClassVar[int] = CommandId.ACTIVE_TEST_RESP
    reserved: int = 0


@dataclass(slots=True)
class Terminate:
    COMMAND: ClassVar[int] = CommandId.TERMINATE


@dataclass(slots=True)
class TerminateResp:
    COMMAND: ClassVar[int] = CommandId.TERMINATE_RESP


@dataclass(slots=True)
class Unknown:
    """A PDU this codec does not model (CMPP_QUERY, CMPP_CANCEL, vendor commands): kept raw."""

    command_id: int
    body: bytes = field(default=b"")


Pdu = Union[Connect, ConnectResp, Submit, SubmitResp, Deliver, DeliverResp, ActiveTest, ActiveTestResp,
            Terminate, TerminateResp, Unknown]
