"""The core endpoints, per area: notices, subscribers, MT records, status (a command's own, such as
orders, uses and usage reports, are in its package: `commands/<name>/api.py`).

Each write is one atomic Redis step (a Lua script or a single XADD), so a request refused or cut off
by a Redis failure has written nothing; the 503 answer is in `smsbot.api.wire`. The writes are
`async def` on the asyncio client (one short round trip each on the event loop costs less than two
hops to a worker thread, and never blocks the loop); the reads, several round trips, are plain
`def` on the blocking client, run in the threadpool.
"""

from __future__ import annotations

import html
import json
import re
import time
from typing import Any

import redis
from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import HTMLResponse

from commands.orders import reminder_short_code
from smsbot import admin, queue_lag, topology
from smsbot.api.auth import Token
from smsbot.api.checks import Invalid, number, path_number, service
from smsbot.api.models import (CancelOut, Instance, LedgerEntry, LedgerOut, MtOut, NoticeIn, NoticeOut, NoticeStateOut,
                               StatusOut, Subscription, SubscriptionsOut)
from smsbot.api.schema import AUTH, BODY, responses
from smsbot.steps import NOTICE, NoticeArgv, NoticeKeys
from smsbot.timefmt import display_zone, fmt_seconds

_ENTRY_ID = re.compile(r"^[0-9]{1,15}-[0-9]{1,10}$")
EVENT_BACKLOG_CAP = 1000


