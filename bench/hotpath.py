"""``python -m bench.hotpath``: the bot's own Python per MO, in one process, without sockets or Redis.

What the bot process does for each MO of workload (a) (``0000`` from a subscriber with three
subscriptions, a 2-part menu reply) at window 10, stage by stage, with the real objects of a
running bot (`Link`, `Dispatcher`, `Store`, `OutboxSender`, the SMPP `Submits`) built from the
bench's configuration, and the I/O cut out:

1. ``read``: a socket read of 10 deliver_sm is framed and decoded into `Inbound` (`Link._handle`:
   `pdu.Framer.feed`, `pdu.decode_deliver_sm`, `codec.inbound_from_deliver_sm`);
2. ``prepare``: the batch is routed and its MO-script calls built (`Dispatcher.prepare`:
   `msisdn.canonical_inbound`, `Router.route`, `Store.mo_call`);
3. ``commands``: the calls as the commands of the round trip (`ScriptCall.command`) and packed
   as RESP the way the round trip writes them (hiredis `pack_command`);
4. ``finish``: the script replies (made up front, as Redis answers them) into outcomes and outbox
   entries (`Dispatcher.finish`: `Store.finish_batch`, `_parse_result`);
5. ``outbox``: the entries rendered and encoded as submit_sm parts (`OutboxSender.enqueue`:
   `Replies.render_text`, `SmppSubmits.parts`), sent (`take`: sequence numbers), their
   submit_sm_resps decoded and matched (`pdu.decode_submit_sm_resp`, `on_submit_resp`), and the
   records taken (`take_pending`, `recorded`);
6. ``resps``: a deliver_sm_resp per MO (`pdu.encode_deliver_sm_resp`).

Each stage is timed over many batches (fresh outbox entry ids each time), best of ``--repeat``
runs, and printed in µs per MO with the sum. It measures CPU work only: no syscall, no wait, no
Redis; what the profile (`bench.profile`) calls the bot's µs per MO also holds the loop's select,
send and recv, the pipeline's bookkeeping and the metrics. On a shared machine the best of several
runs is the figure to compare (the noise only adds).

Examples::

    python -m bench.hotpath
    python -m bench.hotpath --batches 2000 --repeat 9 --json /tmp/hotpath.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

WINDOW = 10  # MOs per socket read and per batch, as at window 10
SERVICES = ("VIDEO", "MUSIC", "NEWS")  # bench.sut's SEED_SERVICES: the menu lists them
SUBSCRIBER_BASE = 13900000000
SHORT_CODE = "10086"


class _NoSocket:
    """A link's socket that is never used (the harness hands frames to the link itself)."""

    def fileno(self) -> int:
        return -1


def build() -> SimpleNamespace:
    """The bot's objects for the bench configuration (no Redis is dialled)."""
    import redis

    from bench.sut import write_config
    from commands import all_commands, lua_sources
    from smsbot import pdu
    from smsbot.config import load as load_config
    from smsbot.dispatch import Dispatcher
    from smsbot.identity import SenderIdentity
    from smsbot.live import Live
    from smsbot.messages import DeliverSm
    from smsbot.outbox import OutboxSender
    from smsbot.router import Router
    from smsbot.session import Link, SequenceGenerator
    from smsbot.store import Store
    from smsbot.submits import SmppSubmits

    with tempfile.TemporaryDirectory(prefix="smshotpath-") as workdir:  # the config file only: nothing is stored
        settings = load_config(write_config(Path(workdir), 1, "redis://127.0.0.1:1/0"))
    store = Store(settings, redis.Redis.from_url("redis://127.0.0.1:1/0"), "nowhere", lua_sources())
    live = Live(settings, Router(settings, all_commands()))
    sequences = SequenceGenerator()
    sender = OutboxSender(live, sequences, store.keys, submits=SmppSubmits(live))
    sender.window = 1 << 20  # every part of a batch goes out at once (the window is not what is measured)
    identity = SenderIdentity("hotpath", tuple(store.keys.lease_prefix(n) for n in range(store.keys.shards)))
    link = Link(_NoSocket(), True, True, "127.0.0.1:1/smsbot transceiver")  # type: ignore[arg-type]
    msisdns = [str(SUBSCRIBER_BASE + i) for i in range(1000)]
    return SimpleNamespace(settings=settings, store=store, live=live, sender=sender, identity=identity, link=link,
                           dispatcher=Dispatcher(live, store), msisdns=msisdns, pdu=pdu, DeliverSm=DeliverSm)


