// v2ghub dashboard: the grid events in force (those from the OpenADR VTN marked), the
// form that adds one, and the VTN's events with the VEN's answer to each.

import { $, cityShort, config, el, fixed, getJson, offsetLabel, row, sendJson, state, td, unavailable } from "./common.js";

export const OPENADR_REFRESH_MS = 15000;
const VTN_PREFIX = "openadr:";
let openAdrBusy = false;

function fromVtn(event) {
  return event.source.startsWith(VTN_PREFIX);
}

// Who made a grid event: the token's name, or the VTN (and its event id) for the VEN's rows.
function sourceCell(event) {
  if (!fromVtn(event)) return td(event.source.replace(/^api:/, ""));
  const cell = el("td", "source-vtn");
  cell.appendChild(el("span", "vtn-tag", "VTN"));
  const vtnEventId = event.external_id ? event.external_id.split("/")[0] : "";
  cell.appendChild(document.createTextNode(vtnEventId));
  return cell;
}

function limitParts(event) {
  const parts = [];
  if (event.kind === "demand-response" && event.requested_reduction_kw !== null) {
    parts.push("demand response: −" + fixed(event.requested_reduction_kw) + " kW");
  }
  parts.push(event.import_limit_kw !== null ? "import ≤ " + fixed(event.import_limit_kw) + " kW" : "import: no limit");
  parts.push(event.export_limit_kw !== null ? "export ≤ " + fixed(event.export_limit_kw) + " kW" : "export: no limit");
  return parts;
}

function limitsText(event) {
  return limitParts(event).join(", ");
}

function limitsCell(event) {
  const cell = el("td", "limits");
  for (const part of limitParts(event)) cell.appendChild(el("div", "", part));
  return cell;
}

export function renderEvents(fleet) {
  const table = $("events-table");
  if (!table) return;
  const events = fleet.grid_events.slice().sort((a, b) => b.event_id - a.event_id);
  table.tBodies[0].replaceChildren(
    ...events.map((event) => {
      const action = el("td");
      if (config.can_steer) {
        const button = el("button", "cancel", "Cancel");
        button.type = "button";
        button.dataset.eventId = String(event.event_id);
        button.addEventListener("click", () => cancelEvent(event.event_id, button));
        action.appendChild(button);
      }
      const tr = row([
        td(event.event_id),
        td(event.site_id),
        limitsCell(event),
        td(event.ends_at ? cityShort(Date.parse(event.ends_at)) : "until cancelled"),
        sourceCell(event),
        action,
      ]);
      tr.dataset.eventId = String(event.event_id);
      tr.title = event.reason;
      if (fromVtn(event)) {
        tr.classList.add("from-vtn");
        tr.dataset.source = event.source;
        tr.title = "From the OpenADR VTN (" + event.source.slice(VTN_PREFIX.length) + ", " + event.external_id + "): " + event.reason;
      }
      return tr;
    }),
  );
  $("events-empty").hidden = events.length > 0;
}

async function cancelEvent(eventId, button) {
  button.disabled = true;
  const answer = await sendJson("DELETE", "/api/v1/grid-events/" + eventId);
  const message = $("event-message");
  if (answer.status === 200) {
    message.className = "form-message ok";
    message.textContent = "Grid event #" + eventId + " cancelled: the configured limits hold again.";
  } else {
    button.disabled = false;
    message.className = "form-message problem";
    message.textContent = (answer.body && answer.body.detail) || unavailable("cancel", answer.status);
  }
}

function siteNow(siteId) {
  return state.latest ? state.latest.fleet.sites.find((site) => site.site_id === siteId) : undefined;
}

export function keepPlaceholders() {
  const select = $("event-site");
  if (!select) return;
  const site = siteNow(select.value);
  const keep = (value) => (value === null || value === undefined ? "keep: no limit" : "keep " + fixed(value));
  $("event-import").placeholder = site ? keep(site.import_limit_kw) : "";
  $("event-export").placeholder = site ? keep(site.export_limit_kw) : "";
}

function numberOrNull(input) {
  const text = input.value.trim();
  return text === "" ? null : Number(text);
}

