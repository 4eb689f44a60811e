"""`smsbot demo`: bundled Redis + simulated SMSC + bot in one process, a seeded subscriber, a handset.

Everything is real: the bot binds to the simulator over TCP on loopback, state goes to the
bundled redis-server in ``<data_dir>``; only the three run in one process for convenience. It
prints ONE banner (config and data, ports, the subscriber, how to leave), then the prompt.
"""

from __future__ import annotations

from datetime import tzinfo

import click

from smsbot import admin, log, ports
from smsbot.app import Bot
from smsbot.config import LogSettings, Settings
from smsbot.private import open_private
from smsbot.simulator.handset import PROMPT, Handset, format_message, run_handset
from smsbot.simulator.smsc import SimSmsc

DEMO_SERVICES = ("VIDEO", "MUSIC", "NEWS")


def run(settings: Settings, msisdn: str, sends: list[str], wait: float, *, where: str = "",
        tz: tzinfo | None = None) -> int:
    sim_cfg = settings.simulator
    listeners = ports.simulator_listeners(sim_cfg.host, sim_cfg.smpp_port, sim_cfg.control_port)
    ports.check(listeners)  # before anything starts: one line naming the port and its setting
    if settings.metrics.port:
        ports.check([ports.metrics_listener(settings.metrics.host, settings.metrics.port)])
    # the demo's own logs go to a file so the handset prompt stays readable
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    logpath = settings.data_dir / "demo.log"
    logfile = open_private(logpath)
    log.setup(LogSettings(level=settings.log.level, mask_msisdn=settings.log.mask_msisdn, format="json"), stream=logfile,
              zone=tz)
    sim = SimSmsc.from_settings(settings)
    bot = None
    try:
        try:
            sim.start()
        except OSError as e:  # taken between the check and now
            raise ports.explain(e, listeners) from None
        bot_settings = settings.model_copy(
            update={"smsc": settings.smsc.model_copy(update={"host": sim_cfg.host, "port": sim.smpp_port})}
        )
        bot = Bot(bot_settings)
        bot.start()
        if not bot.wait_bound(10):
            click.echo(f"smsbot: the bot could not bind to the simulator; see {logpath}", err=True)
            return 1
        codes = [c for c in DEMO_SERVICES if settings.service(c)] or [s.code for s in settings.services[:3]]
        for code in codes:
            admin.subscribe(settings, msisdn, code, store=bot.store)
        short_code = settings.short_codes[0].code
        url = f"http://{sim_cfg.host}:{sim.control_port}"
        click.echo(f"smsbot demo: {where or 'data in ' + str(settings.data_dir.resolve())} (its redis-server keeps "
                   f"running: `smsbot redis stop`); logs in {logpath}")
        click.echo(f"simulator: SMPP {sim_cfg.host}:{sim.smpp_port}, handset API {url} "
                   f"(`smsbot handset NUMBER` from another terminal); subscriber {msisdn} has {', '.join(codes)}")
        if sends:
            phone = Handset(url, msisdn)
            for text in sends:
                click.echo(f"{PROMPT}{text}")
                for msg in phone.converse(short_code, text, wait):
                    click.echo(format_message(msg, tz))
            return 0
        click.echo(f"type a message to {short_code} (try 0000, then a number); 'quit' or Ctrl-D to leave")
        return run_handset(url, msisdn, short_code, None, wait, tz=tz, banner=False)
    finally:
        if bot is not None:
            bot.stop()
        sim.stop()
        logfile.close()
