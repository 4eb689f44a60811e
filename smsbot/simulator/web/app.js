// smsbot simulator page: handsets on the simulated SMSC, its MO options and fault modes, live.
// Plain JavaScript, no build step, nothing fetched from elsewhere. The server side is
// smsbot/simulator/control.py (GET /events, /web/..., POST /mo, /faults, /profile, ...).
//
// Times are shown in the bot's zone (billing.timezone, from GET /web/state), labelled with its
// offset like every time smsbot prints ("10:01:02 +08:00"), never in the browser's own zone.
//
// Watching is not picking up: the live view (GET /events, GET /web/conversation) never marks a
// message shown, so a CLI handset on the same MSISDN still gets every message once. A handset
// here with "pick up from inbox" on takes its MSISDN's messages (GET /inbox/<msisdn>) as a phone
// that is on would.
"use strict";

const STORE_KEY = "smsbot.simulator.handsets.v1";
const THREAD_MAX = 300; // messages kept per handset view
const LOG_MAX = 300;
const DEFAULT_MSISDN = "13800138000";

const $ = (sel, root = document) => root.querySelector(sel);

const state = {
  instance: null,
  shortCodes: ["10086"],
  msisdns: [],
  profile: null,
  faults: null,
  binds: [],
  handsets: [], // Handset objects, in page order
  loggedItems: new Set(),
  zone: "Asia/Shanghai", // billing.timezone, from the stream's hello
  sendReceipts: true, // the simulator sends the receipts asked for
};

// ---------------------------------------------------------------------------------- utilities
async function api(method, path, body) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { /* no JSON body */ }
  if (!r.ok) throw new Error((data && data.error) || `HTTP ${r.status}`);
  return data;
}

const pad = (n) => String(n).padStart(2, "0");
const formatters = new Map(); // zone name -> Intl.DateTimeFormat

