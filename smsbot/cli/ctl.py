"""Runtime control of running bot instances: ``smsbot ctl status|suspend|resume|log-level|reload``.

    smsbot ctl status [INSTANCE|all] [--json]
    smsbot ctl suspend INSTANCE|all           drain, unbind, stay unbound
    smsbot ctl resume INSTANCE|all            bind again
    smsbot ctl log-level INSTANCE|all LEVEL   DEBUG, INFO, WARNING, ERROR, CRITICAL
    smsbot ctl reload INSTANCE|all            what SIGHUP does

Instances are named as `smsbot ctl status` (and ``GET /v1/status``) list them. Each request goes
through Redis to the instance (`smsbot.control`), which answers whether it was done; every change
is audited as ``cli:$USER``. Exit 0 when every instance did it, 1 when one did not or did not
answer, or no such instance is alive.
"""

from __future__ import annotations

import getpass
import json
import sys
from typing import Any

import click

from smsbot.cli.group import main, open_store, pass_ctx

EXIT_NOT_DONE = 1


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid
        return "cli:unknown"


def _targets(alive: list[str], target: str) -> list[str]:
    if not alive:
        click.echo("smsbot: no bot instance is alive on this Redis (start one with `smsbot run`)", err=True)
        sys.exit(EXIT_NOT_DONE)
    if target == "all":
        return alive
    if target not in alive:
        click.echo(f"smsbot: no instance {target!r} alive; alive: {', '.join(alive)} (or `all`)", err=True)
        sys.exit(EXIT_NOT_DONE)
    return [target]


def _state_line(state: dict[str, Any]) -> str:
    if state.get("suspended"):
        binds = "suspended (unbound)"
    else:
        binds = ", ".join(state.get("binds") or []) if state.get("bound") else "not bound"
    return (f"{binds}\twindow {state.get('window_used', 0)}/{state.get('window', 0)}\t"
            f"in flight {state.get('outbox_inflight', 0)}\tbacklog {state.get('outbox_backlog', 0)}\t"
            f"log {state.get('log_level', '?')}")


def _run(c: Any, target: str, action: str, args: dict[str, Any], as_json: bool = False) -> None:
    from smsbot import control

    st = open_store(c)
    try:
        targets = _targets(control.instances(st.redis, st.keys), target)
        results = control.ask(st.redis, st.keys, targets, action, args, _actor(),
                              control.answer_timeout(action, c.settings.smsc.drain_timeout))
    finally:
        st.close()
    for r in results:
        if as_json:
            click.echo(json.dumps(r, ensure_ascii=False))
        elif action == "status":
            click.echo(f"{r['instance']}\t" + (_state_line(r["state"]) if r["ok"] else r["detail"]))
        else:
            click.echo(f"{r['instance']}\t{'done' if r['ok'] else 'NOT DONE'}: {r['detail']}")
    if not all(r["ok"] for r in results):
        sys.exit(EXIT_NOT_DONE)


@main.group("ctl")
def ctl_group() -> None:
    """Control running bot instances: status, suspend, resume, log-level, reload."""


@ctl_group.command("status")
@click.argument("instance", default="all")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per instance and line")
@pass_ctx
def ctl_status(c: Any, instance: str, as_json: bool) -> None:
    """Each instance's binds, window use, submits in flight, backlog, log level (INSTANCE or all)."""
    _run(c, instance, "status", {}, as_json)


@ctl_group.command("suspend")
@click.argument("instance")
@pass_ctx
def ctl_suspend(c: Any, instance: str) -> None:
    """Stop taking MOs (the SMSC redelivers them), send what is queued within smsc.drain_timeout, unbind; stay unbound."""
    _run(c, instance, "suspend", {})


@ctl_group.command("resume")
@click.argument("instance")
@pass_ctx
def ctl_resume(c: Any, instance: str) -> None:
    """Bind again after a suspend."""
    _run(c, instance, "resume", {})


@ctl_group.command("log-level")
@click.argument("instance")
@click.argument("level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False))
@pass_ctx
def ctl_log_level(c: Any, instance: str, level: str) -> None:
    """Change the log level until the next reload (not below the level the process started with)."""
    _run(c, instance, "log_level", {"level": level.upper()})


@ctl_group.command("reload")
@click.argument("instance")
@pass_ctx
def ctl_reload(c: Any, instance: str) -> None:
    """Reload the configuration, as SIGHUP does; says whether it was applied."""
    _run(c, instance, "reload", {})
