"""A simulated handset: sends MOs and reads its inbox through the simulator's HTTP control API.

Uses urllib only, so it works against a simulator in another process or on another host.

    h = Handset("http://127.0.0.1:8775", "13800138000")
    for msg in h.converse("10086", "0000", wait=3):
        print(format_message(msg))

`run_handset` is what the ``smsbot handset`` CLI command calls: send one text and collect the
replies, only collect for a while, or `interactive`, its prompt loop. On a terminal the prompt has
line editing and a history (GNU readline: arrows, Ctrl-A/E, Ctrl-R; kept across sessions in
`history_path()`); messages arriving while you type are printed above the line being edited.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import tzinfo
from pathlib import Path
from typing import Any, TextIO

from smsbot.timefmt import fmt_seconds

HISTORY_LINES = 1000
PROMPT = ">>> "  # the handset prompt; `smsbot demo --send` echoes each text after it too (as the README shows)
EXIT_NO_BOT = 3  # `--send` with no bot bound to the simulator


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

    def binds(self) -> list[dict[str, Any]]:
        """The binds open on the simulator (an ISMG's CMPP connections: mode ``CMPP 3.0``):
        ``{"id", "mode", "system_id", "peer"}`` each."""
        return self._request("GET", "/binds")["binds"]

    def wire(self) -> tuple[str, int]:
        """(the protocol the simulator speaks, smpp or cmpp; its port)."""
        health = self._request("GET", "/healthz")
        protocol = str(health.get("protocol", "smpp"))
        return protocol, int(health[f"{protocol}_port"])

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


def format_message(msg: dict[str, Any], tz: tzinfo | None = None) -> str:
    """One whole message as its own block: a header line (sender, parts, time in `tz` with its UTC
    offset; `tz` None: the host's zone, labelled too), then the text."""
    parts = int(msg.get("parts", 1) or 1)
    when = fmt_seconds(float(msg.get("received_at", time.time())), tz, with_date=False)
    count = f" ({parts} parts)" if parts > 1 else ""
    return f"--- from {msg.get('from', '?')}{count} {when} ---\n{msg.get('text', '')}"


def history_path() -> Path:
    """Where the prompt's history is kept: ``$XDG_STATE_HOME/smsbot/handset_history``
    (``~/.local/state/smsbot/handset_history`` by default)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "smsbot" / "handset_history"


class _LineEditor:
    """`input()` with GNU readline (line editing, history) on a terminal; messages printed while a
    line is being typed go above it and the prompt with the typed text is drawn again."""

    def __init__(self, out: TextIO, lock: threading.Lock, prompt: str, history: Path | None):
        import readline  # noqa: F401 - importing it gives input() line editing

        self.readline = readline
        self.out, self.lock, self.prompt, self.history = out, lock, prompt, history
        self.reading = False
        if history is not None:
            try:
                readline.read_history_file(str(history))
            except OSError:
                pass  # no history yet (or unreadable): start empty
        readline.set_history_length(HISTORY_LINES)
        readline.set_auto_history(True)

    def read(self) -> str | None:
        """One line, None on EOF (Ctrl-D)."""
        self.reading = True
        try:
            return input(self.prompt)
        except EOFError:
            return None
        finally:
            self.reading = False

    def show(self, text: str) -> None:
        with self.lock:
            if self.reading:  # clear the line being typed, print, then draw prompt and typed text again
                self.out.write("\r\x1b[K" + text + "\n" + self.prompt + self.readline.get_line_buffer())
            else:
                self.out.write(text + "\n")
            self.out.flush()

    def close(self) -> None:
        if self.history is None:
            return
        try:
            self.history.parent.mkdir(parents=True, exist_ok=True)
            self.readline.write_history_file(str(self.history))
        except OSError:
            pass  # a read-only home: the history is not kept, the prompt still works


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
    tz: tzinfo | None = None,
    banner: bool = True,
    history: Path | None | bool = True,
) -> int:
    """Prompt loop: each input line is sent to `short_code`; replies and unprompted messages are printed.

    After sending, waits up to `wait` s for the first reply before prompting again. Ends on EOF or
    ``quit``/``exit``. On a terminal (stdin and stdout) lines are read with readline: editing and a
    history kept in `history` (True: `history_path()`; None/False: not kept). Returns an exit code."""
    inp = inp or sys.stdin
    out = out or sys.stdout
    lock = threading.Lock()
    stop = threading.Event()
    got = threading.Event()
    errors: list[str] = []
    editor: _LineEditor | None = None
    if inp is sys.stdin and out is sys.stdout and _isatty(inp) and _isatty(out):
        editor = _LineEditor(out, lock, PROMPT, history_path() if history is True else (history or None))

    def show(text: str) -> None:
        if editor is not None:
            editor.show(text)
        else:
            _print(out, text, lock)

    def poller() -> None:
        while not stop.is_set():
            try:
                msgs = handset.collect(poll)
            except HandsetError as e:
                if not errors:
                    errors.append(str(e))
                    show(f"! {e}")
                stop.wait(poll)
                continue
            errors.clear()
            for m in msgs:
                show(format_message(m, tz))
            if msgs:
                got.set()

    t = threading.Thread(target=poller, name=f"handset-{handset.msisdn}", daemon=True)
    t.start()
    tty = _isatty(inp)
    try:
        if banner:
            _print(out, f"handset {handset.msisdn} -> {short_code}; type a message, 'quit' or Ctrl-D to leave", lock)
        while True:
            if editor is not None:
                read = editor.read()
                line = "" if read is None else read + "\n"
            else:
                if tty:
                    with lock:
                        out.write(PROMPT)
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
                show(f"! {e}")
                continue
            got.wait(wait)
    except KeyboardInterrupt:
        if editor is not None:
            _print(out, "", lock)
    finally:
        stop.set()
        if editor is not None:
            editor.close()
        t.join(timeout=poll + handset.timeout + 1)
    return 0


def _isatty(f: Any) -> bool:
    try:
        return bool(f.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _unreachable_hint(e: HandsetError) -> str:
    text = str(e)
    if "unreachable" in text:
        return (f"{text}: start the simulator (`smsbot smsc` or `smsbot demo`), or point --control "
                "(simulator.host / simulator.control_port) at the one running")
    return text


RECEIVING_BINDS = ("transceiver", "receiver")  # SMPP bind modes a bot takes MOs on (every CMPP connection does)


def no_bot_problem(handset: Handset) -> str | None:
    """None when a bot is bound to the simulator to take MOs; else one line saying that nothing
    would answer and how to start a bot. Raises `HandsetError` when the simulator is unreachable."""
    if any(b.get("mode") in RECEIVING_BINDS or str(b.get("mode", "")).startswith("CMPP") for b in handset.binds()):
        return None
    protocol, port = handset.wire()
    if protocol == "cmpp":
        return (f"no bot is connected to the simulated ISMG on CMPP port {port} (handset API {handset.control_url}), so "
                f"nothing would answer; start one with `smsbot run` (smsc.protocol cmpp3 or cmpp2, smsc.port {port}: "
                f"SMSBOT_SMSC_PROTOCOL=cmpp3 SMSBOT_SMSC_PORT={port} smsbot run)")
    return (f"no bot is bound to the simulator on SMPP port {port} (handset API {handset.control_url}), so nothing "
            f"would answer; start one with `smsbot run` (its smsc.port must be {port}: SMSBOT_SMSC_PORT={port} smsbot run)")


def run_handset(
    control_url: str,
    msisdn: str,
    to: str,
    send: str | None,
    wait: float,
    out: TextIO | None = None,
    inp: TextIO | None = None,
    *,
    collect_only: bool = False,
    tz: tzinfo | None = None,
    banner: bool = True,
) -> int:
    """CLI entry: with `send`, send it and print every message that arrives within `wait` s; with
    `collect_only`, print what is waiting and what arrives within `wait` s; otherwise run the
    interactive prompt. Returns 0; 2 when the control API fails; 3 when `send` is given and no bot
    is bound to the simulator (nothing is sent: it would wait there unanswered). The prompt only
    warns that no bot is bound."""
    out = out or sys.stdout
    handset = Handset(control_url, msisdn)
    try:
        if send is None and not collect_only:
            problem = no_bot_problem(handset)
            if problem:
                print(f"smsbot: warning: {problem}; what you send waits in the simulator until one binds", file=sys.stderr)
            return interactive(handset, to, wait, inp=inp, out=out, tz=tz, banner=banner)
        if send is not None:
            problem = no_bot_problem(handset)
            if problem:
                print(f"smsbot: {problem}", file=sys.stderr)
                return EXIT_NO_BOT
        msgs = handset.converse(to, send, wait) if send is not None else handset.collect_for(wait)
    except HandsetError as e:
        print(f"smsbot: {_unreachable_hint(e)}", file=sys.stderr)
        return 2
    for m in msgs:
        _print(out, format_message(m, tz))
    return 0
