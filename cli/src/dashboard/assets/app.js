// micro web: the dashboard's behaviour. Every page is rendered on the server; this script adds
// live updates, search, the call form and the terminal. No dependencies.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

function announce(text) {
  const live = $("#live");
  if (live) live.textContent = text;
}

// State-changing requests carry the page's CSRF token, and the caller's own token for services.
function post(url, body) {
  const headers = { "Content-Type": "application/json" };
  const csrf = $('meta[name="csrf-token"]');
  if (csrf && csrf.content) headers["X-CSRF-Token"] = csrf.content;
  const token = sessionStorage.getItem("micro.token");
  if (token) headers.Authorization = `Bearer ${token}`;
  return fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
}

async function getJSON(url) {
  const resp = await fetch(url, { headers: { Accept: "application/json" } });
  if (!resp.ok) throw new Error(`${url}: ${resp.status}`);
  return resp.json();
}

// ---- live updates: one event stream, the page's content fetched again on each change ----

function live(onChange) {
  if (!window.EventSource) return;
  const source = new EventSource("/events");
  let timer = null;
  const changed = [];
  source.addEventListener("registry", (ev) => {
    try {
      const change = JSON.parse(ev.data);
      if (change.service) changed.push(`${change.service} ${change.action}`);
    } catch (_) { /* a resync: refresh anyway */ }
    clearTimeout(timer);
    timer = setTimeout(() => {
      onChange(changed.splice(0));
    }, 150);
  });
}

async function refreshMain(after) {
  const resp = await fetch(location.href, { headers: { Accept: "text/html" } });
  if (!resp.ok) return;
  const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
  const fresh = $("main", doc);
  if (!fresh) return;
  const before = new Set($$("[data-name]").map((el) => el.dataset.name));
  const active = document.activeElement && document.activeElement.id;
  const search = $("#search");
  const query = search ? search.value : "";
  $("main").innerHTML = fresh.innerHTML;
  for (const el of $$("[data-name]")) if (!before.has(el.dataset.name)) el.classList.add("new");
  const again = $("#search");
  if (again) again.value = query;
  if (active && $(`#${active}`)) $(`#${active}`).focus();
  if (after) after();
}

// ---- home: search ----

function filterCards() {
  const search = $("#search");
  if (!search) return;
  const q = search.value.trim().toLowerCase();
  let shown = 0;
  for (const card of $$(".card")) {
    const match = !q || card.dataset.name.toLowerCase().includes(q) || card.textContent.toLowerCase().includes(q);
    card.hidden = !match;
    if (match) shown++;
  }
  const none = $("#no-match");
  if (none) none.hidden = shown > 0 || !q;
}

function initIndex() {
  document.addEventListener("input", (ev) => { if (ev.target.id === "search") filterCards(); });
  document.addEventListener("keydown", (ev) => {
    const search = $("#search");
    if (ev.key === "/" && search && document.activeElement !== search && !/INPUT|TEXTAREA|SELECT/.test(document.activeElement.tagName)) {
      ev.preventDefault();
      search.focus();
    }
  });
  live((changes) => refreshMain(() => { filterCards(); if (changes.length) announce(changes.join(", ")); }));
}

function initRegistry() {
  const traffic = initTraffic();
  live((changes) => refreshMain(() => { traffic(); if (changes.length) announce(changes.join(", ")); }));
}

// ---- a service's live traffic: /stats every two seconds, two minutes of sparklines ----

const POINTS = 40; // 80 s at one reading every 2 s
const STATS = ["rate", "errors", "p50", "p99"];
const WIDTH = 120;
const HEIGHT = 24;

function formatStat(stat, v) {
  if (v === null || v === undefined) return "–";
  if (stat === "rate") return v >= 100 ? `${Math.round(v)}/s` : `${v.toFixed(1)}/s`;
  if (stat === "errors") return `${(v * 100).toFixed(v > 0 && v < 0.1 ? 1 : 0)} %`;
  if (v < 0.001) return `${Math.round(v * 1e6)} µs`;
  if (v < 1) return `${(v * 1000).toFixed(v < 0.01 ? 2 : 1)} ms`;
  return `${v.toFixed(2)} s`;
}

