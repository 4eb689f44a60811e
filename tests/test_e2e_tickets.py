"""End to end: complaints by SMS (TS / 投诉, TSCX) and customer care's answer (`smsbot tickets`).

Through the simulator and real Redis: a subscriber opens a ticket, follows it, customer care lists,
shows and resolves it from the CLI (a separate process), and the answer reaches the handset by
SMS. The subscriber's words are kept exactly as typed (mixed case, Chinese, full width, emoji in
UCS-2, a long concatenated message); the daily limit, the usage hint, another subscriber's
ticket number, two bot instances, and the overdue gauge on /metrics.
"""

from __future__ import annotations

import json
import re
import socket
import urllib.request

from .helpers import wait_until

from commands.complaints import tickets

from .conftest import World, cli, write_config

MSISDN = "13800138000"
OTHER = "13900139000"
NUMBER = re.compile(r"投诉编号(\d+)")


def ticket_of(reply: str) -> str:
    m = NUMBER.search(reply)
    assert m, reply
    return m.group(1)


def audit(world: World, msisdn: str) -> list[dict[str, str]]:
    store = world.bot.store
    return [{k.decode(): v.decode() for k, v in f.items()} for _i, f in store.redis.xrange(store.keys.subscriber(msisdn).audit)
            if f.get(b"msisdn", b"").decode() == msisdn]


def test_open_follow_resolve_and_the_answer_arrives_by_sms(world: World, tmp_path):
    world.subscribe(MSISDN, "VIDEO", "MUSIC")
    phone = world.handset(MSISDN)
    assert "1. 视频会员包月" in phone.ask("0000")  # what the subscriber saw last: the ticket refers to it
    typed = "TS 上个月账单多扣了5元，请核查！"
    opened = phone.ask(typed)
    tid = ticket_of(opened)
    assert "24小时内" in opened and "TSCX" in opened
    t = tickets.get(world.settings, world.bot.store, tid)
    assert t is not None and t.state == "open" and t.msisdn == MSISDN and t.short_code == "10086"
    assert t.text == "上个月账单多扣了5元，请核查！"
    assert t.ref["menu"]["type"] == "menu" and t.ref["menu"]["items"] == ["VIDEO", "MUSIC"]
    assert 23.9 * 3600_000 < t.due_ms - t.opened_ms <= 24 * 3600_000

    listed = phone.ask("TSCX")
    assert "您共有1件投诉，其中1件正在处理" in listed and f"编号{tid}" in listed and "处理中" in listed
    assert f"编号{tid}" in phone.ask(f"TSCX {tid}") and "正在处理中" in phone.ask(f"ｔｓｃｘ{tid}")

    cfg = write_config(world, tmp_path)
    res = cli(cfg, "tickets", "list", "--open")
    assert res.returncode == 0 and res.stdout.startswith(f"{tid}\topen\t") and MSISDN in res.stdout, res.stdout
    shown = cli(cfg, "tickets", "show", tid)
    assert shown.returncode == 0 and "text\t上个月账单多扣了5元，请核查！" in shown.stdout and "last_menu\tmenu: VIDEO, MUSIC" in shown.stdout

    res = cli(cfg, "tickets", "resolve", tid, "--reply", "经核查多扣的5元已退还至您的话费账户，给您带来不便深表歉意。", "--by", "agent7")
    assert res.returncode == 0, res.stderr
    answer = phone.expect(1)[0]["text"]
    assert answer == f"尊敬的客户，您的投诉（编号{tid}）处理结果：经核查多扣的5元已退还至您的话费账户，给您带来不便深表歉意。【中国移动】"
    status = phone.ask(f"TSCX {tid}")
    assert "处理完毕" in status and "已退还" in status
    assert "0件正在处理" in phone.ask("TSCX")

    again = cli(cfg, "tickets", "resolve", tid, "--reply", "second answer")
    assert again.returncode == 1 and "already resolved" in again.stderr and "agent7" in again.stderr
    assert phone.quiet() == [], "a resolved ticket is answered once"
    assert cli(cfg, "tickets", "list", "--open").stdout.strip() == "no open tickets"
    assert cli(cfg, "tickets", "show", "99999").returncode == 1
    full = json.loads(cli(cfg, "tickets", "show", tid, "--json").stdout)
    assert full["state"] == "resolved" and full["by"] == "agent7"

    changes = [(e.get("ticket"), e["old"], e["new"], e["reason"]) for e in audit(world, MSISDN) if "ticket" in e]
    assert changes == [(tid, "none", "open", "ticket_open"), (tid, "open", "resolved", "ticket_resolve")]


