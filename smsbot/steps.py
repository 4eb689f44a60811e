"""Every Lua entry point's contract, declared once: its KEYS, its ARGV and its result, by name.

Python builds a call from a step's `keys` and `argv` named tuples (keyword arguments; the tuple's
order is the wire order) and reads a reply through its `result`; Lua reads the same names from a
header generated from the declaration (`Step.header`), prepended to the script when it is loaded:
the locals ``KEY_subs``, ``ARG_handler``, ``NKEYS`` and ``NARGS`` (how many are declared: a step may take
more after them, see each). No Lua file and no Python module indexes KEYS or ARGV by number;
tests/test_steps.py checks that every name a script uses is declared and every declared name used.

The steps:

* `MO` — the MO script: lua/prelude.lua, a handler's fragment, lua/main.lua (`smsbot.store`
  assembles it; every command's handler runs in it, the billing steps too);
* `RECEIPT` — lua/receipt.lua, a delivery receipt onto its MT record;
* `ADOPT`, `CLAIM` — lua/adopt.lua, lua/claim.lua, replies of dead senders (`smsbot.delivery`);
* `LEASE_RENEW`, `LEASE_RELEASE` — a billing run's lease (`smsbot.billing.run`);
* `MARKS_PRUNE` — lua/marks_prune.lua, the watermarks of sessions long gone (`smsbot.delivery.prune_marks`);
* `BILLING_RULES` — lua/billing_verify.lua after lua/billing_rules.lua: `verify` asks the rules;
* `NOTICE` — smsbot/api/notice.lua, a notice posted to the HTTP API (`smsbot.api.routes`);
* `WEBHOOK_ENQUEUE`, `WEBHOOK_TAKE`, `WEBHOOK_DONE`, `WEBHOOK_FAIL`, `WEBHOOK_REPLAY` — smsbot/webhooks/webhook_*.lua,
  the webhook delivery jobs (`smsbot.webhooks.jobs`).

A command package declares its own steps the same way, next to its Lua file (``commands/orders/steps.py``:
the API's idempotent order and use events), and lists them in `Command.steps`.

`smsbot.store.Store.run_step` runs any of them (EVALSHA, loading the script when Redis does not
know it), `Store.run_step_async` the same on an asyncio client (the HTTP API); the MO script goes
through the hot path's own round trips instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from smsbot.records import LIVE_STATES, MARK_SEP, STATE_SEPARATORS

LUA_DIR = Path(__file__).resolve().parent / "lua"


class MoKeys(NamedTuple):
    subs: str  # the subscriber's subscriptions hash
    state: str  # the subscriber's MO state at this short code: conversation and guards (smsbot.records)
    old_guard: str  # the MO's guard as the version before stored it, read only; a placeholder when guards are off
    marks: str  # the sessions' guard watermarks (Keys.marks), read only when another session's guard is met
    outbox: str  # the outbox stream replies this sender sends itself go to (a single Redis: shard 0's for all)
    audit: str  # the shard's audit stream
    queue: str  # the shard's queue stream: intents for any sender (consumer group)
    parts: str  # the parts hash of a long MO ('part' handler, and `delete_parts`)
    live: str  # the live-subscriptions index, derived from `subs`
    lease: str  # this sender's lease in `outbox`'s shard (what adoption checks); a placeholder when not an MO


class MoArgv(NamedTuple):
    handler: str  # e.g. 'subscriptions.menu'
    now: int  # ms
    msisdn: str
    short_code: str
    lang: str
    mo: str  # the MO's correlation id
    guard_ms: int  # the guard's time to live; 0: no guard
    guard_fp: str  # the MO's fingerprint: what its guard is found by ('' when guards are off)
    batch: int  # the number of the MO's batch in its session's count (the guard's, see smsbot.records)
    mark: int  # this session's watermark: its guards of batches up to it are confirmed (smsbot.pipeline)
    args: str  # the handler's arguments, JSON
    consumer: str  # the sender ('' = not an MO: replies go to the queue)
    token: str  # the sender's session token: the guard's "handled in this session" mark
    reply_to: str  # the address replies go to when it is not `msisdn` ('' = msisdn)
    delete_parts: str  # '1': delete `parts` with the effect (the long MO being handled)
    extra_keys: str  # JSON list of the extra keys' names, which follow the declared KEYS ('' = none)


class MoResult(NamedTuple):
    outcome: bytes  # e.g. b'menu_sent', b'redelivered'
    sent: list[Any]  # {{entry id, template, data}, ...}: the outbox entries this sender sends itself
    extra: Any  # false, or a string (the joined text of a completed long MO; a redelivery's copies)


class ReceiptKeys(NamedTuple):
    records: str  # mt:<id>, the JSON records of the MT parts sent under this message id
    unmatched: str  # mt:<id>:dlr, a receipt that matched no record


class ReceiptArgv(NamedTuple):
    bind: str
    state: str
    err: str
    at: int  # receipt time, ms
    ttl: int  # s


class AdoptKeys(NamedTuple):
    outbox: str
    queue: str  # the same shard's


class AdoptArgv(NamedTuple):
    start: str  # scan start id, exclusive ('-' = the stream's start)
    horizon: str  # only entries up to this id are old enough
    count: int
    lease_prefix: str  # the shard's lease key prefix ('<tag>:lease:')


class AdoptResult(NamedTuple):
    moved: int
    next_start: bytes  # where the next scan starts ('-' when this one reached the horizon)
    owners: list[bytes]  # the owners met (their leases are declared next time: extra KEYS)


class ClaimKeys(NamedTuple):
    queue: str


class ClaimArgv(NamedTuple):
    group: str
    consumer: str  # the claiming sender
    lease_prefix: str
    count: int


class LeaseKeys(NamedTuple):
    lease: str  # a billing run's lease (Keys.billing_run_lease)


class LeaseRenewArgv(NamedTuple):
    token: str  # the holder
    ttl_ms: int


class LeaseReleaseArgv(NamedTuple):
    token: str


class MarksKeys(NamedTuple):
    marks: str  # the session watermarks (Keys.marks)


class MarksPruneArgv(NamedTuple):
    now: int  # ms: the time given to a watermark of the form before
    before: int  # ms: a watermark written before it goes


class RulesArgv(NamedTuple):
    cases: str  # JSON list of the cases to judge (see lua/billing_verify.lua)


@dataclass(frozen=True)
class Step:
    name: str
    keys: type | None  # a NamedTuple of the KEYS; None: all variadic
    argv: type  # a NamedTuple of the ARGV (a step may take more after them: see its doc)
    result: type | None = None  # a NamedTuple of the reply; None: not a fixed record
    extra_keys: bool = False  # more KEYS follow the declared ones
    libraries: tuple[str, ...] = ()  # Lua files (in LUA_DIR) loaded before the step's own
    sets: tuple[tuple[str, frozenset[str]], ...] = ()  # Lua sets declared in Python: ("LIVE", LIVE_STATES)
    consts: tuple[tuple[str, str], ...] = ()  # Lua strings declared in Python: smsbot.records.STATE_SEPARATORS
    directory: Path = LUA_DIR  # where <name>.lua and the libraries are (a command package's own steps: the package)

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(self.keys._fields) if self.keys is not None else ()

    @property
    def arg_names(self) -> tuple[str, ...]:
        return tuple(self.argv._fields)

    def header(self) -> str:
        """The Lua names of this step's KEYS and ARGV, prepended to its script."""
        lines = [f"-- generated from smsbot.steps.{self.name.upper()}: the names of KEYS and ARGV (locals: no table per call)",
                 f"local NKEYS, NARGS = {len(self.key_names)}, {len(self.arg_names)}"]
        for prefix, names, source in (("KEY", self.key_names, "KEYS"), ("ARG", self.arg_names, "ARGV")):
            if names:
                lines.append("local " + ", ".join(f"{prefix}_{n}" for n in names) + " = "
                             + ", ".join(f"{source}[{i}]" for i in range(1, len(names) + 1)))
        for name, members in self.sets:
            lines.append(f"local {name} = {{ " + ", ".join(f"{m} = true" for m in sorted(members)) + " }")
        for name, text in self.consts:
            lines.append(f"local {name} = '" + "".join(f"\\{ord(c)}" for c in text) + "'")
        return "\n".join(lines) + "\n"

    def source(self, *fragments: str) -> str:
        """The script to load: the header, then `fragments` (default: lua/<name>.lua)."""
        body = fragments or tuple((self.directory / f).read_text(encoding="utf-8") for f in (*self.libraries, f"{self.name}.lua"))
        return "\n".join([self.header(), *body])

    def parse(self, reply: Any) -> Any:
        assert self.result is not None
        return self.result._make(reply)


