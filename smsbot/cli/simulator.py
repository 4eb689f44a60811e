"""The simulated SMSC and handsets on it: ``smsbot smsc`` (SMPP), ``smsbot ismg`` (CMPP, China
Mobile's gateway), ``smsbot handset``, and ``smsbot demo``, which starts bundled Redis, the
simulator and a bot together (`smsbot.simulator`, `smsbot.demo`).
"""

from __future__ import annotations

import sys

import click

from smsbot import log
from smsbot.cli.group import Ctx, main, msisdn_or_exit, pass_ctx, time_zone


@main.command("smsc")
@click.option("--smpp-port", type=click.IntRange(0, 65535), default=None,
              help="SMPP port (default simulator.smpp_port, 2775); bots then need smsc.port / SMSBOT_SMSC_PORT set to it")
@click.option("--control-port", type=click.IntRange(0, 65535), default=None,
              help="handset API port (default simulator.control_port, 8775); handsets then need --control")
@pass_ctx
def smsc(c: Ctx, smpp_port: int | None, control_port: int | None) -> None:
    """Run the simulated SMSC (SMPP on simulator.smpp_port, handset API on simulator.control_port).

    Moving it (--smpp-port, or simulator.smpp_port / SMSBOT_SIMULATOR_SMPP_PORT) means telling the
    bot too: `SMSBOT_SMSC_PORT=<port> smsbot run`.
    """
    from smsbot import ports
    from smsbot.simulator.smsc import SimSmsc

    s = c.settings
    sp = s.simulator.smpp_port if smpp_port is None else smpp_port
    cp = s.simulator.control_port if control_port is None else control_port
    listeners = ports.simulator_listeners(s.simulator.host, sp, cp)
    ports.check(listeners)
    log.setup(s.log, zone=time_zone(c))
    sim = SimSmsc.from_settings(s, smpp_port=sp, control_port=cp)
    try:
        sim.start()
    except OSError as e:  # taken between the check and now
        raise ports.explain(e, listeners) from None
    hint = "" if sim.smpp_port == s.smsc.port else f" (run the bot with SMSBOT_SMSC_PORT={sim.smpp_port})"
    click.echo(f"smsbot: simulated SMSC: SMPP on {s.simulator.host}:{sim.smpp_port}{hint}, handset API {sim.control_url}; "
               "Ctrl-C stops it", err=True)
    sim.serve_forever()


DEFAULT_CMPP_PORT = 7890  # the ISMG's customary port, when the bot's smsc is not a CMPP one


@main.command("ismg")
@click.option("--cmpp-port", type=click.IntRange(0, 65535), default=None,
              help=f"CMPP port (default smsc.port when smsc.protocol is cmpp3/cmpp2, else {DEFAULT_CMPP_PORT})")
@click.option("--control-port", type=click.IntRange(0, 65535), default=None,
              help="handset API and web page port (default simulator.control_port, 8775)")
@click.option("--cmpp-version", "cmpp_version", type=click.Choice(["3.0", "2.0"]), default=None,
              help="the highest CMPP version it speaks (default 2.0 for smsc.protocol cmpp2, else 3.0)")
@click.option("--profile", type=click.Choice(["default", "field"]), default=None,
              help="field: space-padded fields, GBK MOs, reused Msg_Ids (default simulator.profile)")