// epoch seconds -> the wall clock in state.zone: {date: "2026-11-25", hms: "10:01:02", hm, offset: "+08:00"}
function zoned(t) {
  const ms = t * 1000;
  const fixed = /^([+-])(\d\d):(\d\d)$/.exec(state.zone);
  if (fixed) {
    const d = new Date(ms + (fixed[1] === "-" ? -1 : 1) * (Number(fixed[2]) * 60 + Number(fixed[3])) * 60000);
    return wall(d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), state.zone);
  }
  let f = formatters.get(state.zone);
  if (f === undefined) {
    try {
      f = new Intl.DateTimeFormat("en-US", {
        timeZone: state.zone === "UTC" ? "UTC" : state.zone, hourCycle: "h23", timeZoneName: "longOffset",
        year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
      });
    } catch (e) {
      f = null; // a zone this browser does not know: its own zone, labelled all the same
    }
    formatters.set(state.zone, f);
  }
  if (f === null) {
    const d = new Date(ms);
    const off = -d.getTimezoneOffset();
    const label = `${off < 0 ? "-" : "+"}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
    return wall(d.getFullYear(), d.getMonth() + 1, d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds(), label);
  }
  const p = Object.fromEntries(f.formatToParts(new Date(ms)).map((x) => [x.type, x.value]));
  const off = (p.timeZoneName || "GMT").replace(/^GMT/, "") || "+00:00"; // "GMT+08:00" -> "+08:00"; "GMT" -> UTC
  return wall(p.year, p.month, p.day, p.hour, p.minute, p.second, off);
}

function wall(y, mo, d, h, mi, s, offset) {
  return { date: `${y}-${pad(mo)}-${pad(d)}`, hms: `${pad(h)}:${pad(mi)}:${pad(s)}`, hm: `${pad(h)}:${pad(mi)}`, offset };
}

// "10:01:02 +08:00", with the date when it is not today (in that zone) or `withDate`
function clock(t, withDate) {
  const w = zoned(t);
  const date = withDate || w.date !== zoned(Date.now() / 1000).date ? `${w.date} ` : "";
  return `${date}${w.hms} ${w.offset}`;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") e.textContent = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

const hex = (n) => (n === null || n === undefined ? "" : "0x" + Number(n).toString(16).toUpperCase().padStart(2, "0"));
const STATUS_NAMES = {
  0x08: "ESME_RSYSERR", 0x0b: "ESME_RINVDSTADR", 0x14: "ESME_RMSGQFUL", 0x45: "ESME_RSUBMITFAIL",
  0x58: "ESME_RTHROTTLED", 0x64: "ESME_RX_T_APPN", 0x66: "ESME_RX_R_APPN",
};
const statusText = (s) => (s === null || s === undefined ? "never answered (dropped)" : `${hex(s)}${STATUS_NAMES[s] ? " " + STATUS_NAMES[s] : ""}`);
const validMsisdn = (s) => /^\+?[0-9]{3,20}$/.test(s);
const validCode = (s) => /^[0-9]{1,20}$/.test(s);

// GSM 03.38 default alphabet and its extension table (escape + char counts 2 septets)
const GSM7 = new Set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà");
const GSM7_EXT = new Set("^{}\\[~]|€\f");
function smsCount(text, encoding, split) {
  // -> {coding, units, parts}: as the simulator would split it (mo.py): 1 part up to 160 septets /
  // 70 UCS-2 units; beyond, 153 / 67 per part (UDH 8-bit and sar), 152 / 66 with a 16-bit ref.
  let gsm = encoding === "0";
  let septets = 0;
  if (encoding === "") {
    gsm = true;
    for (const ch of text) {
      if (GSM7.has(ch)) septets += 1;
      else if (GSM7_EXT.has(ch)) septets += 2;
      else { gsm = false; break; }
    }
  } else if (gsm) {
    for (const ch of text) septets += GSM7_EXT.has(ch) ? 2 : 1;
  }
  const units = gsm ? septets : text.length; // UTF-16 code units
  const single = gsm ? 160 : 70;
  const per = (gsm ? 153 : 67) - (split === "udh16" ? 1 : 0);
  const parts = units === 0 ? 0 : units <= single ? 1 : Math.ceil(units / per);
  return { coding: gsm ? "GSM-7" : "UCS-2", units, parts };
}

// ---------------------------------------------------------------------------------- log panel
function log(text, level, t) {
  const ol = $("#log");
  const when = t || Date.now() / 1000;
  const li = el("li", { "data-level": level || "info" }, el("time", { text: clock(when), title: clock(when, true) }), text);
  ol.prepend(li);
  while (ol.children.length > LOG_MAX) ol.lastElementChild.remove();
}

const short = (s, n = 36) => (s.length > n ? s.slice(0, n - 1) + "…" : s).replace(/\s+/g, " ");

// ---------------------------------------------------------------------------------- handsets
const DEFAULT_OPTS = {
  encoding: "", split: "", carrier: "", tlvs: "", shuffle: false, duplicate: false, lostResp: false,
  naive: false, pickup: false,
};

class Handset {
  constructor(cfg) {
    this.msisdn = cfg.msisdn || DEFAULT_MSISDN;
    this.shortCode = cfg.shortCode || state.shortCodes[0] || "10086";
    this.opts = { ...DEFAULT_OPTS, ...(cfg.opts || {}) };
    this.items = new Map(); // id -> {item, node}
    this.root = $("#handset-tpl").content.firstElementChild.cloneNode(true);
    this.thread = $(".thread", this.root);
    this.text = $(".compose .text", this.root);
    this.pickupTimer = null;
    this.wire();
    tick(this.root);
    if (state.instance !== null) this.load(); // else on the stream's hello
  }

  config() { return { msisdn: this.msisdn, shortCode: this.shortCode, opts: { ...this.opts } }; }

  wire() {
    const r = this.root;
    const msisdn = $(".msisdn", r);
    const code = $(".shortcode", r);
    msisdn.value = this.msisdn;
    code.value = this.shortCode;
    msisdn.addEventListener("change", () => {
      const v = msisdn.value.trim();
      msisdn.setAttribute("aria-invalid", validMsisdn(v) ? "false" : "true");
      if (!validMsisdn(v) || v === this.msisdn) return;
      this.msisdn = v;
      save();
      this.load();
      this.updateReceiptSelect();
    });
    code.addEventListener("change", () => {
      const v = code.value.trim();
      if (validCode(v)) { this.shortCode = v; save(); this.rerenderFrom(); }
    });
    $(".remove", r).addEventListener("click", () => removeHandset(this));

    const form = $(".compose", r);
    form.addEventListener("submit", (e) => { e.preventDefault(); this.send(); });
    this.text.addEventListener("keydown", (e) => {
      // Enter sends; Shift+Enter is a new line; Enter that confirms an IME candidate (pinyin) does not send
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        this.send();
      }
    });
    this.text.addEventListener("input", () => { this.autosize(); this.count(); });

    const bind = (sel, key, isCheck) => {
      const input = $(sel, r);
      if (isCheck) input.checked = !!this.opts[key]; else input.value = this.opts[key];
      input.addEventListener("change", () => {
        this.opts[key] = isCheck ? input.checked : input.value;
        save();
        this.summarize();
        this.count();
        if (key === "pickup" && input.checked) this.pickUp();
      });
    };
    bind(".opt-encoding", "encoding");
    bind(".opt-split", "split");
    bind(".opt-carrier", "carrier");
    bind(".opt-tlvs", "tlvs");
    bind(".opt-shuffle", "shuffle", true);
    bind(".opt-duplicate", "duplicate", true);
    bind(".opt-lost-resp", "lostResp", true);
    bind(".opt-naive", "naive", true);
    bind(".opt-pickup", "pickup", true);
    const receipt = $(".opt-receipt", r);
    receipt.addEventListener("change", () => this.setReceiptOutcome(receipt.value));
    this.updateReceiptSelect();
    this.summarize();
    this.count();
  }

  summarize() {
    const o = this.opts;
    const bits = [];
    if (o.encoding === "0") bits.push("GSM-7");
    if (o.encoding === "8") bits.push("UCS-2");
    if (o.split) bits.push(o.split);
    if (o.carrier) bits.push(o.carrier);
    if (o.shuffle) bits.push("shuffled");
    if (o.duplicate) bits.push("duplicated");
    if (o.lostResp) bits.push("lost resp");
    if (o.naive) bits.push("naive split");
    if (o.tlvs.trim()) bits.push("TLVs");
    if (o.pickup) bits.push("picks up");
    $(".opt-summary", this.root).textContent = bits.length ? "· " + bits.join(", ") : "";
  }

  autosize() {
    this.text.style.height = "auto";
    this.text.style.height = Math.min(this.text.scrollHeight + 2, 120) + "px";
  }

  count() {
    const t = this.text.value;
    const c = $(".counter", this.root);
    if (!t) { c.textContent = ""; return; }
    const n = smsCount(t, this.opts.encoding, this.opts.split);
    c.textContent = `${[...t].length} chars · ${n.coding} · ${n.parts} part${n.parts === 1 ? "" : "s"}`;
  }

  body(text) {
    const o = this.opts;
    const b = { from: this.msisdn, to: this.shortCode, text };
    if (o.encoding !== "") b.data_coding = Number(o.encoding);
    if (o.split) b.split = o.split;
    if (o.carrier) b.carrier = o.carrier;
    if (o.shuffle) b.shuffle = true;
    if (o.duplicate) b.duplicate = true;
    if (o.lostResp) b.lost_resp = true;
    if (o.naive) b.naive_split = true;
    if (o.tlvs.trim()) {
      b.tlvs = {};
      for (const pair of o.tlvs.trim().split(/[\s,;]+/)) {
        const m = /^(0x[0-9a-fA-F]{1,4}|[0-9]{1,5})=([0-9a-fA-F]*)$/.exec(pair);
        if (!m || m[2].length % 2) throw new Error(`vendor TLV "${pair}": write tag=hex, e.g. 0x1401=0a0b`);
        b.tlvs[m[1]] = m[2];
      }
    }
    return b;
  }

  async send() {
    const text = this.text.value;
    if (!text.trim()) return;
    if (!validMsisdn(this.msisdn)) { this.note(`"${this.msisdn}" is not an MSISDN`); return; }
    if (!validCode(this.shortCode)) { this.note(`"${this.shortCode}" is not a short code`); return; }
    let body;
    try { body = this.body(text); } catch (e) { this.note(e.message); return; }
    const btn = $(".send", this.root);
    btn.disabled = true;
    try {
      await api("POST", "/mo", body);
      this.text.value = "";
      this.autosize();
      this.count();
    } catch (e) {
      this.note(`not sent: ${e.message}`);
    } finally {
      btn.disabled = false;
      this.text.focus();
    }
  }

  note(text) {
    const atBottom = this.nearBottom();
    this.thread.append(el("div", { class: "note", role: "alert", text }));
    if (atBottom) this.scrollDown();
  }

  async load() {
    // the conversation of this MSISDN as the simulator keeps it, merged with what streams in
    const msisdn = this.msisdn;
    this.items.clear();
    this.thread.replaceChildren();
    try {
      const conv = await api("GET", `/web/conversation/${encodeURIComponent(msisdn)}`);
      if (msisdn !== this.msisdn) return;
      for (const item of conv.items) this.upsert(item);
      this.scrollDown();
      if (this.opts.pickup) this.pickUp();
    } catch (e) {
      this.note(`could not load the conversation: ${e.message}`);
    }
  }

  nearBottom() { return this.thread.scrollHeight - this.thread.scrollTop - this.thread.clientHeight < 60; }
  scrollDown() { this.thread.scrollTop = this.thread.scrollHeight; }

  upsert(item) {
    if (item.msisdn !== this.msisdn) return;
    const have = this.items.get(item.id);
    if (have && have.item.seq >= item.seq) return; // older news
    const atBottom = this.nearBottom();
    const node = renderItem(item, this.shortCode);
    if (have) {
      patch(have.node, node);
      have.item = item;
    } else {
      this.items.set(item.id, { item, node });
      // keep time order: walk back from the end past later messages (usually none)
      let after = this.thread.lastElementChild;
      while (after && after.dataset.t && Number(after.dataset.t) > item.t) after = after.previousElementSibling;
      if (after) after.after(node); else this.thread.prepend(node);
      while (this.items.size > THREAD_MAX) {
        const [oldId, old] = this.items.entries().next().value;
        old.node.remove();
        this.items.delete(oldId);
      }
    }
    if (atBottom) this.scrollDown();
    if (this.opts.pickup && item.kind === "mt" && item.inbox === "waiting") this.pickUpSoon();
  }

  rerenderFrom() {
    for (const entry of this.items.values()) patch(entry.node, renderItem(entry.item, this.shortCode));
  }

  pickUpSoon() {
    if (this.pickupTimer) return;
    this.pickupTimer = setTimeout(() => { this.pickupTimer = null; this.pickUp(); }, 150);
  }

  async pickUp() {
    try {
      await api("GET", `/inbox/${encodeURIComponent(this.msisdn)}`);
    } catch (e) {
      this.note(`pick-up failed: ${e.message}`);
    }
  }

  updateReceiptSelect() {
    const outcomes = (state.profile && state.profile.flags && state.profile.flags.receipt_outcomes) || {};
    const sel = $(".opt-receipt", this.root);
    const v = outcomes[this.msisdn] || "";
    if (v && ![...sel.options].some((o) => o.value === v)) sel.append(el("option", { value: v, text: v }));
    sel.value = v;
  }

  async setReceiptOutcome(value) {
    const outcomes = { ...((state.profile && state.profile.flags && state.profile.flags.receipt_outcomes) || {}) };
    if (value) outcomes[this.msisdn] = value; else delete outcomes[this.msisdn];
    try {
      const p = await api("POST", "/profile", { receipt_outcomes: outcomes });
      setProfile(p);
    } catch (e) {
      this.note(`receipts: ${e.message}`);
      this.updateReceiptSelect();
    }
  }
}

function moStateLabel(item) {
  switch (item.state) {
    case "delivered":
      return item.redeliveries ? `✓ delivered (redelivered ${item.redeliveries}×)` : "✓ delivered";
    case "rejected":
      return `✗ rejected by the bot${item.last_status ? " " + statusText(item.last_status) : ""}`;
    case "cancelled":
      return "cancelled";
    case "delivering":
      return "sending…";
    default:
      if (item.waiting_bind) return "waiting for a bind…";
      if (item.redeliveries) return `retrying (${item.error || "no answer"})`;
      return "sending…";
  }
}

function receiptView(item) {
  const rs = item.receipts || [];
  if (!rs.length) {
    if (item.receipt_asked === false) {
      return { state: "none", label: "no receipt asked", title: "the bot asked for no delivery receipt (smsc.registered_delivery: 0); see the note above the handsets" };
    }
    if (!state.sendReceipts) {
      return { state: "none", label: "no receipt (simulator sends none)", title: "the simulator sends no receipts (simulator.send_receipts: false)" };
    }
    return { state: "pending", label: "receipt due", title: "the bot asked for a delivery receipt; the simulator sends it right after the submit_sm_resp" };
  }
  const bad = rs.find((r) => r.stat !== "DELIVRD");
  const stat = bad ? bad.stat + (bad.err && bad.err !== "000" ? ":" + bad.err : "") : "DELIVRD";
  const missing = Math.max(0, item.parts - rs.length);
  const refused = rs.find((r) => r.state === "rejected");
  const done = rs.filter((r) => r.state === "delivered").length;
  const pending = rs.length - done + missing;
  const lines = rs.map((r, i) => `part ${i + 1} (message_id ${r.message_id}): ${r.stat}${r.err ? " err " + r.err : ""}, receipt ${r.state === "delivered" ? "acknowledged by the bot" : r.state}${r.error ? " (" + r.error + ")" : ""}`);
  if (missing) lines.push(`${missing} part(s) without a receipt yet`);
  let st, label;
  if (refused) { st = "refused"; label = `${stat} · receipt refused by the bot`; }
  else if (pending) { st = "pending"; label = `${stat} · receipt sent ${done}/${item.parts}`; }
  else if (bad) { st = "failed"; label = `✗ ${stat}`; }
  else { st = "delivered"; label = "✓✓ DELIVRD"; }
  return { state: st, label, title: lines.join("\n") };
}

function optionTags(item) {
  const o = item.options || {};
  const tags = [];
  if (o.data_coding === 0) tags.push("GSM-7");
  else if (o.data_coding === 8) tags.push("UCS-2");
  else if (o.data_coding !== undefined) tags.push(`dc ${o.data_coding}`);
  if (item.parts > 1) tags.push(`${item.parts} parts${o.split ? " " + o.split : ""}`);
  else if (o.split) tags.push(o.split);
  if (item.carrier === "data_sm") tags.push("data_sm");
  if (o.shuffle) tags.push("shuffled");
  if (o.duplicate) tags.push("duplicated");
  if (o.lost_resp) tags.push("lost resp");
  if (o.naive_split) tags.push("naive split");
  for (const tag of Object.keys(o.tlvs || {})) tags.push(`TLV ${tag}`);
  return tags;
}

// Update a message's node in place from a freshly rendered one: the node and its bubble stay (a
// text selection survives a receipt arriving), the rest is taken from `fresh`.
function patch(old, fresh) {
  for (const a of [...old.attributes]) if (!fresh.hasAttribute(a.name)) old.removeAttribute(a.name);
  for (const a of [...fresh.attributes]) old.setAttribute(a.name, a.value);
  const keep = old.querySelector(".bubble");
  const repl = fresh.querySelector(".bubble");
  if (keep && repl && keep.textContent === repl.textContent) repl.replaceWith(keep);
  old.replaceChildren(...fresh.childNodes);
}

// The note above the handsets: why no ✓✓ DELIVRD, and how to get them.
function receiptHint(item) {
  if (item.kind !== "mt" || item.receipt_asked !== false) return;
  const hint = $("#receipt-hint");
  if (hint.hidden) hint.hidden = false;
}

function renderItem(item, shortCode) {
  receiptHint(item);
  const t = clock(item.t);
  if (item.kind === "mo") {
    const tags = optionTags(item).map((x) => el("span", { class: "tag", text: x }));
    return el("div", { class: "msg mo", dataset: { id: item.id, t: item.t, state: item.state } },
      item.peer !== shortCode ? el("div", { class: "from", text: `to ${item.peer}` }) : null,
      el("div", { class: "bubble" }, el("span", { class: "text", lang: "zh-CN", text: item.text })),
      el("div", { class: "meta" }, ...tags,
        el("time", { text: t, title: clock(item.t, true) }),
        el("span", { class: "state", dataset: { state: item.state }, title: item.error || "", text: moStateLabel(item) })));
  }
  const rv = receiptView(item);
  const meta = [el("time", { text: t, title: clock(item.t, true) })];
  if (item.parts > 1) meta.push(el("span", { class: "parts", text: `${item.parts} parts joined` }));
  meta.push(el("span", { class: "receipt", dataset: { state: rv.state }, title: rv.title, text: rv.label }));
  meta.push(el("span", {
    class: "inbox", dataset: { state: item.inbox },
    title: item.inbox === "waiting" ? "waiting in the simulator's inbox for a handset (GET /inbox) to pick it up" : "a handset picked it up from the inbox",
    text: item.inbox === "waiting" ? "in inbox" : "picked up",
  }));
  return el("div", { class: "msg mt", dataset: { id: item.id, t: item.t } },
    item.peer !== shortCode ? el("div", { class: "from", text: item.peer }) : null,
    el("div", { class: "bubble" }, el("span", { class: "text", lang: "zh-CN", text: item.text })),
    el("div", { class: "meta" }, ...meta));
}

function save() {
  try { localStorage.setItem(STORE_KEY, JSON.stringify(state.handsets.map((h) => h.config()))); } catch (e) { /* private mode */ }
}

function addHandset(cfg) {
  const h = new Handset(cfg || {});
  state.handsets.push(h);
  $("#handsets").append(h.root);
  save();
  refreshLists();
  return h;
}

function removeHandset(h) {
  h.root.remove();
  state.handsets = state.handsets.filter((x) => x !== h);
  save();
}

function nextMsisdn() {
  const used = state.handsets.map((h) => h.msisdn).filter((m) => /^[0-9]+$/.test(m));
  if (!used.length) return DEFAULT_MSISDN;
  let n = BigInt(used.reduce((a, b) => (BigInt(a) > BigInt(b) ? a : b))) + 1n;
  while (used.includes(String(n))) n += 1n;
  return String(n);
}

function refreshLists() {
  const ms = new Set([...state.handsets.map((h) => h.msisdn), ...state.msisdns]);
  $("#msisdn-list").replaceChildren(...[...ms].map((m) => el("option", { value: m })));
  $("#shortcode-list").replaceChildren(...state.shortCodes.map((c) => el("option", { value: c })));
}

// ---------------------------------------------------------------------------------- side panels
function setBinds(binds) {
  state.binds = binds || [];
  const ul = $("#binds");
  if (!state.binds.length) ul.replaceChildren(el("li", { class: "muted", text: "none: MOs wait for the bot to bind" }));
  else {
    ul.replaceChildren(...state.binds.map((b) => el("li", { dataset: { id: b.id } },
      el("b", { text: `#${b.id} ${b.mode}` }), ` · ${b.system_id} · ${b.peer}`)));
  }
  const chip = $("#bind-chip");
  chip.dataset.state = state.binds.length ? "some" : "none";
  chip.textContent = state.binds.length ? `${state.binds.length} bind${state.binds.length > 1 ? "s" : ""} open` : "no bind";
}

