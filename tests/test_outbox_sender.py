"""OutboxSender alone (no socket, no Redis), on a clock the test moves: the TPS limit and a reply
refused for good while other parts of it are in flight. The same over SMPP: tests/test_e2e_flow.py."""

from __future__ import annotations

from smsbot.messages import Status
from smsbot.simulator.faults import peak_rate

from .helpers import outbox_sender, sequences_of, template_entry


def test_tps_limit_is_never_exceeded_within_a_second(make_settings):
    s, clock = outbox_sender(make_settings, **{"smsc.max_tps": 5, "smsc.window": 100})
    s.enqueue([template_entry(i) for i in range(6)])
    total = s.backlog
    sent_at: list[float] = []
    while s.backlog and clock.now < 1100:
        pdus = s.take()
        sent_at += [clock.now] * len(pdus)
        for q in sequences_of(pdus):
            assert s.on_submit_resp(q, Status.ROK, f"m{q}")
        wait = s.next_wakeup()
        clock.now += max(wait or 0.0, 0.001)
    assert len(sent_at) == total >= 6
    assert peak_rate(sent_at, 1.0) == 5, sent_at
    assert sent_at[-1] - sent_at[0] >= (total - 1) // 5 - 1e-9


def test_fractional_tps(make_settings):
    s, clock = outbox_sender(make_settings, **{"smsc.max_tps": 0.5})
    s.enqueue([template_entry(i) for i in range(2)])
    assert len(s.take()) == 1
    assert s.take() == [] and abs(s.next_wakeup() - 2.0) < 1e-9  # one per two seconds
    clock.now += 2.0
    assert len(s.take()) == 1


def test_reply_refused_for_good_counts_once_and_no_part_of_it_goes_again(make_settings):
    failed: list[int] = []
    s, clock = outbox_sender(make_settings, on_failed=lambda mt, status: failed.append(status))
    items = [sv.code for sv in s.live.settings.services][:3] * 5
    s.enqueue([template_entry(1, "menu", {"items": items})])
    pdus = s.take()
    assert len(pdus) >= 3, "a 15-item menu is a long, multi-part reply"
    first, second, *rest = sequences_of(pdus)
    assert s.on_submit_resp(first, Status.RINVDSTADR, "")
    assert s.on_submit_resp(second, Status.RTHROTTLED, "")  # would be retried were the reply alive
    for q in rest[:1]:
        assert s.on_submit_resp(q, Status.RINVDSTADR, "")
    assert failed == [Status.RINVDSTADR] and s.failed_total == 1
    acks, writes, _parts = s.take_pending()
    assert acks == [("stream", "1001-0")]
    assert len(writes) == 1 and writes[0].fields["part"] == "1" and writes[0].fields["state"] == "REJECTED"
    assert s.requeue_inflight() == 0, "parts of a refused reply are not sent again after a reconnect"
    clock.now += 5
    assert s.take() == [] and s.backlog == 0