@pass_ctx
def ismg(c: Ctx, cmpp_port: int | None, control_port: int | None, cmpp_version: str | None,
         profile: str | None) -> None:
    """Run the simulated ISMG (China Mobile's CMPP gateway) with the same handset API and web page
    as `smsbot smsc`: it takes the bot's CONNECT with smsc.cmpp.sp_id / secret.

    The bot then needs smsc.protocol cmpp3 (or cmpp2) and smsc.port the CMPP port.
    """
    from smsbot import ports
    from smsbot.cmpp.constants import Version
    from smsbot.simulator.ismg import SimIsmg

    s = c.settings
    port = cmpp_port if cmpp_port is not None else s.smsc.port if s.smsc.is_cmpp else DEFAULT_CMPP_PORT
    cp = s.simulator.control_port if control_port is None else control_port
    who = "another `smsbot ismg`, `smsbot smsc` or `smsbot demo`?"
    listeners = [ports.Listener(s.simulator.host, port, "the simulated ISMG's CMPP port", "smsc.port", "SMSBOT_SMSC_PORT",
                                "--cmpp-port", who),
                 ports.Listener(s.simulator.host, cp, "the simulator's handset API", "simulator.control_port",
                                "SMSBOT_SIMULATOR_CONTROL_PORT", "--control-port", who)]
    ports.check(listeners)
    log.setup(s.log, zone=time_zone(c))
    kw: dict[str, object] = {"port": port, "control": True, "control_port": cp}
    if cmpp_version is not None:
        kw["version"] = Version.V30 if cmpp_version == "3.0" else Version.V20
    if profile is not None:
        kw["profile"] = profile
    sim = SimIsmg.from_settings(s, **kw)
    try:
        sim.start()
    except OSError as e:  # taken between the check and now
        raise ports.explain(e, listeners) from None
    hint = "" if s.smsc.is_cmpp and sim.port == s.smsc.port else (
        f" (run the bot with SMSBOT_SMSC_PROTOCOL=cmpp{3 if sim.version >= Version.V30 else 2} "
        f"SMSBOT_SMSC_PORT={sim.port})")
    click.echo(f"smsbot: simulated ISMG: CMPP {sim.version >> 4}.{sim.version & 15} on {s.simulator.host}:{sim.port}"
               f" (SP {sim.sp_id}){hint}, handset API {sim.control_url}; Ctrl-C stops it", err=True)
    sim.serve_forever()


@main.command("handset")
@click.argument("msisdn")
@click.option("--to", "to", default=None, help="short code (default: the first configured)")
@click.option("--send", "send", default=None, help="text to send, then print the replies and exit")
@click.option("--wait", "wait", type=click.FloatRange(0, 3600), default=None,
              help="seconds to wait for messages (default 3 with --send); without --send: only collect this long, then exit")
@click.option("--control", "control", default=None, help="simulator control URL (default from config)")
@pass_ctx
def handset(c: Ctx, msisdn: str, to: str | None, send: str | None, wait: float | None, control: str | None) -> None:
    """A handset on the simulator for MSISDN: send one text (--send), only collect (--wait N), or,
    with neither, an interactive prompt (line editing and history on a terminal)."""
    from smsbot.simulator.handset import run_handset

    s = c.settings
    number = msisdn_or_exit(msisdn)
    url = control or f"http://{s.simulator.host}:{s.simulator.control_port}"
    collect_only = send is None and wait is not None
    sys.exit(run_handset(url, number, to or s.short_codes[0].code, send, 3.0 if wait is None else wait,
                         collect_only=collect_only, tz=time_zone(c)))


@main.command("demo")
@click.option("--msisdn", default="13800138000", show_default=True, help="the demo subscriber")
@click.option("--send", "sends", multiple=True, help="send these texts in order instead of opening the prompt")
@click.option("--wait", type=float, default=3.0, show_default=True, help="seconds to wait for each reply")
@click.option("--smpp-port", type=click.IntRange(0, 65535), default=None, help="the simulator's SMPP port (default simulator.smpp_port)")
@click.option("--control-port", type=click.IntRange(0, 65535), default=None,
              help="the simulator's handset API port (default simulator.control_port)")
@pass_ctx
def demo(c: Ctx, msisdn: str, sends: tuple[str, ...], wait: float, smpp_port: int | None, control_port: int | None) -> None:
    """Start bundled Redis, the simulated SMSC and the bot, seed a subscriber, open a handset prompt."""
    from smsbot import demo as demo_mod

    s = c.settings
    if smpp_port is not None or control_port is not None:
        sim = s.simulator.model_copy(update={k: v for k, v in (("smpp_port", smpp_port), ("control_port", control_port))
                                             if v is not None})
        s = s.model_copy(update={"simulator": sim})
    sys.exit(demo_mod.run(s, msisdn_or_exit(msisdn), list(sends), wait, where=c.where(), tz=time_zone(c)))
