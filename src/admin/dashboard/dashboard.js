"use strict";
// The dashboard reads the same JSON scripts do, once a second: /status (the
// live config, backends, limits, process, reloads) and /stats/series (the
// last minutes, one sample a second). Everything from the gateway is put on
// the page as text (textContent), never as markup.
(() => {
  const TOKEN_KEY = "sluice-admin-token";
  const WINDOW_SECONDS = 300;
  const RECENT_SECONDS = 5;
  const PERIOD_MS = 1000;
  const TIMEOUT_MS = 2500;
  const COLORS = ["#1f6fd1", "#d1491f", "#2a9d4b", "#8e44ad", "#c99a06", "#0f8b8d", "#b0306a", "#5d6d7e"];

  const $ = (sel) => document.querySelector(sel);
  let token = sessionStorage.getItem(TOKEN_KEY);
  let waitingForToken = false;
  let lastAnswer = 0;
  let failures = 0;

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "dataset") Object.assign(e.dataset, v);
      else if (k === "class") e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(typeof c === "string" || typeof c === "number" ? String(c) : c);
    }
    return e;
  }

  const fmt = {
    rate: (v) => (v >= 100 ? v.toFixed(0) : v.toFixed(1)),
    ms: (v) => (v === null || v === undefined ? "–" : v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)),
    time: (t) => new Date(t * 1000).toLocaleTimeString([], { hour12: false }),
    date: (t) => new Date(t * 1000).toLocaleString([], { hour12: false }),
    duration(s) {
      s = Math.floor(s);
      const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
      if (d) return `${d}d ${h}h`;
      if (h) return `${h}h ${m}m`;
      if (m) return `${m}m ${s % 60}s`;
      return `${s}s`;
    },
    route: (name) => (name === "" ? "(no route)" : name),
  };

  class Unauthorized extends Error {}

  async function getJson(path) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    try {
      const headers = token ? { Authorization: "Bearer " + token } : {};
      const r = await fetch(path, { headers, signal: ctl.signal, cache: "no-store" });
      if (r.status === 401) throw new Unauthorized(path);
      if (!r.ok) throw new Error(`${path} answered HTTP ${r.status}`);
      return await r.json();
    } catch (e) {
      if (e.name === "AbortError") throw new Error(`${path}: no answer within ${TIMEOUT_MS / 1000} s`);
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- token -------------------------------------------------------------

  function askForToken(refused) {
    waitingForToken = true;
    if (refused) sessionStorage.removeItem(TOKEN_KEY);
    $("#board").hidden = true;
    $("#login").hidden = false;
    $("#login-error").hidden = !refused;
    $("#live").textContent = "token needed";
    $("#live").className = "badge warn";
    $("#token").focus();
  }

  $("#login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("#token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    $("#token").value = "";
    waitingForToken = false;
    $("#login").hidden = true;
    tick();
  });

  // ---- liveness ----------------------------------------------------------

  function showLive(ok, error) {
    const live = $("#live");
    const down = $("#down");
    if (ok) {
      live.textContent = "live";
      live.className = "badge good";
      down.hidden = true;
      return;
    }
    // One lost answer can be a blip; two in a row is the gateway.
    if (failures < 2) return;
    live.textContent = "not answering";
    live.className = "badge bad";
    const since = lastAnswer
      ? `no answer since ${fmt.time(lastAnswer / 1000)} (${fmt.duration((Date.now() - lastAnswer) / 1000)} ago)`
      : "no answer since this page was opened";
    down.textContent = `The gateway is not answering: ${since}. ${error ? error.message : ""} The numbers below are from its last answer.`;
    down.hidden = false;
  }

  async function tick() {
    if (waitingForToken) return;
    try {
      const [status, series] = await Promise.all([
        getJson("/status"),
        getJson(`/stats/series?seconds=${WINDOW_SECONDS}`),
      ]);
      lastAnswer = Date.now();
      failures = 0;
      $("#login").hidden = true;
      $("#board").hidden = false;
      render(status, series);
      showLive(true);
    } catch (e) {
      if (e instanceof Unauthorized) {
        askForToken(Boolean(token));
        return;
      }
      failures += 1;
      showLive(false, e);
    }
  }

  async function loop() {
    await tick();
    setTimeout(loop, PERIOD_MS);
  }

  // ---- aggregation -------------------------------------------------------

  /// Per route and per limit: totals over the window, the rate over the
  /// last few seconds, and the newest percentiles.
  function aggregate(samples) {
    const routes = new Map();
    const limits = new Map();
    const newest = samples.length ? samples[samples.length - 1].t : 0;
    const recent = samples.filter((s) => s.t > newest - RECENT_SECONDS);
    const recentSeconds = recent.reduce((a, s) => a + s.seconds, 0) || 1;
    const route = (name) => {
      if (!routes.has(name)) routes.set(name, { total: 0, recent: 0, status: {}, p50: null, p99: null });
      return routes.get(name);
    };
    const limit = (name) => {
      if (!limits.has(name)) limits.set(name, { refused: 0, shadow: 0, recent: 0 });
      return limits.get(name);
    };
    for (const s of samples) {
      const isRecent = s.t > newest - RECENT_SECONDS;
      for (const [name, r] of Object.entries(s.routes)) {
        const a = route(name);
        a.total += r.requests;
        for (const [code, n] of Object.entries(r.status)) a.status[code] = (a.status[code] || 0) + n;
        if (isRecent) a.recent += r.requests;
        // Percentiles of the latest second that had traffic.
        if (r.p50_ms !== null) a.p50 = r.p50_ms;
        if (r.p99_ms !== null) a.p99 = r.p99_ms;
      }
      for (const [name, l] of Object.entries(s.limits)) {
        const a = limit(name);
        a.refused += l.rejected;
        a.shadow += l.shadow_rejected;
        if (isRecent) a.recent += l.rejected;
      }
    }
    for (const a of routes.values()) a.rps = a.recent / recentSeconds;
    for (const a of limits.values()) a.rate = a.recent / recentSeconds;
    return { routes, limits };
  }

  // ---- rendering ---------------------------------------------------------

  function fill(tbody, rows, empty, columns) {
    tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "muted", colspan: columns }, empty))]));
  }

  function statusChips(status) {
    const codes = Object.keys(status).sort();
    if (!codes.length) return el("span", { class: "muted" }, "–");
    const wrap = el("span");
    for (const code of codes) {
      wrap.append(el("span", { class: `chip s${code[0]}`, dataset: { code, count: status[code] } }, `${code}: ${status[code]}`));
    }
    return wrap;
  }

  function settingsText(desc, skip) {
    return Object.entries(desc)
      .filter(([k]) => !skip.includes(k))
      .map(([k, v]) => `${k} ${typeof v === "object" ? JSON.stringify(v) : v}`)
      .join(" · ");
  }

  function keyValues(obj, prefix = "", out = []) {
    for (const [k, v] of Object.entries(obj)) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (v && typeof v === "object" && !Array.isArray(v)) keyValues(v, key, out);
      else if (typeof v === "number" && !Number.isInteger(v)) out.push([key, v.toFixed(2)]);
      else out.push([key, Array.isArray(v) ? v.join(", ") : String(v)]);
    }
    return out;
  }

  function kvPanel(obj, dataset) {
    const dl = el("dl");
    for (const [k, v] of keyValues(obj)) dl.append(el("dt", {}, k), el("dd", { dataset: { key: k } }, v));
    return el("div", { class: "kv", dataset }, dl);
  }

  function renderRoutes(status, agg, colorOf) {
    const names = status.routes.map((r) => r.name);
    for (const name of agg.routes.keys()) if (!names.includes(name)) names.push(name);
    const rows = names.map((name) => {
      const spec = status.routes.find((r) => r.name === name);
      const a = agg.routes.get(name) || { total: 0, rps: 0, status: {}, p50: null, p99: null };
      const match = spec ? `${spec.host || "*"}${spec.path_prefix}${spec.methods ? " " + spec.methods.join(",") : ""}` : "";
      return el("tr", { dataset: { route: name } },
        el("td", { class: "name" }, el("i", { style: `color:${colorOf(name)}` }, "■ "), fmt.route(name)),
        el("td", { class: "match muted" }, match),
        el("td", { class: "upstream" }, spec ? spec.upstream : ""),
        el("td", { class: "num rps" }, fmt.rate(a.rps)),
        el("td", { class: "num p50" }, fmt.ms(a.p50)),
        el("td", { class: "num p99" }, fmt.ms(a.p99)),
        el("td", { class: "status" }, statusChips(a.status)),
        el("td", { class: "num total" }, a.total));
    });
    fill($("#routes tbody"), rows, "No routes.", 8);
  }

  function renderLimits(status, agg) {
    const rows = Object.entries(status.limits || {}).map(([name, desc]) => {
      const a = agg.limits.get(name) || { refused: 0, shadow: 0, rate: 0 };
      return el("tr", { dataset: { limit: name } },
        el("td", { class: "name" }, name, desc.shadow ? el("span", { class: "muted" }, " (shadow)") : null),
        el("td", {}, String(desc.algorithm || "")),
        el("td", { class: "wrap muted" }, settingsText(desc, ["algorithm", "shadow"])),
        el("td", { class: "num rate" }, fmt.rate(a.rate)),
        el("td", { class: "num refused" }, a.refused),
        el("td", { class: "num shadow" }, a.shadow));
    });
    fill($("#limits tbody"), rows, "No limits configured.", 6);

    const adaptive = Object.entries(status.limits || {}).filter(([, d]) => String(d.algorithm || "").startsWith("adaptive"));
    $("#adaptive").replaceChildren(...(adaptive.length
      ? adaptive.map(([name, d]) => el("div", { class: "upstream" }, el("h3", {}, name), kvPanel(d, { limit: name })))
      : [el("p", { class: "muted" }, "No adaptive limits configured.")]));
    $("#redis").replaceChildren(...(status.redis && typeof status.redis === "object"
      ? redisPanel(status.redis)
      : [el("p", { class: "muted" }, "No Redis store configured.")]));
  }

  /// The store's fields, then the gateways sharing it, this one marked.
  function redisPanel(redis) {
    const { members, member, ...rest } = redis;
    const panel = kvPanel(rest, { panel: "redis" });
    if (!Array.isArray(members)) return [panel];
    const items = members.map((m) => el("li", { dataset: { member: m } }, m,
      m === member ? el("span", { class: "muted" }, " (this gateway)") : null));
    return [panel,
      el("h3", { class: "members-title" }, `Members (${members.length})`),
      el("ul", { class: "kv members" }, ...(items.length ? items : [el("li", { class: "muted" }, "none seen yet")]))];
  }

  function renderUpstreams(status) {
    const cards = Object.entries(status.upstreams || {}).map(([name, up]) => {
      const rows = up.backends.map((b) =>
        el("tr", { dataset: { backend: `${name}/${b.address}` } },
          el("td", { class: "address" }, b.address),
          el("td", { class: `health ${b.healthy ? "good" : "bad"}` }, b.healthy ? "healthy" : "unhealthy"),
          el("td", { class: `ejected ${b.ejected ? "bad" : "muted"}` }, b.ejected ? "ejected" : "no"),
          el("td", { class: "num inflight" }, b.in_flight),
          el("td", { class: "num weight" }, b.weight),
          el("td", { class: "num eweight" }, b.effective_weight),
          el("td", { class: "num latency" }, fmt.ms(b.latency_ms))));
      const table = el("table", {},
        el("thead", {}, el("tr", {}, ...["backend", "health", "ejected", "in flight", "weight", "effective weight", "latency ms"]
          .map((h, i) => el("th", { class: i >= 3 ? "num" : "" }, h)))),
        el("tbody", {}, ...rows));
      return el("div", { class: "upstream", dataset: { upstream: name } },
        el("h3", {}, name, el("span", { class: "muted" }, ` · ${up.balance} · ${up.healthy}/${up.backends.length} healthy`),
          up.panic ? el("span", { class: "badge bad" }, " panic: balancing across all") : null),
        el("div", { class: "scroll" }, table));
    });
    $("#upstreams").replaceChildren(...(cards.length ? cards : [el("p", { class: "muted" }, "No upstreams.")]));
  }

  function renderReloads(status) {
    const rows = (status.reloads || []).map((r) => {
      let detail = r.error || "";
      if (r.errors > 1) detail += ` (and ${r.errors - 1} more)`;
      if (r.needs_upgrade && r.needs_upgrade.length) detail = `needs an upgrade to apply: ${r.needs_upgrade.join(", ")}`;
      return el("tr", {},
        el("td", {}, fmt.date(r.at)),
        el("td", { class: r.result === "ok" ? "good" : "bad" }, r.result),
        el("td", { class: "wrap" }, detail));
    });
    fill($("#reloads tbody"), rows, "No reload since the gateway started.", 3);
  }

  function renderProcess(p) {
    if (!p) return;
    $("#version").textContent = `v${p.version}`;
    $("#uptime").textContent = `up ${fmt.duration(p.uptime_seconds)}`;
    $("#draining").hidden = !p.draining;
  }

  // ---- charts ------------------------------------------------------------

  /// A line per route over the window; `value(sample, route)` is a number,
  /// or null for no point (a gap).
  function chart(canvas, samples, names, colorOf, value) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight || 160;
    if (!w) return;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    const ctx = canvas.getContext("2d");
    ctx.scale(dpr, dpr);
    ctx.clearRect(0, 0, w, h);
    const left = 42, right = 6, top = 6, bottom = 18;
    const end = samples.length ? samples[samples.length - 1].t : Date.now() / 1000;
    // A young process has less history than the window: show what there
    // is (at least a minute) rather than a chart empty but for its edge.
    const span = Math.min(WINDOW_SECONDS, Math.max(60, samples.length ? end - samples[0].t : 0));
    const start = end - span;
    let max = 0;
    for (const s of samples) for (const n of names) max = Math.max(max, value(s, n) || 0);
    max = max > 0 ? max * 1.15 : 1;
    const x = (t) => left + ((t - start) / span) * (w - left - right);
    const y = (v) => top + (1 - v / max) * (h - top - bottom);

    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#66707c";
    ctx.strokeStyle = "#dde1e6";
    ctx.lineWidth = 1;
    for (const frac of [0, 0.5, 1]) {
      const v = max * frac;
      ctx.beginPath();
      ctx.moveTo(left, y(v) + 0.5);
      ctx.lineTo(w - right, y(v) + 0.5);
      ctx.stroke();
      ctx.fillText(v >= 100 ? v.toFixed(0) : v.toFixed(1), 2, y(v) + 4);
    }
    for (const ago of [span, span / 2, 0]) {
      const label = !ago ? "now" : ago >= 120 ? `-${Math.round(ago / 60)} min` : `-${Math.round(ago)} s`;
      const px = x(end - ago);
      ctx.fillText(label, Math.min(Math.max(px - 14, left), w - right - 30), h - 4);
    }
    ctx.lineWidth = 1.6;
    for (const n of names) {
      ctx.strokeStyle = colorOf(n);
      ctx.beginPath();
      ctx.fillStyle = colorOf(n);
      const points = samples.map((s) => [s.t, value(s, n)]);
      points.forEach(([t, v], i) => {
        if (v === null || v === undefined) return;
        const before = i > 0 && points[i - 1][1] != null;
        if (before) ctx.lineTo(x(t), y(v));
        else ctx.moveTo(x(t), y(v));
        // A point with no neighbour would draw nothing: mark it.
        const after = i + 1 < points.length && points[i + 1][1] != null;
        if (!before && !after) ctx.fillRect(x(t) - 2, y(v) - 2, 4, 4);
      });
      ctx.stroke();
    }
  }

  function render(status, series) {
    const samples = series.samples || [];
    const agg = aggregate(samples);
    const names = status.routes.map((r) => r.name);
    for (const n of agg.routes.keys()) if (!names.includes(n)) names.push(n);
    const colorOf = (n) => COLORS[Math.max(0, names.indexOf(n)) % COLORS.length];

    renderProcess(status.process);
    renderRoutes(status, agg, colorOf);
    renderLimits(status, agg);
    renderUpstreams(status);
    renderReloads(status);

    const active = names.filter((n) => agg.routes.has(n));
    chart($("#chart-rps"), samples, active, colorOf, (s, n) => (s.routes[n] ? s.routes[n].rps : 0));
    chart($("#chart-p99"), samples, active, colorOf, (s, n) => (s.routes[n] ? s.routes[n].p99_ms : null));
    $("#legend").replaceChildren(...active.map((n) =>
      el("span", {}, el("i", { style: `background:${colorOf(n)}` }), fmt.route(n))));
  }

  loop();
})();
