"""Every Redis key name smsbot uses, built in this one place.

All keys that belong to one subscriber carry the same hash tag, ``{N}``, where N is the
subscriber's shard (a stable CRC32 of the MSISDN modulo ``redis.shards``). The per-shard streams
(outbox, audit) carry the same tag, so the one Lua script that handles an MO can read and write
the subscriber's state *and* append to the outbox and audit stream atomically, in one slot, which
is what Redis Cluster requires. A whole conversation therefore always lives in one slot.

Layout (prefix ``smsbot``; ``{7}`` is the shard tag):

=================================  ======  ==================================================
``smsbot:{7}:subs:<msisdn>``        hash    service code -> JSON subscription record
``smsbot:{7}:conv:<msisdn>:<code>`` string the subscriber's MO state at a short code: the open conversation
                                            (menu) and the redelivery guards of recent MOs, one SET PX per MO
                                            (form: `smsbot.records`; before: the conversation's JSON alone)
``smsbot:{7}:live:<msisdn>``        string  index of the live subscriptions in menu order, derived from
                                            ``subs`` (``<n>|<JSON codes>``), rewritten by every script
                                            that changes a record (rebuilt when missing)
``smsbot:{7}:guard:<msisdn>:<fp>``  string  an MO's redelivery guard as the version before kept it (read, never
                                            written: the guards are in the MO state now; these expire)
``smsbot:{7}:marks``                hash    session token -> its guard watermark: the batches whose resps the
                                            SMSC has read, and when written (``<batch>:<ms>``, `smsbot.records`;
                                            `smsbot.pipeline` writes, `smsbot.delivery` prunes the dead's); on a
                                            single Redis ``{0}``'s only
``smsbot:{7}:parts:<msisdn>:<c>:<r>`` hash  parts of a long MO awaiting reassembly (PEXPIRE)
``smsbot:{7}:outbox``               stream  replies to MOs, sent by the instance that handled the MO
                                            (field ``own``); XDELed once the SMSC accepted them. On a single
                                            Redis (not a cluster) every shard's replies go to ``{0}``'s
                                            (``Keys(one_outbox=True)``): one XDEL records many replies
``smsbot:{7}:queue``                stream  MT intents any sender may send (reminders, alerts, orphaned
                                            replies of a dead instance): consumer group ``senders``
``smsbot:{7}:audit``                stream  every subscription change
``smsbot:{7}:usage:<msisdn>``       hash    data usage this cycle: cycle, used, plan, quota, alert marks
``smsbot:{7}:notices:<msisdn>``     zset    notices posted to the HTTP API for the subscriber: queue entry id ->
                                            ms posted, kept dispatch.mt_record_seconds (`GET .../notices/{id}`)
``smsbot:{7}:<name>:<msisdn>``      any     other per-subscriber keys a command declares (`Keys.named`, ``name``)
``smsbot:{7}:<name>``               any     per-shard keys a command declares (`Keys.named`, ``@name``), e.g. the
                                            complaint tickets of the shard (commands/complaints)
``smsbot:events:usage``             stream  inbound data-usage reports (consumer group ``usage``)
``smsbot:{7}:ledger:<msisdn>``      hash    charges: ``<code>:<YYYY-MM>`` / ``<code>:use:<id>`` -> JSON {fen, at, run}
``smsbot:{7}:orders:<msisdn>``      hash    order ids already applied -> JSON outcome (idempotency)
``smsbot:events:orders``            stream  inbound orders (consumer group ``orders``)
``smsbot:events:uses``              stream  inbound on-demand use events (consumer group ``uses``)
``smsbot:api:{<stream>}:ids``       hash    order / use ids posted to the HTTP API -> JSON first result
                                            (idempotency; same slot as its stream)
``smsbot:billing:runs``             hash    billing run id -> JSON {period, at, started, finished, counts}
``smsbot:mt:{<message_id>}``        list    JSON records of the MT parts sent under that SMSC message id, oldest
                                            first (several when the SMSC reuses ids), each updated by its receipt
``smsbot:mt:{<message_id>}:dlr``    string  a receipt that matched no record (SET EX)
``smsbot:mt:{x<entry>}:rejected``   string  JSON record of an MT the SMSC refused for good (SET EX)
``smsbot:heartbeat:<instance>``     string  instance liveness for status pages: JSON {at, consumer, bound, binds, backlog} (SET PX)
``smsbot:ctl:<instance>``           list    runtime control requests to one bot instance (JSON; `smsbot.control`)
``smsbot:ctl:reply:<request>``      list    the instance's answer to one request (RPUSH, EXPIRE; BLPOPed by the asker)
``smsbot:ctl:audit``                stream  every runtime control change: who, what, which instance, the outcome
``smsbot:{7}:lease:<consumer>``     string  a sender's lease in this shard: while it exists, the replies marked
                                            ``own`` = consumer are that sender's alone (`smsbot.delivery`)
``smsbot:{webhooks}:in``            stream  webhook events written on the SMS path (receipts, rejected notices),
                                            read with the audit streams by consumer group ``webhooks``
``smsbot:{webhooks}:jobs:<ep>``     hash    event id -> the JSON body to POST to webhook endpoint <ep>
``smsbot:{webhooks}:due:<ep>``      zset    event id -> when its next attempt is due (ms; held: lease end)
``smsbot:{webhooks}:tries:<ep>``    hash    event id -> attempts made
``smsbot:{webhooks}:dead:<ep>``     hash    event id -> JSON dead letter {id, type, attempts, error, dead_at, body}
=================================  ======  ==================================================
"""

