// v2ghub dashboard: the live cards: summary, sites, vehicles, envelope, stations, today.

import { $, COLORS, FONT, PLOT_CONFIG, el, fixed, getJson, percent, powerClass, row, setText, signed, state, syncOptions, td, cityClock, cityShort, unavailable } from "./common.js";
import { keepPlaceholders } from "./events.js";

const MAX_VEHICLE_ROWS = 300;
let stations = null;

export function renderSummary(event) {
  const fleet = event.fleet;
  setText("kpi-plugged", String(fleet.plugged_vehicles));
  setText("kpi-plugged-note", "at " + fleet.sites.length + (fleet.sites.length === 1 ? " site" : " sites"));
  setText("kpi-measured", signed(fleet.measured_kw) + " kW", "kpi-value " + powerClass(fleet.measured_kw));
  setText("kpi-planned", signed(fleet.planned_kw) + " kW", "kpi-value " + powerClass(fleet.planned_kw));
  setText("kpi-stations", event.connected_stations + " / " + event.registered_stations);
  setText("kpi-stations-note", "connected over OCPP");
  const events = fleet.grid_events;
  setText("kpi-events", String(events.length), "kpi-value" + (events.length ? " warn" : ""));
  const limited = Array.from(new Set(events.map((e) => e.site_id))).join(", ");
  setText("kpi-events-note", events.length ? "at " + limited : "configured limits hold");
  if (fleet.last_plan_at) {
    setText("kpi-plan", cityClock(Date.parse(fleet.last_plan_at)).slice(0, 5));
    const step = fleet.plan_step_s ? ", " + Math.round(fleet.plan_step_s / 60) + "-min steps" : "";
    const fallback = fleet.fallback_reason ? "fallback: " + fleet.fallback_reason : fleet.planner + " planner" + step;
    setText("kpi-plan-note", fallback);
    setText("kpi-planned-note", fleet.fallback_reason ? "safe charge-only plan" : "kW, sent as setpoints");
    $("kpi-plan").className = "kpi-value" + (fleet.fallback_reason ? " warn" : "");
  } else {
    setText("kpi-plan", "none yet");
    setText("kpi-plan-note", "the loop has not planned yet");
  }
}

function siteBar(site) {
  const wrap = el("div");
  const bar = el("div", "site-bar");
  const planned = site.planned_kw === null ? 0 : site.planned_kw;
  const measured = site.measured_kw === null ? 0 : site.measured_kw;
  const room = Math.max(Math.abs(planned), Math.abs(measured), 1) * 1.25;
  const top = site.import_limit_kw === null ? room : site.import_limit_kw;
  const bottom = site.export_limit_kw === null ? room : site.export_limit_kw;
  const span = Math.max(top + bottom, 1e-9);
  const zero = (bottom / span) * 100;
  const at = Math.min(Math.max(((planned + bottom) / span) * 100, 0), 100);
  const fill = el("div", "site-fill " + (planned < 0 ? "discharging" : ""));
  const nearImport = site.import_limit_kw !== null && planned >= site.import_limit_kw - 0.05 && planned > 0;
  const nearExport = site.export_limit_kw !== null && planned <= -site.export_limit_kw + 0.05 && planned < 0;
  if (nearImport || nearExport) fill.classList.add("at-limit");
  fill.style.left = Math.min(zero, at) + "%";
  fill.style.width = Math.abs(at - zero) + "%";
  const tick = el("div", "site-zero");
  tick.style.left = zero + "%";
  bar.appendChild(fill);
  bar.appendChild(tick);
  const labels = el("div", "site-limits");
  labels.appendChild(el("span", "", site.export_limit_kw === null ? "no export limit" : "−" + fixed(site.export_limit_kw, 0)));
  labels.appendChild(el("span", "", site.import_limit_kw === null ? "no import limit" : "+" + fixed(site.import_limit_kw, 0) + " kW"));
  wrap.appendChild(bar);
  wrap.appendChild(labels);
  const cell = el("td");
  cell.appendChild(wrap);
  return cell;
}

