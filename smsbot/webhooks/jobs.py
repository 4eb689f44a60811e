"""The webhook delivery jobs in Redis: per endpoint, what is still to be delivered, when, how often it
was tried, and the dead letters. Every change is one Lua step, so a job is never half moved.

Per endpoint ``<ep>`` (keys in `smsbot.keys`, all under the ``{webhooks}`` hash tag: one slot):

* ``jobs:<ep>``  hash  event id -> the body to POST (exactly the bytes every attempt sends)
* ``due:<ep>``   zset  event id -> when it may be taken (ms); a taken job's score is its lease's end,
                       so the job of a sender that died is due again once the lease is over
* ``tries:<ep>`` hash  event id -> attempts begun
* ``dead:<ep>``  hash  event id -> JSON dead letter {id, type, attempts, error, dead_at, body}

`enqueue` adds a job once per event id (an event collected twice is not a second job while the
first is waiting); `take` hands out one due job under a lease and counts the attempt; `done`
removes it; `fail` schedules the next attempt or, after the last, moves it to the dead letters;
`replay` puts dead letters back as fresh jobs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from smsbot.keys import Keys

# KEYS 1 jobs, 2 due; ARGV 1 now (ms), then event id, body pairs. Returns how many were new.
_ENQUEUE = """
local n = 0
for i = 2, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('ZADD', KEYS[2], ARGV[1], ARGV[i])
    n = n + 1
  end
end
return n
"""

# KEYS 1 due, 2 jobs, 3 tries; ARGV 1 now (ms), 2 lease end (ms).
# Returns {1, id, body, attempt} | {0, next due score or ''} (nothing due).
_TAKE = """
while true do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
  if #ids == 0 then
    local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {0, nxt[2] or ''}
  end
  local id = ids[1]
  local body = redis.call('HGET', KEYS[2], id)
  if body then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    return {1, id, body, redis.call('HINCRBY', KEYS[3], id, 1)}
  end
  redis.call('ZREM', KEYS[1], id)  -- a due entry without its job (never written by these steps): drop it
end
"""

# KEYS 1 due, 2 jobs, 3 tries; ARGV 1 id.
_DONE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return redis.call('HDEL', KEYS[2], ARGV[1])
"""

