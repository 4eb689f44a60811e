"""Process lifecycle of `smsbot run`: signals, teardown, exit code.

Signal handlers only set flags: the first SIGTERM/SIGINT asks the bot to stop reading MOs, drain
the outbox within ``smsc.drain_timeout`` and unbind; a second one stops at once (nothing stored is
lost: unsent replies stay in the Redis outbox for the next start or another instance).
"""

from __future__ import annotations

import signal
from types import FrameType

from smsbot import log
from smsbot.app import Bot
from smsbot.config import Settings

_log = log.get("smsbot.daemon")


def run_foreground(settings: Settings) -> int:
    bot = Bot(settings)
    signals_seen = 0

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal signals_seen
        signals_seen += 1
        bot.request_stop(force=signals_seen > 1)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        bot.run()
    finally:
        _log.info("exit", signals=signals_seen)
    return 0
