"""Runtime control of running bot instances through Redis: the requests, their answers, the audit.

The CLI (``smsbot ctl``) and the HTTP API (``POST /v1/control``) may run in other processes, and
several instances share one Redis, so a request goes to one instance by name:

* the asker RPUSHes ``{id, action, args, actor, deadline}`` (JSON) onto that instance's list
  ``keys.control(instance)`` and BLPOPs the answer from ``keys.control_reply(id)``;
* the instance's `Listener` thread BLPOPs its list, applies the request through the handlers the
  bot gives it (`smsbot.app`: they set flags the transport thread honours, as a SIGHUP does) and
  RPUSHes ``{instance, id, action, ok, detail, state}`` to the reply key (kept `REPLY_TTL_S`);
* every change (not `status`) adds an entry to the stream ``keys.control_audit()`` and logs one
  ``control`` line, both naming who asked (``cli:<user>``, ``api:<token name>``).

A request the asker stopped waiting for (past its deadline) is dropped unapplied.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any, Callable

import redis

from smsbot import log
from smsbot.keys import Keys

ACTIONS = ("suspend", "resume", "log_level", "reload", "status")
CHANGES = frozenset(ACTIONS) - {"status"}
REPLY_TTL_S = 60
AUDIT_MAXLEN = 10_000
ANSWER_TIMEOUT_S = 10.0  # how long an asker waits for an answer (suspend: plus smsc.drain_timeout)
_POLL_S = 1  # BLPOP timeout of the listener (stop is noticed within it) and the asker's slices

_log = log.get("smsbot.control")

# action -> handler(args) -> (ok, detail)
Handler = Callable[[dict[str, Any]], "tuple[bool, str]"]


def answer_timeout(action: str, drain_timeout: float) -> float:
    """How long to wait for an instance's answer to `action` (a suspend drains first)."""
    return ANSWER_TIMEOUT_S + (drain_timeout if action == "suspend" else 0.0)


def instances(red: Any, keys: Keys) -> list[str]:
    """The instances alive (with a heartbeat), by name."""
    prefix = keys.heartbeat("")
    return sorted(k.decode()[len(prefix):] for k in red.scan_iter(match=prefix + "*", count=500))


def ask(red: Any, keys: Keys, targets: list[str], action: str, args: dict[str, Any], actor: str,
        timeout: float) -> list[dict[str, Any]]:
    """Send `action` to every instance of `targets` at once, then collect each answer (waiting
    until `timeout` at most); an instance that did not answer has ``ok`` false, ``answered`` false."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    deadline = time.time() + timeout
    sent = []
    for instance in targets:
        rid = uuid.uuid4().hex
        request = {"id": rid, "action": action, "args": args, "actor": actor, "deadline": int(deadline * 1000)}
        pipe = red.pipeline(transaction=False)
        pipe.rpush(keys.control(instance), json.dumps(request))
        pipe.expire(keys.control(instance), int(timeout) + REPLY_TTL_S)
        pipe.execute()
        sent.append((instance, rid))
    out = []
    for instance, rid in sent:
        out.append(_await_reply(red, keys.control_reply(rid), deadline) or {
            "instance": instance, "id": rid, "action": action, "ok": False, "answered": False, "state": {},
            "detail": f"no answer within {timeout:.0f} s (is the instance running? `smsbot ctl status`)"})
    return out


def _await_reply(red: Any, key: str, deadline: float) -> dict[str, Any] | None:
    while (left := deadline - time.time()) > 0:
        got = red.blpop([key], timeout=max(1, min(_POLL_S, int(left))))
        if got is not None:
            return {**json.loads(got[1]), "answered": True}
    return None


def audit_entries(red: Any, keys: Keys, count: int = 100) -> list[dict[str, str]]:
    """The most recent control audit entries, newest first."""
    rows = red.xrevrange(keys.control_audit(), count=count)
    return [{"id": eid.decode(), **{k.decode(): v.decode() for k, v in fields.items()}} for eid, fields in rows]


class Listener:
    """One bot instance's side: a thread reading its control list and applying what it reads."""

    def __init__(self, red: Any, keys: Keys, instance: str, handlers: dict[str, Handler],
                 state: Callable[[], dict[str, Any]], stop: threading.Event):
        """`handlers`: one per action in `CHANGES`; `state`: what `status` answers (and every
        answer carries), read after the action."""
        self.red = red
        self.keys = keys
        self.instance = instance
        self.handlers = handlers
        self.state = state
        self.stop = stop
        self._thread = threading.Thread(target=self._run, name=f"control-{instance}", daemon=True)
        self._failing = log.Throttled(_log, "control_redis_failing", level="warning")

    def start(self) -> Listener:
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        key = self.keys.control(self.instance)
        while not self.stop.is_set():
            try:
                got = self.red.blpop([key], timeout=_POLL_S)
                self._failing.recovered()
            except (redis.RedisError, OSError) as e:
                self._failing.hit(error=str(e) or type(e).__name__)
                self.stop.wait(_POLL_S)
                continue
            if got is not None:
                try:
                    self.handle(got[1])
                except (redis.RedisError, OSError) as e:  # the answer or the audit could not be written
                    self._failing.hit(error=str(e) or type(e).__name__)

    def handle(self, raw: bytes) -> None:
        try:
            req = json.loads(raw)
            rid, action, actor = str(req["id"]), str(req["action"]), str(req["actor"])
            args, deadline = dict(req.get("args") or {}), int(req["deadline"])
        except (ValueError, KeyError, TypeError) as e:
            _log.warning("control_request_invalid", error=str(e))
            return
        if time.time() * 1000 > deadline:
            _log.warning("control_request_expired", action=action, actor=actor)
            return
        if action == "status":
            ok, detail = True, ""
        elif action in self.handlers:
            try:
                ok, detail = self.handlers[action](args)
            except Exception as e:  # a bug must not end the listener: answer it
                _log.exception("control_error", action=action, error=repr(e))
                ok, detail = False, f"failed: {e!r}"
        else:
            ok, detail = False, f"unknown action {action!r}; one of {', '.join(ACTIONS)}"
        reply = {"instance": self.instance, "id": rid, "action": action, "ok": ok, "detail": detail, "state": self.state()}
        pipe = self.red.pipeline(transaction=False)
        if action in CHANGES:
            pipe.xadd(self.keys.control_audit(), {
                "at": str(int(time.time() * 1000)), "instance": self.instance, "actor": actor, "action": action,
                "args": json.dumps(args, sort_keys=True), "ok": "1" if ok else "0", "detail": detail},
                maxlen=AUDIT_MAXLEN, approximate=True)
            (_log.info if ok else _log.warning)("control", action=action, actor=actor, ok=ok, detail=detail, **args)
        pipe.rpush(self.keys.control_reply(rid), json.dumps(reply))
        pipe.expire(self.keys.control_reply(rid), REPLY_TTL_S)
        pipe.execute()
