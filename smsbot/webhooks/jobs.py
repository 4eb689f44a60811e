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
`replay` puts dead letters back as fresh jobs. Each is a step of `smsbot.steps` (``WEBHOOK_*``, its Lua
file beside this module) run by the store's one runner, `Store.run_step`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from smsbot.steps import (WEBHOOK_DONE, WEBHOOK_ENQUEUE, WEBHOOK_FAIL, WEBHOOK_REPLAY, WEBHOOK_TAKE, WebhookDeadKeys,
                          WebhookDoneArgv, WebhookEnqueueArgv, WebhookEnqueueKeys, WebhookFailArgv, WebhookJobKeys,
                          WebhookReplayArgv, WebhookTakeArgv)
from smsbot.store import Store


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
    """The job store of every endpoint, on one `Store` (any Redis mode: the keys share one slot)."""

    def __init__(self, store: Store):
        self.store = store
        self.keys = store.keys

    def _job_keys(self, ep: str) -> WebhookJobKeys:
        k = self.keys
        return WebhookJobKeys(due=k.webhook_due(ep), jobs=k.webhook_jobs(ep), tries=k.webhook_tries(ep))

    def _dead_keys(self, ep: str) -> WebhookDeadKeys:
        return WebhookDeadKeys(**self._job_keys(ep)._asdict(), dead=self.keys.webhook_dead(ep))

    def enqueue(self, endpoint: str, events: Iterable[tuple[str, str]], now_ms: int) -> int:
        """Jobs for (event id, body) pairs, due at once; an id already waiting is not added again."""
        flat = [x for pair in events for x in pair]
        if not flat:
            return 0
        keys = WebhookEnqueueKeys(due=self.keys.webhook_due(endpoint), jobs=self.keys.webhook_jobs(endpoint))
        return int(self.store.run_step(WEBHOOK_ENQUEUE, keys, (*WebhookEnqueueArgv(now=now_ms), *flat)))

    def take(self, endpoint: str, now_ms: int, lease_ms: int) -> Job | int | None:
        """One due job, held for `lease_ms`; else the ms time the next one is due (None: none waits)."""
        got = WEBHOOK_TAKE.parse(self.store.run_step(WEBHOOK_TAKE, self._job_keys(endpoint),
                                                     WebhookTakeArgv(now=now_ms, lease_end=now_ms + lease_ms)))
        if got.id is not None:
            body = got.body if isinstance(got.body, bytes) else str(got.body).encode("utf-8")
            return Job(_s(got.id), body, int(got.attempt))
        return int(float(_s(got.next_due))) if got.next_due is not None else None

    def done(self, endpoint: str, event_id: str) -> None:
        self.store.run_step(WEBHOOK_DONE, self._job_keys(endpoint), WebhookDoneArgv(id=event_id))

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
        return _s(self.store.run_step(WEBHOOK_FAIL, self._dead_keys(endpoint),
                                      WebhookFailArgv(id=job.id, next_ms=next_ms, max_attempts=max_attempts, letter=letter)))

    def replay(self, endpoint: str, ids: list[str] | None, now_ms: int) -> list[str]:
        """Dead letters back to fresh jobs, due now (`ids` None: all of this endpoint's); the ids replayed."""
        argv = WebhookReplayArgv(now=now_ms, every="1" if ids is None else "0")
        return [_s(x) for x in self.store.run_step(WEBHOOK_REPLAY, self._dead_keys(endpoint), (*argv, *(ids or ())))]

    def dead_letters(self, endpoint: str) -> list[DeadLetter]:
        """This endpoint's dead letters, the most recent first."""
        out = []
        for raw in self.store.redis.hvals(self.keys.webhook_dead(endpoint)):
            d = json.loads(raw)
            out.append(DeadLetter(endpoint, d["id"], d.get("type", "?"), int(d.get("attempts", 0)), d.get("error", ""),
                                  int(d.get("dead_at", 0)), d["body"]))
        out.sort(key=lambda x: (x.dead_at, x.id), reverse=True)
        return out

    def counts(self, endpoint: str) -> tuple[int, int]:
        """(jobs waiting or in flight, dead letters) of an endpoint."""
        pipe = self.store.redis.pipeline(transaction=False)
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
