"""What the Redis behind a `Store` looks like, and whether it keeps the promise `redis.durability`
makes (issue 22): the primaries, each one's replicas with their replication lag, the failovers
seen, read from the servers themselves (INFO replication, the sentinels, CLUSTER SLOTS).

* `describe`: the topology as plain data, for `/v1/status` and `smsbot status`;
* `check`: the problems a bot says at start (`warn_at_start` logs them): an external server whose
  `appendfsync` is not `always` under `durability: fsync`, a primary with fewer replicas than
  `redis.min_replicas` under `durability: replica`, a cluster with more primaries than `redis.shards`
  (subscribers live in `redis.shards` hash-tag slots: primaries beyond that hold none of them).
"""

from __future__ import annotations

from typing import Any

import redis
import redis.cluster

from smsbot import connections, embedded, log
from smsbot.config import Durability, RedisMode, Settings
from smsbot.roundtrip import ClusterRoundtrip
from smsbot.store import Store

_log = log.get("smsbot.redis")



def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _replicas(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The replicas an INFO replication lists (``slaveN: ip=…,port=…,state=…,offset=…,lag=…``), each
    with its lag in bytes of replication stream and in seconds since its last acknowledgement."""
    primary_offset = int(info.get("master_repl_offset", 0))
    out = []
    for n in range(int(info.get("connected_slaves", 0))):
        raw = info.get(f"slave{n}")
        if isinstance(raw, str):  # redis-py parses these into dicts; a plain string: split it
            raw = dict(kv.split("=", 1) for kv in raw.split(","))
        if not raw:
            continue
        out.append({"address": f"{raw.get('ip')}:{raw.get('port')}", "state": _text(raw.get("state", "")),
                    "lag_bytes": max(0, primary_offset - int(raw.get("offset", 0))), "lag_s": int(raw.get("lag", 0))})
    return out


def _node(client: Any, address: str) -> dict[str, Any]:
    info = client.info("replication")
    fsync = _text(client.config_get("appendfsync").get("appendfsync", "?")) if _config_readable(client) else "?"
    return {"address": address, "role": _text(info.get("role", "?")), "replicas": _replicas(info), "appendfsync": fsync,
            # a primary that was a replica before (promoted by a failover) keeps its old replication id
            "promoted": int(info.get("second_repl_offset", -1)) != -1}


def _config_readable(client: Any) -> bool:
    try:
        client.config_get("appendfsync")
        return True
    except redis.ResponseError:  # CONFIG renamed or forbidden (managed Redis): not checkable
        return False


def describe(store: Store) -> dict[str, Any]:
    """{mode, durability, primaries: [{address, role, replicas: [{address, state, lag_bytes, lag_s}],
    appendfsync, promoted}], failovers_seen}. `failovers_seen`: the primaries now serving that took
    over from another (a replica promoted by Sentinel or the cluster); Sentinel adds its config
    epoch, a cluster the redirections this process followed. Raises redis errors when a server does
    not answer."""
    settings = store.settings.redis
    out: dict[str, Any] = {"mode": settings.mode.value, "durability": settings.durability.value, "primaries": []}
    if isinstance(store.redis, redis.cluster.RedisCluster):
        rc = store.redis
        for node in rc.get_primaries():
            out["primaries"].append(_node(rc.get_redis_connection(node), node.name))
        out["failovers_seen"] = sum(p["promoted"] for p in out["primaries"])
        out["shards"] = settings.shards
        out["redirects_followed"] = dict(ClusterRoundtrip.followed)  # by this process: ASK, MOVED, TRYAGAIN...
        return out
    pool = store.redis.connection_pool
    if settings.mode is RedisMode.SENTINEL:
        host, port = pool.get_master_address()
        out["primaries"].append(_node(store.redis, f"{host}:{port}"))
        out["failovers_seen"] = int(out["primaries"][0]["promoted"])
        out["sentinel_config_epoch"] = _sentinel_epoch(pool)
        return out
    kw = pool.connection_kwargs
    where = kw.get("path") or f"{kw.get('host')}:{kw.get('port')}"
    out["primaries"].append(_node(store.redis, where))
    out["failovers_seen"] = int(out["primaries"][0]["promoted"])
    return out


def _sentinel_epoch(pool: Any) -> int:
    """The service's config epoch as the sentinels say: 0 before any failover, then the epoch of the
    last one (it grows with each failover, and with each election that failed too)."""
    manager, name = pool.sentinel_manager, pool.service_name
    for sentinel in manager.sentinels:
        try:
            state = sentinel.sentinel_master(name)
        except redis.RedisError:
            continue
        return int(state.get("config-epoch", state.get("config_epoch", 0)))
    return 0


def shard_spread(store: Store, primaries: list[str]) -> dict[str, int]:
    """How many of the `redis.shards` hash tags each cluster primary owns (0 for those owning none)."""
    rc = store.redis
    spread = {p: 0 for p in primaries}
    for n in range(store.settings.redis.shards):
        node = rc.get_node_from_key(f"{{{n}}}")
        spread[node.name] = spread.get(node.name, 0) + 1
    return spread


def check(store: Store, topo: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The problems with the durability and sharding the settings ask for: (event, fields) each."""
    r = store.settings.redis
    topo = topo or describe(store)
    problems: list[tuple[str, dict[str, Any]]] = []
    for p in topo["primaries"]:
        if r.durability is Durability.FSYNC and p["appendfsync"] != "always":
            problems.append(("redis_durability_mismatch", {
                "primary": p["address"], "appendfsync": p["appendfsync"],
                "hint": "redis.durability is fsync but this server does not fsync every write: set "
                        "`appendfsync always` in its redis.conf (CONFIG SET appendfsync always)"}))
        online = [x for x in p["replicas"] if x["state"] == "online"]
        if r.durability is Durability.REPLICA and len(online) < r.min_replicas:
            problems.append(("redis_replicas_missing", {
                "primary": p["address"], "replicas": len(online), "min_replicas": r.min_replicas,
                "hint": "every MO that writes will be refused (temporary error) until enough replicas are online"}))
    if topo["mode"] == RedisMode.CLUSTER.value:
        spread = shard_spread(store, [p["address"] for p in topo["primaries"]])
        idle = sorted(a for a, n in spread.items() if n == 0)
        if idle:
            problems.append(("redis_shards_below_primaries", {
                "shards": r.shards, "primaries": len(spread), "primaries_without_subscribers": len(idle),
                "hint": "subscribers live in redis.shards hash-tag slots; choose redis.shards of at least 8 per "
                        "primary (e.g. 128 for 16 primaries) before the first start: changing it later moves "
                        "every subscriber's state to other key names"}))
    return problems


def warn_at_start(store: Store) -> None:
    """Log `check`'s problems (a warning each); a topology that cannot be read is one warning too."""
    try:
        problems = check(store)
    except (redis.RedisError, OSError, KeyError, ValueError) as e:
        _log.warning("redis_topology_unreadable", error=str(e))
        return
    for event, fields in problems:
        _log.warning(event, **fields)


def lines(topo: dict[str, Any]) -> list[str]:
    """`describe`'s topology for people: a line per primary, its replicas with their lag, then the
    failovers seen."""
    out = [f"redis: {topo['mode']}, durability {topo['durability']}"]
    for p in topo["primaries"]:
        reps = ", ".join(f"{r['address']} {r['state']} lag {r['lag_bytes']} B / {r['lag_s']} s" for r in p["replicas"])
        out.append(f"  primary {p['address']}{' (promoted)' if p['promoted'] else ''}, appendfsync {p['appendfsync']}: "
                   f"{len(p['replicas'])} replica{'' if len(p['replicas']) == 1 else 's'}{': ' + reps if reps else ''}")
    out.append(f"  failovers seen: {topo.get('failovers_seen', 0)}")
    if "redirects_followed" in topo:
        followed = ", ".join(f"{k} {v}" for k, v in sorted(topo["redirects_followed"].items())) or "none"
        out.append(f"  shards {topo['shards']}; redirects followed by this process: {followed}")
    return out


def read_lines(settings: Settings) -> list[str]:
    """`lines` of the Redis `settings` name, or one line saying why it could not be read. A status
    starts nothing: the bundled server, when it is not running, is said to be so."""
    r = settings.redis
    if r.mode is RedisMode.SINGLE and not r.url and not embedded.answers(embedded.layout(settings.data_dir)):
        return [f"redis: the bundled server in {settings.data_dir} is not running"]
    try:
        store = connections.store(settings, socket_timeout=2.0)
    except Exception as e:  # noqa: BLE001 - a status line, never a traceback
        return [f"redis: topology not readable: {e}"]
    try:
        return lines(describe(store))
    except Exception as e:  # noqa: BLE001 - unreachable, CONFIG/INFO refused: said, not raised
        return [f"redis: topology not readable: {str(e).splitlines()[0] if str(e) else repr(e)}"]
    finally:
        store.close()
