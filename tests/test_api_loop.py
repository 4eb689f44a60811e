"""Issue 20: the HTTP API never blocks its event loop, and its Lua steps run through the one runner.

The API runs in this process on a blocking Redis client that refuses to be used on a thread running
an event loop (`OffTheLoopOnly`): every `async def` operation is called with a request that does
its whole work, and must answer without touching that client (the asyncio client and
`Store.run_step_async` only); the plain `def` operations, run in the threadpool, still use it. An
async operation added later without a request here fails the test. And the steps are loaded again
when Redis has forgotten them (SCRIPT FLUSH: a restart, a failover).
"""

from __future__ import annotations

import asyncio
import inspect
import traceback
from typing import Any, Iterator

import pytest
import redis
from fastapi.routing import APIRoute

import commands
from smsbot.store import Store

from .api_client import OPS, Api, start_api

A = "13800138000"
# one request per `async def` operation, doing its whole work (a write): (method, path, body, status)
ASYNC_OPERATIONS = {
    ("POST", "/v1/orders"): ({"msisdn": A, "service": "VIDEO", "order_id": "loop-1"}, 202),
    ("POST", "/v1/uses"): ({"msisdn": A, "service": "RING", "use_id": "loop-1"}, 202),
    ("POST", "/v1/usage"): ({"msisdn": A, "used": "95MB"}, 202),  # no plan given: the stored plan is read first
    ("POST", "/v1/notices"): ({"msisdn": A, "text": "系统维护通知"}, 202),
}


class OffTheLoopOnly(redis.ConnectionPool):
    """A blocking client's pool that refuses a connection on a thread running an event loop, and
    keeps where each refused call came from."""

    misuses: list[str]

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop on this thread: the threadpool, the test itself
            return super().get_connection(*args, **kwargs)
        self.misuses.append("".join(traceback.format_stack(limit=14)))
        raise RuntimeError("the blocking Redis client was called on the event loop's thread")


@pytest.fixture
def guarded(make_settings: Any) -> Iterator[tuple[Api, OffTheLoopOnly, Store]]:
    settings = make_settings()
    pool = OffTheLoopOnly.from_url(settings.redis.url, protocol=2)
    pool.misuses = []
    store = Store(settings, redis.Redis(connection_pool=pool), settings.redis.url, commands.lua_sources())
    api = start_api(settings, store=store)
    try:
        yield api, pool, store
    finally:
        api.server.should_exit = True
        api.server.thread.join(10)
        store.close()


def api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """The operations of `routes`, those of included routers too (FastAPI keeps those as they were given)."""
    for r in routes:
        if isinstance(r, APIRoute):
            yield r
        elif hasattr(r, "original_router"):
            yield from api_routes(r.original_router.routes)


def async_operations(api: Api) -> set[tuple[str, str]]:
    routes = list(api_routes(api.server.config.app.routes))
    assert len(routes) >= 20  # every operation of the document, from the core's routers and the commands'
    return {(m, r.path) for r in routes if r.include_in_schema and inspect.iscoroutinefunction(r.endpoint) for m in r.methods}


def test_no_async_operation_uses_the_blocking_client(guarded: tuple[Api, OffTheLoopOnly, Store]) -> None:
    api, pool, store = guarded
    assert async_operations(api) == set(ASYNC_OPERATIONS), "an async operation without a request in ASYNC_OPERATIONS"
    store.redis.hset(store.keys.usage(A), "plan", "CARD_10GB")  # POST /v1/usage without a plan reads it (asyncio)
    for (method, path), (body, status) in ASYNC_OPERATIONS.items():
        code, _headers, out = api.call(method, path, body, token=OPS)
        assert code == status, (path, out)
        assert not pool.misuses, f"{path} used the blocking client on the loop:\n{pool.misuses[0]}"
    assert api.call("GET", "/v1/status")[0] == 200  # a plain `def` in the threadpool: the blocking client serves it
    usage = store.redis.xrange(store.keys.usage_events())
    assert usage and usage[-1][1][b"plan"] == b"CARD_10GB"
    assert store.redis.xlen(store.keys.order_events()) == 1 and store.redis.xlen(store.keys.use_events()) == 1


def test_the_guard_catches_an_async_operation_on_the_blocking_client(guarded: tuple[Api, OffTheLoopOnly, Store]) -> None:
    """Not vacuous: an `async def` calling the blocking client is refused and recorded."""
    api, pool, store = guarded

    async def blocking() -> Any:
        return {"n": store.redis.dbsize()}

    api.server.config.app.add_api_route("/v1/blocking", blocking)
    assert api.call("GET", "/v1/blocking")[0] == 500
    assert len(pool.misuses) == 1 and "blocking" in pool.misuses[0]


def test_the_api_steps_are_loaded_again_when_redis_forgot_them(guarded: tuple[Api, OffTheLoopOnly, Store]) -> None:
    api, pool, store = guarded
    for round_ in (1, 2):
        store.redis.script_flush()  # a restarted or failed-over Redis knows no script
        code, _h, out = api.call("POST", "/v1/orders", {"msisdn": A, "service": "VIDEO", "order_id": f"flush-{round_}"})
        assert code == 202 and out["id"] == f"flush-{round_}", out
        code, _h, out = api.call("POST", "/v1/notices", {"msisdn": A, "text": "维护通知"})
        assert code == 202, out
    again = api.call("POST", "/v1/orders", {"msisdn": A, "service": "VIDEO", "order_id": "flush-2"})
    assert again[0] == 200 and again[2]["duplicate"] is True
    assert store.redis.xlen(store.keys.order_events()) == 2 and not pool.misuses
