"""While Redis is out of reach (a failover, a restart) the delivery worker logs
``delivery_redis_unreachable`` once per episode and then at most once a minute, not once per failed
round trip: turns that ask Redis nothing (the fence is down, nothing is due) do not end the episode.
The worker's turns are driven one at a time (`_work`) on a clock the test moves."""

from __future__ import annotations

import pytest

from smsbot.delivery import Delivery, _Due
from smsbot.outbox import OutboxSender
from smsbot.session import SequenceGenerator
from tests.helpers import Clock, ScriptedStore, make_live

pytestmark = pytest.mark.unit


class Lines:
    """The throttled logger's lines: (level, event)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __getattr__(self, level: str):
        return lambda event, **_fields: self.lines.append((level, event))


class EmptyOutboxStore(ScriptedStore):
    def _answer(self, cmd):
        return [] if cmd[0] == "XRANGE" else super()._answer(cmd)


def test_a_two_second_outage_logs_one_line_and_one_recovery(unit_settings):
    settings = unit_settings(**{"delivery.heartbeat_seconds": 0.5, "delivery.lease_seconds": 15.0,
                                "delivery.poll_seconds": 0.05})
    store, clock = EmptyOutboxStore(settings), Clock()
    live = make_live(settings)
    d = Delivery(live, store, OutboxSender(live, SequenceGenerator(), store.keys, clock=clock), "bot-a", clock=clock)
    lines = Lines()
    d._unreachable.logger = lines
    due = _Due()
    due.poll = due.adopt = due.marks = float("inf")  # queue reads, adoption, the watermark prune: scripts on the client
    d._work(due)
    assert d.may_send(clock())
    store.refuse = 10**6  # Redis is gone
    for _ in range(200):  # 2 s of turns, 10 ms apart; the hot path's failures wake the worker often
        d.tick(clock())
        if clock() % 0.1 < 0.01:
            d.suspect()
        d._work(due)
        clock.advance(0.01)
    store.refuse = 0
    d.tick(clock())
    d._work(due)  # nothing due yet: no word on Redis
    clock.advance(0.5)
    d.tick(clock())
    d._work(due)  # the renewal gets through
    assert lines.lines == [("warning", "delivery_redis_unreachable"), ("info", "delivery_redis_reachable_again")]
