"""Logging set-up, done once at start: structlog for smsbot, stdlib (smpplib, redis) through the same pipeline.

JSON lines when stdout is not a terminal (or ``log.format: json``), the console renderer on a
terminal. Phone numbers are masked (``138****8000``) unless ``log.mask_msisdn: false``: values of
address-like keys and any MSISDN-looking digit run inside messages. Values of keys that look like
credentials are always replaced by ``***``. smpplib's DEBUG hex dumps (numbers and texts, and a 40%
throughput cost) are never enabled.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

from smsbot.config import LogSettings

_ADDRESS_KEYS = frozenset({"msisdn", "to", "from", "source_addr", "destination_addr", "subscriber", "handset"})
_SECRET_WORDS = ("password", "passwd", "secret", "token")
_MSISDN_RE = re.compile(r"(?<!\d)(\+?\d{3})(\d{4,})(\d{4})(?!\d)")
_configured = False


def mask_msisdn(value: str) -> str:
    """13800138000 -> 138****8000; short codes (<= 8 digits) stay readable."""
    if len(value) <= 8:
        return value
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def _mask_text(text: str) -> str:
    return _MSISDN_RE.sub(lambda m: m.group(1) + "*" * len(m.group(2)) + m.group(3), text)


def _make_masker(mask: bool):
    def processor(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
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

    return processor


def setup(settings: LogSettings, *, stream: Any = None, force: bool = False) -> None:
    """Configure structlog and the stdlib root logger once (again only with force=True)."""
    global _configured
    if _configured and not force:
        return
    stream = stream or sys.stderr
    use_json = settings.format == "json" or (settings.format == "auto" and not stream.isatty())
    level = getattr(logging, settings.level)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _make_masker(settings.mask_msisdn),
    ]
    renderer: Any = structlog.processors.JSONRenderer(ensure_ascii=False) if use_json else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
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
    _configured = True


def get(name: str = "smsbot") -> Any:
    return structlog.get_logger(name)