def build_router(ctx: Any) -> APIRouter:  # ctx: smsbot.api.app.ApiContext
    r = APIRouter()
    settings = ctx.settings
    scope = ctx.auth.scope
    ctx.document_enum("NoticeIn", "short_code", [sc.code for sc in settings.short_codes])

    # -- notices --------------------------------------------------------------------------------
    @r.post("/v1/notices", status_code=202, response_model=NoticeOut, tags=["notices"], responses=responses(AUTH, BODY))
    async def post_notice(body: NoticeIn, tok: Token = scope("notices")) -> Any:
        """An MT to a subscriber through the queue (the same window, TPS and retries as reminders)."""

        bad = Invalid()
        msisdn = number(settings, bad, "body", body.msisdn)
        if (body.text is None) == (body.template is None):
            bad.add("body", "text", "give either text or template (with params)")
        sc_code = body.short_code or (reminder_short_code(settings) or (settings.short_codes[0].code, ""))[0]
        sc = next((s for s in settings.short_codes if s.code == sc_code), None)
        if sc is None:
            bad.add("body", "short_code", f"unknown short code {sc_code!r}; known: {', '.join(s.code for s in settings.short_codes)}")
        bad.check()
        assert sc is not None
        lang = sc.language.value
        if body.text is not None:
            if not body.text.strip():
                bad.add("body", "text", "must not be blank")
                bad.check()
            tpl, data = admin.NOTICE_TEMPLATE, {"text": body.text}
        else:
            tpl, data = str(body.template), dict(body.params)
        try:
            text = ctx.router.render(tpl, data, lang, sc.code)
        except KeyError as e:
            bad.add("body", "template" if body.template else "text", f"unknown template or missing param: {e}")
        except Exception as e:  # a renderer refusing these params
            bad.add("body", "params", f"the template does not render with these params: {e!r}")
        bad.check()
        if not text.strip():
            bad.add("body", "text", "renders empty")
            bad.check()
        now = int(time.time() * 1000)
        fields = admin.notice_fields(msisdn, sc.code, lang, tpl, data, f"api:{tok.name}", now)
        nid = await ctx.run_step(NOTICE, NoticeKeys(queue=ctx.keys.subscriber(msisdn).queue, notices=ctx.keys.notices(msisdn)),
                                 (*NoticeArgv(now=now, keep_ms=settings.dispatch.mt_record_seconds * 1000),
                                  *(x for kv in fields.items() for x in kv)))
        nid = nid.decode() if isinstance(nid, bytes) else str(nid)
        return NoticeOut(id=nid, msisdn=msisdn, short_code=sc.code, text=text, href=f"/v1/subscribers/{msisdn}/notices/{nid}")

    @r.get("/v1/subscribers/{msisdn}/notices/{notice_id}", response_model=NoticeStateOut, tags=["notices"],
           responses=responses(AUTH, 422, (404, "no notice with that id for this subscriber (or older than dispatch.mt_record_seconds)")))
    def get_notice(msisdn: str = Path(max_length=40), notice_id: str = Path(max_length=40), tok: Token = scope("read")) -> Any:
        """Follow a notice posted for this subscriber: still queued, sent (accepted by the SMSC), or
        rejected for good. Another subscriber's notice id, or one that never existed, is 404."""
        bad = Invalid()
        n = number(settings, bad, "path", msisdn)
        if not _ENTRY_ID.match(notice_id):
            bad.add("path", "notice_id", "not a notice id (as POST /v1/notices answered, e.g. 1796105482599-0)")
        bad.check()
        posted = ctx.redis.zscore(ctx.keys.notices(n), notice_id)
        kept_since = time.time() * 1000 - settings.dispatch.mt_record_seconds * 1000
        queued = ctx.redis.xrange(ctx.keys.subscriber(n).queue, min=notice_id, max=notice_id, count=1)
        if queued and queued[0][1].get(b"to") == n.encode():
            return NoticeStateOut(id=notice_id, msisdn=n, state="queued")
        if posted is None or posted < kept_since:
            raise HTTPException(404, f"no notice {notice_id} for {n} (notices are followed for "
                                     f"dispatch.mt_record_seconds = {settings.dispatch.mt_record_seconds} s)")
        rejected = ctx.redis.get(ctx.keys.mt_rejected(f"x{notice_id}"))
        if rejected:
            record = json.loads(rejected)
            return NoticeStateOut(id=notice_id, msisdn=n, state="rejected", record={k: str(v) for k, v in record.items()})
        return NoticeStateOut(id=notice_id, msisdn=n, state="sent")

    # -- subscribers ----------------------------------------------------------------------------
    @r.get("/v1/subscribers/{msisdn}/subscriptions", response_model=SubscriptionsOut, tags=["subscribers"], responses=responses(AUTH, 422))
    def get_subscriptions(msisdn: str = Path(max_length=40), all: bool = False, tok: Token = scope("read")) -> Any:
        """The subscriber's live subscriptions (active and pending); `all=true` adds cancelled ones."""
        n = path_number(settings, msisdn)
        rows = admin.list_subscriptions(settings, n, include_cancelled=all, store=ctx.store)
        return SubscriptionsOut(msisdn=n, subscriptions=[Subscription(service=x.code, name=x.name, state=x.state, since=x.since_ms,
                                                                      price_fen=x.price_fen) for x in rows])

    @r.delete("/v1/subscribers/{msisdn}/subscriptions/{service}", response_model=CancelOut, tags=["subscribers"],
              responses=responses(AUTH, 422, (404, "no live subscription to that service")))
    def cancel_subscription(msisdn: str = Path(max_length=40), service_code: str = Path(alias="service", max_length=32),
                            tok: Token = scope("admin")) -> Any:
        """Cancel by customer care: audited with the token's name (`api:<name>`), exactly as `smsbot subs rm`."""
        bad = Invalid()
        n = number(settings, bad, "path", msisdn)
        code = service(settings, bad, service_code, "path", "service")
        bad.check()
        actor = f"api:{tok.name}"
        outcome = admin.unsubscribe(settings, n, code, store=ctx.store, actor=actor)
        if outcome != "removed":
            raise HTTPException(404, f"{n} has no live subscription to {code}")
        return CancelOut(msisdn=n, service=code, outcome=outcome, by=actor)

    @r.get("/v1/subscribers/{msisdn}/ledger", response_model=LedgerOut, tags=["subscribers"], responses=responses(AUTH, 422))
    def get_ledger(msisdn: str = Path(max_length=40), tok: Token = scope("read")) -> Any:
        """The subscriber's charges (monthly per period, on-demand per use)."""
        n = path_number(settings, msisdn)
        raw = ctx.redis.hgetall(ctx.keys.ledger(n))
        entries = []
        for k, v in sorted(raw.items()):
            rec = json.loads(v)
            entries.append(LedgerEntry(field=k.decode(), fen=int(rec.get("fen", 0)), at=rec.get("at"),
                                       run=None if rec.get("run") is None else str(rec.get("run"))))
        return LedgerOut(msisdn=n, entries=entries, total_fen=sum(e.fen for e in entries))

    # -- MT records and status --------------------------------------------------------------------
    @r.get("/v1/mt/{message_id}", response_model=MtOut, tags=["mt"],
           responses=responses(AUTH, 422, (404, "no record under that id")))
    def get_mt(message_id: str = Path(min_length=1, max_length=128), tok: Token = scope("read")) -> Any:
        """The MT parts sent under an SMSC message id (or ``x<entry>`` of a rejected MT), with their receipts."""
        records = ctx.store.mt_records(message_id)
        if not records:
            raise HTTPException(404, f"no MT record under {message_id!r}")
        return MtOut(message_id=message_id, records=[{k: str(v) for k, v in rec.items()} for rec in records])

    @r.get("/v1/status", response_model=StatusOut, tags=["status"], responses=responses(AUTH))
    def get_status(tok: Token = scope("read")) -> Any:
        """Instances (heartbeats), outbox depth, event backlog, Redis."""
        return status(ctx)

    @r.get("/status", response_class=HTMLResponse, tags=["status"],  # its 503 is JSON like every error: say so
           responses={503: {"description": "Redis is unreachable (Retry-After)",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}})
    def status_page() -> Any:
        """A small human-readable status page (no token: it shows no subscriber data)."""
        s = status(ctx)
        rows = "".join(f"<tr><td>{html.escape(i.instance)}</td><td>{'' if i.age_seconds is None else f'{i.age_seconds:.1f} s ago'}</td>"
                       f"<td>{html.escape(', '.join(i.binds)) if i.bound else 'not bound'}</td><td>{i.outbox_backlog or 0} waiting, "
                       f"{i.outbox_inflight or 0} in flight</td></tr>"
                       for i in s.instances) or "<tr><td colspan=4>no bot instance alive</td></tr>"
        events = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in s.event_backlog.items())
        return HTMLResponse(f"""<!doctype html><html><head><meta charset="utf-8"><title>smsbot status</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em 1em;text-align:left}}</style></head><body>
<h1>smsbot status</h1><p>Redis: <b>{s.redis}</b> &middot; outbox depth: <b>{s.outbox_depth}</b>
(oldest unsent: {'none' if s.outbox_oldest_age_s is None else f'{s.outbox_oldest_age_s:.1f} s'}) &middot; {fmt_seconds(time.time(), display_zone(ctx.settings))}</p>
<h2>Instances</h2><table><tr><th>instance</th><th>heartbeat</th><th>binds</th><th>replies</th></tr>{rows}</table>
<h2>Event streams (unread)</h2><table><tr><th>stream</th><th>unread</th></tr>{events}</table>
</body></html>""")

    return r


