"""Every Redis client smsbot uses, built in this one place, and the stores on them.

* `client`: the blocking redis-py client for ``redis.mode`` — the bundled server (started when no
  URL is configured), a URL, Sentinel (the current primary), Cluster — speaking RESP2 (the hot
  path's `Roundtrip` parses raw replies);
* `async_client`: the same server for the HTTP API's handlers on the event loop;
* `store`: a `Store` on a new client (its own pool); `open_store`: one with the command registry's
  scripts, checked to answer (a `redis_supervisor.RedisProblem`, one line for a person, otherwise):
  what the bot, the API, the CLI and billing runs open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel

import commands
from smsbot import embedded, redis_supervisor
from smsbot.config import RedisMode, Settings
from smsbot.store import Store


def _options(settings: Settings, socket_timeout: float) -> dict[str, Any]:
    # RESP2 everywhere: `Roundtrip` parses raw replies (a RESP3 connection would return maps for
    # XREADGROUP and booleans for Lua false); redis-py's cluster client would otherwise speak RESP3
    opts: dict[str, Any] = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_timeout,
                            "decode_responses": False, "protocol": 2}
    if settings.redis.password:
        opts["password"] = settings.redis.password
    return opts


def _single_url(settings: Settings) -> str:
    """A single server's URL: `redis.url`, or the bundled server's (started when it is not running)."""
    r = settings.redis
    return r.url or embedded.ensure_running(settings.data_dir, r.fsync_policy).url


def client(settings: Settings, socket_timeout: float = 5.0) -> tuple[Any, str]:
    """The blocking client for `redis.mode`, and a description of where it points (no password)."""
    r = settings.redis
    opts = _options(settings, socket_timeout)
    if r.mode is RedisMode.SENTINEL:
        sentinel = redis.sentinel.Sentinel(
            r.sentinel_addresses(), socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
        )
        desc = f"sentinel://{','.join(r.sentinels)}/{r.sentinel_service}"
        return sentinel.master_for(r.sentinel_service, **opts), desc
    if r.mode is RedisMode.CLUSTER:
        assert r.url
        return redis.cluster.RedisCluster.from_url(r.url, **opts), r.url
    url = _single_url(settings)
    return redis.Redis.from_url(url, **opts), url


def async_client(settings: Settings, socket_timeout: float = 5.0) -> Any:
    """The asyncio client for `redis.mode`, with the blocking client's options (RESP2, timeouts,
    password): the API's handlers on the event loop wait for Redis without stalling anyone else."""
    r = settings.redis
    opts = _options(settings, socket_timeout)
    if r.mode is RedisMode.SENTINEL:
        sentinel = redis.asyncio.sentinel.Sentinel(r.sentinel_addresses(), socket_timeout=socket_timeout,
                                                   socket_connect_timeout=socket_timeout)
        return sentinel.master_for(r.sentinel_service, **opts)
    if r.mode is RedisMode.CLUSTER:
        return redis.asyncio.cluster.RedisCluster.from_url(r.url, **opts)
    return redis.asyncio.Redis.from_url(_single_url(settings), **opts)


def store(settings: Settings, command_lua_files: Iterable[Path | str] = (), socket_timeout: float = 5.0) -> Store:
    """A Store on a client of its own (nothing is dialled until it is used)."""
    c, where = client(settings, socket_timeout)
    return Store(settings, c, where, command_lua_files)


def open_store(settings: Settings) -> Store:
    """A Store with the registry's scripts (the billing steps and every command package's
    fragment), checked with a PING: a Redis that does not answer is one `RedisProblem`."""
    return redis_supervisor.open_store(settings, lambda: store(settings, commands.lua_sources()))
