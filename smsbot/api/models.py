"""Request and response models of the HTTP API (they are the OpenAPI schemas).

Checks that need the configuration (number, service, plan, cycle, time) are made by the routes,
which answer 422 naming each wrong field in the same shape FastAPI uses for schema errors:
``{"detail": [{"loc": ["body", "<field>"], "msg": "...", "type": "value_error"}]}``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_MSISDN = Field(min_length=1, max_length=40, description="the subscriber, as people write it: 13800138000, +86 138-0013-8000, 8613800138000",
                examples=["13800138000"])
_AT = Field(None, description="ISO 8601 (no offset: billing.timezone) or ms since the epoch; default now",
            examples=["2026-11-25T10:00:00+08:00"])


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrderIn(_In):
    msisdn: str = _MSISDN
    service: str = Field(min_length=1, max_length=32, description="a service code of the catalogue", examples=["VIDEO"])
    order_id: str | None = Field(None, min_length=1, max_length=128, description="idempotency key; default a new unique id")
    at: str | int | None = _AT


class UseIn(_In):
    msisdn: str = _MSISDN
    service: str = Field(min_length=1, max_length=32, description="an on-demand service code", examples=["RING"])
    use_id: str | None = Field(None, min_length=1, max_length=128, description="idempotency key; default a new unique id")
    at: str | int | None = _AT


class UsageIn(_In):
    msisdn: str = _MSISDN
    used: int | str = Field(description="bytes used this cycle so far (running total), or a size such as '95MB', '1.5GB'",
                            examples=["95MB"])
    cycle: str | None = Field(None, max_length=16, description="YYYY-MM; default this month in usage.timezone", examples=["2026-11"])
    plan: str | None = Field(None, max_length=32, description="plan code; default the stored plan, else usage.default_plan")
    at: str | int | None = _AT


class NoticeIn(_In):
    msisdn: str = _MSISDN
    text: str | None = Field(None, min_length=1, max_length=1000, description="the text, sent as it is (give text or template)")
    template: str | None = Field(None, min_length=1, max_length=64, description="a reply template name, rendered with params")
    params: dict[str, str | int | float] = Field(default_factory=dict, description="the template's values")
    short_code: str | None = Field(None, min_length=1, max_length=21, description="sender; default the reminder short code")


class EventOut(BaseModel):
    event_id: str = Field(description="the Redis stream entry id of the event")
    id: str = Field(description="the order or use id (idempotency key)")
    msisdn: str
    service: str
    at: int = Field(description="ms since the epoch")
    duplicate: bool = Field(False, description="true: this id was posted before; this is the first result")


class UsageOut(BaseModel):
    event_id: str
    msisdn: str
    used: int
    cycle: str
    plan: str


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
    record: dict[str, Any] | None = Field(None, description="the rejected MT's record")


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


class UsageStateOut(BaseModel):
    msisdn: str
    state: dict[str, str] = Field(description="the stored usage hash (cycle, used, plan, quota, alert marks); empty: none")


class MtOut(BaseModel):
    message_id: str
    records: list[dict[str, Any]]


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


class StatusOut(BaseModel):
    redis: str = Field(description="'ok'")
    instances: list[Instance]
    outbox_depth: int = Field(description="entries in every outbox and queue stream")
    outbox_oldest_age_s: float | None = Field(None, description="age of the oldest entry not yet sent (queue lag); null: none")
    event_backlog: dict[str, int] = Field(description="per event stream: entries not yet read by its group (lag)")


class Problem(BaseModel):
    detail: Any
