"""Customer care over the HTTP API (`smsbot.api`): the same as ``smsbot tickets``.

* ``GET /v1/tickets`` (scope ``read``): newest first; ``open=true`` only open ones,
  ``overdue=true`` only open ones past their promised time, ``limit``;
* ``GET /v1/tickets/{number}`` (``read``): one ticket, the subscriber's words as typed;
* ``POST /v1/tickets/{number}/resolve`` (``admin``) with ``{"reply": "..."}``: closes it and queues
  the answer for the subscriber by SMS (a running bot sends it), audited with the token's name
  (``api:<name>``); 409 when it is resolved already (nothing sent).

Mounted by the API app through `ComplaintsCommand.api_routes`.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from smsbot.api.schema import AUTH, BODY, Input, responses

from commands.complaints import tickets

_404 = (404, "no ticket with that number")


class TicketOut(BaseModel):
    id: str = Field(description="the ticket number the subscriber was given")
    msisdn: str
    short_code: str
    state: str = Field(description="open or resolved")
    overdue: bool = Field(description="open and past its promised answer time")
    text: str = Field(description="the subscriber's words exactly as typed")
    cut: bool = Field(description="the text was longer than commands.complaints.max_chars and was cut")
    opened: int = Field(description="ms since the epoch")
    due: int = Field(description="promised answer time, ms since the epoch")
    resolved: int | None = None
    answer: str | None = None
    by: str | None = None
    ref: dict[str, Any] = Field(default_factory=dict, description="what the subscriber saw last: menu, charge")


class TicketsOut(BaseModel):
    tickets: list[TicketOut]


class ResolveIn(Input):
    reply: str = Field(min_length=1, max_length=1000, description="the answer; the subscriber receives it by SMS")


def _out(t: tickets.Ticket, now_ms: int) -> TicketOut:
    return TicketOut(id=t.id, msisdn=t.msisdn, short_code=t.short_code, state=t.state, overdue=t.overdue(now_ms), text=t.text,
                     cut=t.cut, opened=t.opened_ms, due=t.due_ms, resolved=t.resolved_ms, answer=t.answer, by=t.by, ref=t.ref)


def build_router(ctx: Any) -> APIRouter:
    r = APIRouter()
    settings = ctx.settings
    scope = ctx.auth.scope

    @r.get("/v1/tickets", response_model=TicketsOut, tags=["tickets"], responses=responses(AUTH, 422))
    def list_tickets(open: bool = False, overdue: bool = False, limit: int = Query(100, ge=1, le=10000),
                     tok: Any = scope("read")) -> Any:
        """Complaint tickets (TS / 投诉 by SMS), newest first, as `smsbot tickets list`."""
        now = int(time.time() * 1000)
        found = tickets.list_tickets(settings, ctx.store, open_only=open, overdue_only=overdue, limit=limit, now_ms=now)
        return TicketsOut(tickets=[_out(t, now) for t in found])

    @r.get("/v1/tickets/{number}", response_model=TicketOut, tags=["tickets"], responses=responses(AUTH, 422, _404))
    def get_ticket(number: str = Path(max_length=24), tok: Any = scope("read")) -> Any:
        """One ticket, as `smsbot tickets show`."""
        t = tickets.get(settings, ctx.store, number)
        if t is None:
            raise HTTPException(404, f"no ticket {number}")
        return _out(t, int(time.time() * 1000))

    @r.post("/v1/tickets/{number}/resolve", response_model=TicketOut, tags=["tickets"],
            responses=responses(AUTH, BODY, _404, (409, "resolved already: nothing was sent")))
    def resolve_ticket(body: ResolveIn, number: str = Path(max_length=24), tok: Any = scope("admin")) -> Any:
        """Answer a ticket: closed, audited with the token's name, the answer queued for the subscriber by SMS."""
        if not body.reply.strip():
            raise HTTPException(422, [{"loc": ["body", "reply"], "msg": "must not be blank", "type": "value_error"}])
        try:
            t = tickets.resolve(settings, ctx.store, number, body.reply, f"api:{tok.name}")
        except tickets.TicketError as e:
            raise HTTPException(409 if e.ticket is not None else 404, str(e)) from None
        return _out(t, int(time.time() * 1000))

    return r