// The newest value at the right edge, one step per reading; `max` fixes the scale (else the
// largest value shown fills the height).
function sparkline(svg, values, max) {
  const line = svg && svg.querySelector("polyline");
  const area = svg && svg.querySelector("polygon");
  if (!line || !values.length) return;
  const top = max || Math.max(...values.map((v) => v || 0), 1e-9);
  const step = WIDTH / (POINTS - 1);
  const start = POINTS - values.length;
  const points = values.map((v, i) =>
    `${((start + i) * step).toFixed(1)},${(HEIGHT - 1 - ((v || 0) / top) * (HEIGHT - 3)).toFixed(1)}`);
  line.setAttribute("points", points.join(" "));
  if (area) area.setAttribute("points", `${(start * step).toFixed(1)},${HEIGHT} ${points.join(" ")} ${WIDTH},${HEIGHT}`);
}

function unanswered(stats) {
  const n = stats.failed.length;
  return `${n} node${n === 1 ? "" : "s"} did not answer: ${stats.failed.map((f) => `${f.node}: ${f.error}`).join("; ")}`;
}

// Returns a function that draws the charts again (after the page's content is replaced).
function initTraffic() {
  const history = new Map(); // row key → { rate: [], errors: [], p50: [], p99: [] }
  let last = null;
  let failure = "";

  function draw() {
    const section = $("#traffic");
    if (!section) return;
    const note = $("#traffic-note");
    if (note) {
      if (failure) note.textContent = failure;
      else if (!last) note.textContent = "Reading the nodes' metrics…";
      else {
        const failed = last.failed.length ? ` · ${unanswered(last)}` : "";
        note.textContent = `From ${last.nodes} node${last.nodes === 1 ? "" : "s"}, over the last ${last.window.toFixed(1)} s${failed}`;
      }
    }
    let slowest = null;
    for (const row of $$("[data-traffic]", section)) {
      const key = row.dataset.traffic;
      const h = history.get(key);
      const now = !last ? null : key === "*" ? last.total : Object.prototype.hasOwnProperty.call(last.endpoints, key) ? last.endpoints[key] : null;
      for (const stat of STATS) {
        const cell = $(`[data-stat="${stat}"]`, row);
        if (!cell) continue;
        const v = now ? now[stat] : null;
        cell.dataset.value = v === null || v === undefined ? "" : String(v);
        $(".value", cell).textContent = formatStat(stat, v);
        if (h) sparkline($("svg", cell), h[stat], stat === "errors" ? 1 : 0);
      }
      row.classList.toggle("failing", Boolean(now && now.errors > 0));
      if (key !== "*" && now && now.p99 > 0 && (!slowest || now.p99 > slowest.p99)) slowest = { row, p99: now.p99 };
      row.classList.remove("slowest");
    }
    if (slowest) slowest.row.classList.add("slowest");
  }

  function record(key, figures) {
    if (!history.has(key)) history.set(key, { rate: [], errors: [], p50: [], p99: [] });
    const h = history.get(key);
    for (const stat of STATS) {
      h[stat].push(figures ? figures[stat] : null);
      if (h[stat].length > POINTS) h[stat].shift();
    }
  }

  async function poll() {
    const section = $("#traffic");
    if (!section) return;
    if (document.visibilityState !== "hidden") {
      try {
        const headers = { Accept: "application/json" };
        const token = sessionStorage.getItem("micro.token");
        if (token) headers.Authorization = `Bearer ${token}`;
        const resp = await fetch(`/stats?service=${encodeURIComponent(section.dataset.service)}`, { headers });
        const body = await resp.json().catch(() => ({}));
        if (!resp.ok) {
          failure = `The figures cannot be read: ${body.detail || resp.status}`;
        } else if (body.window === null) {
          // A first reading: nothing to compare yet, but a node that did not answer is news.
          last = null;
          failure = body.failed.length ? unanswered(body) : "";
        } else {
          failure = "";
          last = body;
          record("*", body.total);
          for (const row of $$("[data-traffic]", section)) {
            const key = row.dataset.traffic;
            if (key !== "*") record(key, Object.prototype.hasOwnProperty.call(body.endpoints, key) ? body.endpoints[key] : null);
          }
        }
      } catch (err) {
        failure = `The dashboard did not answer: ${err.message}`;
      }
      draw();
    }
    setTimeout(poll, 2000);
  }

  if ($("#traffic")) poll();
  return draw;
}

