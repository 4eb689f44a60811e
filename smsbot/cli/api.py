"""`smsbot api`: serve the HTTP API (`smsbot.api`) until SIGINT/SIGTERM.

    smsbot api [--host 127.0.0.1] [--port 8080]

Host and port default to ``api.host`` / ``api.port`` (``SMSBOT_API_HOST`` / ``SMSBOT_API_PORT``;
port 0 there means 8080 here). Tokens come from ``api.tokens`` or ``SMSBOT_API_TOKENS``; without
any, every request but ``/status``, ``/docs`` and ``/openapi.json`` is refused (401), which the
command says. Redis must answer first: it is checked before the command announces where it listens.
"""

from __future__ import annotations

import click

from smsbot import log
from smsbot.cli.group import Ctx, main, open_store, pass_ctx, time_zone


@main.command("api")
@click.option("--host", default=None, help="address to listen on (default api.host, 127.0.0.1)")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="port (default api.port, else 8080)")
@pass_ctx
def api_cmd(c: Ctx, host: str | None, port: int | None) -> None:
    """Serve the HTTP API (orders, uses, usage, notices, subscriptions, MT records, status; docs at /docs)."""
    from smsbot import ports
    from smsbot.api.app import DEFAULT_PORT, serve

    s = c.settings
    host = host or s.api.host
    port = port if port is not None else (s.api.port or DEFAULT_PORT)
    ports.check([ports.Listener(host, port, "the HTTP API", "api.port", "SMSBOT_API_PORT", "--port",
                                "another `smsbot api` or `smsbot run` with api.port?")])
    open_store(c).close()  # Redis answers (else one line, exit 2 or 3) before the API says where it listens
    log.setup(s.log, zone=time_zone(c))
    click.echo(f"smsbot: {c.where()}", err=True)
    names = [t.split(":", 1)[0] for t in s.api.tokens]
    if names:
        click.echo(f"HTTP API on http://{host}:{port}/ (docs: /docs); tokens: {', '.join(names)}", err=True)
    else:
        click.echo(f"HTTP API on http://{host}:{port}/ (docs: /docs); no token configured (api.tokens or "
                   "SMSBOT_API_TOKENS=name:secret:scopes): every request needing one gets 401", err=True)
    serve(s, host, port)
