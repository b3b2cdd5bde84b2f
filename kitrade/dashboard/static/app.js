// kitrade dashboard: plain JavaScript over the gateway's JSON API, no build step.
//
// Server text only ever reaches the page through textContent or text nodes (the `el` helper),
// never innerHTML. The API key lives in sessionStorage: this tab only, gone when it closes.
"use strict";

(() => {
  const KEY_STORE = "kitrade.apiKey";
  const POLL_MS = 1000; // while a training run is active
  const WATCH_MS = 5000; // looking for runs started elsewhere (CLI, scheduler)
  const REFRESH_MS = 30000; // symbols, prices and sync status
  const HORIZONS = [1, 6, 12, 24, 48, 96, 168];

  const state = {
    symbols: [],
    selected: null,
    horizon: null, // null: the model's own horizon
    chartToken: 0,
    runId: null, // the run shown in the training panel
    active: {}, // symbol → its active version, as the models table last saw it
    loaded: false,
    readRefused: false, // a read answered 401/403 (KITRADE_READ_AUTH=1 without a key)
    runPending: false, // started here, not yet recorded by the server
    runActive: false,
    polling: false,
  };

  // ----------------------------------------------------------------- helpers
  const $ = (id) => document.getElementById(id);

  /** Build an element; text is always text (never parsed as HTML). */
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = String(v);
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  class ApiError extends Error {
    constructor(status, error, message) {
      super(message);
      this.status = status;
      this.error = error;
    }
  }

  function apiKey() {
    return sessionStorage.getItem(KEY_STORE) || "";
  }

  /** Call the gateway; resolve with the JSON body or reject with the server's message. */
  async function api(method, path, { query, body } = {}) {
    const headers = { Accept: "application/json" };
    const key = apiKey();
    if (key) headers.Authorization = `Bearer ${key}`;
    let url = path;
    if (query) {
      const qs = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) {
        if (v === undefined || v === null) continue;
        for (const item of Array.isArray(v) ? v : [v]) qs.append(k, String(item));
      }
      const s = qs.toString();
      if (s) url += `?${s}`;
    }
    const init = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(url, init);
    } catch (exc) {
      throw new ApiError(0, "NetworkError", `the server did not answer (${exc.message})`);
    }
    const text = await resp.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!resp.ok) {
      if (method === "GET" && (resp.status === 401 || resp.status === 403)) state.readRefused = true;
      const message = (data && data.message) || `${resp.status} ${resp.statusText}`.trim();
      throw new ApiError(resp.status, (data && data.error) || "HTTPError", message);
    }
    return data;
  }

  function showError(id, err) {
    const node = $(id);
    let text = err instanceof ApiError ? err.message : String((err && err.message) || err);
    if (err instanceof ApiError && err.status) text += ` (HTTP ${err.status})`;
    if (err instanceof ApiError && (err.status === 401 || err.status === 403) && !apiKey()) {
      text += " — enter the API key at the top of the page.";
    }
    node.textContent = text;
    node.dataset.status = err instanceof ApiError ? String(err.status) : "";
    node.hidden = false;
  }

  function clearError(id) {
    const node = $(id);
    node.textContent = "";
    node.hidden = true;
  }

  function note(id, text) {
    $(id).textContent = text;
  }

  const enc = encodeURIComponent;

  function fmtNum(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    return Number(v).toFixed(digits);
  }

  function priceDigits(v) {
    const a = Math.abs(v || 0);
    if (a === 0) return 2;
    if (a < 10) return 5;
    if (a < 1000) return 3;
    return 2;
  }

  function fmtPrice(v) {
    return v === null || v === undefined ? "–" : fmtNum(v, priceDigits(v));
  }

  function fmtTime(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    return `${d.toISOString().slice(0, 16).replace("T", " ")} UTC`;
  }

  /** Plotly reads "YYYY-MM-DD HH:MM:SS" (no zone); the axis is labelled UTC. */
  function plotTime(iso) {
    return new Date(iso).toISOString().slice(0, 19).replace("T", " ");
  }

  /**
   * Axis breaks over the slots a series never trades (FX weekends, stock weekends and
   * holidays), so candles stay side by side: every missing step inside a gap longer than
   * 1.5 usual steps is hidden. Monthly bars vary in length and are never broken.
   */
  function gapBreaks(isoTimes) {
    const t = [...new Set(isoTimes.map((s) => new Date(s).getTime()))].sort((a, b) => a - b);
    if (t.length < 3) return [];
    const diffs = t.slice(1).map((v, i) => v - t[i]).sort((a, b) => a - b);
    const step = diffs[Math.floor(diffs.length / 2)];
    if (!(step > 0) || step >= 27 * 86400000) return [];
    const values = [];
    for (let i = 1; i < t.length && values.length < 5000; i++) {
      if (t[i] - t[i - 1] <= 1.5 * step) continue;
      for (let v = t[i - 1] + step; v < t[i] && values.length < 5000; v += step) {
        values.push(plotTime(new Date(v).toISOString()));
      }
    }
    return values.length ? [{ values, dvalue: step }] : [];
  }

  function fmtSeconds(s) {
    if (s === null || s === undefined) return "–";
    if (s < 90) return `${Math.round(s)} s`;
    if (s < 5400) return `${Math.round(s / 60)} min`;
    return `${(s / 3600).toFixed(1)} h`;
  }

  function badge(text, cls) {
    return el("span", { class: `badge ${cls || text}`, text });
  }

  /** Run an async handler; errors go to the panel's error line instead of the console. */
  function guard(errorId, fn) {
    return async (...args) => {
      try {
        clearError(errorId);
        await fn(...args);
      } catch (err) {
        showError(errorId, err);
      }
    };
  }

  // ----------------------------------------------------------------- API key
  function renderKeyState() {
    note("key-state", apiKey() ? "key set for this tab" : "no key: actions will be refused");
  }

  /** With KITRADE_READ_AUTH=1 reads fail until a key is typed: load again once it is. */
  let reloadTimer = null;
  function reloadIfRefused() {
    if (!state.readRefused || !state.loaded) return;
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(loadAll, 600);
  }

  function initKey() {
    const input = $("api-key");
    input.value = apiKey();
    input.addEventListener("input", () => {
      const v = input.value.trim();
      if (v) sessionStorage.setItem(KEY_STORE, v);
      else sessionStorage.removeItem(KEY_STORE);
      renderKeyState();
      reloadIfRefused();
    });
    $("key-clear").addEventListener("click", () => {
      input.value = "";
      sessionStorage.removeItem(KEY_STORE);
      renderKeyState();
    });
    $("key-form").addEventListener("submit", (ev) => ev.preventDefault());
    renderKeyState();
  }

  // ------------------------------------------------------------------ health
  async function refreshHealth() {
    const pill = $("health");
    try {
      const resp = await fetch("health", { headers: { Accept: "application/json" } });
      const body = await resp.json();
      const down = Object.entries(body.components || {})
        .filter(([, c]) => c.status === "down")
        .map(([name]) => name);
      pill.textContent = down.length ? `degraded: ${down.join(", ")} down` : "healthy";
      pill.className = `pill ${down.length ? "degraded" : "ok"}`;
      const llm = body.components && body.components.llm ? body.components.llm.status : "?";
      pill.title = `GET /health: ${body.status}; LLM ${llm}; up ${fmtSeconds(body.uptime_s)}`;
    } catch (err) {
      pill.textContent = "unreachable";
      pill.className = "pill degraded";
    }
  }

  // ----------------------------------------------------------------- symbols
  async function lastChange(sym) {
    if (!sym.bars || sym.bars < 2) return null;
    try {
      const bars = await api("GET", `api/v1/symbols/${enc(sym.symbol)}/bars`, { query: { last: 2 } });
      if (bars.length < 2 || !bars[0].close) return null;
      return (bars[1].close / bars[0].close - 1) * 100;
    } catch {
      return null;
    }
  }

  async function loadSymbols() {
    const [symbols, syncStates] = await Promise.all([
      api("GET", "api/v1/symbols"),
      api("GET", "api/v1/sync/status").catch((err) => {
        showError("symbols-error", err);
        return [];
      }),
    ]);
    const changes = await Promise.all(symbols.map(lastChange));
    const sync = Object.fromEntries(syncStates.map((s) => [s.symbol, s]));
    state.symbols = symbols;
    const list = $("symbols");
    list.replaceChildren();
    symbols.forEach((s, i) => {
      const change = changes[i];
      const st = sync[s.symbol];
      const syncBadge = st ? badge(st.status) : badge("never synced", "skipped");
      if (st) {
        syncBadge.title = `last run ${fmtTime(st.last_run)} from ${st.source}` +
          (st.error ? `; error: ${st.error}` : "");
      }
      const li = el(
        "li",
        {
          dataset: { symbol: s.symbol },
          "data-testid": `symbol-${s.symbol}`,
          class: s.symbol === state.selected ? "selected" : "",
          title: `${s.description || s.symbol}: ${s.bars} bars, last ${fmtTime(s.last_bar)}`,
          onclick: () => select(s.symbol),
        },
        el("span", { class: "sym", text: s.symbol }),
        el("span", { class: "price", "data-testid": "last-close", text: fmtPrice(s.last_close) }),
        el("span", { class: "meta", text: `${s.timeframe} · ${s.bars} bars` }),
        el("span", {
          class: `change ${change > 0 ? "up" : change < 0 ? "down" : ""}`,
          "data-testid": "change",
          title: "change of the last close against the bar before",
          text: change === null ? "–" : `${change > 0 ? "+" : ""}${change.toFixed(2)} %`,
        }),
        el(
          "span",
          { class: "meta wide", "data-testid": "sync" },
          "sync ",
          syncBadge,
          st && st.last_run ? ` ${fmtTime(st.last_run)}` : "",
        ),
      );
      list.append(li);
    });
    if (!symbols.length) list.append(el("li", { class: "muted", text: "no symbols yet" }));
    renderTrainingRows();
  }

  function defaultSymbol() {
    const names = state.symbols.map((s) => s.symbol);
    const fromHash = decodeURIComponent(location.hash.slice(1));
    if (names.includes(fromHash)) return fromHash;
    if (names.includes("EURUSD")) return "EURUSD";
    const withBars = state.symbols.find((s) => s.bars > 0);
    return withBars ? withBars.symbol : names[0] || null;
  }

  async function select(symbol) {
    if (!symbol) return;
    const changed = symbol !== state.selected;
    state.selected = symbol;
    if (changed) state.horizon = null;
    if (location.hash.slice(1) !== symbol) history.replaceState(null, "", `#${enc(symbol)}`);
    for (const li of $("symbols").children) {
      li.classList.toggle("selected", li.dataset.symbol === symbol);
    }
    $("models-title").textContent = `Models · ${symbol}`;
    $("question").placeholder = `Should I buy or sell ${symbol}?`;
    renderTrainingRows();
    await Promise.all([
      guard("chart-error", loadChart)(),
      guard("models-error", loadModels)(),
      guard("analysis-error", loadHistory)(),
    ]);
  }

  // ------------------------------------------------------------------- chart
  function horizonOptions(max) {
    const select = $("horizon");
    const values = HORIZONS.filter((h) => h < max).concat([max]);
    select.replaceChildren(...values.map((h) => el("option", { value: h, text: String(h) })));
    select.value = String(state.horizon && state.horizon <= max ? state.horizon : max);
  }

  async function loadChart() {
    const sym = state.selected;
    if (!sym) return;
    const token = ++state.chartToken;
    const info = state.symbols.find((s) => s.symbol === sym);
    $("chart-title").textContent = `${sym}${info ? ` · ${info.timeframe}` : ""}`;
    const last = Number($("bars-count").value);
    const [bars, fc] = await Promise.all([
      api("GET", `api/v1/symbols/${enc(sym)}/bars`, { query: { last } }),
      api("GET", `api/v1/forecast/${enc(sym)}`, { query: { horizon: state.horizon } }).catch((e) => e),
    ]);
    if (token !== state.chartToken) return; // a newer selection won
    const forecast = fc instanceof Error ? null : fc;
    drawChart(sym, bars, forecast);
    if (forecast) {
      horizonOptions(forecast.max_horizon);
      const m = forecast.rmae;
      note(
        "forecast-info",
        `times in UTC · model ${forecast.version} · from last bar ${fmtTime(forecast.last_bar)} · ` +
          `${forecast.horizon} steps ahead (max ${forecast.max_horizon}) · ` +
          `rMAE ${fmtNum(m, 3)} (${forecast.verdict || (forecast.beats_naive ? "beats naive" : "no better than naive")}` +
          `${forecast.n_origins ? `, ${forecast.n_origins} origins` : ""})` +
          `${forecast.cached ? " · cached" : ""}`,
      );
    } else {
      $("horizon").replaceChildren();
      note("forecast-info", "");
      showError("chart-error", fc);
    }
  }

  /**
   * Reload the chart until its forecast comes from the active version: forecast replicas
   * pick up a promotion on their next registry poll, a few seconds after a run ends.
   */
  async function chartFollowsActive() {
    const sym = state.selected;
    for (let i = 0; i < 10; i++) {
      await loadChart();
      const want = state.active[sym];
      if (!want || sym !== state.selected || $("chart").dataset.forecastVersion === want) return;
      await new Promise((r) => setTimeout(r, 2000));
    }
  }

  function drawChart(sym, bars, fc) {
    const gd = $("chart");
    if (typeof window.Plotly === "undefined") {
      throw new Error("plotly.js did not load (static/plotly.min.js)");
    }
    const x = bars.map((b) => plotTime(b.ts));
    const traces = [
      {
        type: "candlestick",
        name: sym,
        meta: "bars",
        x,
        open: bars.map((b) => b.open),
        high: bars.map((b) => b.high),
        low: bars.map((b) => b.low),
        close: bars.map((b) => b.close),
        increasing: { line: { color: "#16a34a" } },
        decreasing: { line: { color: "#dc2626" } },
      },
    ];
    const shapes = [];
    if (fc && fc.points.length) {
      const fx = fc.points.map((p) => plotTime(p.ds));
      const back = [...fx].reverse();
      const band = (lo, hi, name, color, meta) => ({
        type: "scatter",
        mode: "lines",
        name,
        meta,
        x: fx.concat(back),
        y: fc.points.map((p) => p[hi]).concat(fc.points.map((p) => p[lo]).reverse()),
        fill: "toself",
        fillcolor: color,
        line: { width: 0 },
        hoverinfo: "skip",
      });
      traces.push(band("lo_95", "hi_95", "95 % interval", "rgba(37, 99, 235, 0.13)", "band95"));
      traces.push(band("lo_80", "hi_80", "80 % interval", "rgba(37, 99, 235, 0.28)", "band80"));
      const d = priceDigits(fc.points[0].mean);
      traces.push({
        type: "scatter",
        mode: "lines+markers",
        name: "forecast mean",
        meta: "mean",
        x: fx,
        y: fc.points.map((p) => p.mean),
        customdata: fc.points.map((p) => [p.lo_80, p.hi_80, p.lo_95, p.hi_95]),
        hovertemplate:
          `mean %{y:.${d}f}<br>80 %: %{customdata[0]:.${d}f} – %{customdata[1]:.${d}f}` +
          `<br>95 %: %{customdata[2]:.${d}f} – %{customdata[3]:.${d}f}<extra></extra>`,
        line: { color: "#1d4ed8", width: 2 },
        marker: { size: 4 },
      });
      if (x.length) {
        shapes.push({
          type: "line",
          xref: "x",
          yref: "paper",
          x0: x[x.length - 1],
          x1: x[x.length - 1],
          y0: 0,
          y1: 1,
          line: { color: "#9ca3af", width: 1, dash: "dot" },
        });
      }
    }
    const layout = {
      margin: { l: 60, r: 16, t: 8, b: 30 },
      xaxis: {
        type: "date",
        rangeslider: { visible: false },
        rangebreaks: gapBreaks(bars.map((b) => b.ts).concat(fc ? fc.points.map((p) => p.ds) : [])),
        hoverformat: "%Y-%m-%d %H:%M",
        tickangle: 0,
        ...dayTicks(x.concat(fc ? fc.points.map((p) => plotTime(p.ds)) : [])),
      },
      yaxis: { tickformat: `.${priceDigits(bars.length ? bars[bars.length - 1].close : 0)}f` },
      legend: { orientation: "h", x: 0, y: 1.0, yanchor: "bottom" },
      hovermode: "x",
      shapes,
      paper_bgcolor: "#ffffff",
      plot_bgcolor: "#ffffff",
      uirevision: sym,
    };
    const config = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
    window.Plotly.react(gd, traces, layout, config);
    gd.dataset.symbol = sym;
    gd.dataset.forecastVersion = fc ? fc.version : "";
    gd.dataset.bars = String(bars.length);
    gd.dataset.horizon = fc ? String(fc.horizon) : "";
  }

  /**
   * Intraday bars: one tick per day at a midnight that has a bar (Plotly's own ticks can
   * land on both sides of a weekend break and overlap), at most ~10 of them.
   */
  function dayTicks(times) {
    if (times.length < 2 || new Date(times[1]) - new Date(times[0]) >= 86400000) {
      return { nticks: 10 };
    }
    const midnights = times.filter((t) => t.endsWith(" 00:00:00"));
    if (midnights.length < 2) return { nticks: 10 };
    const every = Math.ceil(midnights.length / 10);
    return {
      tickmode: "array",
      tickvals: midnights.filter((_, i) => i % every === 0),
      tickformat: "%a %b %d",
    };
  }

  // ------------------------------------------------------------------ models
  function metricCells(v) {
    const m = v.metrics || {};
    const model = m.model || {};
    const naive = m.naive || {};
    const verdict = m.verdict || (m.beats_naive === undefined ? null : "no better than naive");
    const test =
      m.dm_pvalue === null || m.dm_pvalue === undefined
        ? "no Diebold-Mariano test"
        : `Diebold-Mariano ${fmtNum(m.dm_stat, 2)}, p ${fmtNum(m.dm_pvalue, 3)}`;
    const rmae = el(
      "td",
      {
        title:
          `MAE ${fmtNum(model.mae, 6)}, naive MAE ${fmtNum(naive.mae, 6)}, MASE ${fmtNum(model.mase, 3)}; ` +
          `${test}; ${m.n_origins ?? "?"} origins`,
      },
      `${fmtNum(model.rmae, 3)} `,
      verdict === null ? null : badge(verdict, m.beats_naive ? "ok" : "skipped"),
      m.n_origins === undefined ? null : el("span", { class: "muted small", text: ` ${m.n_origins} origins` }),
    );
    const pct = (c) => (c === null || c === undefined ? "–" : `${Math.round(c * 100)} %`);
    return [rmae, el("td", { text: `${pct(model.coverage_80)} / ${pct(model.coverage_95)}` })];
  }

  /** Calibrated NHITS's coverage beside its target (red: more than 3 points off), and the
   *  server's sentence when a baseline beats NHITS on every score; "–" for versions evaluated
   *  before band scores were stored. */
  function qualityCell(v) {
    const q = v.quality;
    if (!q) {
      return el("td", {
        "data-testid": "calibrated",
        "data-quality": "none",
        class: "muted",
        title: "evaluated before band scores and baselines were stored",
        text: "–",
      });
    }
    const band = (b, level) =>
      el("span", {
        "data-testid": `cal-${level}`,
        "data-miss": b.miss ? "1" : "0",
        class: b.miss ? "cov miss" : "cov",
        title: b.miss ? `more than 3 points from its ${level} % target` : `within 3 points of its ${level} % target`,
        text: b.coverage === null ? "–" : b.text,
      });
    const beaten = q.beaten_by.length > 0;
    return el(
      "td",
      { "data-testid": "calibrated", "data-quality": beaten ? "beaten" : "nhits", title: q.summary },
      band(q.coverage_80, "80"),
      " · ",
      band(q.coverage_95, "95"),
      beaten ? el("div", { class: "beaten small", "data-testid": "beaten", text: q.summary }) : null,
    );
  }

  function scopeCell(v) {
    // `symbol`: the symbol's own model; `shared`: one model trained on all the symbols of its group
    const shared = v.scope === "shared";
    return el("td", {
      "data-testid": "scope",
      "data-scope": v.scope || "symbol",
      "data-group": v.group || "",
      title: shared ? `one model shared by the symbols of group ${v.group}` : "this symbol's own model",
      text: shared ? `shared · ${v.group}` : "symbol",
    });
  }

  async function loadModels() {
    const sym = state.selected;
    if (!sym) return;
    const versions = await api("GET", "api/v1/models", { query: { symbol: sym } });
    if (sym !== state.selected) return;
    const active = versions.find((v) => v.status === "active");
    state.active[sym] = active ? active.version : null;
    const rows = versions.map((v) => {
      const action =
        v.status === "active"
          ? null
          : el("button", {
              type: "button",
              class: "secondary",
              "data-testid": `promote-${v.version}`,
              text: "promote",
              onclick: guard("models-error", () => promote(sym, v.version)),
            });
      return el(
        "tr",
        { "data-testid": `model-${v.version}`, "data-status": v.status },
        el("td", { class: "mono", title: `created ${fmtTime(v.created_at)}; ${v.n_bars} bars`, text: v.version }),
        el("td", {}, badge(v.status)),
        scopeCell(v),
        ...metricCells(v),
        qualityCell(v),
        el("td", { class: "reason", "data-testid": "reason", text: v.reason || "" }),
        el("td", {}, action),
      );
    });
    $("models-rows").replaceChildren(...rows);
    if (!versions.length) {
      $("models-rows").append(el("tr", {}, el("td", { colspan: 8, class: "muted", text: "no model yet: train one" })));
    }
  }

  async function promote(sym, version) {
    const out = await api("POST", `api/v1/models/${enc(sym)}/promote`, { body: { version } });
    note("models-note", `${out.version || version} is now active`);
    await Promise.all([loadModels(), guard("chart-error", loadChart)()]);
  }

  async function rollback() {
    const sym = state.selected;
    const out = await api("POST", `api/v1/models/${enc(sym)}/rollback`, { body: {} });
    note("models-note", `rolled back: ${out.version} is active`);
    await Promise.all([loadModels(), guard("chart-error", loadChart)()]);
  }

  // ---------------------------------------------------------------- training
  let lastRun = null;

  function renderTrainingRows() {
    const bySymbol = Object.fromEntries(((lastRun && lastRun.symbols) || []).map((s) => [s.symbol, s]));
    const names = state.symbols.map((s) => s.symbol);
    for (const s of Object.keys(bySymbol)) if (!names.includes(s)) names.push(s);
    const rows = names.map((name) => {
      const p = bySymbol[name];
      const pct = p ? p.percent || 0 : 0;
      const loss = p && (p.val_loss ?? p.train_loss);
      const detail = p ? p.error || p.detail || "" : "";
      return el(
        "tr",
        {
          "data-testid": `progress-${name}`,
          "data-state": p ? p.state : "",
          "data-step": p ? String(p.step) : "",
          class: name === state.selected ? "selected" : "",
        },
        el("td", { text: name, title: detail }),
        el("td", { title: detail }, p ? badge(p.state) : el("span", { class: "muted", text: "–" })),
        el(
          "td",
          { "data-testid": "step" },
          p ? `${p.step}/${p.max_steps}` : "–",
          p ? el("span", { class: "mini-bar" }, el("span", { style: `width:${Math.round(pct)}%` })) : null,
        ),
        el("td", {
          text: loss === null || loss === undefined ? "–" : Number(loss).toPrecision(4),
          title: p ? `train ${fmtNum(p.train_loss, 5)}, validation ${fmtNum(p.val_loss, 5)}` : "",
        }),
        el("td", { text: p && p.state === "running" && pct >= 5 ? fmtSeconds(p.eta_s) : "–" }),
        el(
          "td",
          {},
          el("button", {
            type: "button",
            class: "secondary",
            "data-testid": `train-${name}`,
            title: `train ${name} now (force)`,
            text: "train",
            onclick: guard("training-error", () => startTraining([name])),
          }),
        ),
      );
    });
    $("training-rows").replaceChildren(...rows);
  }

  function renderRun(run) {
    lastRun = run;
    if (!run || !run.run_id) {
      note("training-run", "no training run yet");
      $("training-bar").style.width = "0";
      renderTrainingRows();
      return;
    }
    const counts = Object.entries(run.counts || {})
      .map(([k, v]) => `${v} ${k}`)
      .join(", ");
    const status = run.finished_at ? run.status || "finished" : "running";
    note(
      "training-run",
      `run ${run.run_id} (${run.trigger || run.kind || "?"}) · ${status} · ${fmtNum(run.percent, 0)} %` +
        `${counts ? ` · ${counts}` : ""} · started ${fmtTime(run.started_at)}` +
        (run.finished_at
          ? ` · finished ${fmtTime(run.finished_at)}`
          : ` · eta ${run.percent >= 5 ? fmtSeconds(run.eta_s) : "–"}`),
    );
    $("training-run").dataset.status = status;
    $("training-bar").style.width = `${Math.min(100, run.percent || 0)}%`;
    renderTrainingRows();
  }

  async function startTraining(symbols) {
    const query = { background: "true", force: symbols ? "true" : String($("train-force").checked) };
    if (symbols) query.symbols = symbols;
    const out = await api("POST", "api/v1/forecast/train-all", { query });
    state.runId = out.run_id;
    state.runPending = true; // its driver records it a moment after the 202
    state.runActive = true;
    note("training-run", `run ${out.run_id} started, waiting for its first report…`);
    pollProgress();
  }

  async function pollProgress() {
    if (state.polling) return;
    state.polling = true;
    const started = Date.now();
    try {
      for (;;) {
        // Until a new run is recorded ask for the latest one (asking by id would be a 404).
        const query = state.runPending || !state.runId ? {} : { run_id: state.runId };
        try {
          const run = await api("GET", "api/v1/forecast/training/progress", { query });
          clearError("training-error");
          if (state.runPending && run.run_id === state.runId) state.runPending = false;
          if (!state.runPending) {
            renderRun(run);
            if (run.finished_at || !run.run_id) break;
          } else if (Date.now() - started > 60000) {
            throw new Error(`run ${state.runId} did not report within 60 s; see the server log`);
          }
        } catch (err) {
          showError("training-error", err);
          if (!(err instanceof ApiError)) break;
        }
        await new Promise((r) => setTimeout(r, POLL_MS));
      }
      if (state.runActive) {
        state.runActive = false;
        // New versions may have been promoted: refresh what depends on them.
        await Promise.all([guard("models-error", loadModels)(), guard("symbols-error", loadSymbols)()]);
        await guard("chart-error", chartFollowsActive)();
      }
    } finally {
      state.polling = false;
      state.runPending = false;
    }
  }

  /** Show the latest run; follow it live when it is still going (started from anywhere). */
  async function watchRuns() {
    if (state.polling) return;
    try {
      const run = await api("GET", "api/v1/forecast/training/progress");
      if (!run.run_id) {
        if (!lastRun) renderRun(run);
        return;
      }
      if (run.run_id !== state.runId || !lastRun) {
        state.runId = run.run_id;
        renderRun(run);
      }
      if (!run.finished_at) {
        state.runActive = true;
        pollProgress();
      }
    } catch (err) {
      showError("training-error", err);
    }
  }

  // ---------------------------------------------------------------- analysis
  function renderAnswer(a) {
    const rec = $("answer-rec");
    rec.textContent = a.recommendation;
    rec.className = `rec ${a.recommendation}`;
    $("answer-conf").textContent = `${Math.round((a.confidence || 0) * 100)} %`;
    $("answer-horizon").textContent = a.horizon || "–";
    $("answer-rationale").textContent = a.rationale;
    $("answer-risks").replaceChildren(...(a.risks || []).map((r) => el("li", { text: r })));
    if (!(a.risks || []).length) $("answer-risks").append(el("li", { class: "muted", text: "none stated" }));
    const cited = new Set(a.cited_source_ids || []);
    const sources = (a.sources || []).map((s) =>
      el(
        "li",
        { class: cited.has(s.id) ? "cited" : "", "data-testid": "source", "data-id": s.id },
        el(
          "div",
          { class: "src-head" },
          el("span", { class: "mono", text: `[${s.id}] ` }),
          `${s.title || s.source || ""}${s.date ? ` · ${s.date}` : ""}${s.source && s.title ? ` · ${s.source}` : ""}`,
        ),
        el("div", { class: "src-text", text: s.text }),
      ),
    );
    $("answer-sources").replaceChildren(...sources);
    if (!sources.length) $("answer-sources").append(el("li", { class: "muted", text: "no passages retrieved" }));
    $("answer-backend").textContent = `${a.backend}${a.model ? ` (${a.model})` : ""}` +
      `${a.forecast_version ? ` · forecast ${a.forecast_version}` : ""}`;
    $("answer-fallback").textContent = a.fallback_reason ? ` · fallback: ${a.fallback_reason}` : "";
    $("answer-notice").textContent = a.notice || "";
    $("answer").hidden = false;
  }

  async function ask(ev) {
    ev.preventDefault();
    const sym = state.selected;
    const input = $("question");
    const question = input.value.trim() || input.placeholder;
    const button = $("ask");
    button.disabled = true;
    button.textContent = "asking…";
    try {
      clearError("analysis-error");
      const answer = await api("POST", "api/v1/analyze", { body: { symbol: sym, question } });
      renderAnswer(answer);
      await loadHistory();
    } catch (err) {
      showError("analysis-error", err);
    } finally {
      button.disabled = false;
      button.textContent = "ask";
    }
  }

  async function loadHistory() {
    const sym = state.selected;
    if (!sym) return;
    const items = await api("GET", "api/v1/analyze/history", { query: { symbol: sym, limit: 5 } });
    if (sym !== state.selected) return;
    $("history").replaceChildren(
      ...items.map((h) =>
        el(
          "li",
          { "data-testid": "history-item", title: h.fallback_reason ? `fallback: ${h.fallback_reason}` : "" },
          el("span", { class: "muted", text: `${fmtTime(h.created_at)} · ` }),
          `${h.question} → `,
          el("span", { class: `rec ${h.recommendation}`, text: h.recommendation }),
          ` ${Math.round((h.confidence || 0) * 100)} % · ${h.backend}`,
        ),
      ),
    );
    if (!items.length) $("history").append(el("li", { class: "muted", text: `no answers for ${sym} yet` }));
  }

  // --------------------------------------------------------------- knowledge
  function readFile(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result));
      reader.onerror = () => reject(new Error(`could not read ${file.name}`));
      reader.readAsText(file);
    });
  }

  async function upload(ev) {
    ev.preventDefault();
    const input = $("kb-file");
    const file = input.files && input.files[0];
    if (!file) throw new Error("choose a .md or .txt file first");
    if (!/\.(md|markdown|txt)$/i.test(file.name)) {
      throw new Error(`expected a .md or .txt file, was ${file.name}`);
    }
    const text = await readFile(file);
    const out = await api("POST", "api/v1/knowledge", { body: { text, source: file.name } });
    note("kb-note", `added "${out.title}" as ${out.doc_id} (${out.chunks} chunks)`);
    input.value = "";
    await loadKnowledge();
  }

  async function removeDoc(docId) {
    const out = await api("DELETE", `api/v1/knowledge/${enc(docId)}`);
    note("kb-note", `deleted ${out.doc_id} (${out.chunks_deleted} chunks)`);
    await loadKnowledge();
  }

  async function loadKnowledge() {
    const docs = await api("GET", "api/v1/knowledge");
    const rows = docs.map((d) =>
      el(
        "tr",
        { "data-testid": `kb-${d.doc_id}`, "data-doc-id": d.doc_id },
        el("td", { title: d.doc_id, text: d.title || d.doc_id }),
        el("td", { class: "muted", text: `${d.source}${d.date ? ` · ${d.date}` : ""}` }),
        el("td", { text: String(d.chunks) }),
        el(
          "td",
          {},
          el("button", {
            type: "button",
            class: "danger",
            "data-testid": `kb-delete-${d.doc_id}`,
            text: "delete",
            onclick: guard("kb-error", () => removeDoc(d.doc_id)),
          }),
        ),
      ),
    );
    $("kb-rows").replaceChildren(...rows);
    if (!docs.length) $("kb-rows").append(el("tr", {}, el("td", { colspan: 4, class: "muted", text: "empty" })));
  }

  // -------------------------------------------------------------------- sync
  async function syncNow() {
    const report = await api("POST", "api/v1/sync");
    const fresh = report.results.reduce((n, r) => n + (r.new_bars || 0), 0);
    const failed = report.results.filter((r) => r.status === "failed").map((r) => r.symbol);
    note("symbols-note", `synced from ${report.source}: ${fresh} new bars` +
      (failed.length ? `; failed: ${failed.join(", ")}` : ""));
    await loadSymbols();
    await guard("chart-error", loadChart)();
  }

  // --------------------------------------------------------------- backtests
  const BT_METRICS = [
    ["total_return", "total return", "pct"],
    ["cagr", "CAGR", "pct"],
    ["sharpe", "Sharpe", 2],
    ["sortino", "Sortino", 2],
    ["max_drawdown", "max drawdown", "pct"],
    ["volatility", "volatility (yearly)", "pct"],
    ["win_rate", "win rate", "pct"],
    ["profit_factor", "profit factor", 2],
    ["exposure", "exposure", "pct"],
    ["n_trades", "round trips", 0],
    ["fees_paid", "fees paid", 2],
    ["n_bars", "bars", 0],
  ];

  function fmtMetric(v, how) {
    if (v === null || v === undefined) return "–";
    return how === "pct" ? `${(v * 100).toFixed(2)} %` : fmtNum(v, how);
  }

  async function loadStrategies() {
    const strategies = await api("GET", "api/v1/strategies");
    const select = $("bt-strategy");
    const keep = select.value;
    select.replaceChildren(
      ...strategies.map((s) =>
        el("option", {
          value: s.name,
          disabled: s.kind === "parameters",
          "data-kind": s.kind,
          title: s.kind === "parameters"
            ? "parameter-only: give it a backtest kind to run it"
            : `${s.kind} on ${s.symbols.join(", ")} (${s.timeframe})`,
          text: `${s.name} · ${s.kind === "parameters" ? "parameter-only" : s.kind} · ${s.symbols.join(",")}`,
        }),
      ),
    );
    if (!strategies.length) select.append(el("option", { value: "", text: "no strategies yet" }));
    const runnable = strategies.filter((s) => s.kind !== "parameters").map((s) => s.name);
    select.value = runnable.includes(keep) ? keep : runnable[0] || "";
    $("bt-run").disabled = !runnable.length;
  }

  async function runBacktest(ev) {
    ev.preventDefault();
    const body = { strategy: $("bt-strategy").value, folds: Number($("bt-folds").value || 1) };
    if (!body.strategy) throw new Error("choose a strategy of a backtest kind first");
    const start = $("bt-start").value.trim();
    if (start) body.start = start;
    const model = $("bt-model").value.trim();
    if (model) {
      try {
        body.model = JSON.parse(model);
      } catch (exc) {
        throw new Error(`model: expected a JSON object such as {"max_steps": 50}, was ${model}`);
      }
    }
    const button = $("bt-run");
    button.disabled = true;
    try {
      const out = await api("POST", "api/v1/backtests", { body });
      note("bt-status", `backtest ${out.id} accepted, waiting for the cluster…`);
      await followBacktest(out.id);
    } finally {
      button.disabled = false;
    }
  }

  let btToken = 0;
  async function followBacktest(id) {
    const token = ++btToken;
    $("bt-result").hidden = true;
    for (;;) {
      const bt = await api("GET", `api/v1/backtests/${id}`);
      if (token !== btToken) return; // another backtest was opened meanwhile
      renderBacktestStatus(bt);
      if (bt.status === "done" || bt.status === "failed") {
        if (bt.status === "done") await renderBacktestResult(bt);
        else showError("bt-error", new Error(`backtest ${bt.id} failed: ${bt.error}`));
        await loadBacktests();
        return;
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  function renderBacktestStatus(bt) {
    const what = bt.strategy_name || bt.spec.kind;
    const period = bt.period_start || bt.period_end
      ? ` · ${fmtTime(bt.period_start)} – ${fmtTime(bt.period_end)}` : "";
    note(
      "bt-status",
      `backtest ${bt.id} · ${what} on ${bt.symbols.join(", ")} (${bt.timeframe}) · ${bt.n_folds} folds` +
        `${period} · ${bt.status} ${Math.round((bt.progress || 0) * 100)} %`,
    );
    $("bt-status").dataset.status = bt.status;
    $("bt-status").dataset.id = String(bt.id);
    $("bt-bar").style.width = `${Math.round((bt.progress || 0) * 100)}%`;
  }

  async function renderBacktestResult(bt) {
    $("bt-result").hidden = false;
    drawEquity(bt);
    renderMetrics(bt.metrics || {});
    renderFolds(bt.folds || []);
    renderChecks(bt.lookahead_checks || [], bt.lag_test);
    await drawTrades(bt);
  }

  function drawEquity(bt) {
    const series = (pts) => ({ x: pts.map((p) => plotTime(p[0])), y: pts.map((p) => p[1]) });
    const eq = series(bt.equity || []);
    const bh = series(bt.benchmark_equity || []);
    const dd = series(bt.drawdown || []);
    const traces = [
      { type: "scatter", mode: "lines", name: "strategy", meta: "equity", ...eq, line: { color: "#2563eb", width: 2 } },
      { type: "scatter", mode: "lines", name: "buy & hold", meta: "benchmark", ...bh, line: { color: "#6b7585", width: 1.5, dash: "dot" } },
      {
        type: "scatter", mode: "lines", name: "drawdown", meta: "drawdown", ...dd, y: dd.y.map((v) => v * 100),
        yaxis: "y2", fill: "tozeroy", line: { color: "#dc2626", width: 1 }, fillcolor: "rgba(220, 38, 38, 0.15)",
        hovertemplate: "%{y:.2f} %<extra>drawdown</extra>",
      },
    ];
    const layout = {
      margin: { l: 60, r: 16, t: 28, b: 30 },
      xaxis: { type: "date", anchor: "y2", hoverformat: "%Y-%m-%d %H:%M" },
      yaxis: { domain: [0.36, 1], title: { text: "equity", font: { size: 11 } } },
      yaxis2: { domain: [0, 0.28], title: { text: "drawdown %", font: { size: 11 } }, ticksuffix: "" },
      legend: { orientation: "h", x: 0, y: 1.0, yanchor: "bottom" },
      hovermode: "x unified",
      paper_bgcolor: "#ffffff",
      plot_bgcolor: "#ffffff",
    };
    const gd = $("bt-equity");
    window.Plotly.react(gd, traces, layout, { displaylogo: false, responsive: true });
    gd.dataset.points = String(eq.x.length);
    gd.dataset.id = String(bt.id);
  }

  async function drawTrades(bt) {
    const sym = bt.symbols[0];
    const eq = bt.equity || [];
    if (!eq.length) return;
    const end = new Date(new Date(eq[eq.length - 1][0]).getTime() + 1000).toISOString();
    const bars = await api("GET", `api/v1/symbols/${enc(sym)}/bars`, { query: { start: eq[0][0], end } });
    const trades = (bt.trades || []).filter((t) => t.symbol === sym);
    const side = (name, color, symbol) => {
      const rows = trades.filter((t) => t.side === name);
      return {
        type: "scatter", mode: "markers", name: `${name} fills`, meta: name,
        x: rows.map((t) => plotTime(t.ts)), y: rows.map((t) => t.price),
        customdata: rows.map((t) => [t.qty, t.fee]),
        hovertemplate: `${name} %{customdata[0]:.4g} @ %{y}<br>fee %{customdata[1]:.2f}<extra></extra>`,
        marker: { color, symbol, size: 9, line: { color: "#111827", width: 0.5 } },
      };
    };
    const traces = [
      {
        type: "candlestick", name: sym, meta: "bars", x: bars.map((b) => plotTime(b.ts)),
        open: bars.map((b) => b.open), high: bars.map((b) => b.high),
        low: bars.map((b) => b.low), close: bars.map((b) => b.close),
        increasing: { line: { color: "#16a34a" } }, decreasing: { line: { color: "#dc2626" } },
      },
      side("buy", "#16a34a", "triangle-up"),
      side("sell", "#dc2626", "triangle-down"),
    ];
    const layout = {
      margin: { l: 60, r: 16, t: 28, b: 30 },
      xaxis: { type: "date", rangeslider: { visible: false }, rangebreaks: gapBreaks(bars.map((b) => b.ts)), hoverformat: "%Y-%m-%d %H:%M" },
      legend: { orientation: "h", x: 0, y: 1.0, yanchor: "bottom" },
      hovermode: "closest",
      paper_bgcolor: "#ffffff",
      plot_bgcolor: "#ffffff",
    };
    $("bt-trades-title").textContent =
      `${sym}: the strategy's fills on its bars${bt.symbols.length > 1 ? ` (first of ${bt.symbols.length} symbols)` : ""}`;
    const gd = $("bt-trades");
    window.Plotly.react(gd, traces, layout, { displaylogo: false, responsive: true });
    gd.dataset.trades = String(trades.length);
    gd.dataset.bars = String(bars.length);
  }

  function renderMetrics(metrics) {
    const cols = ["strategy", "buy_and_hold", "naive"];
    $("bt-metrics-rows").replaceChildren(
      ...BT_METRICS.map(([key, label, how]) =>
        el(
          "tr",
          { "data-metric": key },
          el("td", { text: label }),
          ...cols.map((c) => el("td", { class: "num", "data-col": c, text: fmtMetric((metrics[c] || {})[key], how) })),
        ),
      ),
    );
  }

  function renderFolds(folds) {
    $("bt-fold-rows").replaceChildren(
      ...folds.map((f) =>
        el(
          "tr",
          { "data-testid": "bt-fold" },
          el("td", { text: f.symbol }),
          el("td", { text: String(f.index) }),
          el("td", { text: fmtTime(f.trained_through) }),
          el("td", { class: "num", text: String(f.n_train) }),
          el("td", { text: fmtTime(f.start) }),
          el("td", { text: fmtTime(f.end) }),
          el("td", { class: "num", text: String(f.n_decisions) }),
        ),
      ),
    );
  }

  function renderChecks(checks, lag) {
    const items = checks.map((c) =>
      el(
        "li",
        { "data-testid": "bt-check", "data-passed": String(c.passed) },
        badge(c.passed ? "passed" : "failed", c.passed ? "ok" : "failed"),
        ` ${c.name.replaceAll("_", " ")} `,
        el("span", { class: "muted", text: c.detail || "" }),
      ),
    );
    if (lag) {
      items.push(
        el(
          "li",
          { title: lag.description || "" },
          badge("lag test", "skipped"),
          ` return ${fmtMetric(lag.total_return, "pct")} on time vs ${fmtMetric(lag.total_return_lagged, "pct")} one bar late`,
        ),
      );
    }
    $("bt-checks").replaceChildren(...items);
  }

  async function loadBacktests() {
    const list = await api("GET", "api/v1/backtests", { query: { limit: 20 } });
    const ret = (b, c) => fmtMetric(b.metrics && b.metrics[c] ? b.metrics[c].total_return : null, "pct");
    $("bt-rows").replaceChildren(
      ...list.map((b) =>
        el(
          "tr",
          {
            class: "clickable",
            "data-testid": `bt-row-${b.id}`,
            title: b.error || "show this backtest",
            onclick: guard("bt-error", () => followBacktest(b.id)),
          },
          el("td", { text: String(b.id) }),
          el("td", { text: b.strategy_name || b.spec.kind }),
          el("td", { text: b.symbols.join(", ") }),
          el("td", {}, badge(b.status)),
          el("td", { class: "num", text: ret(b, "strategy") }),
          el("td", { class: "num", text: ret(b, "buy_and_hold") }),
          el("td", { text: fmtTime(b.created_at) }),
        ),
      ),
    );
    if (!list.length) $("bt-rows").append(el("tr", {}, el("td", { colspan: 7, class: "muted", text: "none yet" })));
  }

  // -------------------------------------------------------------------- init
  async function loadAll() {
    state.readRefused = false;
    await guard("symbols-error", loadSymbols)();
    await Promise.all([
      select(state.selected || defaultSymbol()),
      guard("kb-error", loadKnowledge)(),
      guard("bt-error", loadStrategies)(),
      guard("bt-error", loadBacktests)(),
      watchRuns(),
    ]);
  }

  async function init() {
    initKey();
    $("bars-count").addEventListener("change", guard("chart-error", loadChart));
    $("horizon").addEventListener("change", () => {
      state.horizon = Number($("horizon").value);
      guard("chart-error", loadChart)();
    });
    $("train-all").addEventListener("click", guard("training-error", () => startTraining(null)));
    $("rollback").addEventListener("click", guard("models-error", rollback));
    $("sync-btn").addEventListener("click", guard("symbols-error", syncNow));
    $("ask-form").addEventListener("submit", ask);
    $("kb-form").addEventListener("submit", guard("kb-error", upload));
    $("bt-form").addEventListener("submit", guard("bt-error", runBacktest));
    window.addEventListener("hashchange", () => {
      const sym = decodeURIComponent(location.hash.slice(1));
      if (sym && sym !== state.selected && state.symbols.some((s) => s.symbol === sym)) select(sym);
    });

    refreshHealth();
    await loadAll();
    state.loaded = true;
    document.body.dataset.ready = "1";

    setInterval(watchRuns, WATCH_MS);
    setInterval(() => {
      refreshHealth();
      guard("symbols-error", loadSymbols)();
      guard("chart-error", loadChart)();
      guard("models-error", loadModels)();
    }, REFRESH_MS);
  }

  init();
})();
