"""Delivery: which sender owns which reply, and how ownership passes from a dead sender to a live one.

Every rule about who may send an outbox or queue entry lives here (with its two Lua scripts,
`lua/adopt.lua` and `lua/claim.lua`, and the one line of `lua/prelude.lua` that checks the lease
before marking a reply as its sender's own):

* **Lease.** A sender, named by its consumer name, holds ``{N}:lease:<consumer>`` in every shard
  N. A thread of its own renews the lease every `delivery.heartbeat_seconds` for
  `delivery.lease_seconds`, also while the SMPP link is down or rebinding (but not when the SMPP
  loop has not turned for `delivery.stuck_seconds`: a wedged sender must lose its replies).
* **Fence.** The sender sends only while its lease is surely held: until its last successful
  renewal + the lease − one heartbeat, measured from *before* the renewal was sent (`may_send`),
  and not after a failed Redis round trip until a renewal has confirmed the lease (a restarted or
  failed-over Redis may have lost it before its time: `suspect`).
  A renewal that finds the lease gone (Redis was out of reach longer than the lease, so siblings
  may be adopting our entries) starts a new generation with a new consumer name; every part not
  yet sent is dropped from memory, and what is still ours comes back through the queue like any
  dead sender's. An MO's reply is marked as its sender's own only while the lease exists (checked
  by the MO script); otherwise it goes to the queue.
* **Adoption.** An outbox entry whose owner holds no lease, older than
  `delivery.orphan_age_seconds`, is moved to its shard's queue (adopt.lua: the lease check and the
  move are one atomic step; the scan resumes where it stopped, so a long backlog cannot starve it).
  The owners' leases are KEYS of the script (as in claims): a shard whose slot is mid-migration,
  its keys not all on one node yet, waits for the next turn.
* **Replies whose answer was lost.** A failed round trip may have run its MO scripts: their replies
  are in the outbox, marked as this sender's own, but their answer never reached the loop. The MO
  was refused, and its redelivery hands them back only to this sender: a sibling that gets it
  leaves a live owner's entry where it is, and adoption never moves it (the lease is held). So
  `delivery.orphan_age_seconds` after a suspicion (first the redeliveries: one that reaches this
  sender hands the reply back, where one after the reply went out would send a copy), with the
  lease confirmed, the worker reads this sender's own entries that old from the outbox streams
  (`own_entries`) and hands them to the loop, which skips what it holds or recorded lately
  (`OutboxSender.enqueue`).
* **Claims.** Queue entries read by a sender that holds no lease are claimed once, by one live
  sender (claim.lua), and the dead consumer is deleted from the group when it holds nothing.
* **Queue reads.** The worker reads new queue entries (`XREADGROUP`: each is given to one sender)
  every `delivery.poll_seconds` while the lease is held and the sender's backlog (with what the
  loop has not taken yet, as while it waits to reconnect) is under ten windows.
* **Suspended** (runtime control, `smsbot.control`): the worker reads and claims nothing, and
  once the transport has drained and unbound, this sender hands back what it holds: it forgets
  every part not sent, gives up its lease and takes a new name, as a lapsed lease does. Siblings
  then claim the queue entries it had read (at once: their holder has no lease) and adopt its
  replies (after `delivery.orphan_age_seconds`); alone, it does so itself after the resume. It keeps
  what it holds instead while a reply is half accepted or an acceptance is not recorded (handing
  those over would send accepted parts twice): they go after the resume.

The worker thread only talks to Redis; what it reads is handed to the SMPP loop's thread through
a queue (`tick`), which alone touches the `OutboxSender`. Recording what was sent (XDEL/XACK)
rides the transport's round trips; see `smsbot.outbox` for the one-window bound.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from typing import Any, Callable

import redis

from smsbot import log
from smsbot.identity import SenderIdentity
from smsbot.keys import OUTBOX_GROUP
from smsbot.live import Live
from smsbot.outbox import OutboxSender
from smsbot.steps import ADOPT, CLAIM, MARKS_PRUNE, AdoptArgv, AdoptKeys, ClaimArgv, ClaimKeys, MarksKeys, MarksPruneArgv
from smsbot.store import Store, _s

_log = log.get("smsbot.delivery")
ADOPT_COUNT = 500
CLAIM_COUNT = 500
READ_COUNT = 100
OWN_PAGE = 500  # outbox entries per stream and round trip when looking for our own (`own_entries`)

Entry = tuple[str, str, dict[str, str]]

MARKS_PRUNE_EVERY_S = 600.0  # the dead senders' session watermarks are looked for this often (and at start)
MARKS_PRUNE_SLACK_S = 60  # instances' clocks may differ this much (a watermark's time is its writer's)


def prune_marks(store: Store, guard_seconds: int, now_ms: int) -> int:
    """Forget the session watermarks (`smsbot.pipeline` writes them) written before a guard's whole
    life and `MARKS_PRUNE_SLACK_S` ago: a sender that died never deletes its own, and no guard of
    such a session is left (lua/marks_prune.lua), in every watermark key. How many went."""
    before = now_ms - (guard_seconds + MARKS_PRUNE_SLACK_S) * 1000
    keys = {store.keys.marks(shard) for shard in range(store.keys.shards)}
    return sum(int(store.run_step(MARKS_PRUNE, MarksKeys(marks=key), MarksPruneArgv(now=now_ms, before=before)))
               for key in sorted(keys))


class _Due:
    """When the worker's next renewal, queue read, adoption and watermark prune are due (its clock)."""

    def __init__(self) -> None:
        self.beat = self.poll = self.adopt = self.marks = 0.0

    @property
    def next(self) -> float:
        return min(self.beat, self.poll, self.adopt, self.marks)