const FAULT_NUMBERS = ["resp_delay_ms", "max_tps", "throttle_first", "throttle_every", "drop_after_submit", "drop_after_resp"];

function faultSummary(f) {
  const bits = [];
  for (const k of FAULT_NUMBERS) if (f[k]) bits.push(`${k}=${f[k]}`);
  if (f.throttle_first || f.throttle_every || f.max_tps) bits.push(`throttle_status=${hex(f.throttle_status)}`);
  for (const [m, s] of Object.entries(f.reject || {})) bits.push(`reject ${m} ${hex(s)}`);
  return bits;
}

function setFaults(f) {
  state.faults = f;
  const bits = faultSummary(f);
  const p = $("#faults-active");
  p.classList.toggle("active", bits.length > 0);
  p.classList.toggle("muted", bits.length === 0);
  p.textContent = (bits.length ? "active: " + bits.join(", ") : "none: every submit_sm is answered at once and stored")
    + ` · ${f.submits_seen} submit${f.submits_seen === 1 ? "" : "s"} judged since set`;
  const form = $("#faults");
  if (form.contains(document.activeElement)) return; // the tester is typing
  for (const k of FAULT_NUMBERS) form.elements[k].value = f[k] ? f[k] : "";
  form.elements.throttle_status.value = f.throttle_status && f.throttle_status !== 0x58 ? hex(f.throttle_status) : "";
  form.elements.reject.value = Object.entries(f.reject || {}).map(([m, s]) => `${m}=${hex(s)}`).join(", ");
}

