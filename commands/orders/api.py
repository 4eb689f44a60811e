"""Orders and on-demand uses over the HTTP API (`smsbot.api`): the same events as ``smsbot order`` and
``smsbot use``, written once per id.

* ``POST /v1/orders`` (scope ``events``) ``{msisdn, service, order_id?, at?}``: an order event for
  the bot (charge reminder, grace period, first charge): 202 with the event id;
* ``POST /v1/uses`` (``events``) ``{msisdn, service, use_id?, at?}``: one use of an on-demand service.

Both are idempotent on their id: the same request again answers 200 with the first result
(``duplicate: true``), the same id with another msisdn, service or stated ``at`` is 409 naming what
differs, and nothing is written either way (the step ``EVENT``, ``event.lua``: one EVALSHA on the
asyncio client, which also builds the answer's body). Mounted through `OrdersCommand.api_routes`.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response
from pydantic import BaseModel, Field

from smsbot.api.checks import Invalid, at_ms, number, service
from smsbot.api.auth import Token
from smsbot.api.schema import AUTH, BODY, MSISDN, Time, TimedInput, responses
from smsbot.api.wire import problem
from smsbot.config import BillingKind

from commands.orders.events import new_id, order_fields, reminder_short_code, use_fields
from commands.orders.steps import CONFLICT, EVENT, NEW, EventArgv, EventKeys, EventResult


class OrderIn(TimedInput):
    msisdn: str = MSISDN
    service: str = Field(min_length=1, max_length=32, description="a service code of the catalogue", examples=["VIDEO"])
    order_id: str | None = Field(None, min_length=1, max_length=128,
                                 description="idempotency key; default a new unique id. The same id again with the same "
                                             "msisdn, service (and at, if given) answers the first result; with others, 409")
    at: Time = None


class UseIn(TimedInput):
    msisdn: str = MSISDN
    service: str = Field(min_length=1, max_length=32, description="an on-demand service code", examples=["RING"])
    use_id: str | None = Field(None, min_length=1, max_length=128,
                               description="idempotency key; default a new unique id (the same id with another body: 409)")
    at: Time = None


class EventOut(BaseModel):
    event_id: str = Field(description="the Redis stream entry id of the event")
    id: str = Field(description="the order or use id (idempotency key)")
    msisdn: str
    service: str
    at: int = Field(description="ms since the epoch")
    duplicate: bool = Field(False, description="true: this id was posted before; this is the first result")


class Conflict(BaseModel):
    """An idempotency key used before for a different request: nothing was written."""

    detail: str = Field(description="which fields differ from the first request under this id")
    first: EventOut = Field(description="the result of the first request under this id")


def _answers(id_name: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": EventOut, "description": f"this {id_name} was posted before with the same request: the first result"},
            **responses(AUTH, BODY), 409: {"model": Conflict, "description": f"this {id_name} was posted before "
                                                                             "for another msisdn, service or at"}}


def build_router(ctx: Any) -> APIRouter:  # ctx: smsbot.api.app.ApiContext
    r = APIRouter()
    settings = ctx.settings
    scope = ctx.auth.scope
    codes = [s.code for s in settings.services]
    ctx.document_enum("OrderIn", "service", codes)
    ctx.document_enum("UseIn", "service", [s.code for s in settings.services if s.kind is BillingKind.ON_DEMAND])

    async def idempotent_event(stream: str, id_name: str, id_: str, result: dict[str, Any], at_given: bool,
                               fields: dict[str, str]) -> Response:
        """The event once per id (`EVENT`): 202 new, 200 the same request again, 409 another one."""
        argv = EventArgv(id=id_, result=json.dumps(result), at_given="1" if at_given else "0")
        reply = await ctx.run_step(EVENT, EventKeys(ids=ctx.keys.api_ids(stream), stream=stream),
                                   (*argv, *(x for kv in fields.items() for x in kv)))
        res = EventResult._make(reply)
        if res.outcome == CONFLICT:
            first = json.loads(res.body)
            differ = [f"{k} {first.get(k)!r} then, {result[k]!r} now" for k in ("msisdn", "service", "at")
                      if first.get(k) != result[k] and (k != "at" or at_given)]
            return problem(409, f"{id_name} {id_!r} was used before for another request ({'; '.join(differ)}); "
                                f"nothing was written: use a new {id_name} for a new request", first={**first, "duplicate": True})
        return Response(res.body, media_type="application/json", status_code=202 if res.outcome == NEW else 200)  # EventOut, built in Lua

    @r.post("/v1/orders", status_code=202, response_model=EventOut, tags=["events"], responses=_answers("order_id"))
    async def post_order(body: OrderIn, tok: Token = scope("events")) -> Any:
        """Place an order: an order event for the bot (charge reminder, grace period, first charge),
        exactly what `smsbot order` writes. Idempotent on `order_id`."""

        bad = Invalid()
        msisdn = number(settings, bad, "body", body.msisdn)
        code = service(settings, bad, body.service)
        at = at_ms(settings, bad, body.at)
        oid = (body.order_id or "").strip() or new_id("ord")
        if body.order_id is not None and not body.order_id.strip():
            bad.add("body", "order_id", "must not be blank")
        bad.check()
        if reminder_short_code(settings) is None:
            raise HTTPException(503, "no short code enables the `orders` command: nothing would send the reminder")
        return await idempotent_event(ctx.keys.order_events(), "order_id", oid, {"id": oid, "msisdn": msisdn, "service": code, "at": at},
                                      body.at is not None, order_fields(msisdn, code, at, oid, source=f"api:{tok.name}"))

    @r.post("/v1/uses", status_code=202, response_model=EventOut, tags=["events"], responses=_answers("use_id"))
    async def post_use(body: UseIn, tok: Token = scope("events")) -> Any:
        """One use of an on-demand service (charged once, if subscribed and past the grace), as `smsbot use` writes it."""

        bad = Invalid()
        msisdn = number(settings, bad, "body", body.msisdn)
        code = service(settings, bad, body.service)
        svc = settings.service(code)
        if svc is not None and svc.kind is not BillingKind.ON_DEMAND:
            bad.add("body", "service", f"{code} is not an on-demand service")
        at = at_ms(settings, bad, body.at)
        if body.use_id is not None and not body.use_id.strip():
            bad.add("body", "use_id", "must not be blank")
        bad.check()
        uid = (body.use_id or "").strip() or new_id("use")
        return await idempotent_event(ctx.keys.use_events(), "use_id", uid, {"id": uid, "msisdn": msisdn, "service": code, "at": at},
                                      body.at is not None, use_fields(msisdn, code, at, uid, source=f"api:{tok.name}"))

    return r