from __future__ import annotations

import re
import zlib
from functools import lru_cache
from typing import NamedTuple

OUTBOX_GROUP = "senders"
KEY_CACHE_SIZE = 4096  # key names of recently active subscribers; bounded so memory does not grow with the subscriber base
USAGE_EVENTS_GROUP = "usage"
ORDER_EVENTS_GROUP = "orders"
USE_EVENTS_GROUP = "uses"
WEBHOOKS_GROUP = "webhooks"  # the webhook collector's group on the audit streams and the webhook inbound stream
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class SubscriberKeys(NamedTuple):
    """The keys one MO script touches (`Store.mo_call` puts them in the order the Lua scripts expect
    them). A tuple: built for every MO of a subscriber not in the cache, so it must be cheap."""

    tag: str
    shard: int
    subs: str
    live: str
    guard_prefix: str  # + fingerprint: an MO's guard as the version before stored it (read only)
    conv_prefix: str  # + short code: the MO state (conversation and guards)
    outbox: str  # the stream its replies go to (`Keys` with ``one_outbox``: shard 0's, for every subscriber)
    marks: str  # the session watermarks its scripts read (with ``one_outbox``: shard 0's too)
    audit: str
    queue: str
    none: str  # placeholder for an unused KEYS position (same slot)


class Keys:
    def __init__(self, prefix: str = "smsbot", shards: int = 16, *, one_outbox: bool = False):
        """`one_outbox`: every MO's replies go to shard 0's outbox stream (a single Redis, where a
        script's keys need not share a slot): the records of many sent replies are then one XDEL,
        not one per shard. The other shards' outbox streams stay in `all_outboxes` (adoption and
        the lag gauges read them: entries written before, or by a bot with the other setting)."""
        if shards < 1:
            raise ValueError("shards must be >= 1")
        self.prefix = prefix
        self.shards = shards
        self.one_outbox = one_outbox
        # per shard: (tag, reply stream, watermarks, audit, queue, placeholder), shared by all its subscribers
        self._shard_keys = [
            (t, f"{prefix}:{{0}}:outbox" if one_outbox else f"{t}:outbox",
             f"{prefix}:{{0}}:marks" if one_outbox else f"{t}:marks", f"{t}:audit", f"{t}:queue", f"{t}:-")
            for t in (f"{prefix}:{{{n}}}" for n in range(shards))
        ]
        self._for = lru_cache(maxsize=KEY_CACHE_SIZE)(self._build)

    def shard(self, msisdn: str) -> int:
        return zlib.crc32(msisdn.encode()) % self.shards

    def subscriber(self, msisdn: str) -> SubscriberKeys:
        return self._for(msisdn)

    def _build(self, msisdn: str) -> SubscriberKeys:
        shard = zlib.crc32(msisdn.encode()) % self.shards
        t, outbox, marks, audit, queue, none = self._shard_keys[shard]
        return SubscriberKeys(t, shard, f"{t}:subs:{msisdn}", f"{t}:live:{msisdn}", f"{t}:guard:{msisdn}:",
                              f"{t}:conv:{msisdn}:", outbox, marks, audit, queue, none)

    def subs(self, msisdn: str) -> str:
        return self.subscriber(msisdn).subs

    def conv(self, msisdn: str, short_code: str) -> str:
        return self.subscriber(msisdn).conv_prefix + short_code

    def parts(self, msisdn: str, short_code: str, ref: str) -> str:
        return f"{self.subscriber(msisdn).tag}:parts:{msisdn}:{short_code}:{ref}"

    def named(self, name: str, msisdn: str) -> str:
        """A key a command declares by name (``Intent.keys``), with the subscriber's hash tag:
        ``name`` is the subscriber's own ``<tag>:<name>:<msisdn>``; ``@name`` is a key of the
        subscriber's shard, ``<tag>:<name>`` (an index or counter its steps share; same slot)."""
        if name.startswith("@"):
            if not _NAME.match(name[1:]):
                raise ValueError(f"bad key name {name!r}")
            return f"{self.subscriber(msisdn).tag}:{name[1:]}"
        if not _NAME.match(name):
            raise ValueError(f"bad key name {name!r}")
        return f"{self.subscriber(msisdn).tag}:{name}:{msisdn}"

    def shard_named(self, name: str, shard: int) -> str:
        """The per-shard key ``@name`` of shard `shard` (what `named` gives its subscribers)."""
        if not _NAME.match(name):
            raise ValueError(f"bad key name {name!r}")
        return f"{self.prefix}:{{{shard}}}:{name}"

    def usage(self, msisdn: str) -> str:
        return self.named("usage", msisdn)

    def usage_events(self) -> str:
        return f"{self.prefix}:events:usage"

    def ledger(self, msisdn: str) -> str:
        return self.named("ledger", msisdn)

    def orders(self, msisdn: str) -> str:
        return self.named("orders", msisdn)

    def notices(self, msisdn: str) -> str:
        return self.named("notices", msisdn)

    def api_ids(self, stream: str) -> str:
        """The ids posted to the HTTP API for event stream `stream` (its name is the hash tag: one slot)."""
        return f"{self.prefix}:api:{{{stream}}}:ids"

    def ledger_pattern(self) -> str:
        return f"{self.prefix}:*:ledger:*"

    def order_events(self) -> str:
        return f"{self.prefix}:events:orders"

    def use_events(self) -> str:
        return f"{self.prefix}:events:uses"

    def billing_runs(self) -> str:
        return f"{self.prefix}:billing:runs"

    def billing_run_lease(self, run_id: str) -> str:
        """The lease of a billing run while a process works on it (smsbot.billing.run)."""
        return f"{self.billing_runs()}:lease:{run_id}"

    def outbox(self, shard: int) -> str:
        return f"{self.prefix}:{{{shard}}}:outbox"

    def audit(self, shard: int) -> str:
        return f"{self.prefix}:{{{shard}}}:audit"

    def queue(self, shard: int) -> str:
        return f"{self.prefix}:{{{shard}}}:queue"

    def marks(self, shard: int) -> str:
        """The session watermarks the scripts of shard `shard`'s subscribers read (`one_outbox`: shard 0's for all)."""
        return self._shard_keys[shard][2]

    def all_outboxes(self) -> list[str]:
        return [self.outbox(s) for s in range(self.shards)]

    def all_queues(self) -> list[str]:
        return [self.queue(s) for s in range(self.shards)]

    def all_audits(self) -> list[str]:
        return [self.audit(s) for s in range(self.shards)]

    def mt(self, message_id: str) -> str:
        return f"{self.prefix}:mt:{{{message_id}}}"

    def mt_receipt(self, message_id: str) -> str:
        return f"{self.prefix}:mt:{{{message_id}}}:dlr"

    def mt_rejected(self, record_id: str) -> str:
        return f"{self.prefix}:mt:{{{record_id}}}:rejected"

    def lease_prefix(self, shard: int) -> str:
        """`lease_prefix(n) + consumer` is that consumer's lease in shard n (same slot as the shard's streams)."""
        return f"{self.prefix}:{{{shard}}}:lease:"

    def heartbeat(self, instance: str) -> str:
        return f"{self.prefix}:heartbeat:{instance}"

    def control(self, instance: str) -> str:
        return f"{self.prefix}:ctl:{instance}"

    def control_reply(self, request_id: str) -> str:
        return f"{self.prefix}:ctl:reply:{request_id}"

    def control_audit(self) -> str:
        return f"{self.prefix}:ctl:audit"

    def subs_pattern(self) -> str:
        return f"{self.prefix}:*:subs:*"

    # -- webhooks (smsbot.webhooks): one hash tag, so each of their scripts stays in one slot ------------
    def webhook_inbound(self) -> str:
        return f"{self.prefix}:{{webhooks}}:in"

    def webhook_jobs(self, endpoint: str) -> str:
        return f"{self.prefix}:{{webhooks}}:jobs:{endpoint}"

    def webhook_due(self, endpoint: str) -> str:
        return f"{self.prefix}:{{webhooks}}:due:{endpoint}"

    def webhook_tries(self, endpoint: str) -> str:
        return f"{self.prefix}:{{webhooks}}:tries:{endpoint}"

    def webhook_dead(self, endpoint: str) -> str:
        return f"{self.prefix}:{{webhooks}}:dead:{endpoint}"
