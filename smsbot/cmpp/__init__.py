"""CMPP 3.0 and 2.0 (China Mobile's SP ⇄ gateway protocol): the codec, one concept per module.

- `constants`: command ids, versions, Msg_Fmt, fee types, status and result codes.
- `errors`: `CmppError` (bytes that can never be read) and `FramingError`.
- `framing`: the 12-octet header and `Framer` (partial PDUs across reads, a size limit).
- `fields`: the 3.0 / 2.0 layouts and strict writing / liberal reading of fixed fields.
- `messages`: the PDUs as dataclasses; `codec`: them ⇄ bytes (`encode`, `decode`).
- `auth`: CONNECT's timestamp, AuthenticatorSource and AuthenticatorISMG.
- `msgid`: Msg_Id packing; `fee`: the fee fields as one value; `text`: Msg_Content ⇄ text, long
  messages.

The link that carries CMPP into smsbot's pipeline is `smsbot.cmpp_session`, the SUBMIT encoder
`smsbot.submits`; the simulated gateway is `smsbot.simulator.ismg`.
"""

from .codec import decode, decode_report, encode, encode_body, encode_report
from .constants import CommandId, ConnectStatus, FeeType, FeeUserType, MsgFmt, Result, Version
from .errors import CmppError, FramingError
from .fee import FREE, Fee
from .framing import Frame, Framer, encode_header
from .messages import (
    ActiveTest, ActiveTestResp, Connect, ConnectResp, Deliver, DeliverResp, Pdu, StatusReport, Submit, SubmitResp,
    Terminate, TerminateResp, Unknown,
)
from .msgid import MsgId

__all__ = [
    "ActiveTest", "ActiveTestResp", "CmppError", "CommandId", "Connect", "ConnectResp", "ConnectStatus", "Deliver",
    "DeliverResp", "FREE", "Fee", "FeeType", "FeeUserType", "Frame", "Framer", "FramingError", "MsgFmt", "MsgId",
    "Pdu", "Result", "StatusReport", "Submit", "SubmitResp", "Terminate", "TerminateResp", "Unknown", "Version",
    "decode", "decode_report", "encode", "encode_body", "encode_header", "encode_report",
]