// ---- client: the call form ----

const WELL_KNOWN = {
  Timestamp: "1970-01-01T00:00:00Z", Duration: "0s", Struct: {}, Value: null, ListValue: [], Any: {},
  Empty: {}, FieldMask: "", DoubleValue: null, FloatValue: null, Int64Value: null, UInt64Value: null,
  Int32Value: null, UInt32Value: null, BoolValue: null, StringValue: null, BytesValue: null,
};

function skeleton(value, depth = 0) {
  const type = (value && value.type) || "";
  if (type.startsWith("[]")) return [];
  if (type.startsWith("map[")) return {};
  if (Object.prototype.hasOwnProperty.call(WELL_KNOWN, type)) return WELL_KNOWN[type];
  switch (type) {
    case "string": case "bytes": return "";
    case "bool": return false;
    case "double": case "float": case "int32": case "int64": case "uint32": case "uint64":
    case "sint32": case "sint64": case "fixed32": case "fixed64": case "sfixed32": case "sfixed64": return 0;
  }
  if (value && value.values && value.values.length && depth < 8) {
    const out = {};
    for (const f of value.values) out[f.name] = skeleton(f, depth + 1);
    return out;
  }
  return depth === 0 ? {} : null;
}

function initClient() {
  const form = $("#call");
  const service = $("#service");
  const endpoint = $("#endpoint");
  const request = $("#request");
  const status = $("#status");
  const response = $("#response");
  const copy = $("#copy");
  let endpoints = [];
  const tokenField = $("#token");
  if (tokenField) tokenField.value = sessionStorage.getItem("micro.token") || "";

  function fillRequest() {
    const e = endpoints.find((x) => x.name === endpoint.value);
    request.value = JSON.stringify(skeleton(e && e.request), null, 2);
  }

  async function loadEndpoints(wanted) {
    endpoint.innerHTML = '<option value="">Choose an endpoint</option>';
    endpoints = [];
    if (!service.value) return;
    try {
      const versions = await getJSON(`/registry?service=${encodeURIComponent(service.value)}`);
      const seen = new Set();
      for (const v of versions) for (const e of v.endpoints || []) {
        if (seen.has(e.name) || (e.metadata && e.metadata.subscriber === "true")) continue;
        seen.add(e.name);
        endpoints.push(e);
        const opt = document.createElement("option");
        opt.value = opt.textContent = e.name;
        if (e.metadata && e.metadata.stream === "true") opt.textContent += " (stream)";
        endpoint.appendChild(opt);
      }
    } catch (err) {
      status.textContent = `cannot read ${service.value}: ${err.message}`;
      status.className = "status bad";
      return;
    }
    if (wanted && endpoints.some((e) => e.name === wanted)) endpoint.value = wanted;
    else if (endpoints.length) endpoint.value = endpoints[0].name;
    fillRequest();
  }

  service.addEventListener("change", () => {
    const url = new URL(location.href);
    url.searchParams.set("service", service.value);
    url.searchParams.delete("endpoint");
    history.replaceState(null, "", url);
    loadEndpoints();
  });
  endpoint.addEventListener("change", () => {
    const url = new URL(location.href);
    url.searchParams.set("endpoint", endpoint.value);
    history.replaceState(null, "", url);
    fillRequest();
  });
  request.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); form.requestSubmit(); }
  });

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    let body;
    try {
      body = JSON.parse(request.value || "{}");
    } catch (err) {
      status.textContent = `the request is not valid JSON: ${err.message}`;
      status.className = "status bad";
      return;
    }
    status.textContent = "calling…";
    status.className = "status";
    const started = performance.now();
    try {
      const token = $("#token");
      if (token && token.value) sessionStorage.setItem("micro.token", token.value);
      else if (token) sessionStorage.removeItem("micro.token");
      const resp = await post("/rpc", { service: service.value, endpoint: endpoint.value, request: body });
      const text = await resp.text();
      const ms = Math.round(performance.now() - started);
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON: as received */ }
      response.textContent = shown;
      status.textContent = `${resp.status} ${resp.ok ? "OK" : resp.statusText || "error"} · ${ms} ms`;
      status.className = resp.ok ? "status ok" : "status bad";
      copy.disabled = false;
    } catch (err) {
      status.textContent = `the call failed: ${err.message}`;
      status.className = "status bad";
    }
  });

  copy.addEventListener("click", async () => {
    const text = response.textContent;
    try {
      await navigator.clipboard.writeText(text);
    } catch (_) {
      const area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    copy.textContent = "Copied";
    setTimeout(() => { copy.textContent = "Copy"; }, 1200);
  });

  live(async () => {
    const chosen = service.value;
    try {
      const list = await getJSON("/registry");
      const names = [...new Set(list.map((s) => s.name))];
      service.innerHTML = '<option value="">Choose a service</option>';
      for (const n of names) {
        const opt = document.createElement("option");
        opt.value = opt.textContent = n;
        service.appendChild(opt);
      }
      service.value = names.includes(chosen) ? chosen : "";
    } catch (_) { /* keep the list */ }
  });

  if (service.value) loadEndpoints(form.dataset.endpoint);
}

