// v2ghub dashboard: the power chart: history, the points the feed brought, the plan
// ahead and the limits.

import { $, COLORS, FONT, PLOT_CONFIG, REFRESH_MS, cityIso, getJson, offsetLabel, setText, state, unavailable } from "./common.js";

const HISTORY_HOURS = 6;
const HISTORY_INTERVAL_S = 300;
const PLAN_AHEAD_MAX_H = 12;
const VIEW_PAST_H = 4;
const VIEW_AHEAD_H = 6;

let history = null;
let historyProblem = "loading";
let historyRequested = false;
const live = []; // {t, measured: {scope: kW}, planned: {scope: kW}} per feed event

// Keep the feed's fleet and site powers; the first time, ask for the history too.
export function notePower(fleet) {
  const t = Date.parse(fleet.at);
  if (!live.length || live[live.length - 1].t < t) {
    const point = { t: t, measured: { "": fleet.measured_kw }, planned: { "": fleet.planned_kw } };
    for (const site of fleet.sites) {
      point.measured[site.site_id] = site.measured_kw;
      point.planned[site.site_id] = site.planned_kw;
    }
    live.push(point);
    while (live.length && live[0].t < t - HISTORY_HOURS * 3600000) live.shift();
  }
  if (!historyRequested) {
    // History is asked on the server's clock (which a demonstration may run fast).
    historyRequested = true;
    loadHistory();
    window.setInterval(loadHistory, REFRESH_MS);
  }
}

async function loadHistory() {
  if (!$("power-chart")) return;
  const nowAt = state.latest ? Date.parse(state.latest.fleet.at) : Date.now();
  const start = new Date(nowAt - HISTORY_HOURS * 3600000).toISOString();
  const params = new URLSearchParams({ start: start, end: new Date(nowAt).toISOString(), interval_s: String(HISTORY_INTERVAL_S) });
  const answer = await getJson("/api/v1/history?" + params.toString());
  if (answer.status === 200 && answer.body) {
    history = answer.body;
    historyProblem = null;
  } else {
    history = null;
    historyProblem = unavailable("History", answer.status);
  }
  renderPower();
}

function historySeries(scope) {
  if (!history) return { t: [], measured: [], planned: [] };
  const t = history.times.map((iso) => Date.parse(iso));
  const sites = history.sites.filter((site) => scope === "" || site.site_id === scope);
  const measured = t.map((_, k) => {
    const values = sites.map((site) => site.measured_kw[k]).filter((v) => v !== null && v !== undefined);
    return values.length ? values.reduce((a, b) => a + b, 0) : null;
  });
  const planned = t.map((_, k) => sites.reduce((a, site) => a + (site.planned_kw[k] || 0), 0));
  // Each value is the interval's mean: draw it at the middle of the interval.
  const half = (history.interval_s * 1000) / 2;
  return { t: t.map((v) => v + half), measured: measured, planned: sites.length ? planned : t.map(() => null) };
}

function planAhead(fleet, scope) {
  if (!fleet.last_plan_at || !fleet.plan_step_s) return { x: [], y: [] };
  const sites = fleet.sites.filter((site) => scope === "" || site.site_id === scope);
  const steps = Math.min(
    Math.max(0, ...sites.map((site) => site.plan_ahead_kw.length)),
    Math.round((PLAN_AHEAD_MAX_H * 3600) / fleet.plan_step_s),
  );
  const start = Date.parse(fleet.last_plan_at);
  const x = [];
  const y = [];
  for (let k = 0; k < steps; k += 1) {
    x.push(cityIso(start + k * fleet.plan_step_s * 1000));
    y.push(sites.reduce((a, site) => a + (site.plan_ahead_kw[k] || 0), 0));
  }
  if (steps) {
    x.push(cityIso(start + steps * fleet.plan_step_s * 1000));
    y.push(y[y.length - 1]);
  }
  return { x: x, y: y };
}

function scopeLimits(fleet, scope) {
  const sites = fleet.sites.filter((site) => scope === "" || site.site_id === scope);
  if (!sites.length) return { importKw: null, exportKw: null };
  const sum = (key) => (sites.every((site) => site[key] !== null) ? sites.reduce((a, site) => a + site[key], 0) : null);
  return { importKw: sum("import_limit_kw"), exportKw: sum("export_limit_kw") };
}

