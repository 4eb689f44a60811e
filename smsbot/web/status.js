// The /status charts: polls status/series once a second and draws each chart as inline SVG
// (smsbot.status_charts serves both; nothing is loaded from elsewhere).
"use strict";

const W = 340, H = 120, L = 40, R = 6, T = 8, B = 18;
const SVGNS = "http://www.w3.org/2000/svg";
const MIN_SPAN_S = 30;

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (v >= 1000) return Math.round(v).toLocaleString("en-US");
  if (v >= 10 || Number.isInteger(v)) return String(Math.round(v));
  return v.toFixed(1);
}

function el(name, attrs, text) {
  const e = document.createElementNS(SVGNS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function draw(fig, points, span) {
  const keys = fig.dataset.series.split(" "), classes = fig.dataset.classes.split(" ");
  const svg = fig.querySelector("svg");
  const end = points.length ? points[points.length - 1].t : 0;
  let max = 0;
  for (const p of points) for (const k of keys) if (p[k] !== null && p[k] > max) max = p[k];
  max = niceMax(max);
  const x = (t) => L + (W - L - R) * (1 - (end - t) / span);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  svg.replaceChildren();
  for (const f of [0.5, 1]) svg.append(el("line", {class: "gridline", x1: L, x2: W - R, y1: y(max * f), y2: y(max * f)}));
  svg.append(el("line", {class: "axis", x1: L, x2: W - R, y1: y(0), y2: y(0)}));
  svg.append(el("text", {x: L - 4, y: y(max) + 4, "text-anchor": "end"}, fmt(max)));
  svg.append(el("text", {x: L - 4, y: y(0) + 3, "text-anchor": "end"}, "0"));
  svg.append(el("text", {x: L, y: H - 4}, span >= 120 ? `−${Math.round(span / 60)} min` : `−${Math.round(span)} s`));
  svg.append(el("text", {x: W - R, y: H - 4, "text-anchor": "end"}, "now"));
  let drawn = 0;
  keys.forEach((k, i) => {
    const pts = points.filter((p) => p[k] !== null && p.t > end - span).map((p) => `${x(p.t).toFixed(1)},${y(p[k]).toFixed(1)}`);
    svg.append(el("polyline", {class: classes[i], points: pts.join(" "), "data-key": k}));
    drawn = Math.max(drawn, pts.length);
  });
  fig.dataset.points = String(drawn);
  const last = points.length ? points[points.length - 1] : null;
  const labels = (fig.dataset.labels || "").split("|");
  fig.querySelector(".now").textContent = last
    ? keys.map((k, i) => fmt(last[k]) + (labels[i] ? " " + labels[i] : "")).join(" · ") + fig.dataset.unit : "–";
}

function chip(id, ok, yes, no) {
  const c = document.getElementById(id);
  c.dataset.ok = String(ok);
  c.textContent = ok ? yes : no;
}

async function poll() {
  const live = document.getElementById("live");
  try {
    const r = await fetch("status/series", {cache: "no-store"});
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const s = await r.json();
    // the time shown: what there is, at least MIN_SPAN_S, at most the history kept
    const have = s.points.length ? s.points[s.points.length - 1].t - s.points[0].t : 0;
    const span = Math.min(s.history * s.interval_s, Math.max(MIN_SPAN_S, Math.ceil(have / 30) * 30));
    for (const fig of document.querySelectorAll("figure.chart")) draw(fig, s.points, span);
    chip("bound", s.bound, "SMSC bound", "SMSC not bound");
    chip("redis", s.redis, "Redis ok", "Redis unreachable");
    document.getElementById("mo-total").textContent = fmt(s.mo_total);
    document.getElementById("mt-total").textContent = fmt(s.mt_total);
    live.dataset.state = "live";
    live.textContent = "live";
  } catch (e) {
    live.dataset.state = "offline";
    live.textContent = "bot not answering";
  } finally {
    setTimeout(poll, 1000);
  }
}

poll();
