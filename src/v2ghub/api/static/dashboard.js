// v2ghub dashboard: fills the server-rendered cards from the JSON API and keeps them live
// from the feed (Server-Sent Events). Plain browser JavaScript (ES modules), no build step;
// every text from the server goes into the page as text, never as HTML.

import { $, REFRESH_MS, banner, cityClock, config, getJson, offsetLabel, offsetOf, setLiveState, state } from "./common.js";
import { loadStations, loadToday, renderEnvelope, renderScopes, renderSites, renderStations, renderSummary, renderVehicles } from "./cards.js";
import { initEventForm, renderEvents } from "./events.js";
import { notePower, renderPower } from "./power.js";
import { startRegulation } from "./regulation.js";
import { loadOwner, loadRun } from "./run.js";

const OWNER_REFRESH_MS = 30000;
const FEED_SILENT_MS = 6000;
let lastEventAt = 0; // wall ms of the last feed event

function connectFeed() {
  const source = new EventSource("/api/v1/feed");
  source.addEventListener("fleet", (message) => {
    lastEventAt = Date.now();
    banner("");
    onFleet(JSON.parse(message.data));
  });
  source.addEventListener("problem", (message) => {
    lastEventAt = Date.now();
    banner(JSON.parse(message.data).detail);
  });
  source.onerror = async () => {
    if (source.readyState !== EventSource.CLOSED) return; // reconnecting by itself
    const check = await getJson("/api/v1/fleet/now"); // a 401 goes to the login page
    if (check.status !== 401) window.setTimeout(connectFeed, 5000);
  };
}

function watchFeed() {
  window.setInterval(() => {
    if (state.latest && Date.now() - lastEventAt > FEED_SILENT_MS) {
      setLiveState("lost", "no update since " + cityClock(Date.parse(state.latest.fleet.at)) + ", reconnecting…");
    }
  }, 1000);
}

function onFleet(event) {
  const fleet = event.fleet;
  // The feed sends the vehicles when the loop has planned again; in between, keep them.
  if (fleet.vehicles === undefined) fleet.vehicles = state.latest ? state.latest.fleet.vehicles : [];
  state.offsetMs = offsetOf(fleet.at);
  state.latest = event;
  const node = $("live-state");
  if (node) node.dataset.sequence = String(event.sequence);
  setLiveState("live", "live · " + cityClock(Date.parse(fleet.at)) + " city time (UTC" + offsetLabel() + ")");
  notePower(fleet);
  renderSummary(event);
  renderSites(fleet);
  renderScopes(fleet);
  renderVehicles(fleet);
  renderEvents(fleet);
  renderEnvelope(fleet);
  renderStations();
  renderPower();
}

function showTab(name) {
  for (const tab of document.querySelectorAll(".tab")) tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
  for (const panel of document.querySelectorAll(".panel")) {
    if (panel.dataset.panel === "owner") continue;
    panel.hidden = panel.dataset.panel !== name;
  }
  if (name === "run") loadRun();
  for (const chart of document.querySelectorAll("[data-panel='" + name + "'] .js-plotly-plot")) Plotly.Plots.resize(chart);
}

function start() {
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showTab(tab.dataset.tab));
  initEventForm();
  const scope = $("power-scope");
  if (scope) scope.addEventListener("change", renderPower);
  if (config.role === "owner") {
    setLiveState("live", "owner view");
    loadOwner();
    window.setInterval(loadOwner, OWNER_REFRESH_MS);
  }
  if (config.live) {
    connectFeed();
    watchFeed();
    loadStations();
    loadToday();
    window.setInterval(loadStations, REFRESH_MS);
    window.setInterval(loadToday, REFRESH_MS);
    startRegulation();
  } else if (config.run) {
    setLiveState("live", "twin run");
    loadRun();
  }
}


start();