async function submitEvent(submit) {
  submit.preventDefault();
  const message = $("event-message");
  const body = { site_id: $("event-site").value };
  const importKw = numberOrNull($("event-import"));
  const exportKw = numberOrNull($("event-export"));
  if (importKw === null && exportKw === null) {
    message.className = "form-message problem";
    message.textContent = "Give an import limit, an export limit or both.";
    return;
  }
  // A blank limit keeps the one in force now (the API reads null as "no limit").
  const now = siteNow(body.site_id);
  body.import_limit_kw = importKw !== null ? importKw : now ? now.import_limit_kw : null;
  body.export_limit_kw = exportKw !== null ? exportKw : now ? now.export_limit_kw : null;
  const until = $("event-until").value;
  if (until) body.ends_at = (until.length === 16 ? until + ":00" : until) + offsetLabel();
  const reason = $("event-reason").value.trim();
  body.reason = reason || "dashboard";
  $("event-submit").disabled = true;
  const answer = await sendJson("POST", "/api/v1/grid-events/site-limits", body);
  $("event-submit").disabled = false;
  if (answer.status === 201) {
    message.className = "form-message ok";
    message.textContent =
      "Grid event #" + answer.body.event_id + " recorded: site " + answer.body.site_id + " " + limitsText(answer.body) + ". The control loop re-plans within seconds.";
    for (const id of ["event-import", "event-export", "event-until", "event-reason"]) $(id).value = "";
  } else {
    message.className = "form-message problem";
    message.textContent = (answer.body && answer.body.detail) || unavailable("grid event", answer.status);
  }
}

// The VTN's events (/api/v1/grid/openadr/events), asked for every few seconds: they change
// only when the VTN sends a new modification or status.
export function startOpenAdr() {
  if (!$("openadr") || !config.live) return;
  loadOpenAdr();
  window.setInterval(loadOpenAdr, OPENADR_REFRESH_MS);
}

async function loadOpenAdr() {
  if (openAdrBusy) return; // a slow answer is not asked for again on top of itself
  openAdrBusy = true;
  try {
    const answer = await getJson("/api/v1/grid/openadr/events");
    const message = $("openadr-message");
    if (answer.status === 200 && answer.body) {
      message.textContent = "";
      renderOpenAdr(answer.body);
    } else {
      message.className = "form-message problem";
      message.textContent = unavailable("OpenADR events", answer.status);
    }
  } finally {
    openAdrBusy = false;
  }
}

function answerCell(event) {
  const cell = el("td", "opt");
  const optedIn = event.opt_state === "optIn";
  cell.appendChild(el("div", optedIn ? "opt-in" : "opt-out", optedIn ? "opted in" : "opted out"));
  if (event.opt_reason) cell.appendChild(el("div", "opt-reason", event.opt_reason));
  const rows = [];
  if (event.grid_event_ids.length) rows.push("grid events " + event.grid_event_ids.map((id) => "#" + id).join(", "));
  if (event.price_event_ids.length) rows.push("price events " + event.price_event_ids.map((id) => "#" + id).join(", "));
  if (rows.length) cell.appendChild(el("div", "opt-reason", "→ " + rows.join("; ")));
  return cell;
}

export function renderOpenAdr(events) {
  const table = $("openadr-table");
  if (!table) return;
  table.tBodies[0].replaceChildren(
    ...events.map((event) => {
      const tr = row([
        td(event.vtn_event_id + " (mod " + event.modification_number + ")"),
        td(event.signal_name),
        td(event.site_ids.join(", ") || "–"),
        td(cityShort(Date.parse(event.starts_at)) + " – " + cityShort(Date.parse(event.ends_at))),
        td(event.status),
        answerCell(event),
      ]);
      tr.dataset.vtnEventId = event.vtn_event_id;
      tr.dataset.opt = event.opt_state;
      tr.title = "From " + event.source + ", received " + cityShort(Date.parse(event.received_at));
      return tr;
    }),
  );
  $("openadr-empty").hidden = events.length > 0;
}

export function initEventForm() {
  startOpenAdr(); // the OpenADR list lives in this card (dashboard.js starts the card here)
  const form = $("event-form");
  if (!form) return;
  if (!config.can_steer) form.hidden = true;
  form.addEventListener("submit", submitEvent);
  $("event-site").addEventListener("change", keepPlaceholders);
}