# KEYS 1 due, 2 jobs, 3 tries, 4 dead; ARGV 1 id, 2 next attempt (ms), 3 max attempts, 4 dead letter JSON.
# Returns 'retry', 'dead' or 'gone' (delivered meanwhile by a sender that took it after the lease).
_FAIL = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 'gone' end
local n = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if n >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  return 'dead'
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 'retry'
"""

# KEYS 1 due, 2 jobs, 3 tries, 4 dead; ARGV 1 now (ms), then ids ('*' alone: all). Returns the ids replayed.
_REPLAY = """
local ids
if ARGV[2] == '*' then ids = redis.call('HKEYS', KEYS[4]) else ids = { unpack(ARGV, 2) } end
local out = {}
for _, id in ipairs(ids) do
  local raw = redis.call('HGET', KEYS[4], id)
  if raw then
    redis.call('HSET', KEYS[2], id, cjson.decode(raw).body)
    redis.call('HDEL', KEYS[3], id)
    redis.call('ZADD', KEYS[1], ARGV[1], id)
    redis.call('HDEL', KEYS[4], id)
    out[#out + 1] = id
  end
end
return out
"""


@dataclass(frozen=True)
class Job:
    id: str
    body: bytes
    attempt: int  # 1 for the first attempt


@dataclass(frozen=True)
class DeadLetter:
    endpoint: str
    id: str
    type: str
    attempts: int
    error: str
    dead_at: int  # ms
    body: str

    def as_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "id": self.id, "type": self.type, "attempts": self.attempts,
                "error": self.error, "dead_at": self.dead_at, "event": json.loads(self.body)}


def _s(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


class Jobs:
    """The job store of every endpoint, on one Redis client (any mode: the keys share one slot)."""

    def __init__(self, client: Any, keys: Keys):
        self.client = client
        self.keys = keys
        self._enqueue = client.register_script(_ENQUEUE)
        self._take = client.register_script(_TAKE)
        self._done = client.register_script(_DONE)
        self._fail = client.register_script(_FAIL)
        self._replay = client.register_script(_REPLAY)

    def _k(self, ep: str) -> list[str]:
        k = self.keys
        return [k.webhook_due(ep), k.webhook_jobs(ep), k.webhook_tries(ep), k.webhook_dead(ep)]

    def enqueue(self, endpoint: str, events: Iterable[tuple[str, str]], now_ms: int) -> int:
        """Jobs for (event id, body) pairs, due at once; an id already waiting is not added again."""
        flat = [x for pair in events for x in pair]
        if not flat:
            return 0
        return int(self._enqueue(keys=[self.keys.webhook_jobs(endpoint), self.keys.webhook_due(endpoint)], args=[now_ms, *flat]))

    def take(self, endpoint: str, now_ms: int, lease_ms: int) -> Job | int | None:
        """One due job, held for `lease_ms`; else the ms time the next one is due (None: none waits)."""
        due, jobs, tries, _dead = self._k(endpoint)
        r = self._take(keys=[due, jobs, tries], args=[now_ms, now_ms + lease_ms])
        if int(r[0]) == 1:
            body = r[2] if isinstance(r[2], bytes) else str(r[2]).encode("utf-8")
            return Job(_s(r[1]), body, int(r[3]))
        nxt = _s(r[1])
        return int(float(nxt)) if nxt else None

    def done(self, endpoint: str, event_id: str) -> None:
        due, jobs, tries, _dead = self._k(endpoint)
        self._done(keys=[due, jobs, tries], args=[event_id])

    def fail(self, endpoint: str, job: Job, next_ms: int, max_attempts: int, error: str, now_ms: int) -> str:
        """After a failed attempt: 'retry' (due again at `next_ms`), 'dead' (attempts used up) or
        'gone' (someone delivered it meanwhile)."""
        body = job.body.decode("utf-8", "replace")
        try:
            kind = json.loads(body).get("type", "?")
        except ValueError:
            kind = "?"
        letter = json.dumps({"id": job.id, "type": kind, "attempts": job.attempt, "error": error, "dead_at": now_ms,
                             "body": body}, ensure_ascii=False)
        return _s(self._fail(keys=self._k(endpoint), args=[job.id, next_ms, max_attempts, letter]))

    def replay(self, endpoint: str, ids: list[str] | None, now_ms: int) -> list[str]:
        """Dead letters back to fresh jobs, due now (`ids` None: all of this endpoint's); the ids replayed."""
        return [_s(x) for x in self._replay(keys=self._k(endpoint), args=[now_ms, *(ids if ids is not None else ["*"])])]

    def dead_letters(self, endpoint: str) -> list[DeadLetter]:
        """This endpoint's dead letters, the most recent first."""
        out = []
        for raw in self.client.hvals(self.keys.webhook_dead(endpoint)):
            d = json.loads(raw)
            out.append(DeadLetter(endpoint, d["id"], d.get("type", "?"), int(d.get("attempts", 0)), d.get("error", ""),
                                  int(d.get("dead_at", 0)), d["body"]))
        out.sort(key=lambda x: (x.dead_at, x.id), reverse=True)
        return out

    def counts(self, endpoint: str) -> tuple[int, int]:
        """(jobs waiting or in flight, dead letters) of an endpoint."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hlen(self.keys.webhook_jobs(endpoint))
        pipe.hlen(self.keys.webhook_dead(endpoint))
        backlog, dead = pipe.execute()
        return int(backlog), int(dead)


# -- the dead letters of several endpoints (`smsbot webhooks list|retry`, the HTTP API) --------------
def list_dead(jobs: Jobs, endpoints: list[str], limit: int) -> list[DeadLetter]:
    """The dead letters of `endpoints`, the most recent first, at most `limit`."""
    found = [d for name in endpoints for d in jobs.dead_letters(name)]
    found.sort(key=lambda x: (x.dead_at, x.id), reverse=True)
    return found[:limit]


def replay_dead(jobs: Jobs, endpoints: list[str], ids: list[str] | None, now_ms: int) -> tuple[list[tuple[str, str]], list[str]]:
    """Dead letters of `endpoints` back to fresh jobs (`ids` None: all of them): ((endpoint, id)
    replayed, ids found in none of them)."""
    done: list[tuple[str, str]] = []
    for name in endpoints:
        done += [(name, i) for i in jobs.replay(name, ids, now_ms)]
    replayed = {i for _n, i in done}
    return done, [i for i in (ids or []) if i not in replayed]
