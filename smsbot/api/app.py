"""The FastAPI app (`create_app`) and its server (`serve`, `start_in_thread`).

`create_app(settings)` connects to the bot's Redis (`smsbot.connections`: the same store as every
command, and an asyncio client for the handlers that run on the event loop, whose scripts run through
`Store.run_step_async`: the same loaded scripts as the blocking side's), mounts
`smsbot.api.routes`, `smsbot.api.webhooks`, `smsbot.api.control` and the routes command packages bring, and wraps them in
`smsbot.api.wire` (body limit, JSON only, error bodies, a newline after every JSON answer). Every
request is counted and timed by route template (`smsbot.metrics.ApiMetrics`): in the bot's registry
when ``smsbot run`` serves the API, else on this API's own ``GET /metrics``. The docs, Swagger UI
at ``/docs`` and ReDoc at ``/redoc``, are served from the package (``fastapi-offline``: no CDN),
with the bearer scheme declared so the page can authorise.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi_offline import FastAPIOffline
from prometheus_client.exposition import CONTENT_TYPE_LATEST

import commands
from smsbot import connections
from smsbot.api import wire
from smsbot.api.auth import Auth
from smsbot.api.routes import build_router
from smsbot.api.control import build_router as control_router
from smsbot.api.webhooks import build_router as webhooks_router
from smsbot.config import Settings
from smsbot.metrics import ApiMetrics
from smsbot.router import Router

REDIS_TIMEOUT_S = 5.0  # the API's own Redis calls: a Redis not answering in this long is down (503)
DEFAULT_PORT = 8080


def _version() -> str:
    try:
        return version("smsbot")
    except PackageNotFoundError:
        return "0"


@dataclass
class ApiContext:
    settings: Settings
    store: Any  # smsbot.store.Store: the blocking client, for handlers run in the threadpool (plain `def`)
    auth: Any  # smsbot.api.auth.Auth
    router: Any  # smsbot.router.Router (renders notices to check them)
    aredis: Any = field(default=None)  # the asyncio client, for `async def` handlers: never block the loop
    enums: list[tuple[str, str, list[str]]] = field(default_factory=list)  # (model, property, values): `document_enum`

    @property
    def redis(self) -> Any:
        return self.store.redis

    @property
    def keys(self) -> Any:
        return self.store.keys

    def use_async_client(self, client: Any) -> None:
        """`client` (redis.asyncio) for every handler on the event loop; `run_step` runs the steps on it."""
        self.aredis = client

    async def run_step(self, step: Any, keys: tuple[Any, ...], argv: tuple[Any, ...]) -> Any:
        """One `smsbot.steps.Step` on the asyncio client, for an `async def` handler (`Store.run_step_async`)."""
        return await self.store.run_step_async(self.aredis, step, keys, argv)

    def document_enum(self, model: str, prop: str, values: list[str]) -> None:
        """The OpenAPI document names `values` (this deployment's catalogue: service codes, plans, short
        codes) as the enum of `model`'s `prop`; the route checks them itself, in any case."""
        self.enums.append((model, prop, values))


def create_app(settings: Settings, store: Any = None, metrics: Any = None) -> FastAPI:
    """The API on `store` (default: a new one for `settings`); request metrics go to `metrics` (an
    `ApiMetrics`, e.g. in the bot's registry), or, when None, to this app's own ``GET /metrics``."""
    a = settings.api
    st = store or connections.open_store(settings)
    ctx = ApiContext(settings, st, Auth(a.tokens, a.rate_per_second, a.burst), Router(settings, commands.all_commands()))
    ctx.use_async_client(connections.async_client(settings, REDIS_TIMEOUT_S))
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
    app.include_router(webhooks_router(ctx), dependencies=every_operation)  # the webhooks' dead letters
    app.include_router(control_router(ctx), dependencies=every_operation)  # runtime control (`smsbot ctl`)
    for cmd in ctx.router.commands.values():  # endpoints a command package brings (complaints: /v1/tickets)
        extra = cmd.api_routes(ctx)
        if extra is not None:
            app.include_router(extra, dependencies=every_operation)
    if metrics is None:  # a process of its own (`smsbot api`): Prometheus scrapes it here
        metrics = ApiMetrics()

        @app.get("/metrics", include_in_schema=False)
        def prometheus_metrics() -> Response:  # no token, like /status: route templates and counts, no subscriber data
            return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    _document_catalogue(app, settings, ctx.enums)
    app.add_middleware(wire.Gate, limit=a.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)  # added last: the outermost, so a 413 is counted too
    return app


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



def _document_catalogue(app: FastAPI, settings: Settings, enums: list[tuple[str, str, list[str]]]) -> None:
    """The OpenAPI document names this deployment's catalogue: service codes, on-demand codes,
    plans and short codes as enums, as the routes asked (`ApiContext.document_enum`; the routes also
    take them in any case; they check them too)."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            comp = doc.get("components", {}).get("schemas", {})
            codes = [x.code for x in settings.services]
            for model, prop, values in enums:
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


def _server(settings: Settings, app: FastAPI, host: str | None, port: int | None) -> Any:
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
