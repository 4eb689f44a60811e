"""The `smsbot` command line (the ``smsbot`` entry point, ``python -m smsbot.cli``).

The package owns the commands and nothing else: each is thin, checks its input and calls into the
modules that do the work. `smsbot.cli.group` holds the click group `main` and what the commands
share (`Ctx`, `pass_ctx`, argument helpers); each other module registers the commands of one area
on `main` when imported, and this package imports them all:

* `smsbot.cli.config`: ``config check``
* `smsbot.cli.run`: ``run``, ``stop``, ``status`` (the bot as a process)
* `smsbot.cli.mt`: ``mt show|list`` (sent messages)
* `smsbot.cli.simulator`: ``smsc``, ``handset``, ``demo``
* `smsbot.cli.subs`: ``catalog list``, ``subs add|remove|list|seed``
* `smsbot.cli.redis`: ``redis start|stop|status`` (the bundled redis-server)
* `smsbot.cli.billing`: ``order``, ``use``, ``billing run|runs|ledger|verify``
* `smsbot.cli.usage`: ``usage`` (data-usage reports)
* `smsbot.cli.tickets`: ``tickets list|show|resolve`` (complaint tickets)
* `smsbot.cli.api`: ``api`` (the HTTP API server)
* `smsbot.cli.webhooks`: ``webhooks list|retry`` (webhook dead letters)
* `smsbot.cli.ctl`: ``ctl status|suspend|resume|log-level|reload`` (runtime control of running bots)
"""

from __future__ import annotations

from smsbot.cli.group import main
from smsbot.cli import api, billing, config, ctl, mt, redis, run, simulator, subs, tickets, usage, webhooks  # noqa: F401,E402  (register their commands)

__all__ = ["main"]