export function renderSites(fleet) {
  const table = $("sites-table");
  if (!table) return;
  const body = table.tBodies[0];
  body.replaceChildren(
    ...fleet.sites.map((site) => {
      const tr = row([
        td(site.site_id),
        td(site.plugged_vehicles, "num"),
        td(signed(site.measured_kw), "num " + powerClass(site.measured_kw)),
        td(signed(site.planned_kw), "num " + powerClass(site.planned_kw)),
        siteBar(site),
      ]);
      tr.dataset.site = site.site_id;
      return tr;
    }),
  );
  $("sites-empty").hidden = fleet.sites.length > 0;
}

export function renderScopes(fleet) {
  const ids = fleet.sites.map((site) => site.site_id);
  const scope = $("power-scope");
  if (scope) syncOptions(scope, [""].concat(ids), (v) => (v === "" ? "Fleet (all sites)" : "Site " + v));
  const site = $("event-site");
  if (site) syncOptions(site, ids, (v) => v);
  keepPlaceholders();
}

function socCell(vehicle) {
  const cell = el("td");
  const wrap = el("div", "soc");
  const bar = el("div", "soc-bar");
  const fill = el("div", "soc-fill" + (vehicle.soc >= vehicle.target_soc - 0.005 ? " met" : ""));
  fill.style.width = Math.min(Math.max(vehicle.soc, 0), 1) * 100 + "%";
  const target = el("div", "soc-target");
  target.style.left = "calc(" + Math.min(Math.max(vehicle.target_soc, 0), 1) * 100 + "% - 1px)";
  target.title = "target " + percent(vehicle.target_soc);
  bar.appendChild(fill);
  bar.appendChild(target);
  wrap.appendChild(bar);
  wrap.appendChild(el("span", "soc-text", percent(vehicle.soc) + " → " + percent(vehicle.target_soc)));
  cell.appendChild(wrap);
  return cell;
}

export function renderVehicles(fleet) {
  const table = $("vehicles-table");
  if (!table) return;
  const vehicles = fleet.vehicles.slice().sort((a, b) => (a.station_id + a.evse_id).localeCompare(b.station_id + b.evse_id));
  // The feed carries the first rows only; plugged_vehicles counts them all.
  const total = Math.max(fleet.plugged_vehicles || 0, vehicles.length);
  $("vehicles-count").textContent = String(total);
  const shown = vehicles.slice(0, MAX_VEHICLE_ROWS);
  table.tBodies[0].replaceChildren(
    ...shown.map((v) => {
      const tr = row([
        td(v.evse_id === 1 ? v.station_id : v.station_id + " #" + v.evse_id),
        td(v.site_id),
        socCell(v),
        td(fixed(v.energy_kwh) + " / " + fixed(v.target_energy_kwh), "num"),
        td(signed(v.planned_kw), "num " + powerClass(v.planned_kw)),
        td(cityShort(Date.parse(v.departure_at)).slice(6)),
      ]);
      tr.dataset.station = v.station_id;
      return tr;
    }),
  );
  const empty = $("vehicles-empty");
  empty.hidden = total > 0 && total <= shown.length;
  if (total > shown.length) empty.textContent = "and " + (total - shown.length) + " more.";
  else empty.textContent = "No vehicle plugged.";
}

function durationLabel(hours) {
  return hours >= 1 && Number.isInteger(hours) ? hours + " h" : Math.round(hours * 60) + " min";
}

