"""The command modules, listed explicitly. A short code enables commands by these names in config.

To add a command: write ``commands/<name>.py`` with a `Command` subclass (matcher + renderers)
and, when it changes state, a ``commands/<name>.lua`` fragment; then list it here.
"""

from __future__ import annotations

from smsbot.router import Command  # noqa: F401  (re-exported for command modules)

from commands import help, reminders, subscriptions, usage


def all_commands() -> list[Command]:
    return [subscriptions.SubscriptionsCommand(), usage.UsageCommand(), reminders.RemindersCommand(), help.HelpCommand()]


def known_command_names() -> set[str]:
    return {c.name for c in all_commands()}
