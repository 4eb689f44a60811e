"""Load test of the HTTP API (issue 12): post N orders (default 10,000) through ``POST /v1/orders``,
report orders/s, and check that every order's charge reminder reached the simulated SMSC once.

    python -m bench.api_load [--orders 10000] [--clients 4] [--api-procs 2] [--window 32] [--json FILE]

What runs: a fresh work directory with its own bundled Redis; the simulated SMSC in this process;
``smsbot run`` and ``--api-procs`` ``smsbot api`` processes (each on its own port, sharing the one
Redis, as several API processes may); ``--clients`` client processes, each posting its share of the
orders over one kept-alive HTTP connection (pipelined, ``--window`` requests at a time), round-robin over the API processes. Every order is for
a distinct subscriber (13700000000 + i), so "delivered once" is exact: the simulator's inbox of
each number holds one message, the reminder. Ingest rate = orders / (last 202 - first request);
delivery is waited for afterwards (at most ``--deliver-timeout`` s) and reported separately.
Exit 0 when every order got 202 and every reminder arrived exactly once, else 1.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BASE = 13700000000
TOKEN = "bench-secret-0001"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _smsbot() -> list[str]:
    exe = Path(sys.executable).with_name("smsbot")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "smsbot.cli"]


def _post_slice(args: tuple[list[int], int, int]) -> tuple[int, int, float, float]:
    """One client: post orders for indexes `idx` to port; (ok, failed, first start, last end).

    The load generator must cost less than what it measures: the requests are built before the
    clock starts and sent HTTP/1.1-pipelined over one connection, `window` at a time (the server
    answers them in order); only the status lines and Content-Length are parsed."""
    idx, port, window = args
    reqs = []
    for i in idx:
        body = json.dumps({"msisdn": str(BASE + i), "service": "VIDEO", "order_id": f"bench-{i}"}).encode()
        reqs.append(b"POST /v1/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + TOKEN.encode()
                    + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    buf = b""
    ok = bad = 0
    t0 = time.time()
    for k in range(0, len(reqs), window):
        batch = reqs[k:k + window]
        sock.sendall(b"".join(batch))
        for _ in batch:
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise SystemExit("the API closed the connection")
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buf) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    raise SystemExit("the API closed the connection")
                buf += chunk
            buf = buf[length:]
            if status == 202:
                ok += 1
            else:
                bad += 1
    t1 = time.time()
    sock.close()
    return ok, bad, t0, t1


def _wait_http(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/openapi.json")
            if c.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the API on port {port} did not start")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--api-procs", type=int, default=2)
    ap.add_argument("--window", type=int, default=32, help="requests pipelined at once per client connection")
    ap.add_argument("--deliver-timeout", type=float, default=120.0)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)

    sys.path.insert(0, str(REPO))
    from smsbot import config
    from smsbot.simulator.smsc import SimSmsc

    work = Path(tempfile.mkdtemp(prefix="smsbot-api-load-"))
    raw = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    raw["data_dir"] = str(work / "var")
    raw["log"]["level"] = "WARNING"
    raw["simulator"].update({"smpp_port": 0, "control_port": 0})
    raw["smsc"]["registered_delivery"] = 0
    settings = config.from_dict(raw)
    sim = SimSmsc.from_settings(settings, control=False).start()
    raw["smsc"].update({"host": "127.0.0.1", "port": sim.smpp_port})
    cfg = work / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    env = {**os.environ, "SMSBOT_API_TOKENS": f"bench:{TOKEN}:events", "SMSBOT_API_RATE_PER_SECOND": "1000000",
           "SMSBOT_API_BURST": "1000000"}
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        log = open(work / "bot.log", "wb")
        logs.append(log)
        procs.append(subprocess.Popen([*_smsbot(), "--config", str(cfg), "run"], env=env, stdout=log, stderr=log, cwd=work))
        ports = []
        for k in range(a.api_procs):
            port = _free_port()
            log = open(work / f"api{k}.log", "wb")
            logs.append(log)
            procs.append(subprocess.Popen([*_smsbot(), "--config", str(cfg), "api", "--port", str(port)], env=env,
                                          stdout=log, stderr=log, cwd=work))
            ports.append(port)
        for port in ports:
            _wait_http(port)
        deadline = time.monotonic() + 30
        while not sim.binds() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not sim.binds():
            raise SystemExit("the bot did not bind: " + (work / "bot.log").read_text(errors="replace")[-1500:])

        slices = [(list(range(c, a.orders, a.clients)), ports[c % len(ports)], a.window) for c in range(a.clients)]
        from bench.sut import proc_cpu_seconds

        cpu0 = {p.pid: proc_cpu_seconds(p.pid) or 0.0 for p in procs}
        self0 = time.process_time()
        with multiprocessing.get_context("fork").Pool(a.clients) as pool:
            t_start = time.time()
            results = pool.map(_post_slice, slices)
        cpu = {p.pid: round((proc_cpu_seconds(p.pid) or 0.0) - cpu0[p.pid], 2) for p in procs}
        cpu_note = (f"CPU s during the posts: bot {cpu[procs[0].pid]}, API " + "+".join(str(cpu[p.pid]) for p in procs[1:])
                    + f", simulator {round(time.process_time() - self0, 2)}")
        ok = sum(r[0] for r in results)
        failed = sum(r[1] for r in results)
        first, last = min(r[2] for r in results), max(r[3] for r in results)
        rate = ok / (last - first) if last > first else 0.0
        print(f"posted {ok} orders ({failed} failed) in {last - first:.2f} s: {rate:,.0f} orders/s "
              f"({a.clients} clients, {a.api_procs} API processes); {cpu_note}")

        numbers = [str(BASE + i) for i in range(a.orders)]
        deadline = time.monotonic() + a.deliver_timeout
        while time.monotonic() < deadline:
            if sum(1 for n in numbers if sim.mailbox.pending_count(n) >= 1) == a.orders:
                break
            time.sleep(0.5)
        time.sleep(1.0)  # anything sent twice would show up by now
        counts = [len(sim.mailbox.peek(n)) for n in numbers]
        once = sum(1 for c in counts if c == 1)
        missing = sum(1 for c in counts if c == 0)
        twice = sum(1 for c in counts if c > 1)
        not_reminder = sum(1 for n in numbers for m in sim.mailbox.peek(n) if "扣费提醒" not in m.text)
        delivered_s = time.time() - t_start
        print(f"reminders: {once} delivered once, {missing} missing, {twice} more than once, {not_reminder} not a reminder "
              f"(all in {delivered_s:.1f} s from the first post)")
        result = {"orders": a.orders, "accepted": ok, "failed": failed, "seconds": round(last - first, 3),
                  "orders_per_s": round(rate, 1), "clients": a.clients, "api_procs": a.api_procs,
                  "delivered_once": once, "missing": missing, "duplicates": twice, "not_reminder": not_reminder,
                  "delivered_after_s": round(delivered_s, 1)}
        if a.json:
            a.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        return 0 if ok == a.orders and once == a.orders and not_reminder == 0 else 1
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in logs:
            f.close()
        sim.stop()
        subprocess.run([*_smsbot(), "--config", str(cfg), "redis", "stop", "--force"], capture_output=True, cwd=work)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
