"""The write side of a link: what goes to the SMSC, in one `sendall` a turn, and which resps it has read.

`smsbot.session` connects, binds and reads; this module owns everything written on a bound link
after that. An `Outgoing` (SMPP) or `CmppOutgoing` (CMPP) per link, made by `for_link`:

* queues PDUs: the resp to an MO or receipt given its `ReplyTo` and a status (`answer`: a
  deliver_sm_resp / data_sm_resp, or a CMPP_DELIVER_RESP whose Result says the same), the
  submits the sender let go (`submit`), what the read side owes the peer (`owe`: link-level
  answers, MOs it refused itself), the keepalive the read side asked for (`keepalive`), the
  goodbye (`goodbye`: unbind, CMPP_TERMINATE);
* writes them in one `sendall` when the transport says (`flush`); a failed write is `LinkDown`;
* confirms resps: a resp may carry a *guard* (the pipeline's redelivery guard, an opaque value
  here). Behind the write that carries it a question (enquire_link, CMPP_ACTIVE_TEST) asks the
  SMSC to confirm; one question at a time, covering every guard written up to it, and asked again
  at the next flush while a written guard is not covered. The SMSC reads a connection in order, so
  once the read side returns that question's sequence as answered (`Received.answered`),
  `answered` returns the guards it covered — the very values given to `answer`. A link that dies
  first confirms nothing: its guards stay in Redis;
* keeps the question's time (`check`, `next_deadline`): unanswered within `smsc.response_timeout`,
  the link is dead.

It never reads the socket and never calls the layers above: the transport hands it values and
takes what it returns.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any, ClassVar

from smsbot import cmpp, pdu, sockio
from smsbot.cmpp.constants import Result, Version
from smsbot.cmpp_session import CmppLink
from smsbot.config import SmscSettings
from smsbot.messages import CommandId, Status
from smsbot.session import Link, LinkDown, ReplyTo, SequenceGenerator

Guard = Any  # the pipeline's redelivery guard: opaque here, handed back as it was given


@dataclass(eq=False)
class Outgoing:
    """The write side of one SMPP link. What is SMPP's is in `_resp_pdu`, `_probe_pdu` and
    `_goodbye_pdu`; CMPP's (`CmppOutgoing`) overrides those and keeps the queue and the questions."""

    sock: socket.socket  # the link's socket (only `sendall` is used here)
    sequences: SequenceGenerator  # the bot's, shared by its links and the sender
    out: list[bytes] = field(default_factory=list)  # queued for the next write
    _uncovered: list[Guard] = field(default_factory=list)  # guards queued or written, no question asked yet
    _question: tuple[int, float, list[Guard]] | None = None  # (its sequence, sent at, the guards it covers)

    probe_name: ClassVar[str] = "enquire_link"  # the question, for the log

    # -- what to write ---------------------------------------------------------------------------------
    def answer(self, reply: ReplyTo, status: int, guard: Guard = None) -> None:
        """Queue the resp to what `reply` stands for (`status` as an SMPP status); `guard`, when
        given, comes back from `answered` once the SMSC has surely read the resp."""
        self.out.append(self._resp_pdu(reply, status))
        if guard:
            self._uncovered.append(guard)

    def owe(self, answers: list[bytes], refused: list[tuple[ReplyTo, int]]) -> None:
        """Queue what a read owes the peer: link-level answers (`Received.owed`), and the resps to
        MOs and receipts the link refused itself (`Received.refused`)."""
        self.out.extend(answers)
        for reply, status in refused:
            self.out.append(self._resp_pdu(reply, status))

    def submit(self, pdus: list[bytes]) -> None:
        """Queue submits (the sender's, already numbered)."""
        self.out.extend(pdus)

    def keepalive(self) -> None:
        """Queue the keepalive question the read side asked for (the link is idle)."""
        self.out.append(self._probe_pdu(self.sequences.next_sequence()))

    def goodbye(self) -> None:
        """Queue the goodbye; the read side then waits for its answer (`Link.goodbye_read`)."""
        self.out.append(self._goodbye_pdu(self.sequences.next_sequence()))

    # -- the write -------------------------------------------------------------------------------------
    def flush(self, now: float) -> None:
        """Write what is queued in one `sendall`; behind it, when guards are uncovered and no
        question is open, the question that covers them."""
        if self._uncovered and self._question is None:
            seq = self.sequences.next_sequence()
            self.out.append(self._probe_pdu(seq))
            self._question = (seq, now, self._uncovered)
            self._uncovered = []
        if self.out:
            data = b"".join(self.out)
            self.out.clear()
            try:
                sockio.sendall(self.sock, data)
            except OSError as e:
                raise LinkDown(f"send failed: {e}") from None

    # -- confirmations -----------------------------------------------------------------------------------
    def answered(self, sequences: list[int]) -> list[Guard]:
        """The peer answered our questions `sequences` (`Received.answered`): the guards the open
        question covered when it is among them (the SMSC has read everything written before it),
        else none."""
        question = self._question
        if question is None or question[0] not in sequences:
            return []
        self._question = None
        return question[2]

    @property
    def asking(self) -> bool:
        """A question is open (written, not yet answered)."""
        return self._question is not None

    def check(self, now: float, s: SmscSettings) -> None:
        """LinkDown when the open question is overdue."""
        if self._question is not None and now - self._question[1] > s.response_timeout:
            raise LinkDown(f"{self.probe_name} unanswered")

    def next_deadline(self, s: SmscSettings) -> float | None:
        """The monotonic time `check` next has something to do (None: nothing)."""
        return None if self._question is None else self._question[1] + s.response_timeout

    # -- SMPP ------------------------------------------------------------------------------------------
    def _resp_pdu(self, reply: ReplyTo, status: int) -> bytes:
        if reply.detail:  # it came as data_sm
            return pdu.encode_data_sm_resp(reply.sequence, status)
        return pdu.encode_deliver_sm_resp(reply.sequence, status)

    def _probe_pdu(self, sequence: int) -> bytes:
        return pdu.encode_header(CommandId.ENQUIRE_LINK, 0, sequence)

    def _goodbye_pdu(self, sequence: int) -> bytes:
        return pdu.encode_header(CommandId.UNBIND, 0, sequence)


