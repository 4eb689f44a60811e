"""The numbers CMPP names: command ids, versions, Msg_Fmt, fee types, result and status codes.

Values as China Mobile's CMPP 3.0 and 2.0 specifications give them (see
shared/reference/cmpp-notes.md). Enums here are for naming values we send or check; decoding
keeps whatever integer the peer sent (an unknown Msg_Fmt or Result is not an error).
"""

from __future__ import annotations

import enum

HEADER_LEN = 12  # Total_Length, Command_Id, Sequence_Id: 4 octets each
RESP_BIT = 0x80000000


class CommandId(enum.IntEnum):
    CONNECT = 0x00000001
    CONNECT_RESP = 0x80000001
    TERMINATE = 0x00000002
    TERMINATE_RESP = 0x80000002
    SUBMIT = 0x00000004
    SUBMIT_RESP = 0x80000004
    DELIVER = 0x00000005
    DELIVER_RESP = 0x80000005
    QUERY = 0x00000006
    QUERY_RESP = 0x80000006
    CANCEL = 0x00000007
    CANCEL_RESP = 0x80000007
    ACTIVE_TEST = 0x00000008
    ACTIVE_TEST_RESP = 0x80000008


class Version(enum.IntEnum):
    """The Version octet: high nibble major, low nibble minor."""

    V20 = 0x20
    V30 = 0x30


class MsgFmt(enum.IntEnum):
    ASCII = 0
    WRITE_CARD = 3
    BINARY = 4
    UCS2 = 8
    GBK = 15


class ConnectStatus(enum.IntEnum):
    """CONNECT_RESP Status (3.0: 4 octets, 2.0: 1 octet)."""

    OK = 0
    BAD_STRUCTURE = 1
    BAD_SOURCE_ADDR = 2
    AUTH_FAILED = 3
    VERSION_TOO_HIGH = 4


class Result(enum.IntEnum):
    """SUBMIT_RESP / DELIVER_RESP Result (3.0: 4 octets, 2.0: 1 octet). 0-8 are shared; from 9 on
    a DELIVER_RESP means "another error", a SUBMIT_RESP the SUBMIT-specific values below."""

    OK = 0
    BAD_STRUCTURE = 1
    BAD_COMMAND = 2
    REPEATED_SEQUENCE = 3
    BAD_MSG_LENGTH = 4
    BAD_FEE_CODE = 5
    TOO_LONG = 6
    BAD_SERVICE_ID = 7
    FLOW_CONTROL = 8
    NOT_THIS_GATEWAYS_NUMBER = 9  # the gateway does not serve the charged number
    BAD_SRC_ID = 10
    BAD_MSG_SRC = 11
    BAD_FEE_TERMINAL_ID = 12
    BAD_DEST_TERMINAL_ID = 13


class FeeType(str, enum.Enum):
    """FeeType (2 ASCII digits)."""

    FREE = "01"
    PER_MESSAGE = "02"
    MONTHLY = "03"
    CAPPED = "04"
    BY_SP = "05"


class FeeUserType(enum.IntEnum):
    """Fee_UserType: who pays."""

    DESTINATION = 0
    SOURCE = 1
    SP = 2
    FEE_TERMINAL = 3  # the number in Fee_terminal_Id


#: the Stat of a status report for a delivered message; others include EXPIRED, UNDELIV, REJECTD
DELIVERED = "DELIVRD"
