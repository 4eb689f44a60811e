"""`smsbot demo`: bundled Redis + simulated SMSC + bot in one process, a seeded subscriber, a handset.

Everything is real: the bot binds to the simulator over TCP on loopback, state goes to the
bundled redis-server in ``<data_dir>``; only the three run in one process for convenience.
"""

from __future__ import annotations

import click

from smsbot import admin, log
from smsbot.app import Bot
from smsbot.config import LogSettings, Settings

DEMO_SERVICES = ("VIDEO", "MUSIC", "NEWS")


def run(settings: Settings, msisdn: str, sends: list[str], wait: float) -> int:
    from smsbot.simulator.handset import Handset, format_message, run_handset
    from smsbot.simulator.smsc import SimSmsc

    # the demo's own logs go to a file so the handset prompt stays readable
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    logfile = open(settings.data_dir / "demo.log", "a", encoding="utf-8")
    log.setup(LogSettings(level=settings.log.level, mask_msisdn=settings.log.mask_msisdn, format="json"), stream=logfile)
    sim = SimSmsc.from_settings(settings)
    sim.start()
    bot_settings = settings.model_copy(
        update={"smsc": settings.smsc.model_copy(update={"host": settings.simulator.host, "port": sim.smpp_port})}
    )
    bot = Bot(bot_settings)
    try:
        bot.start()
        if not bot.wait_bound(10):
            click.echo("the bot could not bind to the simulator; see " + str(settings.data_dir / "demo.log"), err=True)
            return 1
        codes = [c for c in DEMO_SERVICES if settings.service(c)] or [s.code for s in settings.services[:3]]
        for code in codes:
            admin.subscribe(settings, msisdn, code, store=bot.store)
        short_code = settings.short_codes[0].code
        url = f"http://{settings.simulator.host}:{sim.control_port}"
        click.echo(f"smsbot demo: simulator SMPP on {settings.simulator.host}:{sim.smpp_port}, handset API {url}")
        click.echo(f"subscriber {msisdn} has {', '.join(codes)}; logs in {settings.data_dir / 'demo.log'}")
        if sends:
            phone = Handset(url, msisdn)
            for text in sends:
                click.echo(f">>> {text}")
                for msg in phone.converse(short_code, text, wait):
                    click.echo(format_message(msg))
            return 0
        click.echo(f"type a message to {short_code} (try 0000, then a number); Ctrl-D or 'quit' to leave")
        return run_handset(url, msisdn, short_code, None, wait)
    finally:
        bot.stop()
        sim.stop()
        logfile.close()
