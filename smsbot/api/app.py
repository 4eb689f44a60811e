"""The FastAPI app (`create_app`) and its server (`serve`, `start_in_thread`).

`create_app(settings)` connects to the bot's Redis (the same `build_store` as every command, and
an asyncio client for the handlers that run on the event loop), mounts `smsbot.api.routes` and the
routes command packages bring, and wraps them in `smsbot.api.wire` (body limit, JSON only, error
bodies, a newline after every JSON answer). The docs, Swagger UI at ``/docs`` and ReDoc at
``/redoc``, are served from the package (``fastapi-offline``: no CDN), with the bearer scheme
declared so the page can authorise.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI

from smsbot.config import Settings

REDIS_TIMEOUT_S = 5.0  # the API's own Redis calls: a Redis not answering in this long is down (503)
DEFAULT_PORT = 8080


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("smsbot")
    except PackageNotFoundError:
        return "0"


def _lua(name: str) -> str:
    return resources.files("smsbot.api").joinpath(name).read_text(encoding="utf-8")


EVENT_STEP = _lua("event.lua")
NOTICE_STEP = _lua("notice.lua")


@dataclass
class ApiContext:
    settings: Settings
    store: Any  # smsbot.store.Store: the blocking client, for handlers run in the threadpool (plain `def`)
    auth: Any  # smsbot.api.auth.Auth
    router: Any  # smsbot.router.Router (renders notices to check them)
    aredis: Any = field(default=None)  # the asyncio client, for `async def` handlers: never block the loop
    event_step: Any = field(default=None)  # event.lua on `aredis`
    notice_step: Any = field(default=None)  # notice.lua on `aredis`

    @property
    def redis(self) -> Any:
        return self.store.redis

    @property
    def keys(self) -> Any:
        return self.store.keys

    def use_async_client(self, client: Any) -> None:
        """`client` (redis.asyncio) for every handler on the event loop, and the steps on it."""
        self.aredis = client
        self.event_step = _AsyncScript(client, EVENT_STEP)
        self.notice_step = _AsyncScript(client, NOTICE_STEP)


def create_app(settings: Settings, store: Any = None) -> FastAPI:
    import commands
    from fastapi_offline import FastAPIOffline

    from smsbot.api import wire
    from smsbot.api.auth import Auth
    from smsbot.api.routes import build_router
    from smsbot.app import build_store
    from smsbot.router import Router

    a = settings.api
    st = store or build_store(settings)
    ctx = ApiContext(settings, st, Auth(a.tokens, a.rate_per_second, a.burst), Router(settings, commands.all_commands()))
    ctx.use_async_client(_async_client(settings, st))
    app = FastAPIOffline(title="smsbot HTTP API", version=_version(), static_url="/docs-assets", redirect_slashes=False,
                         swagger_ui_parameters={"persistAuthorization": False, "tryItOutEnabled": True},
                         description="Orders, on-demand uses, usage reports, notices, subscriptions, MT records and status of smsbot. "
                                     "Authenticate with `Authorization: Bearer <token>` (config `api.tokens`, `SMSBOT_API_TOKENS`): "
                                     "**Authorize** above takes the secret. Every answer is JSON ending in a newline; every error "
                                     "is `{\"detail\": ...}` naming what is wrong.")
    app.state.ctx = ctx
    wire.install_handlers(app)
    every_operation = [Depends(wire.known_query)]
    app.include_router(build_router(ctx), dependencies=every_operation)
    for cmd in ctx.router.commands.values():  # endpoints a command package brings (complaints: /v1/tickets)
        extra = cmd.api_routes(ctx)
        if extra is not None:
            app.include_router(extra, dependencies=every_operation)
    _document_catalogue(app, settings)
    app.add_middleware(wire.Gate, limit=a.max_body_bytes)
    return app


def _document_catalogue(app: FastAPI, settings: Settings) -> None:
    """The OpenAPI document names this deployment's catalogue: service codes, on-demand codes,
    plans and short codes as enums (the routes also take them in any case; they check them too)."""
    from fastapi.openapi.utils import get_openapi

    from smsbot.config import BillingKind

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            comp = doc.get("components", {}).get("schemas", {})
            codes = [x.code for x in settings.services]
            on_demand = [x.code for x in settings.services if x.kind is BillingKind.ON_DEMAND]
            for model, prop, values in (("OrderIn", "service", codes), ("UseIn", "service", on_demand),
                                        ("UsageIn", "plan", [p.code for p in settings.usage.plans]),
                                        ("NoticeIn", "short_code", [sc.code for sc in settings.short_codes])):
                spec = comp.get(model, {}).get("properties", {}).get(prop)
                if spec is None or not values:
                    continue
                if "anyOf" in spec:  # optional: anyOf [string, null]
                    for alt in spec["anyOf"]:
                        if alt.get("type") == "string":
                            alt.pop("minLength", None), alt.pop("maxLength", None)
                            alt["enum"] = values
                else:
                    spec.pop("minLength", None), spec.pop("maxLength", None)
                    spec["enum"] = values
            for op in doc.get("paths", {}).get("/v1/subscribers/{msisdn}/subscriptions/{service}", {}).values():
                for prm in op.get("parameters", []):
                    if prm.get("name") == "service":
                        prm["schema"] = {"type": "string", "enum": codes, "title": "Service"}
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _async_client(settings: Settings, store: Any) -> Any:
    """An asyncio client of the bot's Redis for `redis.mode`, with the store's options (RESP2,
    timeouts, password): the event loop serves other requests while one waits; a slow Redis, a
    failover, stalls no one else."""
    import redis.asyncio as aioredis
    import redis.asyncio.cluster
    import redis.asyncio.sentinel

    from smsbot.config import RedisMode

    r = settings.redis
    opts: dict[str, Any] = {"socket_timeout": REDIS_TIMEOUT_S, "socket_connect_timeout": REDIS_TIMEOUT_S, "protocol": 2}
    if r.password:
        opts["password"] = r.password
    if r.mode is RedisMode.SENTINEL:
        sentinel = redis.asyncio.sentinel.Sentinel(r.sentinel_addresses(), socket_timeout=REDIS_TIMEOUT_S,
                                                   socket_connect_timeout=REDIS_TIMEOUT_S)
        return sentinel.master_for(r.sentinel_service, **opts)
    if r.mode is RedisMode.CLUSTER:
        return redis.asyncio.cluster.RedisCluster.from_url(r.url, **opts)
    return aioredis.Redis.from_url(store.url, **opts)


class _AsyncScript:
    """EVALSHA with a NOSCRIPT fallback (a restarted Redis forgets scripts) on an asyncio client."""

    def __init__(self, client: Any, source: str):
        self.script = client.register_script(source)

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        return await self.script(keys=keys, args=args)


def _server(settings: Settings, app: FastAPI, host: str | None, port: int | None) -> Any:
    import uvicorn

    a = settings.api
    cfg = uvicorn.Config(app, host=host or a.host, port=port if port is not None else (a.port or DEFAULT_PORT),
                         log_level="warning", access_log=False, server_header=False)
    return uvicorn.Server(cfg)


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Run the API in this thread until SIGINT/SIGTERM."""
    _server(settings, create_app(settings), host, port).run()


def start_in_thread(settings: Settings, host: str | None = None, port: int | None = None, store: Any = None) -> Any:
    """Start the API on a daemon thread (`smsbot run` with api.port, tests); returns the uvicorn
    Server: ``server.should_exit = True`` stops it; ``server.started`` says it listens."""
    server = _server(settings, create_app(settings, store), host, port)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  (not the main thread)
    t = threading.Thread(target=server.run, name="smsbot-api", daemon=True)
    t.start()
    server.thread = t
    return server
