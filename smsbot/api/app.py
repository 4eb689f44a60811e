"""The FastAPI app (`create_app`) and its server (`serve`, `start_in_thread`).

`create_app(settings)` connects to the bot's Redis (the same `connections.open_store` as every command) and
mounts `smsbot.api.routes` and `smsbot.api.webhooks`. Cross-cutting rules live here: bodies over ``api.max_body_bytes`` get
413 before they are read whole; a Redis that does not answer gets 503 with ``Retry-After`` (every
write is one atomic step, so nothing is half-written); every 4xx/5xx body is ``{"detail": ...}``;
every request is counted and timed by route template (`smsbot.metrics.ApiMetrics`): in the bot's
registry when ``smsbot run`` serves the API, else on this API's own ``GET /metrics``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from smsbot.config import Settings

RETRY_AFTER_S = 5
REDIS_TIMEOUT_S = 5.0  # the API's own Redis calls: a Redis not answering in this long is down (503)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("smsbot")
    except PackageNotFoundError:
        return "0"

DEFAULT_PORT = 8080


@dataclass
class ApiContext:
    settings: Settings
    store: Any  # smsbot.store.Store
    auth: Any  # smsbot.api.auth.Auth
    router: Any  # smsbot.router.Router (renders notices to check them)
    idempotent_xadd: Any = field(default=None)

    @property
    def redis(self) -> Any:
        return self.store.redis

    @property
    def keys(self) -> Any:
        return self.store.keys


class BodyLimit:
    """Pure ASGI middleware: 413 for a body over `limit` bytes (Content-Length or as it streams)."""

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    too_big = int(v) > self.limit
                except ValueError:
                    too_big = True
                if too_big:
                    return await _too_large(self.limit, send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return msg

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _too_large(self.limit, send)


class RequestMetrics:
    """Pure ASGI middleware: every HTTP request counted and timed in `ApiMetrics`, labelled with its
    route's template (``/v1/mt/{message_id}``; ``unmatched`` when no route took it)."""

    METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

    def __init__(self, app: Any, metrics: Any):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500  # what the server answers when the app raised before a response started

        async def sending(msg: dict) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, sending)
        finally:
            method = scope["method"] if scope["method"] in self.METHODS else "other"  # labels stay few
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe(method, route, status, time.perf_counter() - started)


class _TooLarge(Exception):
    pass


async def _too_large(limit: int, send: Any) -> None:
    body = JSONResponse({"detail": f"request body over {limit} bytes (api.max_body_bytes)"}, status_code=413).body
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(settings: Settings, store: Any = None, metrics: Any = None) -> FastAPI:
    """The API on `store` (default: a new one for `settings`); request metrics go to `metrics` (an
    `ApiMetrics`, e.g. in the bot's registry), or, when None, to this app's own ``GET /metrics``."""
    import commands
    from smsbot.api.auth import Auth
    from smsbot.api.routes import build_router
    from smsbot.api.webhooks import build_router as webhooks_router
    from smsbot.connections import open_store
    from smsbot.router import Router

    a = settings.api
    st = store or open_store(settings)
    ctx = ApiContext(settings, st, Auth(a.tokens, a.rate_per_second, a.burst), Router(settings, commands.all_commands()))
    from smsbot.api.routes import _IDEMPOTENT_XADD

    ctx.idempotent_xadd = _script(settings, st, _IDEMPOTENT_XADD)
    app = FastAPI(title="smsbot HTTP API", version=_version(),
                  description="Orders, on-demand uses, usage reports, notices, subscriptions, MT records and status of smsbot. "
                              "Authenticate with `Authorization: Bearer <token>` (config `api.tokens`, `SMSBOT_API_TOKENS`).")
    app.state.ctx = ctx

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    @app.exception_handler(redis.BusyLoadingError)
    async def redis_down(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"Redis is unavailable ({type(exc).__name__}); nothing was written, try again"},
                            status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})

    app.include_router(build_router(ctx))
    app.include_router(webhooks_router(ctx))  # dead letters of the webhooks (smsbot.api.webhooks)
    for cmd in ctx.router.commands.values():  # endpoints a command package brings (complaints: /v1/tickets)
        extra = cmd.api_routes(ctx)
        if extra is not None:
            app.include_router(extra)
    if metrics is None:  # a process of its own (`smsbot api`): Prometheus scrapes it here
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        from smsbot.metrics import ApiMetrics

        metrics = ApiMetrics()

        @app.get("/metrics", include_in_schema=False)
        def prometheus_metrics() -> Response:  # no token, like /status: route templates and counts, no subscriber data
            return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    _document_catalogue(app, settings)
    app.add_middleware(BodyLimit, limit=a.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)  # added last: the outermost, so a 413 is counted too
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


def _script(settings: Settings, store: Any, source: str) -> "_AsyncScript":
    """The order/use step on an asyncio client of the bot's Redis, whatever its mode (the event
    loop serves other requests while one waits; a slow Redis, a failover, stalls no one else)."""
    return _AsyncScript(_async_client(settings, store), source)


def _async_client(settings: Settings, store: Any) -> Any:
    """An asyncio client for `redis.mode`, with the store's options (RESP2, timeouts, password)."""
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
    """EVALSHA with a NOSCRIPT fallback (a restarted Redis forgets scripts); returns (created, raw)."""

    def __init__(self, client: Any, source: str):
        self.client = client
        self.script = client.register_script(source)

    async def __call__(self, keys: list[str], args: list[Any]) -> tuple[bool, str]:
        created, raw = await self.script(keys=keys, args=args)
        return bool(created), raw.decode() if isinstance(raw, bytes) else str(raw)


def _server(settings: Settings, app: FastAPI, host: str | None, port: int | None) -> Any:
    import uvicorn

    a = settings.api
    cfg = uvicorn.Config(app, host=host or a.host, port=port if port is not None else (a.port or DEFAULT_PORT),
                         log_level="warning", access_log=False, server_header=False)
    return uvicorn.Server(cfg)


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Run the API in this thread until SIGINT/SIGTERM."""
    _server(settings, create_app(settings), host, port).run()


def start_in_thread(settings: Settings, host: str | None = None, port: int | None = None, store: Any = None,
                    metrics: Any = None) -> Any:
    """Start the API on a daemon thread (`smsbot run` with api.port, tests); returns the uvicorn
    Server: ``server.should_exit = True`` stops it; ``server.started`` says it listens."""
    server = _server(settings, create_app(settings, store, metrics), host, port)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  (not the main thread)
    t = threading.Thread(target=server.run, name="smsbot-api", daemon=True)
    t.start()
    server.thread = t
    return server