// ---- terminal ----

function initTerminal() {
  const output = $("#output");
  const form = $("#prompt");
  const line = $("#line");
  const past = [];
  let at = 0;

  function print(text, cls) {
    const span = document.createElement("span");
    if (cls) span.className = cls;
    span.textContent = text.endsWith("\n") ? text : `${text}\n`;
    output.appendChild(span);
    output.scrollTop = output.scrollHeight;
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = line.value.trim();
    line.value = "";
    if (!text) return;
    past.push(text);
    at = past.length;
    print(`micro> ${text}`, "cmd");
    if (text === "clear") { output.textContent = ""; return; }
    line.disabled = true;
    try {
      const resp = await post("/terminal", { line: text });
      const reply = await resp.json();
      print(reply.output || (reply.ok ? "" : "failed"), reply.ok ? "" : "failed");
    } catch (err) {
      print(`the dashboard did not answer: ${err.message}`, "failed");
    } finally {
      line.disabled = false;
      line.focus();
    }
  });

  line.addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowUp" && at > 0) { at--; line.value = past[at]; ev.preventDefault(); }
    else if (ev.key === "ArrowDown") { at = Math.min(past.length, at + 1); line.value = past[at] || ""; ev.preventDefault(); }
  });
  output.addEventListener("click", () => { if (!window.getSelection().toString()) line.focus(); });
  line.focus();
}

// ---- login ----

function initLogin() {
  const form = $("#login");
  const status = $("#status");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const resp = await post("/login", { token: $("#secret").value });
    if (resp.ok) {
      location.href = location.pathname === "/login" ? "/" : location.href;
    } else {
      status.textContent = "That is not the dashboard's token.";
      status.className = "status bad";
    }
  });
}

const INIT = { index: initIndex, registry: initRegistry, client: initClient, terminal: initTerminal, login: initLogin };
document.addEventListener("DOMContentLoaded", () => {
  const init = INIT[document.body.dataset.page];
  if (init) init();
});
