"""What the simulated SMSC (`smsc.SimSmsc`, SMPP) and the simulated ISMG (`ismg.SimIsmg`, CMPP)
share: `Simulator`, the part of a simulator that does not depend on the protocol.

It owns:
- the lifecycle: the listener (`server.Listener`) and its accept thread, the control API and web
  page (`control.ControlServer`, when asked for), the thread of delayed resps (`faults.Delayer`)
  and the delivery workers (`scheduler.Scheduler`), started and stopped in one order and joined;
  `serve_forever` for the CLI;
- the profile in force (`set_profile`, `describe_profile`), each protocol's flags checked by its
  own `make_behaviour` (`profiles` for SMPP, `cmpp_profile` for CMPP);
- the fault plan (`set_faults`), the counters (`count`, `stats`), the connections held
  (`binds`, `drop_connections`, `send_partial`), the handsets' mailbox (its own, or one shared
  with another simulator) and the events the web page shows.

A protocol's simulator names itself (`name`, `protocol`, `error`), says what of its connections
counts as a bind (`_is_bound`, `_bind_info`), serves an accepted socket (`_accepted`), builds its
`_scheduler` and keeps everything it does on the wire: binds or CONNECTs, submits judged and
answered, MOs and receipts delivered.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from functools import partial
from typing import Any, Callable, ClassVar, Iterable, Self

from smsbot.msisdn import subscriber_key

from .connection import Connection
from .control import ControlServer
from .counters import Counters
from .errors import SimSmscError
from .events import SimEvents
from .faults import Delayer, FaultError, Faults
from .mailbox import Mailbox, Reassembler
from .profiles import ProfileError
from .scheduler import Scheduler
from .server import Connections, Listener

log = logging.getLogger("smsbot.simulator")


class Simulator:
    """A simulated server of one protocol. `start()` / `stop()` (or `with`) in process,
    `serve_forever()` for the CLI. The port on the wire is `wire_port` (0 given: the OS picks, the
    real one after `start()`), the control API's `control_port` / `control_url`."""

    name: ClassVar[str]  # threads and log lines: "simsmsc", "simismg"
    protocol: ClassVar[str]  # the control API's name of the wire ("smpp": its port is "smpp_port")
    error: ClassVar[type[SimSmscError]] = SimSmscError  # bad input to the API (the control API: 400)
    mo_final_states: ClassVar[tuple[str, ...]] = ("delivered", "rejected")  # what `wait_mo` waits for
    # the protocol's profiles: (profile, **flags) -> its behaviour, `ProfileError` naming what is wrong
    make_behaviour: ClassVar[Callable[..., Any]]
    # (sequence, announced, octets) -> the header of an MO announcing `announced` octets and `octets` of body
    partial_pdu: ClassVar[Callable[[int, int, int], bytes]]

    _scheduler: Scheduler  # the delivery jobs (MOs, receipts) and their workers: the subclass builds it

    def __init__(
        self,
        *,
        host: str,
        wire_port: int,
        control: bool,
        control_port: int,
        response_timeout: float,
        country_code: str | None,
        profile: str,
        flags: dict[str, Any],
        faults: Faults,
        counters: Iterable[str] = (),
        mailbox: Mailbox | None = None,
        short_codes: Iterable[str] = (),
        timezone: str,
    ) -> None:
        """`flags` on top of `profile`'s; `counters`: those `stats()` shows from 0; `mailbox`
        another simulator's (its owner watches and closes it), else one of its own. `short_codes`
        and `timezone`: what the web page offers and shows times in."""
        self.host = host
        self.wire_port = wire_port
        self.with_control = control
        self.control_port = control_port
        self.response_timeout = response_timeout
        self.country_code = country_code  # the home network's: international addresses with it are its handsets
        try:
            self.behaviour = self.make_behaviour(profile, **flags)
        except ProfileError as e:
            raise self.error(str(e)) from None
        self.profile = profile
        self.short_codes = list(short_codes)
        self.timezone = timezone
        self.events = SimEvents()  # what the web page shows (control API: GET /events, /web/...)
        self.mailbox = mailbox if mailbox is not None else Mailbox()
        self._owns_mailbox = mailbox is None
        if self._owns_mailbox:
            self.mailbox.on_take = self.events.picked_up
        self.reassembler = Reassembler()
        self.faults = faults
        self._delayer = Delayer(f"{self.name}-delay")
        self._lock = threading.RLock()  # the profile, the thread list, what a subclass counts under it
        self._counters = Counters(counters)
        self._stopping = threading.Event()
        self._stop_requested = threading.Event()
        self._conns: Connections[Any] = Connections(self._stopping)
        self._threads: list[threading.Thread] = []
        self._listener: Listener | None = None
        self._control: ControlServer | None = None
        self.started = False

    def handset_key(self, name: str) -> str:
        """The mailbox of handset `name`: ``8613800138000`` and ``13800138000`` are one handset."""
        return subscriber_key(name, self.country_code)

    # ---------------------------------------------------------------- profile
    def set_profile(self, profile: str | None = None, **flags: Any) -> dict[str, Any]:
        """Switch to `profile` (its flags, then `flags` on top); with no profile, change only the
        given flags of the current behaviour. Applies to what is sent from now on. Returns
        `describe_profile()`."""
        with self._lock:
            try:
                if profile is None:
                    self.behaviour = self.make_behaviour(self.profile, **{**self.behaviour.to_dict(), **flags})
                else:
                    self.behaviour = self.make_behaviour(profile, **flags)
                    self.profile = profile
            except ProfileError as e:
                raise self.error(str(e)) from None
        self._profile_changed()
        desc = self.describe_profile()
        log.info("%s profile %s %s", self.name, self.profile, desc["flags"])
        self.events.publish("profile", desc)
        return desc

    def describe_profile(self) -> dict[str, Any]:
        """{"profile": name, "flags": every flag's value, "overrides": those differing from the profile}."""
        with self._lock:
            flags = self.behaviour.to_dict()
            base = self.make_behaviour(self.profile).to_dict()
            return {"profile": self.profile, "flags": flags,
                    "overrides": {k: v for k, v in flags.items() if base.get(k) != v}}

    def _profile_changed(self) -> None:
        """A new behaviour is in force (after `set_profile`): what counts by it starts again."""

    # ---------------------------------------------------------------- lifecycle
    @property
    def control_url(self) -> str:
        return f"http://{self.host}:{self.control_port}"

    def start(self) -> Self:
        """Open the listener and the control API; returns at once (threads do the work)."""
        if self.started:
            return self
        listener = Listener(self.host, self.wire_port)
        if self.with_control:
            try:
                self._control = ControlServer(self, self.host, self.control_port)
            except OSError:
                listener.close()
                raise
            self.control_port = self._control.port
        self._listener = listener
        self.wire_port = listener.port
        self.started = True
        self._delayer.start()
        self._scheduler.start()
        self._spawn(partial(listener.accept_until, self._stopping, self._accepted), f"{self.name}-accept")
        if self._control:
            self._control.start()
        log.info("%s listening: %s control %s", self.name, self._listening_on(),
                 f"{self.control_url} (handsets page: {self.control_url}/)" if self._control else "off")
        return self

    def _spawn(self, target: Callable[[], Any], name: str) -> None:
        """Run `target` on a daemon thread that `stop()` joins."""
        t = threading.Thread(target=target, name=name, daemon=True)
        with self._lock:  # finished ones (TLS proxies of closed connections) are forgotten
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()

    def stop(self) -> None:
        """Close the listener, every connection and the control API; join every thread. Resps
        still delayed are never written; queued jobs are cancelled."""
        if not self.started or self._stopping.is_set():
            return
        self._stopping.set()
        self._scheduler.stop()
        self._delayer.stop()
        self.events.close()
        if self._owns_mailbox:
            self.mailbox.close()
        if self._control:
            self._control.stop()
        if self._listener is not None:
            self._listener.close()
        self._conns.close_all(join_timeout=5)
        join_timeout = self.response_timeout + 5
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=join_timeout)
        self._scheduler.join(join_timeout)
        log.info("%s stopped", self.name)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Start and block until SIGINT/SIGTERM (or `request_stop()`), then stop."""
        old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                old[sig] = signal.signal(sig, lambda signum, frame: self._stop_requested.set())
        try:
            self.start()
            self._stop_requested.wait()
        finally:
            self.stop()
            for sig, h in old.items():
                signal.signal(sig, h)

    def request_stop(self) -> None:
        self._stop_requested.set()

    def _listening_on(self) -> str:
        """What the start's log line says it listens on (the protocol, host:port, ...)."""
        return f"{self.protocol} {self.host}:{self.wire_port}"

    # ---------------------------------------------------------------- connections
    def _accepted(self, sock: socket.socket, addr: Any) -> bool:
        """Serve the protocol on an accepted socket; False once stopping (`Connections.add`)."""
        raise NotImplementedError

    @staticmethod
    def _is_bound(c: Any) -> bool:
        """`c` is past its bind (SMPP) or CONNECT (CMPP): the control API shows it as a bind."""
        raise NotImplementedError

    def _bind_info(self, c: Any) -> dict[str, Any]:
        """A bind as the control API shows it: {"id", "mode", "system_id", "peer"}."""
        raise NotImplementedError

    def binds(self) -> list[dict[str, Any]]:
        """The current binds (for the control API / tests)."""
        return [self._bind_info(c) for c in self._conns.open(self._is_bound)]

    def drop_connections(self) -> int:
        """Close every connection abruptly (no unbind, no TERMINATE); returns how many were closed."""
        conns = self._conns.open()
        for c in conns:
            c.close()
        self.count("connections_dropped", len(conns))
        return len(conns)

    def _send_partial(self, conn: Connection | None, no_conn: str, announced: int, octets: int) -> dict[str, Any]:
        """On `conn`: an MO's header announcing `announced` octets, `octets` of body, then silence
        there (`Connection.wedge`); `no_conn` is the error when there is none. Returns {"conn",
        "sequence", "announced", "octets"}."""
        if conn is None:
            raise self.error(no_conn)
        try:
            sent = conn.send_partial(self.partial_pdu, announced, octets)
        except (ValueError, ConnectionError) as e:
            raise self.error(str(e)) from None
        self.count("partials_sent")
        return sent

    # ---------------------------------------------------------------- counters
    def count(self, key: str, n: int = 1) -> None:
        self._counters.add(key, n)

    def stats(self) -> dict[str, int]:
        """The counters, then what is counted live (`_gauges`)."""
        return {**self._counters.snapshot(), **self._gauges()}

    def _gauges(self) -> dict[str, int]:
        """MOs waiting for delivery and MT parts waiting for the rest of their message."""
        return {"mo_queued": self._scheduler.count("mo", ("queued", "delivering")),
                "mt_incomplete": self.reassembler.incomplete()}

    # ---------------------------------------------------------------- faults and MOs
    def set_faults(self, **kw: Any) -> dict[str, Any]:
        """Replace the fault plan (knobs not given are off; no arguments: behave) and restart its
        submit counting; returns the plan. Knobs: ``POST /faults`` in `control`."""
        try:
            plan = self.faults.set(**kw)
        except FaultError as e:
            raise self.error(str(e)) from None
        self.events.publish("faults", plan)
        return plan

    def mo_status(self, mo_id: str) -> dict[str, Any] | None:
        return self._scheduler.status(mo_id)

    def wait_mo(self, mo_id: str, timeout: float = 5.0, states: tuple[str, ...] | None = None) -> dict[str, Any] | None:
        """Until the MO (or receipt) `mo_id` reaches one of `states` (default `mo_final_states`), at
        most `timeout` seconds (test helper); its status."""
        return self._scheduler.wait(mo_id, states or self.mo_final_states, timeout)
