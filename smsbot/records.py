"""What stored records mean, declared once for Python and Lua.

* the states of a subscription record (the subscriber's subscriptions hash, one JSON record per
  service code); Lua gets them from the header `smsbot.steps` generates (``LIVE``);
* the *MO state* of a subscriber at a short code (``Keys.conv``, one string, written by one SET
  per MO): the open conversation and the redelivery guards of that subscriber's recent MOs there.
  Its separators reach Lua the same way (``STATE_MARK``, ``STATE_REC``, ``STATE_FIELD``); lua/prelude.lua
  reads and writes it, `read_state` here reads it for Python (the chaos runner's state check, tests)::

      MARK <conversation until, ms> FIELD <conversation JSON, '' = none>
           { REC <guard until, ms> FIELD <batch> FIELD <token> FIELD <fingerprint> { FIELD <reply> } }

  A guard marks an MO handled in session <token> (a `SenderIdentity` token) in that session's
  batch number <batch>; its replies are, per reply, own flag, entry id, template and data (what a
  redelivery is answered with, lua/main.lua). It holds until the SMSC is known to have read the
  MO's resp: once that session's *watermark* (``Keys.marks``, a hash token -> ``<batch>:<ms>``,
  `mark_value`, written by `smsbot.pipeline`) is at least <batch>. No field can hold a separator:
  JSON escapes every control character, the other fields are names and numbers.

  The form before it (a bot upgraded in place meets it): the key held the conversation's JSON
  alone, kept by the key's time to live, and each guard was a key of its own (``Keys.old_guard``):
  <token> { NUL <reply> }. Both are read; the MO step writes the new form.
"""

from __future__ import annotations

from typing import NamedTuple

LIVE_STATES = frozenset({"active", "pending"})  # a subscription that is on: listed by 0000, billed when due

STATE_MARK = "\x02"  # the first byte of an MO state in the form above (the form before was JSON: '{')
STATE_REC = "\x01"  # between the conversation and each guard
STATE_FIELD = "\x00"  # between the fields of one record
STATE_SEPARATORS = (("STATE_MARK", STATE_MARK), ("STATE_REC", STATE_REC), ("STATE_FIELD", STATE_FIELD))


class Guard(NamedTuple):
    until_ms: int
    batch: int
    token: str
    fingerprint: str
    replies: tuple[str, ...]  # own, id, template, data per reply


class MoState(NamedTuple):
    conversation: str | None  # its JSON while open (None: none, or its time is over)
    guards: tuple[Guard, ...]


def read_state(raw: bytes | str | None, now_ms: int) -> MoState:
    """An MO state as stored, in either form (``None``: the key does not exist); a conversation or
    guard whose time is over is left out."""
    if raw is None:
        return MoState(None, ())
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if not text.startswith(STATE_MARK):
        return MoState(text or None, ())  # the form before: the conversation alone, kept by the key's TTL
    head, *recs = text[1:].split(STATE_REC)
    until, conv = head.split(STATE_FIELD, 1)
    guards = []
    for rec in recs:
        g_until, batch, token, fp, *replies = rec.split(STATE_FIELD)
        if int(g_until) > now_ms:
            guards.append(Guard(int(g_until), int(batch), token, fp, tuple(replies)))
    return MoState(conv if conv and int(until) > now_ms else None, tuple(guards))


# -- a session's watermark in ``Keys.marks`` -----------------------------------------------------------
# ``<batch>:<ms>``: the batch number below which the session's guards are confirmed, and when it was
# written (the writer's clock); lua/main.lua reads the leading number, lua/marks_prune.lua the time
# (a session that wrote none for a guard's whole life has no guard left: its field goes). The form
# before: the batch number alone (read the same; the prune gives it a time).
MARK_SEP = ":"  # reaches Lua as MARK_SEP (the MARKS_PRUNE step's header, smsbot.steps)


def mark_value(batch: int, written_ms: int) -> str:
    return f"{batch}{MARK_SEP}{written_ms}"


def read_mark(raw: bytes | str) -> int:
    """The batch number of a stored watermark, in either form."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    return int(text.split(MARK_SEP, 1)[0])
