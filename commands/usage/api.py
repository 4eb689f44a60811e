"""Data usage over the HTTP API (`smsbot.api`): the same as ``smsbot usage``.

* ``POST /v1/usage`` (scope ``events``) ``{msisdn, used, cycle?, plan?, at?}``: a usage report on
  the usage stream for the bot to apply (202 with the event id); ``used`` in bytes or ``"95MB"``; a
  cycle far from now is refused (as the CLI without ``--force``); no plan: the stored one, else
  ``usage.default_plan``;
* ``GET /v1/subscribers/{msisdn}/usage`` (``read``): the stored usage of the latest reported cycle
  (what CXLL answers from); 404 when none was reported.

The report is one XADD on the asyncio client; the read, one HGETALL, is a plain `def` in the
threadpool. Mounted through `UsageCommand.api_routes`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field, field_validator

from smsbot.api.auth import Token
from smsbot.api.checks import Invalid, at_ms, number, path_number
from smsbot.api.schema import AUTH, BODY, MSISDN, Time, TimedInput, plain_value, responses

from commands.usage.reports import (CYCLE_RE, MAX_BYTES, check_cycle_near, current_cycle, event_fields, parse_size, read_record,
                                    resolve_plan)
from commands.usage.settings import usage_settings


class UsageIn(TimedInput):
    msisdn: str = MSISDN
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


class UsageOut(BaseModel):
    event_id: str
    msisdn: str
    used: int = Field(description="bytes")
    cycle: str
    plan: str


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


def build_router(ctx: Any) -> APIRouter:  # ctx: smsbot.api.app.ApiContext
    r = APIRouter()
    settings = ctx.settings
    scope = ctx.auth.scope
    ctx.document_enum("UsageIn", "plan", [p.code for p in usage_settings(settings).plans])

    @r.post("/v1/usage", status_code=202, response_model=UsageOut, tags=["events"], responses=responses(AUTH, BODY))
    async def post_usage(body: UsageIn, tok: Token = scope("events")) -> Any:
        """A data-usage report (running total of the cycle), as `smsbot usage --used` writes it."""

        bad = Invalid()
        msisdn = number(settings, bad, "body", body.msisdn)
        used = 0
        if isinstance(body.used, int):  # in range: `UsageIn`
            used = body.used
        else:
            try:
                used = parse_size(body.used)
            except ValueError as e:
                bad.add("body", "used", str(e))
        now_cycle = current_cycle(settings)
        cycle = (body.cycle or now_cycle).strip()
        if not CYCLE_RE.match(cycle):
            bad.add("body", "cycle", f"{cycle!r} is not a cycle; use YYYY-MM, e.g. 2026-11")
        else:
            try:
                check_cycle_near(cycle, now_cycle)
            except ValueError as e:
                bad.add("body", "cycle", str(e))
        plan = None
        if body.plan is not None:
            try:
                plan = resolve_plan(settings, body.plan)
            except ValueError as e:
                bad.add("body", "plan", str(e))
        at = at_ms(settings, bad, body.at)
        bad.check()
        if plan is None:
            stored = await ctx.aredis.hget(ctx.keys.usage(msisdn), "plan")
            try:
                plan = resolve_plan(settings, stored.decode() if stored else None)
            except ValueError as e:
                bad.add("body", "plan", str(e))
                bad.check()
        fields = event_fields(msisdn, used, cycle, plan.code, at_ms=at, source=f"api:{tok.name}")
        eid = await ctx.aredis.xadd(ctx.keys.usage_events(), fields)
        return UsageOut(event_id=eid.decode(), msisdn=msisdn, used=used, cycle=cycle, plan=plan.code)

    @r.get("/v1/subscribers/{msisdn}/usage", response_model=UsageStateOut, tags=["subscribers"],
           responses=responses(AUTH, 422, (404, "no usage reported for this subscriber")))
    def get_usage(msisdn: str = Path(max_length=40), tok: Token = scope("read")) -> Any:
        """The stored data usage of the subscriber's latest reported cycle (what CXLL answers from)."""

        n = path_number(settings, msisdn)
        raw = ctx.redis.hgetall(ctx.keys.usage(n))
        rec = read_record({k.decode(): v.decode() for k, v in raw.items()})
        if rec is None:
            raise HTTPException(404, f"no usage reported for {n}")
        return UsageStateOut(msisdn=n, cycle=rec.cycle, current=rec.cycle == current_cycle(settings), plan=rec.plan,
                             used=rec.used, quota=rec.quota, left=max(rec.quota - rec.used, 0), thresholds=rec.thresholds,
                             alerted=rec.alerted, overage_fen_per_mb=rec.rate, at=rec.at, event_id=rec.event_id)

    return r
