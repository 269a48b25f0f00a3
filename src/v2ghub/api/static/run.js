// v2ghub dashboard: the owner's sessions and the finished twin run.

import { $, COLORS, FONT, PLOT_CONFIG, el, fixed, getJson, percent, row, setText, signed, td, cityShort, unavailable } from "./common.js";

let runLoaded = false;

export async function loadOwner() {
  const table = $("owner-table");
  if (!table) return;
  const answer = await getJson("/api/v1/sessions");
  const empty = $("owner-empty");
  if (answer.status !== 200 || !Array.isArray(answer.body)) {
    empty.textContent = unavailable("Your sessions", answer.status);
    empty.hidden = false;
    return;
  }
  const sessions = answer.body.slice().sort((a, b) => b.started_at.localeCompare(a.started_at));
  table.tBodies[0].replaceChildren(
    ...sessions.map((s) =>
      row([
        td(s.station_id),
        td(cityShort(Date.parse(s.started_at))),
        td(s.ended_at ? cityShort(Date.parse(s.ended_at)) : "plugged in"),
        td(fixed(s.delivered_kwh), "num"),
        td(fixed(s.discharged_kwh), "num"),
        td(s.soc === null ? "–" : percent(s.soc), "num"),
        td(s.owed_cny === null ? "not settled" : signed(Number(s.owed_cny), 2), "num"),
      ]),
    ),
  );
  empty.hidden = sessions.length > 0;
  empty.textContent = "No session yet.";
}

// Twin run --------------------------------------------------------------------------------

function runChart(node, title, traces, yTitle, timezone) {
  Plotly.newPlot(
    node,
    traces,
    {
      title: { text: title, font: { size: 13 }, x: 0, xanchor: "left" },
      margin: { l: 70, r: 12, t: 36, b: 90 },
      font: FONT,
      hovermode: "x unified",
      legend: { orientation: "h", x: 0, y: -0.32 },
      xaxis: { title: { text: "local time (" + timezone + ")" }, type: "date", tickformat: "%H:%M", gridcolor: "#eef1f6" },
      yaxis: { title: { text: yTitle }, zeroline: true, zerolinecolor: "#868e96", gridcolor: "#eef1f6" },
      paper_bgcolor: "#fff",
      plot_bgcolor: "#fff",
    },
    PLOT_CONFIG,
  );
}

function runTable(city) {
  const table = el("table", "table");
  const head = el("thead");
  const names = ["Planner", "Sessions", "Peak, kW", "Peak cut, kW", "Valley fill, kW", "Charged, kWh", "Discharged, kWh", "Unmet, kWh", "Owners pay, CNY", "Fallbacks"];
  head.appendChild(row(names.map((name, k) => el("th", k ? "num" : "", name))));
  table.appendChild(head);
  const body = el("tbody");
  for (const p of city.planners) {
    body.appendChild(
      row([
        td(p.planner),
        td(p.sessions + " (" + p.v2g_sessions + " V2G)", "num"),
        td(fixed(p.peak_kw), "num"),
        td(fixed(p.peak_reduction_kw), "num"),
        td(fixed(p.valley_fill_kw), "num"),
        td(fixed(p.energy_charged_kwh), "num"),
        td(fixed(p.energy_discharged_kwh), "num"),
        td(fixed(p.unmet_energy_kwh), "num"),
        td(p.owner_cost_cny, "num"),
        td(p.fallbacks, "num"),
      ]),
    );
  }
  table.appendChild(body);
  return table;
}

export async function loadRun() {
  if (runLoaded || !$("run")) return;
  runLoaded = true;
  const answer = await getJson("/api/v1/run");
  const empty = $("run-empty");
  if (answer.status !== 200 || !answer.body) {
    empty.textContent = (answer.body && answer.body.detail) || unavailable("The twin run", answer.status);
    return;
  }
  const run = answer.body;
  empty.hidden = true;
  setText("run-title", run.folder + (run.date ? ", " + run.date : ""));
  const size = run.vehicles_per_city ? run.vehicles_per_city + " vehicles per city" : run.sessions_file ? "sessions from " + run.sessions_file : "";
  setText("run-note", [size, "seed " + run.seed, "planners: " + run.planners.join(", ")].filter(Boolean).join(" · "));
  const holder = $("run-cities");
  for (const city of run.cities) {
    const section = el("div", "run-city");
    section.dataset.city = city.city;
    section.appendChild(el("h3", "run-city-name", city.city));
    const charts = el("div", "run-charts");
    const load = el("div", "chart chart-run");
    const fleet = el("div", "chart chart-run");
    charts.appendChild(load);
    charts.appendChild(fleet);
    section.appendChild(charts);
    section.appendChild(runTable(city));
    holder.appendChild(section);
    const x = city.times.map((iso) => iso.slice(0, 19)); // the city's wall time
    const color = (k) => COLORS.planners[k % COLORS.planners.length];
    const loadTraces = [{ name: "base load", x: x, y: city.base_load_kw, mode: "lines", line: { color: COLORS.base, width: 1.5, dash: "dot" } }].concat(
      city.planners.map((p, k) => ({ name: p.planner, x: x, y: p.total_load_kw, mode: "lines", line: { color: color(k + 1), width: 2, shape: "hv" } })),
    );
    runChart(load, "Grid load: base plus fleet", loadTraces, "power, kW", city.timezone);
    const fleetTraces = city.planners.map((p, k) => ({ name: p.planner, x: x, y: p.ev_load_kw, mode: "lines", line: { color: color(k + 1), width: 2, shape: "hv" } }));
    runChart(fleet, "Fleet net power (+ charging, − discharging)", fleetTraces, "power, kW", city.timezone);
  }
}
