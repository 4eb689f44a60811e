"""A real HTTP receiver of webhooks on loopback, for the tests: it records every request (headers and
the raw body bytes) and answers with a status the test chooses; it can be taken down and brought
back up on the same port (an outage), and made to hold requests unanswered. Waiting is on a
condition, never a fixed sleep.

Beside it, the two ends of a signed webhook as the tests set them up: `endpoint(url, events)` is the
bot's setting of an endpoint that signs with `SECRET`, and `documented_verify()` the receiver's check
of a signature, run exactly as the Webhooks page (docs/webhooks.md) prints it.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from .conftest import REPO

SECRET = "whsec-test-0123456789"


def endpoint(url: str, events: list[str], **kw: Any) -> dict[str, Any]:
    """The setting of a webhook endpoint at `url` for `events`, signed with `SECRET`, with quick retries."""
    return {"name": kw.pop("name", "crm"), "url": url, "events": events, "secret": SECRET,
            "timeout_seconds": kw.pop("timeout_seconds", 2), "backoff_initial_seconds": 0.05, "backoff_max_seconds": 0.2, **kw}


def documented_verify() -> Callable[[str, bytes, str], bool]:
    """The `verify` function of the Webhooks page (docs/webhooks.md), run as it is printed there."""
    section = (REPO / "docs" / "webhooks.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "the Webhooks page (docs/webhooks.md) has a Python verification snippet"
    scope: dict[str, Any] = {}
    exec(code.group(1), scope)  # noqa: S102 - the documented snippet, exactly
    return scope["verify"]


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


class Receiver:
    def __init__(self, status: Callable[[Request], int] = lambda _r: 200):
        self.status = status
        self.requests: list[Request] = []
        self.cond = threading.Condition()
        self.release = threading.Event()  # while `holding`, requests wait for this
        self.release.set()
        self.port = 0
        self.server: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                req = Request(self.path, {k: v for k, v in self.headers.items()}, body)
                with outer.cond:
                    outer.requests.append(req)
                    outer.cond.notify_all()
                outer.release.wait(30)
                code = outer.status(req)
                try:  # one write: headers and body in separate segments would meet Nagle and delayed ACKs (40 ms)
                    self.wfile.write(f"HTTP/1.1 {code} X\r\nContent-Length: 2\r\n\r\nok".encode())
                except OSError:  # the sender gave up (its timeout) or died: nobody reads the answer
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        """Stop listening (connections are refused) until `start()`."""
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
        self.server = None

    def wait(self, predicate: Callable[[list[Request]], bool], timeout: float = 20.0) -> list[Request]:
        with self.cond:
            ok = self.cond.wait_for(lambda: predicate(self.requests), timeout)
            got = list(self.requests)
        assert ok, f"the receiver did not get what was awaited within {timeout} s; it got: {[r.event for r in got]}"
        return got

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self.cond:
            return [r.event for r in self.requests if kind is None or r.event["type"] == kind]

    def wait_event(self, kind: str, match: Callable[[dict[str, Any]], bool] = lambda _e: True, timeout: float = 20.0) -> dict[str, Any]:
        got = self.wait(lambda rs: any(r.event["type"] == kind and match(r.event) for r in rs), timeout)
        return next(r.event for r in got if r.event["type"] == kind and match(r.event))

    def close(self) -> None:
        self.release.set()
        if self.server is not None:
            self.down()