def test_the_subscribers_words_are_kept_exactly_as_typed(make_world):
    world = make_world(**{"commands.complaints.max_per_day": 10})
    phone = world.handset(MSISDN)
    texts = {
        "Ts 网速太慢 ABC def！": "网速太慢 ABC def！",  # keyword in any case; the rest keeps its case
        "投诉：信号差😀👍 Mixed Case, punctuation?!": "信号差😀👍 Mixed Case, punctuation?!",  # emoji: UCS-2 surrogate pairs
        "ＴＳ　ｆｕｌｌ ｗｉｄｔｈ ＡＢＣ": "ｆｕｌｌ ｗｉｄｔｈ ＡＢＣ",  # full-width keyword; the text stays full width
    }
    long_text = "我要投诉：" + "本月无缘无故被扣了视频会员包月的费用，我从来没有订购过。" * 4 + "End."
    texts["TS " + long_text] = long_text  # several concatenated parts
    got = {}
    for typed, kept in texts.items():
        tid = ticket_of(phone.ask(typed))
        got[tid] = kept
    store = world.bot.store
    for tid, kept in got.items():
        t = tickets.get(world.settings, store, tid)
        assert t is not None and t.text == kept, (tid, t and t.text, kept)
    assert len(set(got)) == 4


def test_daily_limit_usage_hint_and_other_subscribers_numbers(make_world):
    w = make_world(**{"commands.complaints.max_per_day": 2})
    phone, other = w.handset(MSISDN), w.handset(OTHER)
    assert "请发送TS加投诉内容" in phone.ask("TS")
    assert "请发送TS加投诉内容" in phone.ask("投诉 ")
    first = ticket_of(phone.ask("TS 第一件"))
    ticket_of(phone.ask("投诉 第二件"))
    refused = phone.ask("TS 第三件")
    assert "今日已提交2次投诉" in refused and "投诉编号" not in refused
    assert "您共有2件投诉" in phone.ask("TSCX")
    assert len(tickets.list_tickets(w.settings, w.bot.store)) == 2
    # the other subscriber: their own limit, and the first one's ticket number is "not found"
    mine = ticket_of(other.ask("TS 另一位用户"))
    assert f"未找到编号为{first}的投诉" in other.ask(f"TSCX {first}")
    assert f"未找到编号为{mine}的投诉" in phone.ask(f"TSCX {mine}")
    assert "没有投诉记录" in w.handset("13700137000").ask("TSCX")
    assert "TSCX 107" in phone.ask("TSCX 一")  # not a number: how to ask
    assert "欢迎使用10086" in phone.ask("TSB")  # a word that merely begins with TS: not a complaint


def test_two_instances_number_tickets_uniquely_and_answer_once(world: World):
    second = world.start_bot()
    assert wait_until(lambda: world.sim.stats()["binds"] == 2, 5)
    numbers = [f"1380000{i:04d}" for i in range(8)]
    phones = {n: world.handset(n) for n in numbers}
    opened = {n: ticket_of(p.ask(f"TS 第{i}号用户的投诉")) for i, (n, p) in enumerate(phones.items())}
    assert len(set(opened.values())) == len(numbers), opened
    assert world.bot.mo_count > 0 and second.mo_count > 0, "the MOs were spread over both binds"
    store = world.bot.store
    for n, tid in opened.items():
        tickets.resolve(world.settings, store, tid, f"{n} 的答复", "agent")
    for n, p in phones.items():
        msg = p.expect(1)[0]["text"]
        assert f"编号{opened[n]}" in msg and f"{n} 的答复" in msg
    for p in phones.values():
        assert p.quiet() == [], "each answer sent once"
    for n, p in phones.items():
        assert "处理完毕" in p.ask(f"TSCX {opened[n]}")


