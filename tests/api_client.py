"""What the HTTP API tests share: tokens, a client that speaks HTTP over the real socket, the API in a
thread of the test process (`start_api`) and the API as a real `smsbot api` process whose log the
tests read (`ApiProcess`).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from smsbot.api.app import start_in_thread

REPO = Path(__file__).resolve().parent.parent
OPS = "ops-secret-0001"
RO = "ro-secret-00001"
CARE = "care-secret-01"
TOKENS = [f"ops:{OPS}:*", f"ro:{RO}:read", f"care:{CARE}:admin+read"]


def json_call(url: str, method: str, path: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
    """One JSON request to a control API (the simulators'): its status and its JSON body (error
    statuses too)."""
    req = urllib.request.Request(url + path, method=method, data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Reply:
    """One HTTP answer: status, headers (lower-case names), the raw body and, when it parses, its JSON."""

    def __init__(self, status: int, headers: dict[str, str], raw: bytes):
        self.status, self.headers, self.raw = status, headers, raw
        try:
            self.json: Any = json.loads(raw)
        except ValueError:
            self.json = None

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.headers.get('content-type')!r}, {self.raw[:400]!r})"


class Api:
    """A client of the API at `base` (http://127.0.0.1:PORT)."""

    def __init__(self, base: str, server: Any = None):
        self.base, self.server = base, server
        self.port = int(base.rsplit(":", 1)[1])

    def call(self, method: str, path: str, body: Any = None, token: str | None = OPS, raw: bytes | None = None) -> tuple[int, dict, Any]:
        """A JSON request; (status, headers, the JSON answer or its text)."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {"Content-Type": "application/json"} if data is not None else {}
        r = self.send(method, path, data, headers, token=token)
        return r.status, r.headers, r.json if r.json is not None else r.raw.decode("utf-8", "replace")

    def send(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
             token: str | None = OPS, chunks: list[bytes] | None = None) -> Reply:
        """Any request as bytes: `chunks` sends the body with Transfer-Encoding: chunked (no Content-Length)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            all_headers = dict(headers or {})
            if token:
                all_headers["Authorization"] = f"Bearer {token}"
            if chunks is not None:
                all_headers["Transfer-Encoding"] = "chunked"
            elif body is not None:
                all_headers["Content-Length"] = str(len(body))
            for k, v in all_headers.items():
                conn.putheader(k, v)
            conn.endheaders()
            if chunks is not None:
                for c in chunks:
                    conn.send(b"%x\r\n%s\r\n" % (len(c), c))
                conn.send(b"0\r\n\r\n")
            elif body:
                conn.send(body)
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def stop(self) -> None:
        self.server.should_exit = True
        self.server.thread.join(5)


def start_api(settings: Any, store: Any = None, **api: Any) -> Api:
    """The API of `settings` (tokens `TOKENS` unless given) in a thread of this process, on a free port;
    on `store` when given (default: a new one)."""
    s = settings.model_copy(update={"api": settings.api.model_copy(update={"tokens": TOKENS, "port": 0, **api})})
    server = start_in_thread(s, "127.0.0.1", 0, store=store)
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.02)
    return Api("http://127.0.0.1:%d" % server.servers[0].sockets[0].getsockname()[1], server)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ApiProcess(Api):
    """`smsbot --config CFG api --port P` as a separate process, its log (stderr, JSON lines) in a file."""

    def __init__(self, config_path: Path, log_path: Path, env: dict[str, str] | None = None):
        port = free_port()
        super().__init__(f"http://127.0.0.1:{port}")
        self.log_path = log_path
        self._checked = 0  # how much of the log assert_clean_log has read
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "smsbot.cli", "--config", str(config_path), "api", "--port", str(port)],
                                     cwd=REPO, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"smsbot api did not start: {self.log()}")
                time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def assert_clean_log(self) -> None:
        """No traceback and no error line since the last check: every refused request was answered,
        none blew up."""
        whole = self.log()
        text, self._checked = whole[self._checked:], len(whole)
        assert "Traceback" not in text and "Exception in ASGI" not in text, text[-4000:]
        errors = [ln for ln in text.splitlines() if '"level": "error"' in ln or '"level":"error"' in ln]
        assert not errors, errors[:5]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


def write_settings(settings: Any, path: Path) -> Path:
    """`settings` as a config file for a CLI process (the same Redis and key prefix as the test)."""
    import yaml

    path.write_text(yaml.safe_dump(settings.model_dump(mode="json"), allow_unicode=True), encoding="utf-8")
    return path
