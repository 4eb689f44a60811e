"""Runtime control over the HTTP API (`smsbot.api`): the same as ``smsbot ctl``.

``POST /v1/control`` (scope ``admin``) with ``{"instance": NAME | "all", "action": ..., "level"?}``:
`status`, `suspend` (drain, unbind, stay unbound), `resume`, `log_level` (with `level`), `reload`
(what SIGHUP does). Each instance answers through Redis (`smsbot.control`) whether it was done;
every change is audited as ``api:<token name>``. Mounted by `smsbot.api.app.create_app`.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from smsbot import control
from smsbot.api.auth import Token
from smsbot.api.schema import AUTH, BODY, Input, responses
from smsbot.log import LEVELS


class ControlIn(Input):
    instance: str = Field(min_length=1, max_length=200, description="an instance as `GET /v1/status` lists it, or `all`")
    action: Literal["status", "suspend", "resume", "log_level", "reload"]
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] | None = Field(None, description="for `log_level`")


class ControlResult(BaseModel):
    instance: str
    action: str
    ok: bool = Field(description="the instance did it")
    answered: bool = Field(description="false: no answer in time (is it running?)")
    detail: str
    state: dict[str, Any] = Field(description="after the action: bound, binds, suspended, window, window_used, "
                                              "outbox_inflight, outbox_backlog, log_level")


class ControlOut(BaseModel):
    results: list[ControlResult]


def build_router(ctx: Any) -> APIRouter:  # ctx: smsbot.api.app.ApiContext
    r = APIRouter()

    @r.post("/v1/control", response_model=ControlOut, tags=["control"],
            responses=responses(AUTH, BODY, (404, "no such instance alive")))
    def post_control(body: ControlIn, tok: Token = ctx.auth.scope("admin")) -> Any:
        """Control running bot instances: status, suspend, resume, log level, reload (as `smsbot ctl`)."""
        if (body.action == "log_level") != (body.level is not None):
            raise HTTPException(422, [{"loc": ["body", "level"], "type": "value_error",
                                       "msg": f"`level` ({', '.join(LEVELS)}) goes with action log_level, and only with it"}])
        alive = control.instances(ctx.redis, ctx.keys)
        if body.instance == "all":
            targets = alive
        elif body.instance in alive:
            targets = [body.instance]
        else:
            raise HTTPException(404, f"no instance {body.instance!r} alive; alive: {', '.join(alive) or 'none'}")
        args = {"level": body.level} if body.level else {}
        results = control.ask(ctx.redis, ctx.keys, targets, body.action, args, f"api:{tok.name}",
                              control.answer_timeout(body.action, ctx.settings.smsc.drain_timeout))
        return ControlOut(results=[ControlResult(**{k: v for k, v in res.items() if k in ControlResult.model_fields})
                                   for res in results])

    return r
