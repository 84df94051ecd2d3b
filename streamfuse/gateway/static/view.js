// streamfuse live view: one server-sent event stream per tab; each frame carries the parts of
// the view that changed (devices, signals, heatmap, timeline, latest, gateway).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const LEVEL_COLORS = { early: "#4fb0ff", intermediate: "#ffa94d", late: "#b084f5" };
  const CLASS_COLORS = ["#4caf50", "#f06292", "#ffd54f", "#4dd0e1", "#ba68c8", "#ff8a65", "#90a4ae"];
  const CHANNEL_COLORS = ["#4fb0ff", "#ffa94d", "#6fd36f", "#f06292", "#ffd54f", "#b084f5",
    "#4dd0e1", "#ff8a65", "#90a4ae", "#aed581", "#e57373", "#7986cb"];
  // viridis, 9 anchors (matplotlib's colormap, sampled), interpolated to 256 entries
  const VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
    [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];
  const LUT = Array.from({ length: 256 }, (_, i) => {
    const x = (i / 255) * (VIRIDIS.length - 1);
    const j = Math.min(Math.floor(x), VIRIDIS.length - 2);
    const f = x - j;
    const c = VIRIDIS[j].map((v, k) => Math.round(v + f * (VIRIDIS[j + 1][k] - v)));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  });

  // what the browser test reads (window.streamfuseView)
  const stats = { frames: 0, heatmaps: 0, signalPoints: 0, signalEnd: 0, timelinePoints: 0,
    device: null, devices: [], errors: 0 };
  window.streamfuseView = stats;

  let source = null;
  let device = new URLSearchParams(location.search).get("device") || "";
  let signalCharts = {};     // modality -> { plot, key }
  let timeline = null;       // { plot, key }
  let lastTimeline = null;
  let classes = [];

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "style") Object.assign(e.style, v); else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }
  const fmt = (v, d = 3) => (v === null || v === undefined || Number.isNaN(v)) ? "–" : Number(v).toFixed(d);
  const classColor = (c) => CLASS_COLORS[Math.max(0, classes.indexOf(c)) % CLASS_COLORS.length];
  // a time axis over one point would span years: give it ten seconds around the point
  const timeRange = (u, min, max) => (min === max ? [min - 5, max + 5] : [min, max]);
  const clock = (t) => new Date(t * 1000).toLocaleTimeString([], { hour12: false });
  const width = (node) => Math.max(200, Math.floor(node.getBoundingClientRect().width) - 4);

  // ------------------------------------------------------------------ stream
  function connect(name) {
    if (source) source.close();
    device = name || "";
    resetDevice();
    const url = "events" + (device ? "?device=" + encodeURIComponent(device) : "");
    source = new EventSource(url);
    source.onopen = () => setStatus("live", "live");
    source.onerror = () => setStatus("reconnecting…", "down");
    source.onmessage = (event) => {
      try {
        apply(JSON.parse(event.data));
      } catch (err) {
        stats.errors += 1;
        console.error(err);
      }
    };
  }

  function setStatus(text, cls) {
    const s = $("status");
    s.textContent = text;
    s.className = "status " + cls;
  }

  function resetDevice() {
    for (const c of Object.values(signalCharts)) c.plot.destroy();
    signalCharts = {};
    if (timeline) timeline.plot.destroy();
    timeline = null;
    lastTimeline = null;
    $("signals").replaceChildren(el("p", { class: "empty" }, "waiting for this device's first window…"));
    $("decision").replaceChildren(el("p", { class: "empty" }, "no prediction yet"));
    const ctx = $("heatmap").getContext("2d");
    ctx.clearRect(0, 0, $("heatmap").width, $("heatmap").height);
    stats.signalPoints = 0;
    stats.timelinePoints = 0;
  }

  function apply(frame) {
    stats.frames += 1;
    if (frame.devices) setDevices(frame.devices);
    if (frame.device) {
      stats.device = frame.device;
      if (frame.device !== device) device = frame.device;
      $("device").value = device;
    }
    if (frame.signals) drawSignals(frame.signals);
    if (frame.heatmap) drawHeatmap(frame.heatmap);
    if (frame.timeline) drawTimeline(frame.timeline);
    if (frame.latest) drawLatest(frame.latest);
    if (frame.gateway) drawGateway(frame.gateway);
  }

  function setDevices(list) {
    stats.devices = list;
    const sel = $("device");
    const current = device;
    sel.replaceChildren(...list.map((d) => el("option", { value: d }, d)));
    if (current && !list.includes(current)) sel.append(el("option", { value: current }, current));
    sel.value = current;
  }

  // ------------------------------------------------------------------ signals
  function drawSignals(s) {
    const box = $("signals");
    if (!Object.keys(signalCharts).length) box.replaceChildren();
    let points = 0;
    for (const m of s.modalities) {
      const n = m.y.length ? m.y[0].length : 0;
      const x = Array.from({ length: n }, (_, i) => s.t0 + i * s.dt);
      const data = [x, ...m.y];
      points += n * m.y.length;
      const key = m.channels.join(",");
      let chart = signalCharts[m.name];
      if (!chart || chart.key !== key) {
        if (chart) chart.plot.destroy();
        const holder = el("div", { class: "chart", "data-modality": m.name },
          el("div", { class: "chart-title" }, `${m.name} (${m.channels.length} ch)`));
        box.append(holder);
        const opts = {
          width: width(box) / 3 - 8, height: 170,
          legend: { show: m.channels.length <= 3 },
          cursor: { drag: { x: false, y: false } },
          scales: { x: { time: true, range: timeRange } },
          axes: [{ stroke: "#8a96a3", grid: { stroke: "#262d36" }, size: 30 },
            { stroke: "#8a96a3", grid: { stroke: "#262d36" }, size: 50 }],
          series: [{}, ...m.channels.map((c, i) => ({
            label: c, stroke: CHANNEL_COLORS[i % CHANNEL_COLORS.length], width: 1, spanGaps: false,
            points: { show: false },
          }))],
        };
        chart = { plot: new uPlot(opts, data, holder), key };
        signalCharts[m.name] = chart;
      } else {
        chart.plot.setData(data);
      }
    }
    stats.signalPoints = points;
    stats.signalEnd = s.t_end;
    $("signals-span").textContent = `last ${(s.t_end - s.t0).toFixed(1)} s, min/max per ${(2 * s.dt * 1000).toFixed(0)} ms`;
  }

  // ------------------------------------------------------------------ heatmap
  function drawHeatmap(h) {
    const canvas = $("heatmap");
    const ctx = canvas.getContext("2d");
    const rows = h.z.length;
    const cols = rows ? h.z[0].length : 0;
    const left = 78, top = 4, bottom = 18;
    const cw = (canvas.width - left - 4) / Math.max(1, cols);
    const ch = (canvas.height - top - bottom) / Math.max(1, rows);
    ctx.fillStyle = "#0b0d10";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.font = `${Math.min(12, Math.max(8, ch - 2))}px system-ui, sans-serif`;
    ctx.textBaseline = "middle";
    for (let r = 0; r < rows; r++) {
      const row = h.z[r];
      for (let c = 0; c < cols; c++) {
        const v = row[c];
        ctx.fillStyle = v === null ? "#3a3f46" : LUT[v];
        ctx.fillRect(left + c * cw, top + r * ch, Math.ceil(cw), Math.ceil(ch));
      }
      ctx.fillStyle = "#d8dee6";
      ctx.fillText(h.channels[r], 2, top + (r + 0.5) * ch);
    }
    ctx.fillStyle = "#8a96a3";
    ctx.textBaseline = "alphabetic";
    ctx.fillText("0 s", left, canvas.height - 4);
    const span = `${(h.t_end - h.t_start).toFixed(1)} s`;
    ctx.fillText(span, canvas.width - 4 - ctx.measureText(span).width, canvas.height - 4);
    stats.heatmaps += 1;
    $("heatmap-span").textContent = `window ending ${clock(h.t_end)}, each channel z-scored (−3…+3 sd), grey: no data`;
    $("quality").textContent = Object.entries(h.quality).map(([m, q]) =>
      `${m}: gaps ${(100 * q.gap_fraction).toFixed(0)} %, late ${fmt(q.lateness_s, 2)} s`).join("   ");
  }

  // ------------------------------------------------------------------ timeline
  function klass() {
    return $("klass").value || "(published)";
  }

  function setClasses(list) {
    const key = list.join(",");
    if (key === classes.join(",") && $("klass").options.length) return;
    classes = list.slice();
    const sel = $("klass");
    const keep = sel.value;
    sel.replaceChildren(el("option", { value: "(published)" }, "the published class"),
      ...classes.map((c) => el("option", { value: c }, c)));
    if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
    $("bands-legend").replaceChildren(
      "top band: published class · bottom band: ground truth (once labelled) · ",
      ...classes.flatMap((c) => [el("span", { class: "swatch", style: { background: classColor(c) } }), c]));
  }

  function timelineData(t) {
    const which = klass();
    const ys = t.levels.map((lv) => t.t.map((_, i) => {
      const c = which === "(published)" ? t.label[i] : which;
      if (c === null || c === undefined) return null;
      const col = t.proba[lv][c];
      return col ? col[i] : null;
    }));
    // the published level's probability, drawn as points on top
    const chosen = t.t.map((_, i) => {
      const lv = t.published[i];
      const k = t.levels.indexOf(lv);
      return k < 0 ? null : ys[k][i];
    });
    return [t.t, ...ys, chosen];
  }

  function drawBands(u) {
    const t = lastTimeline;
    if (!t || t.t.length === 0) return;
    const ctx = u.ctx;
    const { left, top, width: w, height: h } = u.bbox;
    const band = Math.max(4, Math.round(h * 0.05));
    ctx.save();
    for (let i = 0; i < t.t.length; i++) {
      const x0 = u.valToPos(i ? (t.t[i - 1] + t.t[i]) / 2 : t.t[i] - 0.5, "x", true);
      const x1 = u.valToPos(i + 1 < t.t.length ? (t.t[i] + t.t[i + 1]) / 2 : t.t[i] + 0.5, "x", true);
      const a = Math.max(left, x0), b = Math.min(left + w, x1);
      if (b <= a) continue;
      if (t.label[i] !== null) {
        ctx.fillStyle = classColor(t.label[i]);
        ctx.fillRect(a, top, b - a, band);
      }
      if (t.truth[i] !== null) {
        ctx.fillStyle = classColor(t.truth[i]);
        ctx.fillRect(a, top + h - band, b - a, band);
      }
    }
    ctx.restore();
  }

  function drawTimeline(t) {
    lastTimeline = t;
    setClasses(t.classes);
    const data = timelineData(t);
    stats.timelinePoints = t.t.length;
    const key = t.levels.join(",");
    if (!timeline || timeline.key !== key) {
      if (timeline) timeline.plot.destroy();
      const box = $("timeline");
      box.replaceChildren();
      const opts = {
        width: width(box), height: 220,
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true, range: timeRange }, y: { range: [0, 1] } },
        axes: [{ stroke: "#8a96a3", grid: { stroke: "#262d36" } },
          { stroke: "#8a96a3", grid: { stroke: "#262d36" }, size: 40 }],
        series: [{}, ...t.levels.map((lv) => ({
          label: lv, stroke: LEVEL_COLORS[lv] || "#90a4ae", width: 1.5, spanGaps: false,
          points: { show: false },
        })), { label: "published", stroke: "#ffd866", width: 0,
          points: { show: true, size: 5, fill: "#ffd866", stroke: "#ffd866" } }],
        hooks: { draw: [drawBands] },
      };
      timeline = { plot: new uPlot(opts, data, box), key };
    } else {
      timeline.plot.setData(data);
    }
    if (t.t.length === 1) timeline.plot.setScale("x", { min: t.t[0] - 5, max: t.t[0] + 5 });
  }

  // ------------------------------------------------------------------ last decision
  function barCell(p, color) {
    const v = p === undefined || p === null ? 0 : p;
    return el("td", {}, el("div", { class: "bar" },
      el("i", { style: { width: `${(100 * v).toFixed(1)}%`, background: color } }),
      el("b", {}, p === undefined || p === null ? "–" : v.toFixed(2))));
  }

  function probaTable(rows, chosen, cls) {
    const table = el("table", {}, el("tr", {}, el("th", {}, ""), ...cls.map((c) => el("th", {}, c))));
    for (const [name, proba] of rows) {
      const tr = el("tr", { class: name === chosen ? "chosen" : "" }, el("td", {}, name));
      for (const c of cls) tr.append(barCell(proba[c], classColor(c)));
      table.append(tr);
    }
    return table;
  }

  function drawLatest(p) {
    const cls = classes.length ? classes : Object.keys(p.proba).sort();
    const box = $("decision");
    const levels = Object.entries(p.levels);
    const members = Object.entries(p.modality_proba);
    const lat = Object.entries(p.latency_ms).map(([k, v]) => `${k} ${fmt(v, 2)}`).join(", ");
    box.replaceChildren(
      el("div", {}, "published ", el("b", {}, p.label === null ? "nothing yet" : p.label),
        ` by ${p.level} (${p.model}); modalities ${p.modalities.join(", ")}`),
      el("div", { class: "small" }, "each level's probabilities (yellow: published)"),
      probaTable(levels, p.level, cls),
      el("div", { class: "small" }, "each modality's own model (late fusion's members)"),
      probaTable(members, null, cls),
      el("div", { class: "small" }, lat ? `stage latency (ms): ${lat}` : ""),
      el("pre", { class: "rules" }, p.rules.length ? "rules fired:\n" + p.rules.slice(0, 6).join("\n") : ""),
    );
    $("decision-when").textContent = `window ending ${clock(p.t_end)}`;
    drawMetrics(p.metrics);
  }

  function drawMetrics(metrics) {
    const names = ["accuracy", "auc", "f1", "precision", "recall", "specificity"];
    const order = ["early", "intermediate", "late", "selected"];
    const groups = Object.keys(metrics).filter((g) => g !== "selector")
      .sort((a, b) => ((order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99)) || a.localeCompare(b));
    const table = $("metrics");
    table.replaceChildren(el("tr", {}, el("th", {}, ""), ...names.map((n) => el("th", {}, n))));
    for (const g of groups) {
      table.append(el("tr", {}, el("td", {}, g), ...names.map((n) => el("td", {}, fmt(metrics[g][n])))));
    }
    const sel = metrics.selector;
    $("selector").textContent = sel ? "selector scores: " +
      Object.entries(sel).map(([k, v]) => `${k} ${fmt(v)}`).join(", ") : "";
  }

  // ------------------------------------------------------------------ gateway
  function drawGateway(g) {
    const rows = [];
    if (g.queued !== undefined) rows.push(["incoming queue", `${g.queued} / ${g.queue_limit} (high water ${g.queue_high_water})`]);
    if (g.shed) rows.push(["shed", Object.entries(g.shed).map(([k, v]) => `${k} ${v}`).join(", ") || "0"]);
    if (g.processed !== undefined) rows.push(["messages processed", g.processed]);
    if (g.published !== undefined) rows.push(["predictions published", g.published]);
    rows.push(["devices", g.devices], ["windows", g.windows], ["labels learnt", g.learned]);
    rows.push(["rejected", `${g.rejected}` + (Object.keys(g.rejections).length ? " (" +
      Object.entries(g.rejections).map(([k, v]) => `${k} ${v}`).join(", ") + ")" : "")]);
    for (const [stage, q] of Object.entries(g.latency_ms || {})) {
      rows.push([`latency ${stage} (ms)`, `p50 ${fmt(q.p50, 3)}  p99 ${fmt(q.p99, 3)}`]);
    }
    if (g.view_ms_per_s !== undefined) rows.push(["this view's cost", `${fmt(g.view_ms_per_s, 2)} ms per second`]);
    $("gateway").replaceChildren(...rows.map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, v))));
  }

  // ------------------------------------------------------------------ start
  document.addEventListener("DOMContentLoaded", () => {
    $("device").addEventListener("change", (e) => {
      const name = e.target.value;
      const url = new URL(location.href);
      url.searchParams.set("device", name);
      history.replaceState(null, "", url);
      connect(name);
    });
    $("klass").addEventListener("change", () => {
      if (timeline && lastTimeline) timeline.plot.setData(timelineData(lastTimeline));
    });
    connect(device);
  });
})();