def result_of(status: int) -> int:
    """The CMPP Result that says what SMPP status `status` says, to a DELIVER."""
    if status == Status.ROK:
        return Result.OK
    if status == Status.RX_P_APPN:
        return Result.BAD_STRUCTURE  # will never read: do not deliver it again
    return Result.FLOW_CONTROL  # try again later


@dataclass(eq=False)
class CmppOutgoing(Outgoing):
    """The write side of a CMPP connection: CMPP_DELIVER_RESP (the `ReplyTo` carries the DELIVER's
    Msg_Id), CMPP_ACTIVE_TEST, CMPP_TERMINATE. `version`: 0x30 or 0x20."""

    version: int = Version.V30

    probe_name: ClassVar[str] = "CMPP_ACTIVE_TEST"

    def _resp_pdu(self, reply: ReplyTo, status: int) -> bytes:
        return cmpp.encode(cmpp.DeliverResp(reply.detail, result_of(status)), reply.sequence, self.version)

    def _probe_pdu(self, sequence: int) -> bytes:
        return cmpp.encode(cmpp.ActiveTest(), sequence, self.version)

    def _goodbye_pdu(self, sequence: int) -> bytes:
        return cmpp.encode(cmpp.Terminate(), sequence, self.version)


def for_link(link: Link, sequences: SequenceGenerator) -> Outgoing:
    """The write side of `link` (just bound), in its protocol."""
    if isinstance(link, CmppLink):
        return CmppOutgoing(link.sock, sequences, version=link.version)
    return Outgoing(link.sock, sequences)
