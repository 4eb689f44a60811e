"""A simulated handset: sends MOs and reads its inbox through the simulator's HTTP control API.

Uses urllib only, so it works against a simulator in another process or on another host.

    h = Handset("http://127.0.0.1:8775", "13800138000")
    for msg in h.converse("10086", "0000", wait=3):
        print(format_message(msg))

`run_handset` is what the ``smsbot handset`` CLI command calls; `interactive` is its prompt loop.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, TextIO


class HandsetError(Exception):
    """The control API could not be reached or refused the request."""


class Handset:
    """One MSISDN talking to the simulated SMSC's control API at `control_url`."""

    def __init__(self, control_url: str, msisdn: str, timeout: float = 10.0):
        self.control_url = control_url.rstrip("/")
        self.msisdn = msisdn
        self.timeout = timeout

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.control_url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                detail = json.loads(e.read()).get("error", "")
            except Exception:  # noqa: BLE001 - any unreadable error body
                detail = ""
            raise HandsetError(f"{method} {path}: HTTP {e.code} {detail}".strip()) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise HandsetError(f"control API {self.control_url} unreachable: {reason}") from None

    def send(self, short_code: str, text: str, **opts: Any) -> str:
        """Send an MO; `opts` are the extra POST /mo fields (split, shuffle, duplicate, tlvs, data_coding).

        Returns the MO id (see `status`)."""
        body = {"from": self.msisdn, "to": short_code, "text": text, **opts}
        return str(self._request("POST", "/mo", body)["id"])

    def status(self, mo_id: str) -> dict[str, Any]:
        """Delivery outcome of an MO sent earlier."""
        return self._request("GET", f"/mo/{urllib.parse.quote(mo_id)}")

    def collect(self, wait: float = 0.0) -> list[dict[str, Any]]:
        """Every message not yet shown; if none, wait up to `wait` s for the first (and its burst)."""
        path = f"/inbox/{urllib.parse.quote(self.msisdn)}?wait={max(0.0, wait):g}"
        return self._request("GET", path, timeout=wait + self.timeout)["messages"]

    def converse(self, short_code: str, text: str, wait: float, **opts: Any) -> list[dict[str, Any]]:
        """Send `text`, then gather messages until `wait` seconds have passed.

        Returns every message not yet shown (including ones that were already waiting) plus those
        arriving within `wait`."""
        self.send(short_code, text, **opts)
        return self.collect_for(wait)

    def collect_for(self, wait: float) -> list[dict[str, Any]]:
        """Gather messages for the whole of `wait` seconds (not just the first burst)."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            out.extend(self.collect(max(0.0, left)))
            if left <= 0:
                return out


def format_message(msg: dict[str, Any]) -> str:
    """One whole message as its own block: a header line, then the text."""
    parts = int(msg.get("parts", 1) or 1)
    when = time.strftime("%H:%M:%S", time.localtime(float(msg.get("received_at", time.time()))))
    count = f" ({parts} parts)" if parts > 1 else ""
    return f"--- from {msg.get('from', '?')}{count} {when} ---\n{msg.get('text', '')}"


def _print(out: TextIO, text: str, lock: threading.Lock | None = None) -> None:
    if lock:
        with lock:
            out.write(text + "\n")
            out.flush()
    else:
        out.write(text + "\n")
        out.flush()


def interactive(
    handset: Handset,
    short_code: str,
    wait: float,
    inp: TextIO | None = None,
    out: TextIO | None = None,
    poll: float = 1.0,
) -> int:
    """Prompt loop: each input line is sent to `short_code`; replies and unprompted messages are printed.

    After sending, waits up to `wait` s for the first reply before prompting again. Ends on EOF or
    ``quit``/``exit``. Returns a process exit code."""
    inp = inp or sys.stdin
    out = out or sys.stdout
    lock = threading.Lock()
    stop = threading.Event()
    got = threading.Event()
    errors: list[str] = []

    def poller() -> None:
        while not stop.is_set():
            try:
                msgs = handset.collect(poll)
            except HandsetError as e:
                if not errors:
                    errors.append(str(e))
                    _print(out, f"! {e}", lock)
                stop.wait(poll)
                continue
            errors.clear()
            for m in msgs:
                _print(out, format_message(m), lock)
            if msgs:
                got.set()

    t = threading.Thread(target=poller, name=f"handset-{handset.msisdn}", daemon=True)
    t.start()
    tty = inp.isatty() if hasattr(inp, "isatty") else False
    try:
        _print(out, f"handset {handset.msisdn} -> {short_code}; type a message, 'quit' to leave", lock)
        while True:
            if tty:
                with lock:
                    out.write("> ")
                    out.flush()
            line = inp.readline()
            if not line:
                # EOF (piped input): give in-flight replies a chance to arrive
                if not tty and wait > 0:
                    got.clear()
                    got.wait(wait)
                break
            text = line.rstrip("\r\n")
            if text.strip().lower() in ("quit", "exit"):
                break
            if not text.strip():
                continue
            got.clear()
            try:
                handset.send(short_code, text)
            except HandsetError as e:
                _print(out, f"! {e}", lock)
                continue
            got.wait(wait)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        t.join(timeout=poll + handset.timeout + 1)
    return 0


def run_handset(
    control_url: str,
    msisdn: str,
    to: str,
    send: str | None,
    wait: float,
    out: TextIO = sys.stdout,
    inp: TextIO | None = None,
) -> int:
    """CLI entry: with `send`, send it and print every message that arrives within `wait` s;
    without, run the interactive prompt. Returns 0, or 2 when the control API fails."""
    handset = Handset(control_url, msisdn)
    if send is None:
        return interactive(handset, to, wait, inp=inp, out=out)
    try:
        msgs = handset.converse(to, send, wait)
    except HandsetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for m in msgs:
        _print(out, format_message(m))
    return 0
