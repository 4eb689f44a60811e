"""The simulated SMSC testers use against smsbot, and its CMPP sibling.

- `base.Simulator`: what the SMPP and the CMPP simulator share (lifecycle, profile switching,
  fault plan, counters, connections held, mailbox and events; the control API talks to it).
- `smsc.SimSmsc`: the SMPP 3.4 server assembled on it (settings, SMPP profile, binds, TLS, raw
  PDUs) plus the HTTP/JSON control API (`control`, routes documented there).
- `submits`: its MT side (submit_sm judged by the fault plan, answered, stored, receipts written).
- `deliveries`: its MO side (MOs and receipts as jobs delivered as deliver_sm / data_sm).
- `scheduler`: the delivery jobs and the workers running them, in order per handset (SMPP and CMPP).
- `server`: a listening socket and the connections held (SMPP and CMPP); `connection`: one accepted
  connection (reader thread, framing, locked writes, answers awaited, drops and silence);
  `smpp_conn`: an SMPP one (binds, enquire_link); `tls`: the TLS proxy in front of an SMPP connection.
- `handset.Handset`: a handset client over the control API; `handset.run_handset` for the CLI.
- `mailbox`: the per-MSISDN store of whole MTs and the reassembly of concatenated parts.
- `faults`: fault injection on the submit side, SMPP's and CMPP's (delay, throttle, max TPS, reject, drops).
- `mo`: text → the deliver_sm parts of a handset's MO (udh8 / udh16 / sar, forced data_coding).
- `addresses`: handset numbers on the wire (an MT's destination by TON, an MO's source).
- `profiles`: the default and field profiles (flags for what the SMSC does on the wire) and the
  simulator's own deliver_sm / data_sm encoders.
- `events`: what the web page shows; `counters`: the counts `stats()` shows.
- `ismg`, `ismg_conn`: the simulated CMPP gateway (`ismg.SimIsmg`: the same control API, page,
  events and fault plan; ``smsbot ismg``) and one of its connections; it can share the SMSC's
  mailbox. `cmpp_profile`: its default and field profiles (space padding, GBK MOs, reused Msg_Ids).
"""

from .handset import Handset, HandsetError, format_message, run_handset
from .errors import SimSmscError
from .smsc import SimSmsc

__all__ = ["Handset", "HandsetError", "SimSmsc", "SimSmscError", "format_message", "run_handset"]
