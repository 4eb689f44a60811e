"""A reload (SIGHUP): which changed keys take effect at once and which wait for a restart.

`plan_reload` compares the running settings with a freshly loaded file; the bot (`smsbot.app`)
swaps in what it returns, and the daemon (`smsbot.daemon`) uses `changed_keys` for a reload that
comes before the bot is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smsbot import log
from smsbot.config import Settings
from smsbot.timefmt import display_zone

# -- SIGHUP: what a reload can change --------------------------------------------------------------------
# Sections that take effect at a reload: the router (templates, catalogue, short codes, menu) is
# rebuilt, the event consumers (usage, billing) restarted, and the dispatcher reads `dispatch.*`
# at use time; the commands' own settings (`commands.usage`, `commands.orders`, ...) are live too. `log` is applied by `log.apply` (all but a level below the start level).
# Everything else keeps its running value until a restart: the SMPP bind (`smsc`), the Redis
# connection (`redis`, `data_dir`), the metrics listener (`metrics`), delivery timers (`delivery`)
# and any section added later until it is listed here. `simulator` is not used by `smsbot run`.
LIVE_SECTIONS = frozenset({"templates", "services", "short_codes", "menu", "billing", "dispatch", "delivery", "commands"})
UNUSED_SECTIONS = frozenset({"simulator"})


@dataclass
class ReloadPlan:
    """The outcome of comparing the running settings with a freshly loaded file."""

    settings: Settings  # run with this: the new file, with restart-only keys kept at their running values
    applied: list[str] = field(default_factory=list)  # changed keys in effect now (dotted paths)
    restart: list[str] = field(default_factory=list)  # changed keys that take effect on the next start
    unused: list[str] = field(default_factory=list)  # changed keys `smsbot run` does not use

    def log(self, logger: Any, **extra: Any) -> None:
        """ONE line: event ``reloaded``, with ``applied`` and ``restart_needed`` (WARNING when not empty)."""
        fields: dict[str, Any] = {"applied": self.applied, "restart_needed": self.restart, **extra}
        if self.unused:
            fields["not_used_by_run"] = self.unused
        (logger.warning if self.restart else logger.info)("reloaded", **fields)


def changed_keys(old: Any, new: Any, path: str = "") -> list[str]:
    """Dotted paths of the leaves that differ (a list is one leaf; a key added or removed in a mapping
    is named down to its own leaves)."""
    if isinstance(old, dict) and new is None:
        new = {}
    if isinstance(new, dict) and old is None:
        old = {}
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            out += changed_keys(old.get(k), new.get(k), f"{path}.{k}" if path else str(k))
        return out
    return [] if old == new else [path]


def plan_reload(old: Settings, new: Settings) -> ReloadPlan:
    """Which changed keys take effect now, which need a restart; applies the `log` ones and the zone
    of the log lines (side effects)."""
    changed = changed_keys(old.model_dump(mode="json"), new.model_dump(mode="json"))
    plan = ReloadPlan(new)
    keep: dict[str, Any] = {}
    log_keys = [k for k in changed if k.split(".", 1)[0] == "log"]
    log_restart = set(log.apply(new.log)) if log_keys else set()
    if "billing.timezone" in changed:  # the zone of every time written, log lines included (smsbot.timefmt)
        log.set_zone(display_zone(new))
    for key in changed:
        section = key.split(".", 1)[0]
        if section == "log":
            (plan.restart if key in log_restart else plan.applied).append(key)
        elif section in LIVE_SECTIONS:
            plan.applied.append(key)
        elif section in UNUSED_SECTIONS:
            plan.unused.append(key)
        else:
            plan.restart.append(key)
            keep[section] = getattr(old, section)
    if keep:
        plan.settings = new.model_copy(update=keep)
    return plan
