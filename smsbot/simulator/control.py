"""HTTP/JSON control API of the simulated SMSC (what handsets and testers talk to), and its web page.

The simulated ISMG (`SimIsmg`, CMPP) serves the same API and page: its port is ``cmpp_port``
where the SMSC's is ``smpp_port`` (``"protocol": "cmpp"`` in ``/healthz`` and ``/web/state``);
``POST /mo`` takes ``from``, ``to``, ``text`` and ``"msg_fmt"`` (0, 8 or 15; ``"data_coding"``
0 or 8 is read as it) and refuses the SMPP-only options; fault statuses are CMPP Results
(``throttle_status`` 8 by default, at most 255); the profile is `cmpp_profile`'s; ``POST
/partial`` announces 200 octets by default; ``POST /raw`` is SMPP's only.

Every response is JSON (except the page, its files and the event stream). Errors are
``{"error": "..."}`` with status 400 (bad input), 403, 404 or 405. A POST carrying an ``Origin``
header of another site than the ``Host`` it was sent to is refused (403): a web page elsewhere
cannot drive the simulator through the tester's browser. Clients that send no ``Origin`` (curl,
the handset CLI, tests) are not affected.

``GET /``
    The testers' page (``smsbot/simulator/web/``: plain HTML, CSS and JavaScript, nothing fetched
    from elsewhere): handsets side by side, the MO options and fault modes as controls, the binds,
    a live log. ``GET /static/<file>`` serves its files.

``GET /events``
    Server-sent events (``text/event-stream``) of what the simulator sees (`events.SimEvents`):
    first ``hello`` (``{"instance", "seq", "reset", ...}`` plus the state of ``GET /web/state``;
    with ``"reset": true`` also ``"log"``: the latest events up to ``seq``, oldest first, as
    ``{"kind", "data"}``, for the page's log),
    then ``item`` (a conversation item, MO or MT, as it is now: see ``GET /web/conversation``),
    ``bind`` (``{"event": "opened"|"closed", "bind", "binds"}``), ``submit`` (a submit_sm answered
    with an error or never answered: an entry of ``GET /submits``), ``faults`` (the new plan),
    ``profile`` (as ``GET /profile``), ``note`` (``{"text"}``, actions such as a drop) and, every second
    when they changed, ``stats`` (``GET /stats`` plus ``"submits_seen"``). Every event but
    ``stats`` has an ``id:`` (its sequence number); a client reconnecting with ``Last-Event-ID``
    gets what it missed, or a ``hello`` with ``"reset": true`` when that is no longer kept (then it
    should fetch the conversations again). A comment line every 15 s keeps idle streams alive.

``GET /web/state``
    → 200 ``{"instance", "seq", "protocol", "smpp_port" (an ISMG: "cmpp_port"), "binds", "faults", "profile", "short_codes",
    "msisdns" (most recently active first), "stats", "timezone" (the zone the page shows times in:
    the bot's ``billing.timezone``, an IANA name or ``+08:00``), "send_receipts"}``.

``GET /web/conversation/<msisdn>``
    → 200 ``{"msisdn", "seq", "items": [...]}``, oldest first (the latest 300): MOs
    ``{"kind": "mo", "id", "msisdn", "peer" (short code), "text", "parts", "carrier", "options"
    (the POST /mo options asked), "t", "state", "waiting_bind", "redeliveries", "last_status",
    "error", "seq"}`` and whole MTs ``{"kind": "mt", "id", "msisdn", "peer" (sender), "text",
    "parts", "data_coding", "t", "message_ids", "receipt_asked" (its submit_sm asked for a delivery
    receipt: the bot's ``smsc.registered_delivery``), "receipts": [{"message_id", "stat", "err",
    "state" (of the receipt's delivery to the ESME: queued|delivered|rejected), "error"}],
    "inbox": "waiting"|"picked up", "seq"}``. ``seq`` grows with every change: keep the highest.

    Watching is not picking up: the page and ``/events`` never mark a message shown, so a CLI
    handset (``GET /inbox``) on the same MSISDN still gets every message exactly once; the page
    shows each MT's ``inbox`` state. A page handset with "pick up" on takes its MSISDN's messages
    from the inbox as they arrive (``GET /inbox/<msisdn>``), like a phone that is switched on.

``POST /mo``
    Body ``{"from": MSISDN, "to": SHORT_CODE, "text": TEXT}`` plus optional
    ``"split"``: ``"udh8"`` (default for long text) | ``"udh16"`` | ``"sar"``;
    ``"shuffle"``: bool (deliver the parts out of order);
    ``"duplicate"``: bool (send each deliver_sm a second time after its resp, as after a lost resp);
    ``"tlvs"``: ``{"0x1401": "hex bytes", ...}`` (extra TLVs on every part, tag as hex or int);
    ``"data_coding"``: int (force 0, 1, 3, 8, ... instead of GSM-7-else-UCS-2);
    ``"carrier"``: ``"deliver_sm"`` | ``"data_sm"`` (single-part MOs; overrides the profile's
    ``data_sm_every``); ``"naive_split"``: bool (cut long text at the part size even inside a
    UCS-2 surrogate pair or a GSM-7 escape, as some phones do); ``"lost_resp"``: bool (the ESME's
    resp to the last part is lost with the link: the connection is dropped right after it and the
    identical MO is redelivered on the next bind); ``"redeliver"``: bool, default true (false with
    ``lost_resp``: the SMSC takes the MO as delivered and never sends it again, as some do).
    The profile (``POST /profile``) shapes the PDUs: TP-MR or not, service_type, message_payload...
    → 202 ``{"id": "mo1", "parts": 2, "user_message_reference": 513, "carrier": "deliver_sm",
    "state": "queued"}`` (user_message_reference null when the profile sends none).

``GET /mo/<id>``
    → 200 outcome: ``{"id", "state": "queued"|"delivering"|"delivered"|"rejected"|"cancelled",
    "parts", "parts_delivered", "attempts", "redeliveries", "last_status", "last_error", "history",
    "carrier", "wire": [hex of each part's PDU as last written], ...}``.

``GET /inbox/<msisdn>?wait=SECONDS``
    → 200 ``{"messages": [{"id", "from", "to", "text", "parts", "data_coding", "received_at",
    "message_ids"}, ...]}``: every whole MT not yet shown to that MSISDN, now marked shown. When
    none is waiting, waits up to ``wait`` seconds (default 0, max 300) for the first one, then also
    returns those arriving within 0.2 s after it. ``?peek=1`` returns the pending ones without
    marking them; ``?history=1`` returns the recently shown ones.

``GET /stats``
    → 200 counters: binds, binds_total, bind_failures, mo_injected, mo_delivered, mo_redelivered,
    mo_rejected, mo_duplicates_sent, mo_parts_sent, mo_queued, mt_received, mt_parts_received,
    mt_incomplete, receipts_sent, enquire_links_sent, generic_nacks_sent, connections_dropped,
    mailbox_dropped, mo_data_sm_sent, partials_sent, tls_handshakes, tls_handshake_failures; and what the ESME did: submits_received (every submit_sm), submits_throttled
    (answered with a temporary error, not stored), submits_rejected (answered with a permanent
    error), submits_dropped (never answered: the connection was dropped first),
    max_outstanding_submits (the most submit_sm of one bind awaiting their resp at once, i.e. the
    ESME's window, observable with ``resp_delay_ms``), enquire_links_received, unbinds_received.

``POST /faults``
    Body: the fault plan, replacing the previous one (knobs left out are off; ``{}`` clears it).
    Submits are counted from this call, across binds (``n`` = 1, 2, ... in ``/submits``):
    ``"resp_delay_ms"``: number - every submit_sm_resp goes out that much later (the submit is
    stored just before its resp is written; resps keep their order);
    ``"throttle_first": N`` - the first N submits are answered ``throttle_status``;
    ``"throttle_every": N`` - every Nth submit (N, 2N, ...) is answered ``throttle_status``;
    ``"throttle_status"``: int or hex string, default 0x58 ESME_RTHROTTLED (or 0x14 RMSGQFUL, ...);
    ``"max_tps"``: number - per bind, a submit arriving when ``max_tps`` submits were let through
    within the last second is answered ESME_RTHROTTLED (a sliding one-second window);
    ``"reject"``: ``{"MSISDN": status}`` - submits to that destination get that permanent status
    (int or hex string, e.g. ``"0x0B"`` ESME_RINVDSTADR);
    ``"drop_after_submit": N`` - the Nth submit is neither answered nor stored: the connection is
    dropped on receiving it (the ESME must send it again after reconnecting);
    ``"drop_after_resp": N`` - the Nth submit is answered as usual, then the connection is dropped
    at once (the ESME has the resp: it must NOT send it again).
    Throttled and rejected submits are never stored. A drop is abrupt for SMPP (no unbind; nothing
    more is answered; what the ESME sends after it is read and discarded) but ends TCP with a FIN,
    never a reset, so every resp written before the drop reaches the ESME.
    Precedence per submit: drop_after_submit, throttle_first / throttle_every, max_tps, reject.
    → 200 the plan plus ``"submits_seen"``. Unknown knobs or bad values → 400.
    In process: ``SimSmsc.set_faults(**plan)``.

``GET /faults``
    → 200 the active plan plus ``"submits_seen"`` (submits judged since it was set).

``GET /submits``
    → 200 ``{"submits": [{"t", "n", "conn", "seq", "to", "status"}, ...], "peak_per_second": N}``:
    the latest 10,000 submit_sm in arrival order (``SimSmsc.submit_log()``); ``t`` is the arrival
    (epoch seconds), ``status`` 0 accepted, non-zero the error answered, null never answered
    (dropped); ``peak_per_second`` the most of them arriving within any one second.

``GET /binds``
    → 200 ``{"binds": [{"id", "mode", "system_id", "peer"}, ...]}``.

``POST /drop``
    Close every SMPP connection abruptly (reconnect tests) → 200 ``{"dropped": N}``.

``POST /raw``
    Body ``{"hex": "..."}`` (a whole PDU, written verbatim) or ``{"command_id": 5, "hex": body}``
    (header added), optional ``"wait"`` seconds for the resp → 200 ``{"sequence", "resp_command_id",
    "resp_status"}``.

``GET /healthz``
    → 200 ``{"ok": true, "protocol": "smpp", "smpp_port": N, "binds": N}`` (an ISMG:
    ``"protocol": "cmpp", "cmpp_port": N``).

``GET /profile``
    → 200 ``{"profile": "default"|"field", "flags": {...every flag...}, "overrides": {...}}``.

``POST /profile``
    Body ``{"profile": "field"}`` switches to that profile's flags; other keys are flags set on top
    (``{"profile": "field", "data_sm_every": 0}``); without ``"profile"`` only the given flags of
    the current behaviour change (``{"receipt_outcomes": {"13800138000": "UNDELIV:034"}}``).
    Flags (see `smsbot.simulator.profiles`): user_message_reference, service_type,
    sequence_start, sequence_max, payload_tlv, payload_nul, data_sm_every, receipt_data_coding,
    receipt_tlvs, message_id_cycle, receipt_outcomes. → 200 as ``GET /profile``.

``POST /partial``
    Body ``{"length": 60000, "octets": 40}`` (both optional): on a receiver-capable bind, a
    deliver_sm header announcing ``length`` octets followed by ``octets`` octets of body, then
    silence on that connection (nothing more written or answered; it stays open until the ESME
    closes it). → 200 ``{"conn", "sequence", "announced", "octets"}``.

``POST /message_ids/restart``
    Message ids start again from the first (as after an SMSC restart). → 200 ``{"restarted": true}``.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from .errors import SimSmscError
from .faults import peak_rate

if TYPE_CHECKING:
    from .ismg import SimIsmg
    from .smsc import SimSmsc

log = logging.getLogger("smsbot.simulator.control")

MAX_WAIT = 300.0
MAX_BODY = 1 << 20
SSE_KEEPALIVE = 15.0  # seconds between comment lines on an idle event stream
SSE_STATS_EVERY = 1.0  # seconds between stats events (sent only when they changed)
SSE_COALESCE = 0.05  # after a batch of events, let the next ones gather this long
WEB_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


class BadRequest(Exception):
    pass


def _parse_tag(key: Any) -> int:
    try:
        if isinstance(key, int):
            return key
        k = str(key).strip().lower()
        return int(k, 16) if k.startswith("0x") else int(k)
    except ValueError:
        raise BadRequest(f"bad TLV tag {key!r}: use hex like '0x1401' or an integer") from None


def _parse_tlvs(raw: Any) -> dict[int, bytes]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequest('"tlvs" must be an object {"0x1401": "hex", ...}')
    out: dict[int, bytes] = {}
    for k, v in raw.items():
        tag = _parse_tag(k)
        if not 0 <= tag <= 0xFFFF:
            raise BadRequest(f"TLV tag {k!r} out of range 0..0xFFFF")
        if not isinstance(v, str):
            raise BadRequest(f"TLV {k!r} value must be a hex string")
        try:
            out[tag] = bytes.fromhex(v)
        except ValueError:
            raise BadRequest(f"TLV {k!r} value is not hex: {v!r}") from None
    return out


def parse_mo_request(body: Any) -> dict[str, Any]:
    """Validate a POST /mo body into `SimSmsc.inject_mo` keyword arguments."""
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    unknown = set(body) - {"from", "to", "text", "split", "shuffle", "duplicate", "tlvs", "data_coding", "carrier",
                          "naive_split", "lost_resp", "redeliver"}
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    for key in ("from", "to", "text"):
        if key not in body:
            raise BadRequest(f'missing "{key}"')
    msisdn, short_code, text = body["from"], body["to"], body["text"]
    if not isinstance(msisdn, str) or not msisdn.lstrip("+").isdigit():
        raise BadRequest('"from" must be an MSISDN string of digits')
    if not isinstance(short_code, str) or not short_code.isdigit():
        raise BadRequest('"to" must be a short code string of digits')
    if not isinstance(text, str):
        raise BadRequest('"text" must be a string')
    split = body.get("split")
    if split not in (None, "udh8", "udh16", "sar"):
        raise BadRequest('"split" must be "udh8", "udh16" or "sar"')
    for flag in ("shuffle", "duplicate", "naive_split", "lost_resp", "redeliver"):
        if not isinstance(body.get(flag, False), bool):
            raise BadRequest(f'"{flag}" must be true or false')
    dc = body.get("data_coding")
    if dc is not None and (not isinstance(dc, int) or isinstance(dc, bool)):
        raise BadRequest('"data_coding" must be an integer')
    carrier = body.get("carrier")
    if carrier not in (None, "deliver_sm", "data_sm"):
        raise BadRequest('"carrier" must be "deliver_sm" or "data_sm"')
    return {
        "msisdn": msisdn,
        "short_code": short_code,
        "text": text,
        "split": split,
        "shuffle": body.get("shuffle", False),
        "duplicate": body.get("duplicate", False),
        "extra_tlvs": _parse_tlvs(body.get("tlvs")),
        "data_coding": dc,
        "carrier": carrier,
        "naive_split": body.get("naive_split", False),
        "lost_resp": body.get("lost_resp", False),
        "redeliver": body.get("redeliver", True),
    }


CMPP_MO_OPTIONS = {"from", "to", "text", "msg_fmt", "data_coding"}


def parse_cmpp_mo_request(body: Any) -> dict[str, Any]:
    """Validate a POST /mo body for the simulated ISMG into `SimIsmg.inject_mo` keyword arguments."""
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    smpp_only = set(body) - CMPP_MO_OPTIONS
    if smpp_only:
        raise BadRequest(f"not on CMPP: {', '.join(sorted(smpp_only))} (an ISMG MO takes from, to, text, msg_fmt)")
    checked = parse_mo_request({k: body[k] for k in ("from", "to", "text") if k in body})
    fmt = body.get("msg_fmt", body.get("data_coding"))
    if fmt is not None and (isinstance(fmt, bool) or fmt not in (0, 8, 15)):
        raise BadRequest('"msg_fmt" must be 0 (ASCII), 8 (UCS-2) or 15 (GBK)')
    return {"msisdn": checked["msisdn"], "short_code": checked["short_code"], "message": checked["text"],
            "msg_fmt": fmt}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections end
    _raw_body: bytes | None = b""  # this request's body (`_read_body`)

    def log_message(self, fmt: str, *args: Any) -> None:  # route http.server's access log to logging
        log.debug("control %s " + fmt, self.address_string(), *args)

    # -- helpers
    def _send(self, code: int, payload: Any) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_bytes(self, code: int, data: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(data)

    def _cross_origin(self) -> bool:
        """A browser request made by a page of another site (its Origin is not the Host asked)."""
        origin = self.headers.get("Origin")
        if origin is None:
            return False
        return urllib.parse.urlsplit(origin).netloc.lower() != (self.headers.get("Host") or "").lower()

    def _read_body(self) -> None:
        """Read the request's whole body before routing, whatever the route does with it: a body
        left unread would be taken for the start of the next request on a keep-alive connection
        (browsers keep them). Too large or a bad length: nothing read, the connection closes after
        the answer (`_body` then refuses)."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._raw_body = None
            self.close_connection = True
            return
        self._raw_body = self.rfile.read(length) if length else b""

    def _body(self) -> Any:
        raw = self._raw_body
        if raw is None:
            raise BadRequest(f"body too large or bad Content-Length (max {MAX_BODY} octets)")
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadRequest(f"body is not valid JSON: {e}") from None

    def _dispatch(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        query = urllib.parse.parse_qs(url.query)
        sim = self.server.sim
        self._read_body()
        if method == "GET" and self._web(sim, parts, query):
            return
        try:
            if method != "GET" and self._cross_origin():
                code, payload = 403, {"error": f"cross-origin {method} refused (Origin {self.headers.get('Origin')})"}
            else:
                code, payload = self._route(sim, method, parts, query)
        except (BadRequest, SimSmscError) as e:
            code, payload = 400, {"error": str(e)}
        except Exception as e:  # noqa: BLE001 - answer 500 rather than drop the connection
            log.exception("control API error on %s %s", method, self.path)
            code, payload = 500, {"error": f"internal error: {e}"}
        try:
            self._send(code, payload)
        except OSError:
            pass

    def _route(self, sim: SimSmsc | SimIsmg, method: str, parts: list[str], query: dict[str, list[str]]) -> tuple[int, Any]:
        if method == "GET" and parts == ["healthz"]:
            return 200, {"ok": True, "protocol": sim.protocol, f"{sim.protocol}_port": sim.wire_port,
                         "binds": len(sim.binds())}
        if method == "GET" and parts == ["stats"]:
            return 200, sim.stats()
        if method == "GET" and parts == ["binds"]:
            return 200, {"binds": sim.binds()}
        if method == "POST" and parts == ["mo"]:
            parse = parse_cmpp_mo_request if sim.protocol == "cmpp" else parse_mo_request
            return 202, sim.inject_mo(**parse(self._body()))
        if method == "GET" and len(parts) == 2 and parts[0] == "mo":
            st = sim.mo_status(parts[1])
            return (200, st) if st else (404, {"error": f"no MO {parts[1]!r}"})
        if method == "GET" and len(parts) == 2 and parts[0] == "inbox":
            return 200, {"messages": self._inbox(sim, parts[1], query)}
        if method == "POST" and parts == ["faults"]:
            body = self._body()
            if not isinstance(body, dict):
                raise BadRequest("body must be a JSON object of fault knobs")
            return 200, sim.set_faults(**body)
        if method == "GET" and parts == ["faults"]:
            return 200, sim.faults.describe()
        if method == "GET" and parts == ["submits"]:
            submits = sim.submit_log()
            return 200, {"submits": submits, "peak_per_second": peak_rate(e["t"] for e in submits)}
        if method == "GET" and parts == ["web", "state"]:
            return 200, self._state(sim)
        if method == "GET" and len(parts) == 3 and parts[:2] == ["web", "conversation"]:
            return 200, sim.events.conversation(parts[2])
        if method == "POST" and parts == ["drop"]:
            n = sim.drop_connections()
            sim.events.publish("note", {"text": f"dropped {n} connection(s)", "t": time.time()})
            return 200, {"dropped": n}
        if method == "POST" and parts == ["raw"]:
            body = self._body()
            if not isinstance(body, dict) or not isinstance(body.get("hex"), str):
                raise BadRequest('body must be {"hex": "...", optional "command_id", "status", "wait"}')
            try:
                data = bytes.fromhex(body["hex"])
            except ValueError:
                raise BadRequest('"hex" is not hex') from None
            cid = body.get("command_id")
            return 200, sim.inject_raw(
                data,
                command_id=None if cid is None else _parse_tag(cid),
                status=int(body.get("status", 0)),
                wait=min(MAX_WAIT, float(body.get("wait", 0))),
            )
        if method == "GET" and parts == ["profile"]:
            return 200, sim.describe_profile()
        if method == "POST" and parts == ["profile"]:
            body = self._body()
            if not isinstance(body, dict):
                raise BadRequest('body must be a JSON object {"profile": "field", ...flags}')
            flags = dict(body)
            name = flags.pop("profile", None)
            if name is not None and not isinstance(name, str):
                raise BadRequest('"profile" must be a string')
            return 200, sim.set_profile(name, **flags)
        if method == "POST" and parts == ["partial"]:
            body = self._body()
            if not isinstance(body, dict) or set(body) - {"length", "octets"}:
                raise BadRequest('body must be {"length": N, "octets": N} (both optional)')
            try:
                asked = {{"length": "announced"}.get(k, k): int(v) for k, v in body.items()}
            except (TypeError, ValueError):
                raise BadRequest('"length" and "octets" must be integers') from None
            out = sim.send_partial(**asked)
            sim.events.publish("note", {"text": f"partial PDU on bind #{out['conn']}: {out['octets']} of "
                                                f"{out['announced']} octets, then silence", "t": time.time()})
            return 200, out
        if method == "POST" and parts == ["message_ids", "restart"]:
            sim.restart_message_ids()
            sim.events.publish("note", {"text": "message ids start again from the first", "t": time.time()})
            return 200, {"restarted": True}
        if parts and parts[0] in ("mo", "inbox", "stats", "binds", "drop", "raw", "healthz", "faults", "submits",
                                  "profile", "partial", "message_ids", "web", "events", "static"):
            return 405 if len(parts) <= 2 else 404, {"error": f"{method} /{'/'.join(parts)} not supported"}
        return 404, {"error": f"no route {method} /{'/'.join(parts)}"}

    # -- the web page
    def _state(self, sim: SimSmsc | SimIsmg) -> dict[str, Any]:
        return {
            "instance": sim.events.instance,
            "seq": sim.events.seq,
            "protocol": sim.protocol,
            f"{sim.protocol}_port": sim.wire_port,
            "binds": sim.binds(),
            "faults": sim.faults.describe(),
            "profile": sim.describe_profile(),
            "short_codes": list(sim.short_codes),
            "msisdns": sim.events.msisdns(),
            "stats": sim.stats(),
            "timezone": sim.timezone,
            "send_receipts": sim.send_receipts,
        }

    def _web(self, sim: SimSmsc | SimIsmg, parts: list[str], query: dict[str, list[str]]) -> bool:
        """GET /, /static/<file>, /events; False when the path is none of them."""
        if not parts or parts == ["index.html"]:
            name = "index.html"
        elif len(parts) == 2 and parts[0] == "static":
            name = parts[1]
        elif parts == ["events"]:
            self._event_stream(sim, query)
            return True
        else:
            return False
        ctype = WEB_TYPES.get(name[name.rfind("."):] if "." in name else "")
        res = importlib.resources.files(__package__).joinpath("web", name)
        try:
            if ctype is None or name.startswith(".") or "\\" in name or not res.is_file():
                self._send(404, {"error": f"no file {name!r}"})
            else:
                self._send_bytes(200, res.read_bytes(), ctype)
        except OSError:
            pass
        return True

    def _event_stream(self, sim: SimSmsc | SimIsmg, query: dict[str, list[str]]) -> None:
        """Server-sent events until the client goes or the simulator stops (see GET /events)."""
        hub = sim.events
        raw = self.headers.get("Last-Event-ID") or query.get("last_event_id", [""])[-1]
        after = int(raw) if raw.strip().isdigit() else None
        seq = hub.seq
        reset = after is None or after > seq or hub.wait(after, 0) is None
        cursor = seq if reset else after
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"retry: 1000\n\n")
            hello = {**self._state(sim), "seq": cursor, "reset": reset}
            if reset:  # a page starting (again): what happened before, for its log
                hello["log"] = [{"kind": kind, "data": data} for _n, kind, data in hub.recent(cursor)]
            self._sse("hello", hello, cursor if reset else None)
            last_stats: dict[str, Any] | None = {**hello["stats"], "submits_seen": hello["faults"]["submits_seen"]}
            last_write = time.monotonic()
            next_stats = last_write + SSE_STATS_EVERY
            while not hub.closed and not self.server.stopping.is_set():
                events = hub.wait(cursor, 1.0)
                if events is None:  # fell behind what is kept: start again from now
                    cursor = hub.seq
                    self._sse("hello", {**self._state(sim), "seq": cursor, "reset": True}, cursor)
                    events = []
                for n, kind, payload in events:
                    self._sse(kind, payload, n)
                    cursor = n
                now = time.monotonic()
                if events:
                    last_write = now
                if now >= next_stats:
                    next_stats = now + SSE_STATS_EVERY
                    stats = {**sim.stats(), "submits_seen": sim.faults.describe()["submits_seen"]}
                    if stats != last_stats:
                        last_stats = stats
                        self._sse("stats", stats, None)
                        last_write = now
                if now - last_write >= SSE_KEEPALIVE:
                    self.wfile.write(b": keep-alive\n\n")
                    last_write = now
                if events:
                    time.sleep(SSE_COALESCE)
        except OSError:  # the client went away
            pass

    def _sse(self, kind: str, payload: Any, event_id: int | None) -> None:
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        head = f"id: {event_id}\n" if event_id is not None else ""
        self.wfile.write(f"{head}event: {kind}\ndata: {data}\n\n".encode("utf-8"))

    def _inbox(self, sim: SimSmsc | SimIsmg, msisdn: str, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        msisdn = sim.handset_key(msisdn)

        def flag(name: str) -> bool:
            return query.get(name, ["0"])[-1].lower() in ("1", "true", "yes")

        if flag("peek"):
            return [m.to_dict() for m in sim.mailbox.peek(msisdn)]
        if flag("history"):
            return [m.to_dict() for m in sim.mailbox.history(msisdn)]
        try:
            wait = float(query.get("wait", ["0"])[-1])
        except ValueError:
            raise BadRequest('"wait" must be a number of seconds') from None
        if not 0 <= wait <= MAX_WAIT:
            raise BadRequest(f'"wait" must be between 0 and {MAX_WAIT:g}')
        return [m.to_dict() for m in sim.mailbox.take(msisdn, wait)]

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802 - answered in JSON (405/404) like any other route
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], sim: SimSmsc | SimIsmg):
        self.sim = sim
        self.stopping = threading.Event()  # ends the event streams
        super().__init__(addr, _Handler)


class ControlServer:
    """The control API on (host, port); port 0 picks a free one (see `port`)."""

    def __init__(self, sim: SimSmsc | SimIsmg, host: str, port: int):
        self._server = _Server((host, port), sim)
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="simsmsc-control", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