def _heartbeat(raw: bytes | None) -> dict[str, Any]:
    """An instance's heartbeat: JSON written by `smsbot.delivery` (an older bot: unix seconds)."""
    if not raw:
        return {}
    try:
        beat = json.loads(raw)
    except ValueError:
        return {}
    return beat if isinstance(beat, dict) else {"at": int(beat)} if isinstance(beat, int) else {}


def status(ctx: Any) -> StatusOut:
    red, keys = ctx.redis, ctx.keys
    red.ping()
    now = time.time()
    instances = []
    prefix = keys.heartbeat("")
    for k in sorted(red.scan_iter(match=prefix + "*", count=500)):
        name = k.decode()[len(prefix):]
        beat = _heartbeat(red.get(k))
        hb = beat.pop("at", None)
        instances.append(Instance(instance=name, heartbeat=hb, age_seconds=None if hb is None else round(max(0.0, now - hb), 1),
                                  **{f: beat[f] for f in Instance.model_fields if f in beat}))
    backlog = {}
    for stream, group in ((keys.order_events(), "orders"), (keys.use_events(), "uses"), (keys.usage_events(), "usage")):
        backlog[stream] = _unread(red, stream, group)
    lag = queue_lag.read(ctx.store, now)
    return StatusOut(redis="ok", instances=instances, outbox_depth=lag.depth, event_backlog=backlog,
                     outbox_oldest_age_s=lag.oldest_age_s, topology=topology.describe(ctx.store))


def _unread(red: Any, stream: str, group: str) -> int:

    try:
        groups = red.xinfo_groups(stream)
    except redis.ResponseError:  # no such stream yet
        return 0
    last = next((g.get("last-delivered-id") for g in groups if g.get("name") in (group, group.encode())), None)
    start = "-" if last is None else "(" + (last.decode() if isinstance(last, bytes) else str(last))
    return len(red.xrange(stream, min=start, max="+", count=EVENT_BACKLOG_CAP))


