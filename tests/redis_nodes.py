"""Real redis-server processes for the high-availability tests (issue 22): the chaos runner's node
manager (`bench.chaos.nodes`), so that the suite's short failover scenarios and the runner's long
ones start their servers the same way."""

from bench.chaos.nodes import RedisNodes as Nodes, free_port, migrate_slot, sentinel_primary

__all__ = ["Nodes", "free_port", "migrate_slot", "sentinel_primary"]
