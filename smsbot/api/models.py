"""Request and response models of the HTTP API's core endpoints (they are the OpenAPI schemas; a
command's own are in its package, `commands/<name>/api.py`); the common vocabulary (`Input`, the
shared fields, the error bodies, `responses`) is `smsbot.api.schema`.

Every request model is an `Input`: unknown fields are refused, and no value may hold a lone
surrogate (``"\\ud800"`` in the JSON text: no character, nothing can store or echo it) or a
non-finite number (``NaN``, ``Infinity``, ``1e400``); each is a 422 naming the field. Numbers carry
their bounds (the schema states them). Checks that need the configuration (number, service, plan,
cycle, time) are made by the routes (`smsbot.api.checks`), which answer 422 naming each wrong field
in the same shape FastAPI uses for schema errors: ``{"detail": [{"loc": ["body", "<field>"], "msg": "...", "type": "value_error"}]}``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from smsbot.api.schema import MSISDN, Input

MAX_PARAM = 10 ** 15  # a template parameter's magnitude: more than any amount, count or size a notice states

ParamValue = (Annotated[str, Field(max_length=1000)] | Annotated[int, Field(strict=True, ge=-MAX_PARAM, le=MAX_PARAM)]
              | Annotated[float, Field(ge=-MAX_PARAM, le=MAX_PARAM, allow_inf_nan=False)])


class NoticeIn(Input):
    msisdn: str = MSISDN
    text: str | None = Field(None, min_length=1, max_length=1000, description="the text, sent as it is (give text or template)")
    template: str | None = Field(None, min_length=1, max_length=64, description="a reply template name, rendered with params")
    params: dict[Annotated[str, Field(min_length=1, max_length=64)], ParamValue] = Field(
        default_factory=dict, max_length=64, description="the template's values")
    short_code: str | None = Field(None, min_length=1, max_length=21, description="sender; default the reminder short code")


# -- answers ----------------------------------------------------------------------------------------
class NoticeOut(BaseModel):
    id: str = Field(description="the queue entry id of the MT intent (field `entry` of its MT records)")
    msisdn: str
    short_code: str
    text: str = Field(description="the text as it will be sent")
    href: str = Field(description="where to follow it: GET /v1/subscribers/{msisdn}/notices/{id}")


class NoticeStateOut(BaseModel):
    id: str
    msisdn: str
    state: str = Field(description="'queued' (waiting for a sender or in flight), 'sent' (no longer queued: the SMSC "
                                   "accepted every part), or 'rejected' (refused for good by the SMSC; see record)")
    record: dict[str, str] | None = Field(None, description="the rejected MT's record")


class Subscription(BaseModel):
    service: str
    name: str
    state: str
    since: int = Field(description="ms since the epoch")
    price_fen: int


class SubscriptionsOut(BaseModel):
    msisdn: str
    subscriptions: list[Subscription]


class CancelOut(BaseModel):
    msisdn: str
    service: str
    outcome: str = Field(description="'removed'")
    by: str = Field(description="the audit's actor: api:<token name>")


class LedgerEntry(BaseModel):
    field: str = Field(description="<code>:<YYYY-MM> (monthly charge) or <code>:use:<id> (on-demand use)")
    fen: int
    at: int | None = None
    run: str | None = None


class LedgerOut(BaseModel):
    msisdn: str
    entries: list[LedgerEntry]
    total_fen: int


class MtOut(BaseModel):
    message_id: str
    records: list[dict[str, str]]


class Instance(BaseModel):
    instance: str
    heartbeat: int | None = Field(None, description="unix seconds of its last heartbeat")
    age_seconds: float | None = None
    consumer: str | None = Field(None, description="the sender name its replies are marked with")
    bound: bool | None = Field(None, description="bound to the SMSC at its last heartbeat")
    binds: list[str] = Field(default_factory=list, description="its binds: host:port/system_id and kind")
    reconnects: int | None = None
    outbox_backlog: int | None = Field(None, description="reply parts waiting to be sent")
    outbox_inflight: int | None = Field(None, description="submit_sm awaiting their resp")
    suspended: bool | None = Field(None, description="unbound on purpose (`POST /v1/control` suspend) until resumed")


class StatusOut(BaseModel):
    redis: str = Field(description="'ok'")
    instances: list[Instance]
    outbox_depth: int = Field(description="entries in every outbox and queue stream")
    outbox_oldest_age_s: float | None = Field(None, description="age of the oldest entry not yet sent (queue lag); null: none")
    event_backlog: dict[str, int] = Field(description="per event stream: entries not yet read by its group (lag)")
    topology: dict[str, Any] | None = Field(None, description="the Redis behind the bot (smsbot.topology.describe): mode, "
                                            "durability, primaries with their replicas and replication lag, failovers seen")
