"""Webhooks over the HTTP API (`smsbot.api`): the same as ``smsbot webhooks list|retry``.

* ``GET /v1/webhooks`` (scope ``read``): each configured endpoint, its events, the deliveries
  waiting and its dead letters (the URL without credentials; never the secret);
* ``GET /v1/webhooks/dead-letters`` (``read``): dead letters, newest first, each with the event as
  it was sent; ``endpoint``, ``limit``;
* ``POST /v1/webhooks/dead-letters/replay`` (``admin``) with ``{"ids": [...]}`` or ``{"all": true}``,
  optionally ``"endpoint"``: back to fresh deliveries, sent by a running bot.

Mounted by `smsbot.api.app.create_app`.
"""

from __future__ import annotations

import time
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from smsbot.api.auth import Token
from smsbot.api.schema import AUTH, BODY, Input, responses
from smsbot.webhooks.jobs import Jobs, list_dead, replay_dead

class EndpointOut(BaseModel):
    name: str
    url: str = Field(description="where events are POSTed (user and password left out)")
    events: list[str]
    waiting: int = Field(description="events not yet delivered: due, waiting for a retry, or in flight")
    dead_letters: int


class EndpointsOut(BaseModel):
    endpoints: list[EndpointOut]


class DeadLetterOut(BaseModel):
    endpoint: str
    id: str = Field(description="the event id (the Idempotency-Key it was sent with)")
    type: str
    attempts: int
    error: str = Field(description="what the last attempt came to")
    dead_at: int = Field(description="ms since the epoch")
    event: dict[str, Any] = Field(description="the event as it was sent")


class DeadLettersOut(BaseModel):
    dead_letters: list[DeadLetterOut]


class ReplayIn(Input):
    endpoint: str | None = Field(None, max_length=64, description="only this endpoint's dead letters")
    ids: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(default_factory=list, max_length=10000,
                                                                          description="event ids to send again")
    all: bool = Field(False, description="every dead letter (of `endpoint`, or of every endpoint)")


class Replayed(BaseModel):
    endpoint: str
    id: str


class ReplayOut(BaseModel):
    replayed: list[Replayed]
    missing: list[str] = Field(description="ids that are no dead letter (of `endpoint`)")


def _public_url(url: str) -> str:
    p = urlsplit(url)
    host = p.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{p.port}" if p.port else "")
    return urlunsplit((p.scheme, netloc, p.path, "", ""))


def build_router(ctx: Any) -> APIRouter:  # ctx: smsbot.api.app.ApiContext
    r = APIRouter()
    settings = ctx.settings
    configured = [w.name for w in settings.webhooks]

    def names(where: str, endpoint: str | None) -> list[str]:
        if endpoint is None:
            return configured
        if endpoint not in configured:
            raise HTTPException(422, [{"loc": [where, "endpoint"], "type": "value_error",
                                       "msg": f"no webhook endpoint {endpoint!r}; configured: {', '.join(configured) or 'none'}"}])
        return [endpoint]

    def jobs() -> Jobs:
        return Jobs(ctx.store)

    @r.get("/v1/webhooks", response_model=EndpointsOut, tags=["webhooks"], responses=responses(AUTH))
    def list_endpoints(tok: Token = ctx.auth.scope("read")) -> Any:
        """The configured webhook endpoints, what waits for each, and their dead letters (as `smsbot webhooks list`)."""
        j = jobs()
        out = []
        for w in settings.webhooks:
            waiting, dead = j.counts(w.name)
            out.append(EndpointOut(name=w.name, url=_public_url(w.url), events=w.events, waiting=waiting, dead_letters=dead))
        return EndpointsOut(endpoints=out)

    @r.get("/v1/webhooks/dead-letters", response_model=DeadLettersOut, tags=["webhooks"], responses=responses(AUTH, 422))
    def dead_letters(endpoint: str | None = Query(None, max_length=64), limit: int = Query(100, ge=1, le=10000),
                     tok: Token = ctx.auth.scope("read")) -> Any:
        """Events that failed every attempt, newest first, each as it was sent."""
        found = list_dead(jobs(), names("query", endpoint), limit)
        return DeadLettersOut(dead_letters=[DeadLetterOut(**d.as_dict()) for d in found])

    @r.post("/v1/webhooks/dead-letters/replay", response_model=ReplayOut, tags=["webhooks"], responses=responses(AUTH, BODY))
    def replay(body: ReplayIn, tok: Token = ctx.auth.scope("admin")) -> Any:
        """Send dead letters again (`ids`, or `all`): they become fresh deliveries a running bot sends."""
        if bool(body.ids) == body.all:
            raise HTTPException(422, [{"loc": ["body", "ids"], "type": "value_error",
                                       "msg": "give the ids of the dead letters to send again, or \"all\": true (not both)"}])
        done, missing = replay_dead(jobs(), names("body", body.endpoint), body.ids or None, int(time.time() * 1000))
        return ReplayOut(replayed=[Replayed(endpoint=n, id=i) for n, i in done], missing=missing)

    return r
