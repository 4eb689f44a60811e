"""The control channel (`smsbot.control`) on a real Redis, without a bot: what an instance's listener
does with bad, stale, unknown and failing requests, and what the asker gets back."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any, Iterator

import pytest
import redis

from smsbot import control
from smsbot.keys import Keys


@pytest.fixture
def channel(redis_client: redis.Redis) -> Iterator[tuple[redis.Redis, Keys, list[dict[str, Any]]]]:
    keys = Keys(f"ctl{uuid.uuid4().hex[:8]}")
    redis_client.set(keys.heartbeat("inst-1"), "{}")
    applied: list[dict[str, Any]] = []

    def level(args: dict[str, Any]) -> tuple[bool, str]:
        applied.append(args)
        return True, f"level {args['level']}"

    def broken(_args: dict[str, Any]) -> tuple[bool, str]:
        raise RuntimeError("boom")

    stop = threading.Event()
    listener = control.Listener(redis_client, keys, "inst-1", {"log_level": level, "reload": broken},
                                lambda: {"bound": True}, stop).start()
    yield redis_client, keys, applied
    stop.set()
    listener.join(5)


def test_bad_and_stale_requests_are_dropped_and_the_next_one_answered(channel: Any) -> None:
    red, keys, applied = channel
    stale = {"id": "old", "action": "log_level", "args": {"level": "ERROR"}, "actor": "cli:x",
             "deadline": int(time.time() * 1000) - 1}
    red.rpush(keys.control("inst-1"), b"not json", json.dumps({"id": "x"}), json.dumps(stale))
    [answer] = control.ask(red, keys, control.instances(red, keys), "log_level", {"level": "WARNING"}, "cli:tester", 10)
    assert answer["ok"] and answer["answered"] and answer["detail"] == "level WARNING" and answer["state"] == {"bound": True}
    assert applied == [{"level": "WARNING"}]  # the stale one was not applied
    assert red.exists(keys.control_reply("old")) == 0
    [entry] = control.audit_entries(red, keys)
    assert (entry["actor"], entry["action"], entry["instance"], json.loads(entry["args"]), entry["ok"]) == (
        "cli:tester", "log_level", "inst-1", {"level": "WARNING"}, "1")


def test_a_failing_action_is_answered_and_audited_as_not_done(channel: Any) -> None:
    red, keys, _applied = channel
    [answer] = control.ask(red, keys, ["inst-1"], "reload", {}, "api:ops", 10)
    assert not answer["ok"] and answer["answered"] and answer["detail"] == "failed: RuntimeError('boom')"
    assert [(e["action"], e["ok"], e["actor"]) for e in control.audit_entries(red, keys)] == [("reload", "0", "api:ops")]
    [status] = control.ask(red, keys, ["inst-1"], "status", {}, "api:ops", 10)
    assert status["ok"] and status["state"] == {"bound": True}
    assert len(control.audit_entries(red, keys)) == 1  # status changes nothing: not audited


def test_an_instance_that_does_not_answer_is_reported(redis_client: redis.Redis) -> None:
    keys = Keys(f"ctl{uuid.uuid4().hex[:8]}")
    [answer] = control.ask(redis_client, keys, ["gone-1"], "suspend", {}, "cli:x", 1)
    assert not answer["ok"] and not answer["answered"] and "no answer within 1 s" in answer["detail"]
    with pytest.raises(ValueError, match="unknown action 'explode'"):
        control.ask(redis_client, keys, ["gone-1"], "explode", {}, "cli:x", 1)
