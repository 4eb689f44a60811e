"""The simulated SMSC testers use against smsbot.

- `smsc.SimSmsc`: SMPP 3.4 server (binds, submit_sm → per-MSISDN mailbox, MO injection with
  redelivery, delivery receipts) plus the HTTP/JSON control API (`control`, routes documented there).
- `handset.Handset`: a handset client over the control API; `handset.run_handset` for the CLI.
- `mailbox`: the per-MSISDN store of whole MTs and the reassembly of concatenated parts.
- `connection`: one SMPP connection (reader thread, locked writes, bind handling).
- `faults`: fault injection on the submit_sm side (delay, throttle, max TPS, reject, drops).
- `mo`: text → the deliver_sm parts of a handset's MO (udh8 / udh16 / sar, forced data_coding).
- `profiles`: the default and field profiles (flags for what the SMSC does on the wire) and the
  simulator's own deliver_sm / data_sm encoders.
- `ismg`, `ismg_conn`: the simulated CMPP gateway (`ismg.SimIsmg`) and one of its connections; it
  can share the SMSC's mailbox.
"""

from .handset import Handset, HandsetError, format_message, run_handset
from .errors import SimSmscError
from .smsc import SimSmsc

__all__ = ["Handset", "HandsetError", "SimSmsc", "SimSmscError", "format_message", "run_handset"]
