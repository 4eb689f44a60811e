"""Logging set-up, done once at start: structlog for smsbot, stdlib (smpplib, redis) through the same pipeline.

JSON lines when stdout is not a terminal (or ``log.format: json``), the console renderer on a
terminal. Every line's ``timestamp`` is ISO 8601 in the zone given to `setup` / `set_zone` (the
configured ``billing.timezone``, see `smsbot.timefmt`) with its offset,
``2026-11-25T10:00:00.123+08:00``; UTC (``+00:00``) until a zone is given. Phone numbers are masked (``138****8000``) unless ``log.mask_msisdn: false``: values of
address-like keys and any MSISDN-looking digit run inside messages. Values of keys that look like
credentials are always replaced by ``***``. smpplib's DEBUG hex dumps (numbers and texts, and a 40%
throughput cost) are never enabled.

`apply()` changes the log settings of a running process (SIGHUP): format and masking at once, the
level too unless it is lower than the level the process started with (loggers already used keep
their start-time filter: that needs a restart). `set_level()` changes the level alone, with the
same floor (runtime control, `smsbot.control`).

`Throttled` rate-limits the log lines of one recurring condition (Redis unreachable, a stream
failing): the first occurrence at once, then at most one line per interval carrying how many were
suppressed, and one line when it is over ("recovered after N s, M events").
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from datetime import timezone, tzinfo
from typing import Any, Callable

import structlog

from smsbot.config import LogSettings
from smsbot.timefmt import iso_seconds

_ADDRESS_KEYS = frozenset({"msisdn", "to", "from", "source_addr", "destination_addr", "subscriber", "handset"})
_SECRET_WORDS = ("password", "passwd", "secret", "token")
_MSISDN_RE = re.compile(r"(?<!\d)(\+?\d{3})(\d{4,})(\d{4})(?!\d)")
_configured = False
_mask = True  # read by the masking processor at each call, so `apply()` changes it for cached loggers too
_stream: Any = None  # where the handler writes (kept for `apply()`)
_start_level: int | None = None  # the level of the first set-up: cached loggers filter below it for good
_zone: tzinfo = timezone.utc  # the zone of every line's timestamp (`set_zone`), read at each line


def mask_msisdn(value: str) -> str:
    """13800138000 -> 138****8000; short codes (<= 8 digits) stay readable."""
    if len(value) <= 8:
        return value
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def _mask_text(text: str) -> str:
    return _MSISDN_RE.sub(lambda m: m.group(1) + "*" * len(m.group(2)) + m.group(3), text)


def _masker(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    mask = _mask
    for key in list(event):
        lk = key.lower()
        if any(w in lk for w in _SECRET_WORDS):
            event[key] = "***"
        elif mask and lk in _ADDRESS_KEYS and isinstance(event[key], str):
            event[key] = mask_msisdn(event[key])
    if mask:
        ev = event.get("event")
        if isinstance(ev, str):
            event["event"] = _mask_text(ev)
    return event


def set_zone(zone: tzinfo) -> None:
    """Timestamps of the lines from now on are in `zone` (``billing.timezone``; also at a reload)."""
    global _zone
    _zone = zone


def _timestamper(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    event["timestamp"] = iso_seconds(time.time(), _zone)
    return event


def setup(settings: LogSettings, *, stream: Any = None, force: bool = False, zone: tzinfo | None = None) -> None:
    """Configure structlog and the stdlib root logger once (again only with force=True); `zone`:
    that of the timestamps (see `set_zone`)."""
    global _configured, _mask, _stream, _start_level
    if zone is not None:
        set_zone(zone)
    if _configured and not force:
        return
    stream = stream or sys.stderr
    _stream = stream
    _mask = settings.mask_msisdn
    level = getattr(logging, settings.level)
    shared = _shared_processors()
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    _install_handler(stream, _renderer(settings, stream), shared, level)
    _start_level = level
    _configured = True


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _timestamper,
        _masker,
    ]


def _renderer(settings: LogSettings, stream: Any) -> Any:
    use_json = settings.format == "json" or (settings.format == "auto" and not stream.isatty())
    if use_json:
        return structlog.processors.JSONRenderer(ensure_ascii=False)
    return structlog.dev.ConsoleRenderer(colors=stream.isatty())


def _install_handler(stream: Any, renderer: Any, shared: list[Any], level: int) -> None:
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.format_exc_info, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    # smpplib logs every PDU (numbers, texts) at DEBUG and warns per unknown TLV: keep it at INFO+.
    logging.getLogger("smpplib").setLevel(max(level, logging.INFO))
    logging.getLogger("smpp").setLevel(max(level, logging.INFO))


def apply(settings: LogSettings) -> list[str]:
    """Apply new log settings to the running process (SIGHUP); returns the keys that need a restart.

    ``format`` and ``mask_msisdn`` take effect at once; ``level`` too, except a level below the one
    the process started with (loggers already used filter below their start level for good).
    Before `setup()` this is `setup()`.
    """
    global _mask
    if not _configured:
        setup(settings)
        return []
    stream = _stream or sys.stderr
    _mask = settings.mask_msisdn
    level = getattr(logging, settings.level)
    start = _start_level if _start_level is not None else level
    _install_handler(stream, _renderer(settings, stream), _shared_processors(), max(level, start))
    return ["log.level"] if level < start else []


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def current_level() -> str:
    return logging.getLevelName(logging.getLogger().level)


def set_level(name: str) -> str:
    """Change the level of the running process (`smsbot ctl log-level`); returns the one it replaces.

    Not below the level the process started with (loggers already used filter below it for good):
    that is a ValueError saying so. A reload sets the configured ``log.level`` again."""
    name = name.upper()
    if name not in LEVELS:
        raise ValueError(f"unknown log level {name!r}; one of {', '.join(LEVELS)}")
    level = getattr(logging, name)
    if _start_level is not None and level < _start_level:
        raise ValueError(f"{name} is below the level this process started with "
                         f"({logging.getLevelName(_start_level)}): set log.level and restart")
    before = current_level()
    logging.getLogger().setLevel(level)
    for noisy in ("smpplib", "smpp"):  # never their DEBUG PDU dumps (see `_install_handler`)
        logging.getLogger(noisy).setLevel(max(level, logging.INFO))
    return before


def get(name: str = "smsbot") -> Any:
    return structlog.get_logger(name)


# -- rate-limited logging of a recurring condition ---------------------------------------------------
class Throttled:
    """Log one recurring condition (e.g. ``redis_unreachable``) without flooding the log.

        unreachable = log.Throttled(log.get("smsbot.dispatch"), "redis_unreachable", every_s=10)
        ...
        except redis.ConnectionError as e:
            unreachable.hit(error=str(e), batch=len(batch))      # each occurrence
        ...
        unreachable.recovered()                                  # after a success (cheap no-op when nothing failed)

    * the first `hit()` of an episode logs ``event`` at once (``level``, default ``error``) with the
      given fields;
    * later hits log at most one line per ``every_s`` seconds: the same event with the latest fields
      plus ``suppressed`` (hits not logged since the previous line), ``events`` (hits in this
      episode) and ``failing_s`` (seconds since the first hit);
    * `recovered()` ends the episode with one line ``<event>_recovered`` at INFO: ``after_s`` (since
      the first hit), ``events``, ``suppressed`` (hits never logged); it logs nothing when no hit
      happened since the last recovery, so call it after every success.

    `hit()` and `recovered()` return True when they wrote a line. Thread-safe; cheap on the hot path
    (a lock and a clock read per call; no formatting when the line is suppressed).
    """

    def __init__(self, logger: Any, event: str, every_s: float = 60.0, *, level: str = "error",
                 recovered_event: str | None = None, recovered_level: str = "info",
                 clock: Callable[[], float] = time.monotonic):
        self.logger = logger
        self.event = event
        self.every_s = every_s
        self.level = level
        self.recovered_event = recovered_event or f"{event}_recovered"
        self.recovered_level = recovered_level
        self.clock = clock
        self._lock = threading.Lock()
        self._first: float | None = None  # time of the episode's first hit
        self._last_line = 0.0
        self.events = 0  # hits in the current episode
        self.suppressed = 0  # hits not logged since the last line

    @property
    def active(self) -> bool:
        """True between the first hit of an episode and `recovered()`."""
        return self._first is not None

    def hit(self, **fields: Any) -> bool:
        with self._lock:
            now = self.clock()
            self.events += 1
            if self._first is None:
                self._first = self._last_line = now
                self.suppressed = 0
                extra: dict[str, Any] = {}
            elif now - self._last_line >= self.every_s:
                extra = {"suppressed": self.suppressed, "events": self.events, "failing_s": round(now - self._first, 1)}
                self._last_line = now
                self.suppressed = 0
            else:
                self.suppressed += 1
                return False
        getattr(self.logger, self.level)(self.event, **fields, **extra)
        return True

    __call__ = hit

    def recovered(self, **fields: Any) -> bool:
        if self._first is None:  # unlocked fast path: nothing to report
            return False
        with self._lock:
            if self._first is None:
                return False
            after = self.clock() - self._first
            events, suppressed = self.events, self.suppressed
            self._first, self.events, self.suppressed = None, 0, 0
        getattr(self.logger, self.recovered_level)(
            self.recovered_event, after_s=round(after, 1), events=events, suppressed=suppressed, **fields)
        return True