class Delivery:
    def __init__(self, live: Live, store: Store, sender: OutboxSender, instance: str, *,
                 describe: Callable[[], dict[str, Any]] = dict, clock: Callable[[], float] = time.monotonic,
                 suspended: threading.Event | None = None, wall: Callable[[], float] = time.time):
        """`describe`: what the heartbeat tells status pages about this instance (binds, backlog);
        `suspended`: the transport's (runtime control): while set, read nothing and hand back;
        `wall`: the wall clock (stream entry ids are milliseconds of it)."""
        self.live = live
        self.store = store
        self.sender = sender
        self.instance = instance
        self.describe = describe
        self.clock = clock
        self.generation = 0
        self.suspicions = 0  # failed round trips that made the lease uncertain (metrics)
        self.consumer = instance  # the worker's name for this sender (a new one when the lease lapsed)
        self.lease_prefixes = [store.keys.lease_prefix(n) for n in range(store.keys.shards)]
        # the SMPP loop's view (its thread only): what MO scripts mark replies and guards with
        self.identity = SenderIdentity(instance, tuple(self.lease_prefixes))
        self._valid_until = 0.0  # written by the worker, read by the loop (a float: atomic)
        self._held = False  # the lease was taken under the current name
        self._generation_seen = 0
        self._inbox: deque[list[Entry]] = deque()
        self.suspended = suspended if suspended is not None else threading.Event()
        self._settled = False  # this suspension's hand-back is done, or what is held is kept (loop thread)
        # held by the worker around each turn and by the hand-back: no read, claim or renewal under
        # a name the hand-back is giving up
        self._turn = threading.Lock()
        self._loop_tick = clock()
        self._stuck_logged = False
        self._stop = threading.Event()
        self._wake = threading.Event()  # renew now (a Redis failure made the lease uncertain), or stop
        self._thread: threading.Thread | None = None
        self._adopt_from: dict[str, str] = {}
        self._lease_names: dict[str, list[str]] = {}  # stream -> senders adopt/claim met there last time
        self.wall = wall
        # when a round trip last failed (wall clock), until the outbox was read for replies of ours
        # that the loop never saw; None: nothing to read
        self._own_unseen_at: float | None = None
        self._own_lock = threading.Lock()
        self._unreachable = log.Throttled(_log, "delivery_redis_unreachable", 60.0, level="warning",
                                          recovered_event="delivery_redis_reachable_again", clock=clock)
        self._migrating = log.Throttled(_log, "delivery_slot_migrating", 60.0, level="info", clock=clock)

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"delivery-{self.instance}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker and give up the lease: what this sender did not send is free at once."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        self._valid_until = 0.0
        try:
            self.store.roundtrip([("DEL", p + self.consumer) for p in self.lease_prefixes]
                                 + [("DEL", self.store.keys.heartbeat(self.instance))])
        except (redis.RedisError, OSError) as e:
            _log.warning("lease_release_failed", error=str(e))

    # -- the SMPP loop's side (its thread only) -------------------------------------------------------
    def tick(self, now: float) -> None:
        """Once per loop turn: note that the loop lives, take what the worker read, follow a new name."""
        self._loop_tick = now
        if self._generation_seen != self.generation:
            self._generation_seen = self.generation
            dropped = self.sender.drop_unsent()
            self.identity = self.identity.renamed(self.consumer)
            _log.warning("lease_lost", consumer=self.consumer, unsent_dropped=dropped)
        inbox = self._inbox
        while inbox:
            self.sender.enqueue(inbox.popleft())

    def new_session(self) -> None:
        """A new session (a bind, a lost link, a round trip whose outcome is unknown): guards left
        by earlier sessions now mark possible redeliveries (smsbot.pipeline)."""
        self.identity = self.identity.next_session()

    def alive(self, now: float) -> None:
        """The loop is alive but not turning: waiting to reconnect, binding, or suspended (then
        unbound and drained: what this sender holds is handed back, once per suspension)."""
        self._loop_tick = now
        if not self.suspended.is_set():
            self._settled = False
        elif not self._settled:
            self._hand_back()
            self._settled = True

    @property
    def suspension_settled(self) -> bool:
        """Suspended, and what this sender held is handed back or kept for the resume (the control
        answer waits for it: the backlog it reports is then what waits for the resume)."""
        return self._settled and self.suspended.is_set()

    def _hand_back(self) -> None:
        """Suspended and unbound: forget what this sender holds and give up its name and lease, so
        that siblings claim the queue entries it read and adopt its replies (or this process does,
        under its new name, after the resume). Not while a reply is half accepted or an acceptance
        is unrecorded: a sibling would send the accepted parts again. Those wait for the resume,
        and so does all this sender holds (its name, which they need, is kept)."""
        s = self.sender
        accepted_unrecorded = s.window - s.room - s.inflight  # whole replies or parts of one (OutboxSender.room)
        if accepted_unrecorded or s.pending_count:
            _log.warning("suspended_keeps_replies", consumer=self.consumer, parts=s.backlog + s.inflight,
                         accepted_unrecorded=accepted_unrecorded)
            return
        with self._turn:
            inflight = s.requeue_inflight()  # unbound: their outcome is unknown, as after a lost link
            parts = s.drop_unsent()
            read = sum(len(entries) for entries in self._inbox)
            self._inbox.clear()
            old = self.consumer
            self._rename()
            self._generation_seen = self.generation
            self.identity = self.identity.renamed(self.consumer)
            try:
                self.store.roundtrip([("DEL", p + old) for p in self.lease_prefixes])
            except (redis.RedisError, OSError) as e:  # then it lapses within delivery.lease_seconds
                _log.warning("lease_release_failed", error=str(e))
        self._wake.set()  # take the new name's lease now (the heartbeat names it)
        _log.info("suspended_handed_back", old_consumer=old, consumer=self.consumer, entries=parts + read,
                  inflight=inflight)

    def may_send(self, now: float) -> bool:
        return now < self._valid_until

    def suspect(self) -> None:
        """A Redis round trip failed: Redis may have restarted or failed over and lost our lease
        (its last writes are not always on disk). Send nothing until a renewal confirms the lease
        is still ours — at once, not at the next heartbeat."""
        self.suspicions += 1
        self._valid_until = 0.0
        with self._own_lock:
            self._own_unseen_at = self.wall()
        self._wake.set()

    def acks_due(self, now: float) -> bool:
        """Accepted submits should be recorded now (they block further submits, an MT record waits,
        or the oldest has waited `delivery.ack_flush_seconds`)."""
        s = self.sender
        return bool(s.pending_count) and (
            s.has_writes or s.blocked_by_records or s.ack_age() >= self.live.settings.delivery.ack_flush_seconds)

    def wakeup_in(self, now: float) -> float | None:
        """Seconds until `acks_due` turns true by age alone (None: nothing waits)."""
        if not self.sender.pending_count:
            return None
        return max(0.0, self.live.settings.delivery.ack_flush_seconds - self.sender.ack_age())

    # -- the worker ---------------------------------------------------------------------------------
    def _run(self) -> None:
        due = _Due()
        while not self._stop.is_set():
            self._work(due)
            self._wake.wait(max(0.0, due.next - self.clock()))

    def _work(self, due: _Due) -> None:
        """One turn of the worker: what is due of renewal, queue read, adoption and claims."""
        d = self.live.settings.delivery  # read each turn: a reload applies at once
        now = self.clock()
        if self._wake.is_set():
            self._wake.clear()
            due.beat = now
        talked = False  # a turn that asked Redis nothing says nothing about whether it is back
        try:
            with self._turn:
                if now >= due.beat:
                    due.beat = now + d.heartbeat_seconds
                    talked = self._renew(now)
                if self.may_send(self.clock()):
                    talked = True
                    self._take_back_own()
                    taking = not self.suspended.is_set()  # suspended: siblings carry the queue
                    if now >= due.poll:
                        due.poll = now + d.poll_seconds
                        if taking:
                            self._read_queue()
                    if now >= due.adopt:
                        due.adopt = now + d.adopt_every_seconds
                        self.adopt_orphans()
                        if taking:
                            self._hand_over(self.claim_from_dead())
                    if now >= due.marks:
                        due.marks = now + MARKS_PRUNE_EVERY_S
                        gone = prune_marks(self.store, self.live.settings.dispatch.redelivery_guard_seconds,
                                           int(self.wall() * 1000))
                        if gone:
                            _log.info("watermarks_pruned", count=gone)
            if talked:
                self._unreachable.recovered()
        except (redis.RedisError, OSError) as e:
            self._unreachable.hit(error=str(e))

    def _read_queue(self) -> None:
        """New queue entries, while what this sender holds (with what the loop has not taken yet:
        nothing while it waits to reconnect) is under ten windows."""
        waiting = self.sender.backlog + sum(map(len, list(self._inbox)))
        if waiting < self.live.settings.smsc.submit_window * 10:  # the link's window (CMPP's own)
            self._hand_over(self.store.read_outbox(self.consumer, READ_COUNT))

    def _hand_over(self, entries: list[Entry]) -> None:
        if entries:
            self._inbox.append(entries)

    def _renew(self, now: float) -> bool:
        """Renew the lease (or take it under a new name); False when the loop is stuck: nothing asked."""
        d = self.live.settings.delivery
        if now - self._loop_tick > d.stuck_seconds:
            if not self._stuck_logged:
                self._stuck_logged = True
                _log.error("sender_stuck", seconds=round(now - self._loop_tick, 1), consumer=self.consumer)
            return False
        self._stuck_logged = False
        ttl_ms = int(d.lease_seconds * 1000)
        mode = "XX" if self._held else "NX"
        sent_at = self.clock()
        cmds: list[tuple[Any, ...]] = [("SET", p + self.consumer, self.instance, "PX", ttl_ms, mode) for p in self.lease_prefixes]
        beat = {"at": int(time.time()), "consumer": self.consumer, **self.describe()}
        cmds.append(("SET", self.store.keys.heartbeat(self.instance), json.dumps(beat), "PX", ttl_ms))
        replies = self.store.roundtrip(cmds)
        for r in replies:
            if isinstance(r, Exception):
                raise redis.ResponseError(str(r))
        if any(r is None for r in replies[:-1]):
            self._new_generation("lease expired" if self._held else "lease taken")
            return True
        self._held = True
        self._valid_until = sent_at + d.lease_seconds - d.heartbeat_seconds
        return True

    def _new_generation(self, reason: str) -> None:
        """Our lease lapsed: from now on this process is a new sender; the old one is dead to all."""
        old = self.consumer
        self._rename()
        _log.warning("lease_lapsed", reason=reason, old_consumer=old, consumer=self.consumer)

    def _rename(self) -> None:
        """A new sender name, holding no lease yet (the next renewal takes it): send nothing until then."""
        self._valid_until = 0.0
        self._held = False
        self.generation += 1
        self.consumer = f"{self.instance}.{self.generation}"

    # -- adoption and claims --------------------------------------------------------------------------
    def adopt_orphans(self) -> int:
        """Move old outbox entries of senders without a lease to the queue (each shard once)."""
        horizon = f"{int(time.time() * 1000 - self.live.settings.delivery.orphan_age_seconds * 1000)}-0"
        keys = self.store.keys
        moved = 0
        for shard in range(keys.shards):
            outbox = keys.outbox(shard)
            argv = AdoptArgv(start=self._adopt_from.get(outbox, "-"), horizon=horizon, count=ADOPT_COUNT,
                             lease_prefix=self.lease_prefixes[shard])
            res = self._with_leases(shard, outbox, lambda leases: ADOPT.parse(self.store.run_step(
                ADOPT, (*AdoptKeys(outbox=outbox, queue=keys.queue(shard)), *leases), argv)), lambda r: r.owners)
            if res is not None:
                self._adopt_from[outbox] = _s(res.next_start)
                moved += int(res.moved)
        if moved:
            _log.info("replies_adopted", count=moved)
        return moved

    def _with_leases(self, shard: int, stream: str, call: Callable[[list[str]], Any],
                     names_of: Callable[[Any], list[Any]]) -> Any:
        """Run adopt.lua or claim.lua on `stream` with the lease keys of the senders it met last
        time declared (a script may only look at keys it declared: a slot may be migrating), and
        once more at once when it met others. None when the shard's slot is mid-migration and its
        keys are not all on one node yet (TRYAGAIN until the retries ran out): the next turn tries."""
        names = self._lease_names.get(stream, [])
        for _attempt in range(2):
            try:
                res = call([self.lease_prefixes[shard] + n for n in names])
            except (redis.exceptions.TryAgainError, redis.exceptions.ClusterError) as e:
                if not isinstance(e, redis.exceptions.TryAgainError) and type(e) is not redis.exceptions.ClusterError:
                    raise  # a cluster down (ClusterDownError...) fails the turn: logged as unreachable
                self._migrating.hit(stream=stream, error=str(e))  # plain ClusterError: TRYAGAIN retries ran out
                return None
            met = [_s(n) for n in names_of(res)]
            self._lease_names[stream] = met
            if set(met) <= set(names):
                return res
            names = met
        return res

    def _take_back_own(self) -> None:
        """`orphan_age_seconds` after the last suspicion, with the lease confirmed: hand the loop this
        sender's own outbox entries at least that old."""
        with self._own_lock:
            since = self._own_unseen_at
        horizon = self.wall() - self.live.settings.delivery.orphan_age_seconds
        if since is None or horizon < since:
            return
        entries = self.own_entries(f"{int(horizon * 1000)}-0")  # a failure: read again at the next turn
        with self._own_lock:
            if self._own_unseen_at == since:  # else a suspicion during the read asks for another
                self._own_unseen_at = None
        self._hand_over(entries)

    def own_entries(self, until: str = "+") -> list[Entry]:
        """The outbox entries up to id `until` marked as this sender's own (its current name), for
        the loop to send what it does not hold: after a failed round trip, replies whose MO script
        ran but whose answer was lost (see the module docstring). A round trip per page of every stream."""
        out: list[Entry] = []
        starts = {stream: "-" for stream in dict.fromkeys(self.store.keys.all_outboxes())}
        while starts:
            streams = list(starts)
            pages = self.store.roundtrip([("XRANGE", s, starts[s], until, "COUNT", OWN_PAGE) for s in streams])
            for stream, page in zip(streams, pages):
                if isinstance(page, Exception):
                    raise redis.ResponseError(str(page))
                for entry_id, flat in page:
                    fields = {_s(flat[i]): _s(flat[i + 1]) for i in range(0, len(flat), 2)}
                    if fields.pop("own", "") == self.consumer:
                        out.append((stream, _s(entry_id), fields))
                if len(page) < OWN_PAGE:
                    del starts[stream]
                else:
                    starts[stream] = "(" + _s(page[-1][0])
        if out:
            _log.info("own_replies_found", count=len(out), consumer=self.consumer)
        return out

    def claim_from_dead(self) -> list[Entry]:
        """Queue entries read by senders without a lease, claimed by this one (each exactly once)."""
        keys = self.store.keys
        out: list[Entry] = []
        for shard in range(keys.shards):
            stream = keys.queue(shard)
            argv = ClaimArgv(group=OUTBOX_GROUP, consumer=self.consumer, lease_prefix=self.lease_prefixes[shard],
                             count=CLAIM_COUNT)
            res = self._with_leases(shard, stream, lambda leases: self.store.run_step(
                CLAIM, (*ClaimKeys(queue=stream), *leases), argv), lambda r: r[1])
            for entry_id, flat in res[0] if res is not None else []:
                out.append((stream, _s(entry_id), {_s(flat[i]): _s(flat[i + 1]) for i in range(0, len(flat), 2)}))
        if out:
            _log.info("queue_entries_claimed", count=len(out))
        return out
