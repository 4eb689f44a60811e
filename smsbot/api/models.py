"""Request and response models of the HTTP API's core endpoints (they are the OpenAPI schemas); the
common vocabulary (`Input`, the error bodies, `responses`) is `smsbot.api.schema`.

Every request model is an `Input`: unknown fields are refused, and no value may hold a lone
surrogate (``"\\ud800"`` in the JSON text: no character, nothing can store or echo it) or a
non-finite number (``NaN``, ``Infinity``, ``1e400``); each is a 422 naming the field. Numbers carry
their bounds (the schema states them). Checks that need the configuration (number, service, plan,
cycle, time) are made by the routes, which answer 422 naming each wrong field in the same shape
FastAPI uses for schema errors: ``{"detail": [{"loc": ["body", "<field>"], "msg": "...", "type": "value_error"}]}``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator

from commands.usage import MAX_BYTES  # the most a usage report may say: 64 TB
from smsbot.api.schema import Input, plain_value
MAX_AT_MS = 32503680000000  # year 3000: epoch ms beyond this are a unit mistake (seconds as ms * 1000...)
MAX_PARAM = 10 ** 15  # a template parameter's magnitude: more than any amount, count or size a notice states


def _time_ms(value: Any) -> Any:
    """`at` as epoch ms: whole and in range, or ValueError; strings are parsed by the route (time zone)."""
    plain_value(value)  # this runs before `Input._plain`: NaN and surrogates named first
    if isinstance(value, bool):
        raise ValueError("not a time: give ISO 8601 text or epoch ms")
    if isinstance(value, float):
        if value != int(value):
            raise ValueError("epoch ms must be a whole number")
        value = int(value)
    if isinstance(value, int) and not 0 <= value <= MAX_AT_MS:
        raise ValueError(f"{value} is out of range: epoch ms between 0 (1970) and {MAX_AT_MS} (3000)")
    return value


_MSISDN = Field(min_length=1, max_length=40, description="the subscriber, as people write it: 13800138000, +86 138-0013-8000, 8613800138000",
                examples=["13800138000"])
EpochMs = Annotated[int, Field(strict=True, ge=0, le=MAX_AT_MS, description="ms since the epoch")]
Time = Annotated[EpochMs | Annotated[str, Field(min_length=1, max_length=40)] | None,
                 Field(description="ISO 8601 (no offset: billing.timezone) or ms since the epoch; default now",
                       examples=["2026-11-25T10:00:00+08:00"])]


class _Event(Input):
    @field_validator("at", mode="before", check_fields=False)
    @classmethod
    def _at(cls, value: Any) -> Any:
        return _time_ms(value)


class OrderIn(_Event):
    msisdn: str = _MSISDN
    service: str = Field(min_length=1, max_length=32, description="a service code of the catalogue", examples=["VIDEO"])
    order_id: str | None = Field(None, min_length=1, max_length=128,
                                 description="idempotency key; default a new unique id. The same id again with the same "
                                             "msisdn, service (and at, if given) answers the first result; with others, 409")
    at: Time = None


class UseIn(_Event):
    msisdn: str = _MSISDN
    service: str = Field(min_length=1, max_length=32, description="an on-demand service code", examples=["RING"])
    use_id: str | None = Field(None, min_length=1, max_length=128,
                               description="idempotency key; default a new unique id (the same id with another body: 409)")
    at: Time = None


class UsageIn(_Event):
    msisdn: str = _MSISDN
    used: Annotated[int, Field(strict=True, ge=0, le=MAX_BYTES)] | Annotated[str, Field(min_length=1, max_length=32)] = Field(
        description="bytes used this cycle so far (running total, at most 64 TB), or a size such as '95MB', '1.5GB'",
        examples=["95MB"])
    cycle: str | None = Field(None, max_length=16, description="YYYY-MM; default this month in usage.timezone", examples=["2026-11"])
    plan: str | None = Field(None, max_length=32, description="plan code; default the stored plan, else usage.default_plan")
    at: Time = None

    @field_validator("used", mode="before")
    @classmethod
    def _used(cls, value: Any) -> Any:
        plain_value(value)
        if isinstance(value, bool):
            raise ValueError("a number of bytes or a size such as '95MB', not true or false")
        if isinstance(value, float):
            if value != int(value):
                raise ValueError(f"bytes must be a whole number, not {value!r}")
            value = int(value)
        if isinstance(value, int) and not 0 <= value <= MAX_BYTES:
            raise ValueError(f"{value} bytes is out of range: 0 to {MAX_BYTES} (64 TB)")
        return value


ParamValue = (Annotated[str, Field(max_length=1000)] | Annotated[int, Field(strict=True, ge=-MAX_PARAM, le=MAX_PARAM)]
              | Annotated[float, Field(ge=-MAX_PARAM, le=MAX_PARAM, allow_inf_nan=False)])


class NoticeIn(Input):
    msisdn: str = _MSISDN
    text: str | None = Field(None, min_length=1, max_length=1000, description="the text, sent as it is (give text or template)")
    template: str | None = Field(None, min_length=1, max_length=64, description="a reply template name, rendered with params")
    params: dict[Annotated[str, Field(min_length=1, max_length=64)], ParamValue] = Field(
        default_factory=dict, max_length=64, description="the template's values")
    short_code: str | None = Field(None, min_length=1, max_length=21, description="sender; default the reminder short code")


# -- answers ----------------------------------------------------------------------------------------
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
    used: int = Field(description="bytes")
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


class UsageStateOut(BaseModel):
    """The stored usage of a subscriber's latest reported cycle (what CXLL answers from)."""

    msisdn: str
    cycle: str = Field(description="YYYY-MM of the stored record", examples=["2026-11"])
    current: bool = Field(description="the stored cycle is this cycle (usage.timezone); false: nothing is used yet this cycle")
    plan: str = Field(description="the plan of the report that set `used`")
    used: int = Field(description="bytes used in the cycle (the highest running total reported)")
    quota: int = Field(description="bytes in the plan")
    left: int = Field(description="bytes left: quota - used, at least 0")
    thresholds: list[int] = Field(description="alert thresholds of the plan: bytes left, highest first")
    alerted: list[int] = Field(description="the thresholds already alerted this cycle for this plan, highest first")
    overage_fen_per_mb: int = Field(description="the out-of-plan rate")
    at: int = Field(description="ms since the epoch: when the usage behind `used` was measured")
    event_id: str = Field(description="the usage event that set `used`")


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


# -- errors beyond the common ones (smsbot.api.schema) ----------------------------------------------------
class Conflict(BaseModel):
    """An idempotency key used before for a different request: nothing was written."""

    detail: str = Field(description="which fields differ from the first request under this id")
    first: EventOut = Field(description="the result of the first request under this id")
