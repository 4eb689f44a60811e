"""Listening ports smsbot opens, and one clear line when one cannot be opened.

`smsbot smsc` and `smsbot demo` listen on the simulator's SMPP and control ports, `smsbot run` on
``metrics.port`` when set. When a port is taken (another smsbot, another program) or not allowed,
`PortProblem` says which port, what it is for, and which setting (environment variable, command-line
option) moves it; as a ``click.ClickException`` it prints that one line and exits with code 2.

    port 2775 on 127.0.0.1 (the simulator's SMPP port) is already in use by another program (another
    `smsbot smsc` or `smsbot demo`?): stop it, or move this one with simulator.smpp_port (env
    SMSBOT_SIMULATOR_SMPP_PORT, or --smpp-port)
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from typing import Any, Sequence

import click

EXIT_PORT = 2


@dataclass(frozen=True)
class Listener:
    """A port smsbot listens on and how a person moves it."""

    host: str
    port: int
    what: str  # "the simulator's SMPP port"
    setting: str  # "simulator.smpp_port"
    env: str  # "SMSBOT_SIMULATOR_SMPP_PORT"
    option: str = ""  # "--smpp-port"
    who: str = ""  # "another `smsbot smsc` or `smsbot demo`?"

    def how_to_move(self) -> str:
        how = f"{self.setting} (env {self.env}" + (f", or {self.option}" if self.option else "") + ")"
        return how


class PortProblem(click.ClickException):
    exit_code = EXIT_PORT

    def __init__(self, listener: Listener, reason: str):
        self.listener, self.reason = listener, reason
        super().__init__(self.line())

    def line(self) -> str:
        ln = self.listener
        where = f"port {ln.port} on {ln.host} ({ln.what})"
        if self.reason == "in_use":
            who = f" ({ln.who})" if ln.who else ""
            return f"{where} is already in use by another program{who}: stop it, or move this one with {ln.how_to_move()}"
        if self.reason == "denied":
            return f"{where} may not be opened by this user (ports below 1024 need privileges): choose another with {ln.how_to_move()}"
        if self.reason == "no_address":
            host_setting = ln.setting.rsplit(".", 1)[0] + ".host"
            return f"{where}: {ln.host} is not an address of this machine: set {host_setting} to one (e.g. 127.0.0.1)"
        return f"{where} cannot be opened ({self.reason}): choose another with {ln.how_to_move()}"

    def show(self, file: Any = None) -> None:  # click calls this instead of printing "Error: ..."
        click.echo(f"smsbot: {self.line()}", err=True)


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "in_use"
    if exc.errno == errno.EACCES:
        return "denied"
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return "no_address"
    return exc.strerror or str(exc)


def problem(listener: Listener) -> PortProblem | None:
    """Try to listen on `listener` (and let go at once): None when it can be opened, else why not."""
    if not listener.port:
        return None  # 0: any free port
    try:
        infos = socket.getaddrinfo(listener.host, listener.port, type=socket.SOCK_STREAM)
        family, _t, _p, _c, addr = infos[0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the real listeners do
            s.bind(addr)
            s.listen(1)
    except OSError as e:
        return PortProblem(listener, _reason(e))
    return None


def check(listeners: Sequence[Listener]) -> None:
    """Raise the `PortProblem` of the first listener that cannot be opened."""
    for ln in listeners:
        p = problem(ln)
        if p is not None:
            raise p


def explain(exc: OSError, listeners: Sequence[Listener]) -> PortProblem:
    """The `PortProblem` behind `exc`, met while opening one of `listeners` (which one is found by
    trying each again; the first one when none fails now)."""
    for ln in listeners:
        p = problem(ln)
        if p is not None:
            return p
    return PortProblem(listeners[0], _reason(exc))


# -- the listeners of smsbot's commands ----------------------------------------------------------------
def simulator_listeners(host: str, smpp_port: int, control_port: int, options: bool = True) -> list[Listener]:
    who = "another `smsbot smsc` or `smsbot demo`?"
    return [
        Listener(host, smpp_port, "the simulator's SMPP port", "simulator.smpp_port", "SMSBOT_SIMULATOR_SMPP_PORT",
                 "--smpp-port" if options else "", who),
        Listener(host, control_port, "the simulator's handset API", "simulator.control_port",
                 "SMSBOT_SIMULATOR_CONTROL_PORT", "--control-port" if options else "", who),
    ]


def metrics_listener(host: str, port: int) -> Listener:
    return Listener(host, port, "the metrics endpoint", "metrics.port", "SMSBOT_METRICS_PORT", "",
                    "another `smsbot run`? each instance needs its own metrics.port")
