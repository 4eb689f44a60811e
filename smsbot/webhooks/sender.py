"""Webhook senders: the threads that POST an endpoint's jobs, each with its own HTTP connection.

Per endpoint, ``concurrency`` threads share one urllib3 pool of that many connections (never more
requests in flight). A thread takes one due job under a lease of ``2 * timeout_seconds + 1`` s
(`Jobs.take`), POSTs it with its headers and signature, and on a 2xx answer removes it; anything
else (another status, a timeout, a refused connection) schedules the next attempt after the backoff
(`smsbot.webhooks.backoff`), or, after ``max_attempts``, dead-letters it. A sender that dies holding
a job lets its lease run out: the job is due again and another thread (here or in another
instance) sends it; the receiver sees the same idempotency key twice.

No redirects are followed (a 3xx is a failure) and no request is retried inside urllib3: every
attempt is one the job store counts.
"""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Callable

import urllib3

from smsbot import log
from smsbot.config import WebhookEndpoint
from smsbot.webhooks import signing
from smsbot.webhooks.backoff import Backoff
from smsbot.webhooks.jobs import Job, Jobs

_log = log.get("smsbot.webhooks")
IDLE_POLL_S = 1.0  # nothing due: look again at least this often (jobs collected by other instances)
ERROR_SNIPPET = 200  # characters of a failing answer's body kept in the dead letter


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("smsbot")
    except PackageNotFoundError:
        return "0"


USER_AGENT = f"smsbot-webhooks/{_version()}"


class Outcome:
    """What one attempt came to: ok, or the failure's `reason` (a metric label) and `detail`."""

    __slots__ = ("ok", "reason", "detail", "seconds")

    def __init__(self, ok: bool, reason: str, detail: str, seconds: float):
        self.ok, self.reason, self.detail, self.seconds = ok, reason, detail, seconds


class EndpointSender:
    """The sending threads of one endpoint."""

    def __init__(self, endpoint: WebhookEndpoint, jobs: Jobs, stop: threading.Event, *,
                 clock: Callable[[], float] = time.time, rand: Callable[[], float] = random.random,
                 on_attempt: Callable[[str, Outcome, str], None] = lambda _ep, _o, _r: None):
        self.endpoint = endpoint
        self.jobs = jobs
        self.stop = stop
        self.clock = clock
        self.rand = rand
        self.on_attempt = on_attempt  # (endpoint, outcome, 'delivered' | 'retry' | 'dead' | 'gone')
        self.backoff = Backoff(endpoint.backoff_initial_seconds, endpoint.backoff_max_seconds)
        self.lease_ms = int((2 * endpoint.timeout_seconds + 1) * 1000)
        self.wakeup = threading.Event()
        self.http = urllib3.PoolManager(num_pools=2, maxsize=endpoint.concurrency, block=True, retries=False,
                                        timeout=urllib3.Timeout(total=endpoint.timeout_seconds))
        self.failing = log.Throttled(_log, "webhook_failing", 60.0, level="warning", recovered_event="webhook_recovered")
        self._threads: list[threading.Thread] = []

    # -- one attempt ------------------------------------------------------------------------------
    def headers(self, job: Job, event_type: str) -> dict[str, str]:
        return {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            signing.EVENT_HEADER: event_type,
            signing.IDEMPOTENCY_HEADER: job.id,
            signing.ATTEMPT_HEADER: str(job.attempt),
            signing.SIGNATURE_HEADER: signing.sign(self.endpoint.signing_secret(), job.body),
        }

    def post(self, job: Job) -> Outcome:
        try:
            event_type = json.loads(job.body).get("type", "")
        except ValueError:
            event_type = ""
        started = time.monotonic()
        try:
            resp = self.http.request("POST", self.endpoint.url, body=job.body, headers=self.headers(job, event_type),
                                     redirect=False, preload_content=False)
        except urllib3.exceptions.NewConnectionError as e:  # refused, unreachable (a ConnectTimeoutError subclass)
            return Outcome(False, "connection", _reason(e), time.monotonic() - started)
        except urllib3.exceptions.TimeoutError as e:
            return Outcome(False, "timeout", f"no answer within {self.endpoint.timeout_seconds:g} s ({type(e).__name__})",
                           time.monotonic() - started)
        except urllib3.exceptions.HTTPError as e:
            return Outcome(False, "connection", _reason(e), time.monotonic() - started)
        try:
            status = resp.status
            snippet = resp.read(ERROR_SNIPPET) if not 200 <= status < 300 else b""
            resp.drain_conn()
        except urllib3.exceptions.HTTPError as e:
            return Outcome(False, "connection", _reason(e), time.monotonic() - started)
        finally:
            resp.release_conn()
        seconds = time.monotonic() - started
        if 200 <= status < 300:
            return Outcome(True, "", str(status), seconds)
        text = " ".join(snippet.decode("utf-8", "replace").split())
        return Outcome(False, f"http_{status // 100}xx", f"HTTP {status}" + (f": {text}" if text else ""), seconds)

    def attempt(self, job: Job) -> str:
        """Send `job` once and record the outcome: 'delivered', 'retry', 'dead' or 'gone'."""
        out = self.post(job)
        ep = self.endpoint
        if out.ok:
            self.jobs.done(ep.name, job.id)
            self.failing.recovered(endpoint=ep.name)
            result = "delivered"
        else:
            now = self.clock()
            next_ms = int((now + self.backoff.delay(job.attempt, self.rand)) * 1000)
            result = self.jobs.fail(ep.name, job, next_ms, ep.max_attempts, out.detail, int(now * 1000))
            self.failing.hit(endpoint=ep.name, event_id=job.id, attempt=job.attempt, reason=out.reason, error=out.detail)
            if result == "dead":
                _log.warning("webhook_dead_letter", endpoint=ep.name, event_id=job.id, attempts=job.attempt, error=out.detail)
        self.on_attempt(ep.name, out, result)
        return result

    def step(self) -> float | None:
        """Take and send one due job; else the seconds until one is due (None: nothing waits)."""
        now_ms = int(self.clock() * 1000)
        got = self.jobs.take(self.endpoint.name, now_ms, self.lease_ms)
        if isinstance(got, Job):
            self.attempt(got)
            return 0.0
        return None if got is None else max(0.0, (got - now_ms) / 1000)

    # -- threads ----------------------------------------------------------------------------------
    def start(self) -> "EndpointSender":
        for i in range(self.endpoint.concurrency):
            t = threading.Thread(target=self.run, name=f"webhooks-{self.endpoint.name}-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def join(self, timeout: float | None = None) -> None:
        for t in self._threads:
            t.join(timeout)
        self.http.clear()

    def run(self) -> None:
        broken = log.Throttled(_log, "webhook_sender_failed", 60.0, level="warning")
        while not self.stop.is_set():
            try:
                wait = self.step()
                broken.recovered(endpoint=self.endpoint.name)
            except Exception as e:  # Redis down or a bug: keep the thread, try again shortly
                broken.hit(endpoint=self.endpoint.name, error=repr(e))
                wait = 1.0
            if wait == 0.0:
                continue
            self.wakeup.wait(IDLE_POLL_S if wait is None else min(wait, IDLE_POLL_S))
            self.wakeup.clear()


def _reason(e: Exception) -> str:
    """A failure in one line, without the URL (it may hold credentials)."""
    inner = getattr(e, "reason", None) or e
    text = str(inner)
    if "Errno" in text or "refused" in text.lower():
        text = text[text.find("[Errno"):] if "[Errno" in text else text
    return f"{type(inner).__name__}: {text}"[:ERROR_SNIPPET]
