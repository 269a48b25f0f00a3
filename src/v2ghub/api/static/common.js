// v2ghub dashboard: what every module shares: the page's settings, formatting, the
// city's time and requests to the API.

export const config = JSON.parse(document.getElementById("v2ghub-config").textContent);
export const REFRESH_MS = 60000;
export const COLORS = {
  measured: "#1f6feb",
  planned: "#e8590c",
  limit: "#c92a2a",
  export: "#7048e8",
  base: "#868e96",
  raise: "#1f6feb",
  lower: "#2b8a3e",
  planners: ["#868e96", "#1f6feb", "#e8590c", "#2b8a3e", "#7048e8", "#d6336c", "#0c8599"],
};
export const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
export const FONT = { family: "system-ui, -apple-system, Segoe UI, Roboto, Arial, sans-serif", size: 12, color: "#1d2433" };

// What the feed said last, and the city's UTC offset (from its times).
export const state = { latest: null, offsetMs: (config.utc_offset_s || 0) * 1000 };

export const $ = (id) => document.getElementById(id);

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

export function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) tr.appendChild(cell);
  return tr;
}

export function td(text, className) {
  return el("td", className, text);
}

export function signed(value, digits) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const d = digits === undefined ? 1 : digits;
  const text = Math.abs(value).toFixed(d);
  if (Number(text) === 0) return (0).toFixed(d);
  return (value > 0 ? "+" : "−") + text;
}

export function fixed(value, digits) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toFixed(digits === undefined ? 1 : digits);
}

export function percent(share) {
  return Math.round(share * 100) + "%";
}

export function powerClass(value) {
  if (value === null || value === undefined || Math.abs(value) < 0.05) return "";
  return value > 0 ? "charging" : "discharging";
}

export function offsetOf(iso) {
  const match = /([+-])(\d\d):?(\d\d)$/.exec(iso);
  if (!match) return /Z$/i.test(iso) ? 0 : state.offsetMs;
  const minutes = Number(match[2]) * 60 + Number(match[3]);
  return (match[1] === "-" ? -1 : 1) * minutes * 60000;
}

export function offsetLabel() {
  const minutes = Math.round(state.offsetMs / 60000);
  const sign = minutes < 0 ? "-" : "+";
  const abs = Math.abs(minutes);
  const hh = String(Math.floor(abs / 60)).padStart(2, "0");
  const mm = String(abs % 60).padStart(2, "0");
  return sign + hh + ":" + mm;
}

// Plotly has no time zones: it is given the city's wall time, as the page shows it.
export function cityIso(t) {
  return new Date(t + state.offsetMs).toISOString().slice(0, 19);
}

export function cityClock(t) {
  return cityIso(t).slice(11, 19);
}

export function cityShort(t) {
  const iso = cityIso(t);
  return iso.slice(5, 10) + " " + iso.slice(11, 16);
}

export function unavailable(what, status) {
  if (status === 404) return what + ": not available on this server yet.";
  if (status === 403) return what + ": not available for your role.";
  if (status === 0) return what + ": the server did not answer.";
  return what + ": failed (HTTP " + status + ").";
}

// One request: {status, body}, status 0 if the server did not answer. A 401 (a token
// revoked, a cookie gone) sends the page to the login.
export async function request(url, options) {
  let response;
  try {
    response = await fetch(url, Object.assign({ credentials: "same-origin" }, options));
  } catch (error) {
    return { status: 0, body: null };
  }
  if (response.status === 401) {
    window.location.assign("/login");
    return { status: 401, body: null };
  }
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    body = null;
  }
  return { status: response.status, body: body };
}

export function getJson(url) {
  return request(url, { headers: { Accept: "application/json" } });
}

export function sendJson(method, url, document_) {
  // auth.py: a change made with the cookie must say it is JSON.
  const options = { method: method, headers: { "Content-Type": "application/json", Accept: "application/json" } };
  if (document_ !== undefined) options.body = JSON.stringify(document_);
  return request(url, options);
}

export function banner(text) {
  const node = $("banner");
  if (!node) return;
  node.textContent = text || "";
  node.hidden = !text;
}

export function setLiveState(state, text) {
  const node = $("live-state");
  if (!node) return;
  node.dataset.state = state;
  $("live-text").textContent = text;
}

export function setText(id, text, className) {
  const node = $(id);
  if (!node) return;
  node.textContent = text;
  if (className !== undefined) node.className = className;
}

export function syncOptions(select, values, labelOf) {
  const current = select.value;
  const wanted = values.map(String);
  const existing = Array.from(select.options).map((option) => option.value);
  if (existing.join("\n") === wanted.join("\n")) return;
  select.replaceChildren(
    ...wanted.map((value) => {
      const option = el("option", "", labelOf(value));
      option.value = value;
      return option;
    }),
  );
  if (wanted.includes(current)) select.value = current;
}