def _reads(env: SimpleNamespace, batches: int) -> list[bytes]:
    """`batches` socket reads of WINDOW deliver_sm each, as the load SMSC sends them."""
    pdu, out, seq = env.pdu, [], itertools.count(1)
    for b in range(batches):
        chunk = []
        for i in range(WINDOW):
            n = next(seq)
            chunk.append(pdu.encode_deliver_sm(env.DeliverSm(
                sequence=n, source_addr_ton=1, source_addr_npi=1, source_addr=env.msisdns[n % len(env.msisdns)],
                dest_addr_ton=0, dest_addr_npi=0, destination_addr=SHORT_CODE, data_coding=0, short_message=b"0000",
                tlvs={0x0204: (n & 0xFFFF).to_bytes(2, "big")})))
        out.append(b"".join(chunk))
    return out


_entry_ids = itertools.count(1)


def _script_replies(n: int) -> list[Any]:
    """What the MO script returns for a 0000 whose menu this sender sends itself (`steps.MoResult`)."""
    data = json.dumps({"items": list(SERVICES), "truncated": False, "total": len(SERVICES)},
                      separators=(",", ":")).encode()
    return [[b"menu_sent", [[f"1700000000000-{next(_entry_ids)}".encode(), b"subscriptions.menu", data]], None]
            for _ in range(n)]


def run(batches: int = 1000, repeat: int = 7) -> dict[str, Any]:
    from hiredis import pack_command

    from smsbot.session import Received

    env = build()
    link, dispatcher, store, sender, identity = env.link, env.dispatcher, env.store, env.sender, env.identity
    encode_resp, decode_resp = env.pdu.encode_deliver_sm_resp, env.pdu.decode_submit_sm_resp
    sha = store.mo_sha
    resp_body = b"0123456789abcdef\0"  # a submit_sm_resp's message_id

    def one_run() -> dict[str, float]:
        reads = _reads(env, batches)
        replies = [_script_replies(WINDOW) for _ in range(batches)]
        spent = dict.fromkeys(("read", "prepare", "commands", "finish", "outbox", "resps"), 0.0)
        clock = time.perf_counter
        for b in range(batches):
            t0 = clock()
            got = link._handle(link.framer.feed(reads[b]), Received())
            mos = [mo for mo, _reply in got.mos]
            t1 = clock()
            batch = dispatcher.prepare(mos, identity, number=b + 1, mark=b)
            t2 = clock()
            shas = store.handler_shas
            for c in batch.calls:
                pack_command(c.command(shas.get(c.argv.handler, sha)))
            t3 = clock()
            batch.roundtrip, batch.raw = SimpleNamespace(cmds=()), replies[b]
            result = dispatcher.finish(batch)
            t4 = clock()
            sender.enqueue(result.entries)
            sent = sender.take()
            for seq in list(sender._inflight)[: len(sent)]:
                sender.on_submit_resp(seq, 0, decode_resp(resp_body))
            acks, _writes, _parts = sender.take_pending()
            sender.recorded(acks)
            t5 = clock()
            for mo, reply in got.mos:
                encode_resp(reply.sequence, 0)
            t6 = clock()
            assert len(sent) == 2 * WINDOW and all(oc.outcome == "menu_sent" for oc in result.outcomes), result.outcomes[:1]
            for k, dt in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
                spent[k] += dt
        mos_total = batches * WINDOW
        return {k: v * 1e6 / mos_total for k, v in spent.items()}

    one_run()  # warm-up: caches of a running bot (router, renderers, segments) are full
    runs = [one_run() for _ in range(repeat)]
    best = {k: round(min(r[k] for r in runs), 2) for k in runs[0]}
    totals = sorted(sum(r.values()) for r in runs)
    return {"window": WINDOW, "batches": batches, "repeat": repeat, "us_per_mo_best": best,
            "total_best_stagewise": round(sum(best.values()), 2), "total_runs": [round(t, 2) for t in totals]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=1000, help="batches of 10 MOs per run (default 1000)")
    ap.add_argument("--repeat", type=int, default=7, help="runs; the best of them is printed (default 7)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args(argv)
    if args.batches < 1 or args.repeat < 1:
        ap.error("--batches and --repeat must be >= 1")
    res = run(args.batches, args.repeat)
    print(f"bot Python per MO, workload (a) at window {res['window']} (µs, best of {res['repeat']} runs of "
          f"{res['batches']} batches):")
    for k, v in res["us_per_mo_best"].items():
        print(f"  {k:9s} {v:6.2f}")
    print(f"  {'total':9s} {res['total_best_stagewise']:6.2f}   (whole runs: {', '.join(map(str, res['total_runs']))})")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