export function renderPower() {
  const chart = $("power-chart");
  if (!chart || typeof Plotly === "undefined") return;
  const scope = $("power-scope").value;
  const past = historySeries(scope);
  const firstLive = live.length ? live[0].t : Infinity;
  const measuredX = [];
  const measuredY = [];
  const plannedX = [];
  const plannedY = [];
  past.t.forEach((t, k) => {
    if (t >= firstLive) return;
    measuredX.push(cityIso(t));
    measuredY.push(past.measured[k]);
    plannedX.push(cityIso(t));
    plannedY.push(past.planned[k]);
  });
  for (const point of live) {
    const m = point.measured[scope];
    const p = point.planned[scope];
    measuredX.push(cityIso(point.t));
    measuredY.push(m === undefined ? null : m);
    plannedX.push(cityIso(point.t));
    plannedY.push(p === undefined ? null : p);
  }
  const fleet = state.latest ? state.latest.fleet : null;
  const ahead = fleet ? planAhead(fleet, scope) : { x: [], y: [] };
  const xs = measuredX.concat(ahead.x);
  // Measured is drawn last, thin, over the wide plan: where the chargers follow the plan
  // both stay visible.
  const traces = [
    { name: "planned (sent)", legendrank: 2, x: plannedX, y: plannedY, mode: "lines", line: { color: COLORS.planned, width: 4, shape: "hv" }, opacity: 0.75, hovertemplate: "%{y:.1f} kW<extra>planned</extra>" },
    { name: "plan ahead", legendrank: 3, x: ahead.x, y: ahead.y, mode: "lines", line: { color: COLORS.planned, width: 2.5, dash: "dot", shape: "hv" }, hovertemplate: "%{y:.1f} kW<extra>plan ahead</extra>" },
    { name: "measured", legendrank: 1, x: measuredX, y: measuredY, mode: "lines", line: { color: COLORS.measured, width: 2 }, connectgaps: false, hovertemplate: "%{y:.1f} kW<extra>measured</extra>" },
  ];
  const shapes = [];
  const annotations = [];
  if (fleet && xs.length) {
    const limits = scopeLimits(fleet, scope);
    const ends = [xs.reduce((a, b) => (a < b ? a : b)), xs.reduce((a, b) => (a > b ? a : b))];
    if (limits.importKw !== null) {
      traces.push({ name: "import limit", legendrank: 4, x: ends, y: [limits.importKw, limits.importKw], mode: "lines", line: { color: COLORS.limit, width: 1.5, dash: "dash" }, hovertemplate: "%{y:.1f} kW<extra>import limit</extra>" });
    }
    if (limits.exportKw !== null) {
      traces.push({ name: "export limit", legendrank: 5, x: ends, y: [-limits.exportKw, -limits.exportKw], mode: "lines", line: { color: COLORS.export, width: 1.5, dash: "dash" }, hovertemplate: "%{y:.1f} kW<extra>export limit</extra>" });
    }
    const now = cityIso(Date.parse(fleet.at));
    shapes.push({ type: "line", xref: "x", yref: "paper", x0: now, x1: now, y0: 0, y1: 1, line: { color: "#868e96", width: 1 } });
    annotations.push({ x: now, y: 1, xref: "x", yref: "paper", text: "now", showarrow: false, yanchor: "bottom", font: { size: 11, color: "#5b6577" } });
  }
  let range;
  if (fleet) {
    // The last hours, from the first power there was (a server just started has less).
    const nowT = Date.parse(fleet.at);
    const firstPast = past.t.findIndex((t, k) => past.measured[k] !== null || Math.abs(past.planned[k] || 0) > 0.001);
    const starts = [firstPast >= 0 ? past.t[firstPast] : Infinity, live.length ? live[0].t : Infinity];
    const left = Math.max(nowT - VIEW_PAST_H * 3600000, Math.min(...starts) - 15 * 60000);
    range = [cityIso(Number.isFinite(left) ? left : nowT - VIEW_PAST_H * 3600000), cityIso(nowT + VIEW_AHEAD_H * 3600000)];
  }
  const layout = {
    margin: { l: 70, r: 16, t: 24, b: 56 },
    font: FONT,
    hovermode: "x unified",
    legend: { orientation: "h", x: 0, y: 1.14 },
    xaxis: { title: { text: "city time (UTC" + offsetLabel() + ")" }, type: "date", range: range, tickformat: "%H:%M\n%b %-d", gridcolor: "#eef1f6" },
    yaxis: { title: { text: "power, kW (+ charging, − discharging)" }, zeroline: true, zerolinecolor: "#868e96", gridcolor: "#eef1f6" },
    shapes: shapes,
    annotations: annotations,
    paper_bgcolor: "#fff",
    plot_bgcolor: "#fff",
    uirevision: scope,
  };
  Plotly.react(chart, traces, layout, PLOT_CONFIG);
  const note = historyProblem === "loading" ? "" : historyProblem ? historyProblem + " Showing what arrived since this page opened." : "";
  setText("power-note", note + (note ? " " : "") + "Plan ahead: the last plan's net power per step; limits: the site limits in force now.");
}
