"""The simulators' shared MO scheduler (`smsbot.simulator.scheduler`), without sockets: order per key,
parked jobs, redeliveries, a crashing delivery, stopping. Both `SimSmsc` and `SimIsmg` run on it
(tests/test_simulator.py and tests/test_cmpp_ismg.py cover it through the wire)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

from smsbot.simulator.scheduler import Job, Scheduler

DONE = ("delivered", "rejected", "cancelled")
TIMEOUT = 10.0  # bounds a wait for a condition; never reached when the scheduler works


@dataclass(eq=False)
class _Job(Job):
    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "attempts": self.attempts, "redeliveries": self.redeliveries,
                "last_status": self.last_status, "last_error": self.last_error, "waiting_link": self.waiting_link}


def _scheduler(deliver: Callable[[Any], None], workers: int = 2, **kw: Any) -> Scheduler:
    s = Scheduler(deliver, workers=workers, name="test", **kw)
    s.start()
    return s


def _close(s: Scheduler) -> None:
    s.stop()
    s.join(TIMEOUT)


def test_one_key_at_a_time_in_order_while_other_keys_go_alongside():
    release_first = threading.Event()
    b_done = threading.Event()
    log: list[str] = []
    lock = threading.Lock()

    def deliver(job: _Job) -> None:
        with lock:
            log.append(f"start {job.id}")
        if job.id == "a1":  # holds its key until b (another key) has gone through
            assert b_done.wait(TIMEOUT)
            assert release_first.wait(TIMEOUT)
        if job.id == "b1":
            b_done.set()
        with lock:
            log.append(f"end {job.id}")
        job.state = "delivered"

    s = _scheduler(deliver)
    try:
        for jid, key in (("a1", "A"), ("a2", "A"), ("b1", "B")):
            s.add(_Job(jid, key, "mo", [None]))
        assert s.wait("b1", DONE, TIMEOUT)["state"] == "delivered"
        assert s.status("a2")["state"] == "queued"  # a1 still holds key A
        release_first.set()
        assert s.wait("a2", DONE, TIMEOUT)["state"] == "delivered"
    finally:
        _close(s)
    assert log.index("end a1") < log.index("start a2")
    assert log.index("end b1") < log.index("end a1")


def test_a_parked_job_waits_for_a_link_then_goes_at_once():
    links = threading.Event()
    parked = threading.Event()
    attempts: list[str] = []

    def deliver(job: _Job) -> None:
        attempts.append(job.id)
        if not links.is_set():
            assert s.retry(job, "no link", None, after=3600, waiting_link=True) is False  # not a redelivery
            parked.set()
            return
        job.state = "delivered"

    s = _scheduler(deliver, workers=1)
    try:
        s.add(_Job("m", "A", "mo", [None]))
        assert parked.wait(TIMEOUT)
        st = s.status("m")
        assert st["state"] == "queued" and st["waiting_link"] and st["redeliveries"] == 0
        links.set()
        s.wake_parked()  # due now, not in an hour
        assert s.wait("m", DONE, TIMEOUT)["state"] == "delivered"
    finally:
        _close(s)
    assert attempts == ["m", "m"]


def test_a_redelivery_is_counted_and_comes_after_its_delay():
    def deliver(job: _Job) -> None:
        if job.attempts == 0:
            job.attempts += 1
            assert s.retry(job, "timeout", 0x58, after=0.05) is True
            return
        job.attempts += 1
        job.state, job.last_status, job.last_error = "delivered", 0, ""

    s = _scheduler(deliver)
    try:
        s.add(_Job("m", "A", "mo", [None]))
        st = s.wait("m", DONE, TIMEOUT)
    finally:
        _close(s)
    assert st["state"] == "delivered" and st["attempts"] == 2 and st["redeliveries"] == 1


def test_a_crashing_delivery_rejects_the_job_frees_its_key_and_is_reported():
    seen: list[tuple[str, str]] = []

    def deliver(job: _Job) -> None:
        if job.id == "bad":
            raise RuntimeError("simulator bug")
        job.state = "delivered"

    s = _scheduler(deliver, after_attempt=lambda job: seen.append((job.id, job.state)))
    try:
        s.add(_Job("bad", "A", "mo", [None]))
        s.add(_Job("next", "A", "mo", [None]))
        assert s.wait("bad", DONE, TIMEOUT)["last_error"] == "simulator error"
        assert s.wait("next", DONE, TIMEOUT)["state"] == "delivered"
    finally:
        _close(s)
    assert ("bad", "rejected") in seen and s.count("mo", ("rejected",)) == 1


def test_stop_takes_no_more_jobs_and_join_cancels_what_is_left():
    started = threading.Event()
    go_on = threading.Event()

    def deliver(job: _Job) -> None:
        started.set()
        assert go_on.wait(TIMEOUT)
        job.state = "delivered"

    s = _scheduler(deliver, workers=1)
    s.add(_Job("first", "A", "mo", [None]))
    s.add(_Job("second", "B", "mo", [None]))
    assert started.wait(TIMEOUT)
    s.stop()
    go_on.set()
    s.join(TIMEOUT)
    assert s.status("first")["state"] == "delivered"  # the delivery under way went on
    assert s.status("second")["state"] == "cancelled"
    assert [j["id"] for j in s.jobs()] == ["first", "second"]
