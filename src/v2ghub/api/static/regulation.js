// v2ghub dashboard: the regulation card: the commitment in force, how the fleet shares it,
// the last day's committed hours scored, and the signal against the fleet's measured
// response over the current (or last) committed hour. Asked of the API every few seconds.

import { $, COLORS, FONT, PLOT_CONFIG, cityClock, cityIso, cityShort, fixed, getJson, offsetLabel, row, setText, signed, td, unavailable } from "./common.js";

export const REGULATION_REFRESH_MS = 5000;
let busy = false;

export function startRegulation() {
  if (!$("regulation")) return;
  loadRegulation();
  window.setInterval(loadRegulation, REGULATION_REFRESH_MS);
}

async function loadRegulation() {
  if (busy) return; // a slow answer is not asked for again on top of itself
  busy = true;
  try {
    const [now, response] = await Promise.all([getJson("/api/v1/grid/regulation"), getJson("/api/v1/grid/regulation/response")]);
    if (now.status === 200 && now.body) {
      renderNow(now.body);
    } else {
      setText("regulation-note", unavailable("Regulation", now.status));
    }
    if (response.status === 200 && response.body) renderResponse(response.body);
  } finally {
    busy = false;
  }
}

function renderNow(state) {
  const commitment = state.commitment;
  if (commitment) {
    setText("regulation-capacity", fixed(commitment.capacity_kw) + " kW");
    setText("regulation-window", "#" + commitment.commitment_id + ", " + cityShort(Date.parse(commitment.starts_at)) + " – " + cityShort(Date.parse(commitment.ends_at)));
  } else {
    setText("regulation-capacity", "none");
    setText("regulation-window", "no commitment in force");
  }
  const mode = state.mode ? state.mode + " · " + fixed(state.capacity_kw) + " kW followed" : state.live ? "not following" : "no control loop here";
  setText("regulation-mode", mode);
  setText("regulation-participants", String(state.participants));
  setText("regulation-following", state.following_stations + (state.following_stations === 1 ? " station follows" : " stations follow") + " the broadcast");
  setText("regulation-shares", "+" + fixed(state.raise_kw) + " / −" + fixed(state.lower_kw));
  setText("regulation-left-out", fixed(state.left_out_kw));
  if (state.last_signal !== null) {
    setText("regulation-signal", signed(state.last_signal, 3));
    const answers = Object.entries(state.answers).map(([status, count]) => count + " " + status).join(", ");
    setText("regulation-signal-note", "at " + cityClock(Date.parse(state.last_signal_at)) + "; " + state.broadcasts + " broadcasts" + (answers ? " (" + answers + ")" : ""));
  } else {
    setText("regulation-signal", "–");
    setText("regulation-signal-note", "none sent");
  }
  renderHours(state.hours);
  setText("regulation-note", "Scores 0-1 per whole committed hour from the chargers' power readings: composite = (correlation + delay + precision) / 3.");
}

function renderHours(hours) {
  const table = $("regulation-hours");
  const body = table.tBodies[0];
  const score = (value) => fixed(value, 3);
  body.replaceChildren(
    ...hours
      .slice()
      .reverse()
      .map((hour) => {
        const tr = row([
          td(cityShort(Date.parse(hour.start))),
          td(fixed(hour.capacity_kw), "num"),
          td(score(hour.composite), "num"),
          td(score(hour.correlation), "num"),
          td(score(hour.delay), "num"),
          td(score(hour.precision), "num"),
          td(fixed(hour.mileage_mw, 2), "num"),
        ]);
        tr.dataset.hour = hour.start;
        return tr;
      }),
  );
  $("regulation-hours-empty").hidden = hours.length > 0;
}

function renderResponse(series) {
  const chart = $("regulation-chart");
  const empty = !series.segments.length;
  $("regulation-chart-empty").hidden = !empty;
  chart.hidden = empty;
  if (empty || typeof Plotly === "undefined") return;
  const x = [];
  const signal = [];
  const response = [];
  let next = null; // where the previous segment's next sample would be, ms
  for (const segment of series.segments) {
    const first = Date.parse(segment.first_at);
    const stepMs = segment.step_s * 1000;
    if (next !== null && first > next + stepMs / 2) {
      // Time between committed hours is drawn as a gap.
      x.push(cityIso(next));
      signal.push(null);
      response.push(null);
    }
    segment.signal.forEach((value, k) => {
      x.push(cityIso(first + k * stepMs));
      signal.push(value);
      response.push(segment.response[k]);
    });
    next = first + segment.signal.length * stepMs;
  }
  const traces = [
    { name: "signal", x: x, y: signal, mode: "lines", line: { color: COLORS.planned, width: 2, shape: "hv" }, hovertemplate: "%{y:.3f}<extra>signal</extra>" },
    { name: "fleet's response", x: x, y: response, mode: "lines", line: { color: COLORS.measured, width: 1.5 }, hovertemplate: "%{y:.3f}<extra>response</extra>" },
  ];
  const layout = {
    margin: { l: 56, r: 10, t: 8, b: 48 },
    font: FONT,
    hovermode: "x unified",
    legend: { orientation: "h", x: 0, y: 1.12 },
    xaxis: { title: { text: "city time (UTC" + offsetLabel() + ")" }, type: "date", tickformat: "%H:%M" },
    yaxis: { title: { text: "share of capacity (+ charging)" }, range: [-1.05, 1.05], zeroline: true, zerolinecolor: "#868e96", fixedrange: true },
    paper_bgcolor: "#fff",
    plot_bgcolor: "#fff",
    uirevision: "regulation",
  };
  Plotly.react(chart, traces, layout, PLOT_CONFIG);
}
