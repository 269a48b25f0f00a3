// v2ghub dashboard: the grid events in force, and the form that adds one.

import { $, cityShort, config, el, fixed, offsetLabel, row, sendJson, state, td, unavailable } from "./common.js";

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
        td(event.source.replace(/^api:/, "")),
        action,
      ]);
      tr.dataset.eventId = String(event.event_id);
      tr.title = event.reason;
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

export function initEventForm() {
  const form = $("event-form");
  if (!form) return;
  if (!config.can_steer) form.hidden = true;
  form.addEventListener("submit", submitEvent);
  $("event-site").addEventListener("change", keepPlaceholders);
}
