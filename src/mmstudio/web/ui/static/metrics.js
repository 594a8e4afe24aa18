// mmstudio: the Metrics page. Fetches /api/metrics, draws the charts (Chart.js) and the per-model table,
// refreshes every 30 s without a reload and re-colours the charts when the theme changes.
// Chart instances are exposed as window.mmCharts (tests read their datasets).
"use strict";

(function () {
  const REFRESH_MS = 30000;
  // Bucket sizes that fit each range (10 to ~170 bars); the first listed after "default" is used.
  const RANGES = {
    "1h": { seconds: 3600, buckets: ["1m", "5m"], default: "1m", words: "the last hour" },
    "6h": { seconds: 21600, buckets: ["5m", "15m", "1h"], default: "5m", words: "the last 6 hours" },
    "24h": { seconds: 86400, buckets: ["15m", "1h", "6h"], default: "1h", words: "the last 24 hours" },
    "7d": { seconds: 604800, buckets: ["1h", "6h", "1d"], default: "6h", words: "the last 7 days" },
    "30d": { seconds: 2592000, buckets: ["6h", "1d"], default: "1d", words: "the last 30 days" },
  };
  const BUCKET_WORDS = { "1m": "1 minute", "5m": "5 minutes", "15m": "15 minutes", "1h": "1 hour", "6h": "6 hours", "1d": "1 day (UTC)" };
  const PALETTE_SIZE = 8;

  const $ = (id) => document.getElementById(id);
  const charts = {};
  window.mmCharts = charts;
  const colourIndex = new Map(); // model -> palette slot, kept for the page's life so colours stay put
  let last = null; // the last summary shown
  let controller = null;
  let timer = null;
  let loadedAt = 0;

  // -- formatting ----------------------------------------------------------------------------------
  const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  const oneDecimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });

  function fmtMs(value) {
    if (value === null || value === undefined) return "–";
    if (value >= 10000) return oneDecimal.format(value / 1000) + " s";
    return (value >= 10 ? integer.format(value) : oneDecimal.format(value)) + " ms";
  }
  function fmtRate(part, whole) {
    if (!whole) return "–";
    const pct = (100 * part) / whole;
    return (pct === 0 || pct === 100 || pct >= 10 ? integer.format(pct) : oneDecimal.format(pct)) + "%";
  }
  function fmtTokens(value) { return value >= 10000 ? compact.format(value) : integer.format(value); }
  function fmtCost(stats) {
    if (!stats.priced_requests) return "–";
    const cost = stats.cost_usd;
    if (cost === 0) return "$0";
    if (cost < 0.01) return "$" + cost.toPrecision(2);
    return "$" + cost.toFixed(2);
  }
  // p50 and p95 sharing one unit ("8.5 / 13 ms", "0.4 / 1.1 s"), so the pair fits a tile.
  function fmtMsPair(p50, p95) {
    if (p50 === null || p95 === null) return "–";
    if (p95 >= 1000) return oneDecimal.format(p50 / 1000) + " / " + oneDecimal.format(p95 / 1000) + " s";
    const one = (v) => (v >= 10 ? integer.format(v) : oneDecimal.format(v));
    return one(p50) + " / " + one(p95) + " ms";
  }
  function fmtTps(value) {
    if (value === null || value === undefined) return "–";
    return value >= 100 ? integer.format(value) : oneDecimal.format(value);
  }
  function failed(stats) { return stats.errors + stats.rejected; }

  function modelName(model, by) {
    if (model !== null) return model;
    return by === "requested" ? "Default model" : "No model answered";
  }

  function bucketLabels(summary) {
    const seconds = summary.bucket_seconds;
    const span = (Date.parse(summary.until) - Date.parse(summary.since)) / 1000;
    let options;
    if (seconds >= 86400) options = { month: "short", day: "numeric", timeZone: "UTC" };
    else if (span > 86400) options = { weekday: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    else options = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    const format = new Intl.DateTimeFormat(undefined, options);
    return summary.buckets.map((iso) => format.format(new Date(iso)));
  }

  function bucketTitle(summary, index) {
    const start = new Date(summary.buckets[index]);
    const end = new Date(start.getTime() + summary.bucket_seconds * 1000);
    const utc = summary.bucket_seconds >= 86400 ? { timeZone: "UTC" } : {};
    const day = new Intl.DateTimeFormat(undefined, Object.assign({ month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" }, utc));
    const time = new Intl.DateTimeFormat(undefined, Object.assign({ hour: "2-digit", minute: "2-digit", hourCycle: "h23" }, utc));
    return day.format(start) + " – " + time.format(end) + (utc.timeZone ? " UTC" : "");
  }

  // -- colours (from metrics.css / app.css custom properties, so both themes are styled there) -------
  function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

  function theme() {
    return {
      name: document.documentElement.dataset.theme || "light",
      text: cssVar("--text"),
      muted: cssVar("--muted"),
      grid: cssVar("--chart-grid") || cssVar("--border"),
      panel: cssVar("--panel"),
      palette: Array.from({ length: PALETTE_SIZE }, (_, i) => cssVar("--chart-" + (i + 1))),
      none: cssVar("--chart-none") || cssVar("--muted"),
      danger: cssVar("--danger"),
    };
  }

  function colourOf(model, colours) {
    if (model === null) return colours.none;
    if (!colourIndex.has(model)) colourIndex.set(model, colourIndex.size % PALETTE_SIZE);
    return colours.palette[colourIndex.get(model)];
  }

  function translucent(colour, alpha) {
    const hex = colour.replace("#", "");
    if (!/^[0-9a-f]{6}$/i.test(hex)) return colour;
    const n = parseInt(hex, 16);
    return "rgba(" + ((n >> 16) & 255) + ", " + ((n >> 8) & 255) + ", " + (n & 255) + ", " + alpha + ")";
  }

  // -- charts --------------------------------------------------------------------------------------
  const CHARTS = {
    requests: { type: "bar", canvas: "chart-requests", unit: "requests", counts: true },
    errors: { type: "bar", canvas: "chart-errors", unit: "errors", counts: true },
    fallbacks: { type: "bar", canvas: "chart-fallbacks", unit: "fallbacks", counts: true },
    latency: { type: "line", canvas: "chart-latency", unit: "ms", counts: false },
    tps: { type: "line", canvas: "chart-tps", unit: "tokens/s", counts: false },
  };

  function chartOptions(name, colours) {
    const spec = CHARTS[name];
    const axis = {
      ticks: { color: colours.muted, maxRotation: 0, autoSkipPadding: 12 },
      grid: { color: colours.grid },
      border: { color: colours.grid },
    };
    return {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: "index", intersect: false },
      scales: {
        x: Object.assign({ stacked: spec.counts }, axis, { grid: { display: false }, border: { color: colours.grid } }),
        y: Object.assign({ stacked: spec.counts, beginAtZero: true }, axis, {
          ticks: Object.assign({}, axis.ticks, spec.counts ? { precision: 0 } : {}),
          title: { display: true, text: spec.unit, color: colours.muted },
        }),
      },
      plugins: {
        legend: {
          position: "bottom",
          labels: Object.assign(
            { color: colours.text, boxWidth: 12, boxHeight: 12, padding: 12 },
            spec.type === "line" ? { usePointStyle: true, boxHeight: 8, pointStyleWidth: 10 } : {}
          ),
        },
        tooltip: {
          backgroundColor: colours.panel,
          titleColor: colours.text,
          bodyColor: colours.text,
          borderColor: colours.grid,
          borderWidth: 1,
          filter: (item) => item.raw !== null && item.raw !== 0,
          callbacks: {
            title: (items) => (items.length && last ? bucketTitle(last, items[0].dataIndex) : ""),
            label: (item) => {
              const value = item.raw;
              const shown = spec.unit === "ms" ? fmtMs(value) : spec.counts ? integer.format(value) : oneDecimal.format(value) + " tokens/s";
              return " " + item.dataset.label + ": " + shown;
            },
          },
        },
      },
    };
  }

  // One dataset per model (two for latency: p50 and p95). Models without a value in a chart are left
  // out of it, so legends list only what is drawn.
  function datasets(name, summary, colours) {
    const by = summary.by || "used";
    const out = [];
    for (const entry of summary.models) {
      const s = entry.series;
      const label = modelName(entry.model, by);
      const colour = colourOf(entry.model, colours);
      const bar = (data) => ({
        label, data, model: entry.model,
        backgroundColor: translucent(colour, 0.85), borderColor: colour, borderWidth: 0, borderRadius: 2,
        maxBarThickness: 28,
      });
      const line = (data, extra) => Object.assign({
        label, data, model: entry.model,
        borderColor: colour, backgroundColor: colour, pointBackgroundColor: colour,
        borderWidth: 2, pointRadius: 2.5, pointHoverRadius: 4, tension: 0.25, spanGaps: false,
      }, extra || {});
      const any = (values) => values.some((v) => v !== null && v !== 0);
      if (name === "requests") out.push(bar(s.requests));
      else if (name === "errors") {
        const values = s.errors.map((e, i) => e + s.rejected[i]);
        if (any(values)) out.push(bar(values));
      } else if (name === "fallbacks") {
        if (any(s.fallbacks)) out.push(bar(s.fallbacks));
      } else if (name === "latency") {
        if (any(s.latency_p50_ms)) {
          out.push(line(s.latency_p50_ms, { label: label + " p50", stat: "p50" }));
          out.push(line(s.latency_p95_ms, { label: label + " p95", stat: "p95", borderDash: [6, 4], pointStyle: "rectRot", backgroundColor: colours.panel }));
        }
      } else if (name === "tps") {
        if (any(s.tokens_per_second_mean)) out.push(line(s.tokens_per_second_mean));
      }
    }
    return out;
  }

  function draw(summary) {
    const colours = theme();
    const labels = bucketLabels(summary);
    for (const name of Object.keys(CHARTS)) {
      const data = { labels, datasets: datasets(name, summary, colours) };
      const canvas = $(CHARTS[name].canvas);
      const note = canvas.parentElement.querySelector(".chart-note");
      if (note) note.hidden = data.datasets.length > 0;
      canvas.closest(".chart-card").dataset.empty = String(data.datasets.length === 0);
      let chart = charts[name];
      if (!chart) {
        chart = charts[name] = new Chart(canvas, { type: CHARTS[name].type, data, options: chartOptions(name, colours) });
      } else {
        chart.data = data;
        chart.update("none");
      }
      chart.$theme = colours.name;
    }
    const by = summary.by || "used";
    const nobody = summary.models.find((m) => m.model === null);
    $("errors-hint").hidden = !(by === "used" && nobody && failed(nobody.totals) > 0);
    document.querySelector('[data-caption="fallbacks"]').textContent =
      by === "used" ? "answered by a fallback model" : "the model asked for fell back to another";
  }

  function recolour() {
    if (!last) return;
    const colours = theme();
    for (const name of Object.keys(charts)) {
      const chart = charts[name];
      chart.options = chartOptions(name, colours);
      chart.data.datasets = datasets(name, last, colours);
      chart.$theme = colours.name;
      chart.update("none");
    }
  }

  // -- tiles and table -----------------------------------------------------------------------------
  function setTile(name, text) { document.querySelector('[data-tile="' + name + '"]').textContent = text; }
  function setNote(name, text) { document.querySelector('[data-note="' + name + '"]').textContent = text; }

  function tiles(summary) {
    const t = summary.totals;
    setTile("requests", integer.format(t.requests));
    setNote("requests", integer.format(t.ok) + " answered" + (t.cancelled ? ", " + integer.format(t.cancelled) + " cancelled" : ""));
    setTile("error-rate", fmtRate(failed(t), t.requests));
    setNote("error-rate", integer.format(failed(t)) + " failed" + (t.rejected ? " (" + integer.format(t.rejected) + " refused by limits)" : ""));
    setTile("latency", fmtMsPair(t.latency_p50_ms, t.latency_p95_ms));
    setTile("tps", fmtTps(t.tokens_per_second_mean));
    setTile("fallbacks", integer.format(t.fallbacks));
    setNote("fallbacks", t.requests ? fmtRate(t.fallbacks, t.requests) + " of requests" : "");
    setTile("tokens", fmtTokens(t.input_tokens) + " / " + fmtTokens(t.output_tokens));
    setNote("cost", t.priced_requests ? "est. cost " + fmtCost(t) : "no prices known: cost not estimated");
  }

  function cell(row, text, className, title) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    if (title) td.title = title;
    row.appendChild(td);
    return td;
  }

  function statCells(row, stats) {
    cell(row, integer.format(stats.requests), "num").dataset.col = "requests";
    const errors = cell(row, integer.format(failed(stats)), "num", stats.rejected ? integer.format(stats.rejected) + " refused by limits" : "");
    errors.dataset.col = "errors";
    if (failed(stats)) errors.classList.add("bad");
    cell(row, fmtRate(failed(stats), stats.requests), "num").dataset.col = "error-rate";
    cell(row, fmtMs(stats.latency_p50_ms), "num").dataset.col = "p50";
    cell(row, fmtMs(stats.latency_p95_ms), "num").dataset.col = "p95";
    cell(row, fmtTps(stats.tokens_per_second_mean), "num").dataset.col = "tps";
    cell(row, integer.format(stats.fallbacks), "num").dataset.col = "fallbacks";
    cell(row, integer.format(stats.input_tokens), "num").dataset.col = "tokens-in";
    cell(row, integer.format(stats.output_tokens), "num").dataset.col = "tokens-out";
    cell(row, fmtCost(stats), "num", stats.priced_requests ? "" : "no price known for this model").dataset.col = "cost";
  }

  function table(summary) {
    const colours = theme();
    const body = document.querySelector("#metrics-table tbody");
    const foot = document.querySelector("#metrics-table tfoot");
    body.replaceChildren();
    foot.replaceChildren();
    for (const entry of summary.models) {
      const row = document.createElement("tr");
      row.dataset.model = entry.model === null ? "" : entry.model;
      const th = document.createElement("th");
      th.scope = "row";
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colourOf(entry.model, colours);
      const name = document.createElement("span");
      name.className = entry.model === null ? "model-name none" : "model-name";
      name.textContent = modelName(entry.model, summary.by || "used");
      th.append(swatch, name);
      row.appendChild(th);
      statCells(row, entry.totals);
      body.appendChild(row);
    }
    if (summary.models.length > 1) {
      const row = document.createElement("tr");
      row.className = "total";
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = "All models";
      row.appendChild(th);
      statCells(row, summary.totals);
      foot.appendChild(row);
    }
  }

  function refreshSwatches() {
    const colours = theme();
    document.querySelectorAll("#metrics-table tbody tr").forEach((row) => {
      const swatch = row.querySelector(".swatch");
      if (swatch) swatch.style.background = colourOf(row.dataset.model === "" ? null : row.dataset.model, colours);
    });
  }

  // -- state ---------------------------------------------------------------------------------------
  function settings() {
    return { range: $("metrics-range").value, bucket: $("metrics-bucket").value, by: $("metrics-by").value };
  }

  function fillBuckets(range, wanted) {
    const spec = RANGES[range] || RANGES["24h"];
    const select = $("metrics-bucket");
    select.replaceChildren(...spec.buckets.map((b) => new Option(BUCKET_WORDS[b], b)));
    select.value = spec.buckets.includes(wanted) ? wanted : spec.default;
  }

  function readUrl() {
    const params = new URLSearchParams(location.search);
    const range = RANGES[params.get("range")] ? params.get("range") : "24h";
    $("metrics-range").value = range;
    fillBuckets(range, params.get("bucket"));
    $("metrics-by").value = params.get("by") === "requested" ? "requested" : "used";
  }

  function writeUrl() {
    const s = settings();
    const params = new URLSearchParams(location.search);
    params.set("range", s.range);
    params.set("bucket", s.bucket);
    params.set("by", s.by);
    history.replaceState(null, "", location.pathname + "?" + params.toString());
  }

  function show(state) {
    const page = $("metrics-page");
    page.dataset.state = state;
    $("metrics-body").hidden = state !== "ready";
    $("metrics-empty").hidden = state !== "empty" && state !== "disabled";
  }

  function showEmpty(summary) {
    const range = RANGES[settings().range];
    if (!summary.enabled) {
      $("metrics-empty-title").textContent = "Metrics are turned off";
      $("metrics-empty-text").innerHTML = "";
      $("metrics-empty-text").append(
        "This studio records no request metrics. Set ",
        Object.assign(document.createElement("code"), { textContent: "metrics: {enabled: true}" }),
        " in the configuration file (MMSTUDIO_CONFIG) and restart mmstudio serve."
      );
      show("disabled");
      return;
    }
    $("metrics-empty-title").textContent = "No requests recorded yet";
    const text = $("metrics-empty-text");
    text.replaceChildren(
      "Nothing in " + range.words + ". Send a chat message or call ",
      Object.assign(document.createElement("code"), { textContent: "/v1/chat/completions" }),
      "; requests show up here within 30 s" + (settings().range !== "30d" ? ", or choose a longer time range." : ".")
    );
    show("empty");
  }

  function curlExample() {
    const key = (() => { try { return localStorage.getItem("mmstudio-key"); } catch (e) { return null; } })();
    const active = document.querySelector("#active-model .active-name[data-model]");
    const model = active ? active.dataset.model : "PROVIDER/MODEL";
    $("metrics-curl").textContent =
      "curl " + location.origin + "/v1/chat/completions \\\n" +
      (key ? "  -H \"Authorization: Bearer $MMSTUDIO_KEY\" \\\n" : "") +
      "  -H \"Content-Type: application/json\" \\\n" +
      "  -d '{\"model\": \"" + model + "\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}'";
  }

  function updatedText() {
    const time = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" }).format(new Date());
    return "Updated " + time + ($("metrics-auto").checked ? " · refreshes every 30 s" : "");
  }

  async function load() {
    const s = settings();
    if (controller) controller.abort();
    controller = new AbortController();
    const mine = controller;
    const query = new URLSearchParams({ since: s.range, bucket: s.bucket, by: s.by });
    $("metrics-refresh").disabled = true;
    try {
      const summary = await mm.apiJson("/api/metrics?" + query.toString(), { signal: mine.signal });
      if (mine !== controller) return;
      last = summary;
      loadedAt = Date.now();
      $("metrics-error").hidden = true;
      if (!summary.enabled || summary.totals.requests === 0) {
        curlExample();
        showEmpty(summary);
      } else {
        show("ready"); // visible before drawing, so the charts measure their real size
        tiles(summary);
        draw(summary);
        table(summary);
      }
      $("metrics-updated").textContent = updatedText();
    } catch (error) {
      if (error && error.name === "AbortError") return;
      $("metrics-error-message").textContent = (error && error.message) || String(error);
      $("metrics-error").hidden = false;
      if (!last) show("error"); // otherwise the previous numbers stay, under the message
      $("metrics-updated").textContent = "Could not refresh";
    } finally {
      if (mine === controller) {
        $("metrics-refresh").disabled = false;
        const page = $("metrics-page");
        page.dataset.loads = String(Number(page.dataset.loads) + 1);
      }
    }
  }

  function schedule() {
    clearInterval(timer);
    timer = null;
    if ($("metrics-auto").checked) {
      timer = setInterval(() => { if (!document.hidden) load(); }, REFRESH_MS);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (!$("metrics-page")) return;
    readUrl();
    $("metrics-range").addEventListener("change", () => {
      fillBuckets($("metrics-range").value, null);
      writeUrl();
      load();
    });
    $("metrics-bucket").addEventListener("change", () => { writeUrl(); load(); });
    $("metrics-by").addEventListener("change", () => { writeUrl(); load(); });
    $("metrics-auto").addEventListener("change", () => {
      schedule();
      if (last) $("metrics-updated").textContent = updatedText();
    });
    $("metrics-controls").addEventListener("submit", (event) => { event.preventDefault(); load(); });
    $("metrics-retry").addEventListener("click", () => load());
    $("show-requested").addEventListener("click", () => {
      $("metrics-by").value = "requested";
      writeUrl();
      load();
    });
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && $("metrics-auto").checked && Date.now() - loadedAt >= REFRESH_MS) load();
    });
    document.addEventListener("mm:theme", () => { recolour(); refreshSwatches(); });
    // The curl example names the active model, which the header may load after the metrics.
    document.addEventListener("mm:header-updated", () => { if (!$("metrics-empty").hidden) curlExample(); });
    load();
    schedule();
  });
})();
