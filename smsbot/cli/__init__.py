"""The `smsbot` command line (the ``smsbot`` entry point, ``python -m smsbot.cli``).

The package owns the commands and nothing else: each is thin, checks its input and calls into the
modules that do the work. `smsbot.cli.group` holds the click group `main` and what the commands
share (`Ctx`, `pass_ctx`, argument helpers); each other module registers the commands of one area
on `main` when imported, and this package imports them all, then adds the commands each command
package brings (`Command.cli_commands`, given `smsbot.cli.group` as their toolkit):

* `smsbot.cli.config`: ``config check``
* `smsbot.cli.run`: ``run``, ``stop``, ``status`` (the bot as a process)
* `smsbot.cli.mt`: ``mt show|list`` (sent messages)
* `smsbot.cli.simulator`: ``smsc``, ``handset``, ``demo``
* `smsbot.cli.subs`: ``catalog list``, ``subs add|remove|list|seed``
* `smsbot.cli.redis`: ``redis start|stop|status`` (the bundled redis-server)
* `smsbot.cli.billing`: ``billing run|runs|ledger|verify``
* `smsbot.cli.tickets`: ``tickets list|show|resolve`` (complaint tickets)
* `smsbot.cli.api`: ``api`` (the HTTP API server)
* `smsbot.cli.webhooks`: ``webhooks list|retry`` (webhook dead letters)
* `smsbot.cli.ctl`: ``ctl status|suspend|resume|log-level|reload`` (runtime control of running bots)
* `commands.orders.cli`: ``order``, ``use`` (order and on-demand use events)
* `commands.usage.cli`: ``usage`` (data-usage reports)
"""

from __future__ import annotations

import commands
from smsbot.cli import group
from smsbot.cli.group import main
from smsbot.cli import api, billing, config, ctl, mt, redis, run, simulator, subs, tickets, webhooks  # noqa: F401,E402  (register their commands)

for _command in commands.COMMANDS:  # the classes: the registry's checks wait for a command that loads the configuration
    for _cli_command in _command().cli_commands(group):
        main.add_command(_cli_command)

__all__ = ["main"]
