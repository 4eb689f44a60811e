"""The sizes of the chaos suite's short scenarios in the test suite (tests/test_chaos.py and
tests/test_chaos_cmpp.py): the runner's full sizes (`bench.chaos.runner.FULL`) scaled down to 200
subscribers at 200 MO/s for 3 s against two bots."""

from __future__ import annotations

from bench.chaos.runner import FULL

SIZES = FULL.scaled(subscribers=200, rate=200.0, traffic_s=3.0, crash_settle_s=17.0, settle_max_s=4.0, quiet_s=0.5,
                    orders=2000, retry_delay=0.5, redis_stop_s=1.0, restart_delay=1.0, bots=2, window=10)