MO = Step("mo", MoKeys, MoArgv, MoResult, extra_keys=True, sets=(("LIVE", LIVE_STATES),), consts=STATE_SEPARATORS)
RECEIPT = Step("receipt", ReceiptKeys, ReceiptArgv)
ADOPT = Step("adopt", AdoptKeys, AdoptArgv, AdoptResult, extra_keys=True)  # + the owners' lease keys
CLAIM = Step("claim", ClaimKeys, ClaimArgv, extra_keys=True)  # + the holders' lease keys
LEASE_RENEW = Step("lease_renew", LeaseKeys, LeaseRenewArgv)
LEASE_RELEASE = Step("lease_release", LeaseKeys, LeaseReleaseArgv)
BILLING_RULES = Step("billing_verify", None, RulesArgv, libraries=("billing_rules.lua",))
MARKS_PRUNE = Step("marks_prune", MarksKeys, MarksPruneArgv, consts=(("MARK_SEP", MARK_SEP),))
STEPS = (MO, RECEIPT, ADOPT, CLAIM, LEASE_RENEW, LEASE_RELEASE, BILLING_RULES, MARKS_PRUNE)


# -- the HTTP API's steps (smsbot.api) ---------------------------------------------------------------
class NoticeKeys(NamedTuple):
    queue: str  # the queue stream of the subscriber's shard
    notices: str  # the subscriber's notices, a sorted set: entry id -> ms posted (Keys.notices, same slot)