function faultPlanFromForm() {
  const form = $("#faults");
  const plan = {};
  for (const k of FAULT_NUMBERS) {
    const v = form.elements[k].value.trim();
    if (v !== "" && Number(v) !== 0) plan[k] = Number(v);
  }
  const st = form.elements.throttle_status.value.trim();
  if (st) plan.throttle_status = st;
  const rej = form.elements.reject.value.trim();
  if (rej) {
    plan.reject = {};
    for (const pair of rej.split(/[\s,;]+/).filter(Boolean)) {
      const [m, s] = pair.split("=");
      if (!m || !s) throw new Error(`reject "${pair}": write MSISDN=status, e.g. 13800138001=0x0B`);
      plan.reject[m] = s;
    }
  }
  return plan;
}

function profileText(p) {
  const o = Object.entries(p.overrides || {}).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`);
  return `${p.profile}${o.length ? " with " + o.join(", ") : ""}`;
}

function setProfile(p) {
  state.profile = p;
  $("#profile-select").value = p.profile;
  $("#profile-active").textContent = profileText(p);
  for (const h of state.handsets) h.updateReceiptSelect();
}

const STAT_KEYS = [
  "binds", "binds_total", "mo_injected", "mo_delivered", "mo_redelivered", "mo_rejected", "mo_queued",
  "mt_received", "mt_parts_received", "receipts_sent", "submits_received", "submits_throttled", "submits_rejected",
  "submits_dropped", "connections_dropped", "max_outstanding_submits", "mailbox_dropped",
];
function setStats(s) {
  $("#stats").replaceChildren(...STAT_KEYS.filter((k) => k in s).flatMap((k) => [el("dt", { text: k }), el("dd", { text: String(s[k]) })]));
  if (state.faults && s.submits_seen !== undefined && s.submits_seen !== state.faults.submits_seen) {
    setFaults({ ...state.faults, submits_seen: s.submits_seen });
  }
}

// ---------------------------------------------------------------------------------- live stream
function onHello(h) {
  const fresh = state.instance === null || h.instance !== state.instance || h.reset;
  const restarted = state.instance !== null && h.instance !== state.instance;
  state.instance = h.instance;
  state.shortCodes = h.short_codes && h.short_codes.length ? h.short_codes : state.shortCodes;
  state.msisdns = h.msisdns || [];
  if (h.timezone && h.timezone !== state.zone) { state.zone = h.timezone; tick(); }
  state.sendReceipts = h.send_receipts !== false;
  setBinds(h.binds);
  setFaults(h.faults);
  setProfile(h.profile);
  setStats(h.stats);
  refreshLists();
  if (restarted) log("the simulator restarted", "warn"); // what the earlier one saw stays below
  else if (h.log) $("#log").replaceChildren();
  if (h.log) { // a fresh stream: the log as the simulator saw it up to now (items numbered by this instance)
    state.loggedItems.clear();
    for (const e of h.log) logEvent(e.kind, e.data);
  }
  if (fresh) for (const hs of state.handsets) hs.load();
}

function onItem(item) {
  for (const h of state.handsets) h.upsert(item);
  if (!state.msisdns.includes(item.msisdn)) { state.msisdns.unshift(item.msisdn); refreshLists(); }
  logItem(item);
}

function logItem(item) {
  const key = `${item.id}:${item.kind === "mo" ? item.state : ""}`;
  if (item.kind === "mo") {
    if (!state.loggedItems.has(item.id)) log(`MO ${item.msisdn} → ${item.peer}: “${short(item.text)}”${item.parts > 1 ? ` (${item.parts} parts)` : ""}`, "info", item.t);
    else if (item.state === "rejected" && !state.loggedItems.has(key)) log(`MO ${item.id} rejected by the bot ${statusText(item.last_status)}`, "bad");
    else if (item.state === "queued" && item.redeliveries && !state.loggedItems.has(key + item.redeliveries)) {
      log(`MO ${item.id} to be redelivered: ${item.error}`, "warn");
      state.loggedItems.add(key + item.redeliveries);
    }
  } else if (!state.loggedItems.has(item.id)) {
    log(`MT ${item.peer} → ${item.msisdn}: “${short(item.text)}”${item.parts > 1 ? ` (${item.parts} parts joined)` : ""}`, "info", item.t);
  }
  state.loggedItems.add(item.id);
  state.loggedItems.add(key);
  if (state.loggedItems.size > 20000) state.loggedItems.clear();
}

function connect() {
  const live = $("#live");
  const es = new EventSource("/events");
  const on = (name, fn) => es.addEventListener(name, (e) => {
    let data;
    try { data = JSON.parse(e.data); } catch (err) { return; }
    fn(data);
  });
  es.addEventListener("open", () => { live.dataset.state = "live"; live.textContent = "live"; });
  es.addEventListener("error", () => {
    live.dataset.state = es.readyState === EventSource.CLOSED ? "down" : "connecting";
    live.textContent = es.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…";
    if (es.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
  });
  on("hello", onHello);
  on("item", onItem);
  on("bind", (b) => { setBinds(b.binds); logEvent("bind", b); });
  on("submit", (s) => logEvent("submit", s));
  on("faults", (f) => { setFaults(f); logEvent("faults", f); });
  on("profile", (p) => { setProfile(p); logEvent("profile", p); });
  on("note", (n) => logEvent("note", n));
  on("stats", setStats);
}

// One event into the log panel: live, or from the hello's "log" (what happened before the page opened).
function logEvent(kind, d) {
  switch (kind) {
    case "item": logItem(d); break;
    case "bind":
      log(`bind #${d.bind.id} ${d.bind.mode} ${d.event} (${d.bind.system_id}, ${d.bind.peer})`, d.event === "closed" ? "warn" : "info", d.t);
      break;
    case "submit":
      log(`submit_sm #${d.n} to ${d.to} on bind #${d.conn}: ${statusText(d.status)}`, d.status === null ? "bad" : "warn", d.t);
      break;
    case "faults": {
      const bits = faultSummary(d);
      log(bits.length ? `faults: ${bits.join(", ")}` : "faults cleared", bits.length ? "warn" : "info", d.t);
      break;
    }
    case "profile": log(`profile: ${profileText(d)}`, "info", d.t); break;
    case "note": log(d.text, "warn", d.t); break;
    default: break;
  }
}