def test_overdue_tickets_are_listed_and_counted_in_the_metrics(make_settings):
    from .conftest import World
    from smsbot.simulator.smsc import SimSmsc

    settings = make_settings(**{"commands.complaints.handling_hours": 0.001})  # 3.6 s
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    w = World(settings, SimSmsc.from_settings(settings).start())
    try:
        w.start_bot(settings.model_copy(update={"metrics": settings.metrics.model_copy(update={"port": port})}))
        phone = w.handset(MSISDN)
        tid = ticket_of(phone.ask("TS 慢"))

        def gauge() -> float:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
            return float(re.search(r"^smsbot_tickets_overdue (\S+)$", text, re.M).group(1))

        assert gauge() == 0.0
        assert wait_until(lambda: gauge() == 1.0, 8)
        assert [t.id for t in tickets.list_tickets(w.settings, w.bot.store, overdue_only=True)] == [tid]
        assert "已超过承诺" in phone.ask(f"TSCX {tid}")
        tickets.resolve(w.settings, w.bot.store, tid, "已处理", "agent")
        assert "处理结果：已处理" in phone.expect(1)[0]["text"]
        assert gauge() == 0.0
        assert tickets.list_tickets(w.settings, w.bot.store, overdue_only=True) == []
    finally:
        w.stop()


def test_customer_care_through_the_http_api(world: World):
    """GET /v1/tickets, GET /v1/tickets/{n}, POST /v1/tickets/{n}/resolve: the same as `smsbot tickets`."""
    import urllib.error

    from smsbot.api.app import start_in_thread

    tokens = ["care:care-secret-01:admin+read", "ro:ro-secret-0001:read"]
    s = world.settings.model_copy(update={"api": world.settings.api.model_copy(update={"tokens": tokens, "port": 0})})
    server = start_in_thread(s, "127.0.0.1", 0)
    assert wait_until(lambda: server.started, 10)
    base = "http://127.0.0.1:%d" % server.servers[0].sockets[0].getsockname()[1]

    def call(method: str, path: str, body: dict | None = None, token: str = "care-secret-01") -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    try:
        phone = world.handset(MSISDN)
        tid = ticket_of(phone.ask("投诉 Roaming 费用不对 😠"))
        status, body = call("GET", "/v1/tickets?open=true")
        assert status == 200 and [t["id"] for t in body["tickets"]] == [tid]
        status, t = call("GET", f"/v1/tickets/{tid}", token="ro-secret-0001")
        assert status == 200 and t["text"] == "Roaming 费用不对 😠" and t["state"] == "open" and not t["overdue"]
        assert call("GET", "/v1/tickets/99999")[0] == 404
        assert call("POST", f"/v1/tickets/{tid}/resolve", {"reply": "已核实退还"}, token="ro-secret-0001")[0] == 403
        assert call("POST", f"/v1/tickets/{tid}/resolve", {"reply": "   "})[0] == 422
        status, t = call("POST", f"/v1/tickets/{tid}/resolve", {"reply": "已核实，漫游费已退还。"})
        assert status == 200 and t["state"] == "resolved" and t["by"] == "api:care"
        assert "处理结果：已核实，漫游费已退还。" in phone.expect(1)[0]["text"]
        assert call("POST", f"/v1/tickets/{tid}/resolve", {"reply": "again"})[0] == 409
        assert phone.quiet() == []
        assert call("GET", "/v1/tickets?open=true")[1]["tickets"] == []
    finally:
        server.should_exit = True
        server.thread.join(5)