class NoticeArgv(NamedTuple):
    now: int  # ms
    keep_ms: int  # how long a notice is followed (dispatch.mt_record_seconds, as the rejected-MT record)
    # then the queue entry's fields, name and value in turn (admin.notice_fields)


NOTICE = Step("notice", NoticeKeys, NoticeArgv, directory=Path(__file__).resolve().parent / "api")
API_STEPS = (NOTICE,)
STEPS += API_STEPS  # the core's steps and the API's


# -- the webhook jobs' steps (smsbot.webhooks.jobs; keys: Keys.webhook_*, all in the {webhooks} slot) ----
class WebhookEnqueueKeys(NamedTuple):
    due: str  # zset: event id -> when it may be taken (ms)
    jobs: str  # hash: event id -> the body to POST


class WebhookEnqueueArgv(NamedTuple):
    now: int  # ms: when the new jobs are due
    # then event id, body, in turn


class WebhookJobKeys(NamedTuple):
    due: str
    jobs: str
    tries: str  # hash: event id -> attempts begun


class WebhookTakeArgv(NamedTuple):
    now: int  # ms
    lease_end: int  # ms: the taken job's due score until then


class WebhookTakeResult(NamedTuple):
    id: bytes | None  # the job taken (None: none is due)
    body: bytes | None
    attempt: int  # 1 for the first attempt (0: none taken)
    next_due: bytes | None  # none taken: the score the next job is due at (None: none waits)


class WebhookDoneArgv(NamedTuple):
    id: str


class WebhookDeadKeys(NamedTuple):
    due: str
    jobs: str
    tries: str
    dead: str  # hash: event id -> JSON dead letter


class WebhookFailArgv(NamedTuple):
    id: str
    next_ms: int  # when the next attempt is due
    max_attempts: int
    letter: str  # the dead letter's JSON, stored when the attempts are used up


class WebhookReplayArgv(NamedTuple):
    now: int  # ms: when the replayed jobs are due
    every: str  # '1': every dead letter of the endpoint; '0': the event ids that follow


WEBHOOKS_DIR = Path(__file__).resolve().parent / "webhooks"
WEBHOOK_ENQUEUE = Step("webhook_enqueue", WebhookEnqueueKeys, WebhookEnqueueArgv, directory=WEBHOOKS_DIR)
WEBHOOK_TAKE = Step("webhook_take", WebhookJobKeys, WebhookTakeArgv, WebhookTakeResult, directory=WEBHOOKS_DIR)
WEBHOOK_DONE = Step("webhook_done", WebhookJobKeys, WebhookDoneArgv, directory=WEBHOOKS_DIR)
WEBHOOK_FAIL = Step("webhook_fail", WebhookDeadKeys, WebhookFailArgv, directory=WEBHOOKS_DIR)
WEBHOOK_REPLAY = Step("webhook_replay", WebhookDeadKeys, WebhookReplayArgv, directory=WEBHOOKS_DIR)
WEBHOOK_STEPS = (WEBHOOK_ENQUEUE, WEBHOOK_TAKE, WEBHOOK_DONE, WEBHOOK_FAIL, WEBHOOK_REPLAY)
STEPS += WEBHOOK_STEPS