export function renderEnvelope(fleet) {
  const chart = $("envelope-chart");
  if (!chart) return;
  const envelope = fleet.envelope;
  $("envelope-empty").hidden = Boolean(envelope);
  chart.hidden = !envelope;
  if (!envelope) return;
  setText("envelope-note", "from the plan of " + signed(envelope.planned_kw) + " kW, " + envelope.plugged_vehicles + " vehicles");
  const x = envelope.durations_h.map(durationLabel);
  const traces = [
    { type: "bar", name: "raise: more charging", x: x, y: envelope.raise_kw, marker: { color: COLORS.raise }, hovertemplate: "+%{y:.1f} kW for %{x}<extra>raise</extra>" },
    { type: "bar", name: "lower: less charging / discharge", x: x, y: envelope.lower_kw.map((v) => -v), marker: { color: COLORS.lower }, hovertemplate: "%{y:.1f} kW for %{x}<extra>lower</extra>" },
  ];
  const layout = {
    barmode: "relative",
    margin: { l: 64, r: 10, t: 8, b: 64 },
    font: FONT,
    showlegend: true,
    legend: { orientation: "h", x: 0, y: -0.3 },
    xaxis: { title: { text: "held for" }, fixedrange: true },
    yaxis: { title: { text: "kW away from the plan" }, zeroline: true, zerolinecolor: "#868e96", fixedrange: true },
    paper_bgcolor: "#fff",
    plot_bgcolor: "#fff",
  };
  Plotly.react(chart, traces, layout, PLOT_CONFIG);
}

export async function loadStations() {
  if (!$("stations-table")) return;
  const answer = await getJson("/api/v1/stations");
  const empty = $("stations-empty");
  if (answer.status !== 200 || !Array.isArray(answer.body)) {
    stations = null;
    empty.textContent = unavailable("Stations", answer.status);
    empty.hidden = false;
    $("stations-table").hidden = true;
    return;
  }
  stations = answer.body;
  $("stations-table").hidden = false;
  renderStations();
}

export function renderStations() {
  const table = $("stations-table");
  if (!table || stations === null) return;
  const online = state.latest ? new Set(state.latest.connected_station_ids) : null;
  const sorted = stations.slice().sort((a, b) => a.station_id.localeCompare(b.station_id));
  let connected = 0;
  table.tBodies[0].replaceChildren(
    ...sorted.map((station) => {
      const on = online ? online.has(station.station_id) : station.connected;
      if (on) connected += 1;
      const evses = station.evses.map((evse) => (station.evses.length > 1 ? "#" + evse.evse_id + " " : "") + evse.status).join(", ");
      const tr = row([
        td(station.station_id),
        td(station.site_id),
        td(on ? "connected" : "offline", on ? "status-on" : "status-off"),
        td(station.ocpp_version || "–"),
        td(station.v2x_allowed ? "yes" : "no"),
        td(fixed(station.max_power_kw), "num"),
        td(evses || "–"),
      ]);
      tr.dataset.station = station.station_id;
      tr.dataset.connected = on ? "yes" : "no";
      return tr;
    }),
  );
  setText("stations-summary", connected + " of " + sorted.length + " connected");
  const empty = $("stations-empty");
  empty.hidden = sorted.length > 0;
  empty.textContent = "No station registered (v2ghub station add ID).";
}

export async function loadToday() {
  if (!$("today")) return;
  const answer = await getJson("/api/v1/today");
  const empty = $("today-empty");
  const table = $("money-table");
  if (answer.status !== 200 || !answer.body) {
    empty.textContent = unavailable("Today's energy and money", answer.status);
    empty.hidden = false;
    table.hidden = true;
    return;
  }
  const today = answer.body;
  setText("today-day", today.day);
  setText("today-charged", fixed(today.charged_kwh));
  setText("today-discharged", fixed(today.discharged_kwh));
  setText("today-sessions", String(today.sessions));
  table.tBodies[0].replaceChildren(
    ...today.money.map((line) => {
      const amount = Number(line.amount_cny);
      return row([td(line.stream), td(signed(amount, 2), "num " + (amount < 0 ? "discharging" : ""))]);
    }),
  );
  table.hidden = !today.money.length;
  empty.hidden = today.settled && today.money.length > 0;
  empty.textContent = today.settled ? "No money moved today." : "Money: not settled yet (v2ghub settle --live).";
}
