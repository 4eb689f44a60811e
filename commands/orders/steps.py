"""The orders package's own Redis step beside its MO handlers (`smsbot.steps` declares the core's the
same way): ``event.lua``, an order or use event posted to the HTTP API, written once per id."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from smsbot.steps import Step

SAME, NEW, CONFLICT = 0, 1, 2  # EventResult.outcome (event.lua's names)


class EventKeys(NamedTuple):
    ids: str  # the ids posted for this stream: id -> the first result (Keys.api_ids, same slot as the stream)
    stream: str  # the event stream (orders or uses)


class EventArgv(NamedTuple):
    id: str  # the order or use id (idempotency key)
    result: str  # this request's result as JSON {id, msisdn, service, at}
    at_given: str  # '1': the request stated `at` (the same id must then have the same `at`)
    # then the event's fields, name and value in turn (`commands.orders.events`)


class EventResult(NamedTuple):
    outcome: int  # NEW, SAME (the same request again) or CONFLICT (the id was used for another request)
    body: bytes  # EventOut's JSON (CONFLICT: the first result's)


EVENT = Step("event", EventKeys, EventArgv, EventResult, directory=Path(__file__).resolve().parent)
STEPS = (EVENT,)