// ---------------------------------------------------------------------------------- start
function tick(root = document) {
  const w = zoned(Date.now() / 1000);
  for (const c of root.querySelectorAll(".clock")) {
    c.textContent = `${w.hm} ${w.offset}`;
    c.title = `${w.date} ${w.hms} ${w.offset} (${state.zone}, the bot's billing.timezone)`;
  }
}

function start() {
  let saved = [];
  try { saved = JSON.parse(localStorage.getItem(STORE_KEY) || "[]"); } catch (e) { saved = []; }
  if (!Array.isArray(saved) || !saved.length) saved = [{ msisdn: DEFAULT_MSISDN }];
  for (const cfg of saved) addHandset(cfg);

  $("#add-handset").addEventListener("click", () => {
    const last = state.handsets[state.handsets.length - 1];
    const h = addHandset({ msisdn: nextMsisdn(), shortCode: last ? last.shortCode : undefined });
    h.text.focus();
    h.root.scrollIntoView({ behavior: "smooth", block: "nearest", inline: "nearest" });
  });
  $("#faults").addEventListener("submit", async (e) => {
    e.preventDefault();
    try { setFaults(await api("POST", "/faults", faultPlanFromForm())); } catch (err) { log(`faults not set: ${err.message}`, "bad"); }
  });
  $("#faults-clear").addEventListener("click", async () => {
    $("#faults").reset();
    try { setFaults(await api("POST", "/faults", {})); } catch (err) { log(`faults not cleared: ${err.message}`, "bad"); }
  });
  $("#profile").addEventListener("submit", async (e) => {
    e.preventDefault();
    try { setProfile(await api("POST", "/profile", { profile: $("#profile-select").value })); } catch (err) { log(`profile: ${err.message}`, "bad"); }
  });
  const action = (sel, path) => $(sel).addEventListener("click", async () => {
    try { await api("POST", path, {}); } catch (err) { log(`${path}: ${err.message}`, "bad"); }
  });
  action("#act-drop", "/drop");
  action("#act-partial", "/partial");
  action("#act-ids", "/message_ids/restart");

  setInterval(() => tick(), 10000);
  connect();
}

document.addEventListener("DOMContentLoaded", start);
