"""The simulators' MO scheduler: jobs (MOs, receipts / status reports) delivered in the background.

`Scheduler` keeps every `Job` by id (the latest JOBS_KEPT; the oldest finished ones are forgotten)
and a schedule of when each is due. Its worker threads take the next due job whose `key` has none
in flight (a handset's MOs go one at a time, in order; a receipt has a key of its own) and hand it
to the `deliver` callable the simulator passes in, which speaks the protocol: it sends the parts,
and leaves the job delivered, rejected or cancelled, or puts it back with `retry` (a redelivery
after a temporary error, a timeout or a lost link; or parked until a link is there, `wake_parked`).
`wait` awaits a job's state. `stop` stops the taking; `join` ends the workers and cancels what is
left. Used by the SMPP simulator (`smsc`, `deliveries`) and the CMPP gateway (`ismg`).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

log = logging.getLogger("smsbot.simulator")

JOBS_KEPT = 20000  # job outcomes remembered for status queries (oldest finished ones are forgotten)
FINISHED = ("delivered", "rejected", "cancelled")


@dataclass(eq=False)
class Job:
    """What every delivery job has; each simulator's job adds its own fields and `to_dict`."""

    id: str
    key: str  # jobs with one key go one at a time, in order
    kind: str  # "mo" | "receipt" (SMPP) | "report" (CMPP)
    parts: list[Any]
    state: str = "queued"  # queued | delivering | delivered | rejected | cancelled
    next_part: int = 0
    attempts: int = 0
    redeliveries: int = 0
    last_status: int | None = None  # the peer's last answer (SMPP command_status, CMPP Result)
    last_error: str = ""
    waiting_link: bool = False  # parked: no bind / connection to deliver on

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError


class Scheduler:
    def __init__(self, deliver: Callable[[Any], None], *, workers: int, name: str,
                 after_attempt: Callable[[Any], None] | None = None) -> None:
        """`deliver(job)` makes one delivery attempt; `after_attempt(job)` (optional) is told after
        each, once the job's key is free again. `name` prefixes the worker threads and log lines."""
        self._deliver = deliver
        self._after_attempt = after_attempt
        self._name = name
        self._cond = threading.Condition()  # the schedule, the keys in flight and job states changed
        self._jobs: dict[str, Job] = {}
        self._due: list[tuple[float, int, Job]] = []
        self._order = itertools.count()
        self._busy: set[str] = set()
        self._stopping = False
        self._workers = [threading.Thread(target=self._work, name=f"{name}-deliver-{i}", daemon=True)
                         for i in range(max(1, workers))]

    def start(self) -> None:
        for t in self._workers:
            t.start()

    def stop(self) -> None:
        """No job is taken from now on (a delivery under way goes on: `deliver` sees its stop)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def join(self, timeout: float) -> None:
        """Wait for the workers (each at most `timeout`); jobs not finished are cancelled."""
        for t in self._workers:
            if t.is_alive() and t is not threading.current_thread():
                t.join(timeout=timeout)
        with self._cond:
            for job in self._jobs.values():
                if job.state in ("queued", "delivering"):
                    job.state = "cancelled"
            self._cond.notify_all()

    # ---------------------------------------------------------------- jobs
    def add(self, job: Job, due: float | None = None) -> None:
        """Schedule `job` at `due` (time.monotonic(); now when None)."""
        with self._cond:
            if job.id not in self._jobs and len(self._jobs) >= JOBS_KEPT:
                done = [k for k, j in self._jobs.items() if j.state in FINISHED]
                for k in done[:JOBS_KEPT // 4]:
                    del self._jobs[k]
            self._jobs[job.id] = job
            heapq.heappush(self._due, (time.monotonic() if due is None else due, next(self._order), job))
            self._cond.notify_all()

    def retry(self, job: Job, reason: str, status: int | None, *, after: float, waiting_link: bool = False) -> bool:
        """Put `job` back, due in `after` seconds; True when it is a redelivery (something went
        out and failed), False when it waits for a link (`waiting_link`, see `wake_parked`)."""
        job.state, job.last_status, job.last_error, job.waiting_link = "queued", status, reason, waiting_link
        if not waiting_link:
            job.redeliveries += 1
        self.add(job, time.monotonic() + after)
        return not waiting_link

    def wake_parked(self) -> None:
        """A link is there: jobs parked for want of one are due now."""
        with self._cond:
            now = time.monotonic()
            for i, (_due, n, job) in enumerate(self._due):
                if job.waiting_link:
                    job.waiting_link = False
                    self._due[i] = (now, n, job)
            heapq.heapify(self._due)
            self._cond.notify_all()

    def status(self, job_id: str) -> dict[str, Any] | None:
        with self._cond:
            job = self._jobs.get(job_id)
            return job.to_dict() if job else None

    def wait(self, job_id: str, states: Iterable[str], timeout: float) -> dict[str, Any] | None:
        """Until job `job_id` reaches one of `states`, at most `timeout` seconds; its status
        (None for an unknown id)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                job = self._jobs.get(job_id)
                left = deadline - time.monotonic()
                if job is None or job.state in states or left <= 0:
                    return job.to_dict() if job else None
                self._cond.wait(left)

    def jobs(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self._cond:
            return [j.to_dict() for j in self._jobs.values() if kind is None or j.kind == kind]

    def count(self, kind: str, states: Iterable[str]) -> int:
        with self._cond:
            return sum(1 for j in self._jobs.values() if j.kind == kind and j.state in states)

    # ---------------------------------------------------------------- workers
    def _take(self) -> Job | None:
        """The next due job whose key has none in flight; None when stopping."""
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                skipped: list[tuple[float, int, Job]] = []
                found: Job | None = None
                next_due: float | None = None
                while self._due:
                    due, _n, job = self._due[0]
                    if due > now:
                        next_due = due
                        break
                    item = heapq.heappop(self._due)
                    if job.key in self._busy:
                        skipped.append(item)
                        continue
                    found = job
                    break
                for item in skipped:
                    heapq.heappush(self._due, item)
                if found is not None:
                    self._busy.add(found.key)
                    found.state = "delivering"
                    return found
                self._cond.wait(1.0 if next_due is None else min(1.0, max(0.001, next_due - now)))
            return None

    def _work(self) -> None:
        while (job := self._take()) is not None:
            try:
                self._deliver(job)
            except Exception:  # noqa: BLE001 - a simulator bug must not go unnoticed, nor stop the worker
                log.exception("%s delivery of %s crashed", self._name, job.id)
                job.state, job.last_error = "rejected", "simulator error"
            finally:
                with self._cond:
                    self._busy.discard(job.key)
                    self._cond.notify_all()
                if self._after_attempt is not None:
                    self._after_attempt(job)
