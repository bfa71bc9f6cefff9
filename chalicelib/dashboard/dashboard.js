// The Task Queue dashboard. Every URL is relative to the page, so it works at
// chalice local's / and behind API Gateway's stage prefix (/api/). Everything a
// task holds reaches the page through textContent, never as HTML.
"use strict";

const REFRESH_MS = 2000;
const SERIES_EVERY = 5;      // the charts refresh every 5th tick: their points are per minute
const SERIES_MINUTES = 60;
const SVG = "http://www.w3.org/2000/svg";
const PAGE_SIZE = 20;
const DEFAULT_DATA = '{"text": "hello world"}';  // the data box's first content
const $ = (id) => document.getElementById(id);

const state = {
  status: "",
  action: "",        // the list's action filter
  actions: {},       // name -> the action as GET /actions lists it
  cursors: [null],   // cursors[i] opens page i; page 0 is the newest
  page: 0,
  nextCursor: null,
  selected: null,    // id of the task in the detail view
};

// Behind API Gateway with TASKS_API_AUTH=api_key the page loads without a key
// and every API call needs one: asked for once, kept in sessionStorage (this tab).
const KEY_STORAGE = "task-queue-api-key";

function askForKey(message) {
  $("key-form").hidden = false;
  text($("key-error"), message);
}

async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = body;
  }
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) options.headers["x-api-key"] = key;
  const response = await fetch(path, options);
  let payload = null;
  try { payload = await response.json(); } catch (e) { payload = null; }
  // API Gateway's refusal of a key; the service's own 403 (another origin) says why in `error`.
  if (response.status === 401 || (response.status === 403 && !(payload && payload.error))) {
    askForKey(key ? "That key was refused; check it and try again." : "");
  }
  if (!response.ok) {
    const message = (payload && (payload.error || payload.detail || payload.message)) || response.statusText;
    const error = new Error(message);
    error.status = response.status;
    error.pointer = payload && payload.pointer;
    throw error;
  }
  return payload;
}

function text(element, value) {
  element.textContent = value === null || value === undefined ? "" : String(value);
}

function formatTime(value) {
  if (!value) return "";
  const date = new Date(value);
  return date.toLocaleString(undefined, { hour12: false }) + "." + String(date.getMilliseconds()).padStart(3, "0");
}

function formatAge(seconds, queued, known) {
  // The DynamoDB store keeps no index of queued tasks: the queue's CloudWatch
  // metric ApproximateAgeOfOldestMessage has the age there. Elsewhere null with
  // tasks queued means they all wait for their run_at.
  if (seconds === null || seconds === undefined) return !queued ? "none" : known ? "none due" : "see CloudWatch";
  if (seconds < 60) return seconds.toFixed(1) + " s";
  if (seconds < 3600) return (seconds / 60).toFixed(1) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function json(value) {
  return value === null || value === undefined ? "" : JSON.stringify(value, null, 2);
}

async function refreshStats() {
  const stats = await api("GET", "stats");
  for (const [status, count] of Object.entries(stats.counts)) {
    const cell = $("count-" + status);
    if (cell) text(cell, count);
  }
  const queue = stats.queue || {};
  text($("queue-waiting"), queue.waiting ?? "?");
  text($("queue-in-flight"), queue.in_flight ?? "?");
  text($("queue-delayed"), queue.delayed ?? "?");
  text($("queue-dead"), queue.dead_letter ?? "?");
  $("queue-dead").parentElement.classList.toggle("alert", (queue.dead_letter || 0) > 0);
  text($("oldest-age"), formatAge(stats.oldest_queued_age_seconds, stats.counts.queued, stats.oldest_queued_age_known));
}

function badge(status) {
  const span = document.createElement("span");
  span.className = "badge " + status;
  span.textContent = status;
  return span;
}

function renderRows(tasks) {
  const body = $("task-rows");
  const rows = tasks.map((task) => {
    const row = document.createElement("tr");
    row.dataset.id = task.id;
    const cells = [task.id.slice(0, 8), task.action, null, task.attempts,
                   formatTime(task.created_at), formatTime(task.finished_at)];
    cells.forEach((value, index) => {
      const cell = document.createElement("td");
      if (index === 2) cell.appendChild(badge(task.status));
      else cell.textContent = value === null || value === undefined ? "" : String(value);
      if (index === 0) cell.title = task.id;
      row.appendChild(cell);
    });
    row.addEventListener("click", () => openDetail(task.id));
    return row;
  });
  body.replaceChildren(...rows);
  $("empty").hidden = tasks.length > 0;
}

async function refreshList() {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (state.status) params.set("status", state.status);
  if (state.action) params.set("action", state.action);
  const cursor = state.cursors[state.page];
  if (cursor) params.set("cursor", cursor);
  const page = await api("GET", "tasks?" + params.toString());
  renderRows(page.tasks);
  state.nextCursor = page.next_cursor;
  $("older").disabled = !page.next_cursor;
  $("newer").disabled = state.page === 0;
  text($("list-error"), "");
}

function showDetail(task) {
  $("detail").hidden = false;
  state.selected = task.id;
  text($("detail-id"), task.id);
  text($("detail-action"), task.action);
  $("detail-status").replaceChildren(badge(task.status));
  text($("detail-attempts"), task.attempts);
  text($("detail-created"), formatTime(task.created_at));
  text($("detail-run-at"), task.run_at ? formatTime(task.run_at) : "at once");
  text($("detail-started"), formatTime(task.started_at));
  text($("detail-finished"), formatTime(task.finished_at));
  text($("detail-data"), json(task.data));
  text($("detail-result"), json(task.result));
  text($("detail-error"), task.error);
  $("retry").hidden = task.status !== "failed";
  $("cancel").hidden = task.status !== "queued";
  $("delete").hidden = !["completed", "failed", "cancelled"].includes(task.status);
}

async function openDetail(id) {
  text($("detail-message"), "");
  try {
    showDetail(await api("GET", "tasks/" + encodeURIComponent(id)));
  } catch (error) {
    text($("detail-message"), error.message);
  }
}

async function refreshDetail() {
  if (!state.selected || $("detail").hidden) return;
  showDetail(await api("GET", "tasks/" + encodeURIComponent(state.selected)));
}

// Charts: inline SVG built with DOM calls; every label is set through textContent.
function svgNode(name, attributes, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (parent) parent.appendChild(node);
  return node;
}

const CHART = { width: 600, height: 160, left: 44, right: 6, top: 8, bottom: 18 };  // room for 5-digit labels

function chartFrame(svg, points, yLabels) {
  svg.replaceChildren();
  const plotHeight = CHART.height - CHART.top - CHART.bottom;
  svgNode("line", { class: "axis", x1: CHART.left, y1: CHART.height - CHART.bottom,
                    x2: CHART.width - CHART.right, y2: CHART.height - CHART.bottom }, svg);
  for (const [fraction, label] of yLabels) {
    const y = CHART.top + plotHeight * (1 - fraction);
    svgNode("line", { class: "axis", x1: CHART.left - 3, y1: y, x2: CHART.left, y2: y }, svg);
    const node = svgNode("text", { class: "label", x: CHART.left - 5, y: y + 3, "text-anchor": "end" }, svg);
    node.textContent = label;
  }
  const first = svgNode("text", { class: "label", x: CHART.left, y: CHART.height - 4 }, svg);
  first.textContent = points.length ? new Date(points[0].minute).toTimeString().slice(0, 5) : "";
  const last = svgNode("text", { class: "label", x: CHART.width - CHART.right, y: CHART.height - 4,
                                  "text-anchor": "end" }, svg);
  last.textContent = "now";
  return plotHeight;
}

function drawThroughput(points) {
  const svg = $("throughput-chart");
  const most = Math.max(1, ...points.map((p) => p.completed + p.failed + p.cancelled));
  const plotHeight = chartFrame(svg, points, [[0, "0"], [0.5, String(Math.round(most / 2))], [1, String(most)]]);
  const slot = (CHART.width - CHART.left - CHART.right) / Math.max(1, points.length);
  points.forEach((point, index) => {
    let base = CHART.height - CHART.bottom;
    for (const outcome of ["completed", "failed", "cancelled"]) {
      const count = point[outcome];
      if (!count) continue;
      const height = plotHeight * count / most;
      base -= height;
      const bar = svgNode("rect", { class: outcome, x: CHART.left + index * slot + 1, y: base,
                                     width: Math.max(1, slot - 2), height,
                                     "data-minute": point.minute, "data-outcome": outcome, "data-count": count }, svg);
      svgNode("title", {}, bar).textContent = `${formatTime(point.minute)}: ${count} ${outcome}`;
    }
  });
}

function drawLatency(points) {
  const svg = $("latency-chart");
  const series = [["wait_ms", "p50", "wait-p50"], ["wait_ms", "p95", "wait-p95"],
                  ["run_ms", "p50", "run-p50"], ["run_ms", "p95", "run-p95"]];
  const values = points.flatMap((p) => series.map(([kind, name]) => p[kind] && p[kind][name]))
    .filter((v) => v !== null && v !== undefined);
  const top = Math.log10(Math.max(10, ...values) + 1);
  const plotHeight = chartFrame(svg, points, [[0, "0"], [0.5, String(Math.round(10 ** (top / 2) - 1))],
                                              [1, String(Math.round(10 ** top - 1))]]);
  const slot = (CHART.width - CHART.left - CHART.right) / Math.max(1, points.length);
  for (const [kind, name, css] of series) {
    let path = "";
    points.forEach((point, index) => {
      const value = point[kind] && point[kind][name];
      if (value === null || value === undefined) return;
      const x = CHART.left + (index + 0.5) * slot;
      const y = CHART.top + plotHeight * (1 - Math.log10(value + 1) / top);
      path += `${path ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`;
      svgNode("circle", { class: css, cx: x.toFixed(1), cy: y.toFixed(1), r: 1.5, "data-minute": point.minute,
                          "data-series": `${kind}.${name}`, "data-value": value }, svg);
    });
    if (path) svgNode("path", { class: "line " + css, d: path }, svg);
  }
}

let ticks = 0;

async function refreshSeries() {
  const body = await api("GET", "stats/series?minutes=" + SERIES_MINUTES);
  drawThroughput(body.points);
  drawLatency(body.points);
}

async function refresh() {
  const live = state.page === 0;
  $("live").classList.toggle("paused", !live);
  text($("live"), live ? "live" : "paused on an older page");
  try {
    const charts = ticks++ % SERIES_EVERY === 0 ? refreshSeries() : Promise.resolve();
    await Promise.all([refreshStats(), live ? refreshList() : Promise.resolve(), refreshDetail(), charts]);
  } catch (error) {
    text($("list-error"), "Could not refresh: " + error.message);
  }
}

// Where an error belongs: by the pointer the API names, else by its first words.
function fieldFor(error) {
  const pointer = error.pointer || "";
  const field = pointer.match(/^\/data\/([^/]+)/);
  if (field && $("field-error-" + field[1])) return "field-error-" + field[1];
  if (pointer === "/action") return "action-error";
  if (pointer === "/delay_seconds" || pointer === "/run_at") return "delay-error";
  if (pointer.startsWith("/data")) return "data-error";
  if (/^action\b/i.test(error.message)) return "action-error";
  if (/^(data\b|invalid JSON)/i.test(error.message)) return "data-error";
  return "form-error";
}

// The declared actions: the action field offers them, the list filters by them,
// and a declared action's schema builds the form's fields.
async function loadActions() {
  const listed = await api("GET", "actions");
  state.actions = Object.fromEntries(listed.actions.map((declared) => [declared.name, declared]));
  $("actions").replaceChildren(...listed.actions.map((declared) => {
    const option = document.createElement("option");
    option.value = declared.name;
    return option;
  }));
  const filter = $("action-filter");
  filter.replaceChildren(filter.options[0], ...listed.actions.map((declared) => {
    const option = document.createElement("option");
    option.value = declared.name;
    option.textContent = declared.name;
    return option;
  }));
  filter.value = state.action;
  buildFields();
}

function currentData() {
  try {
    const data = JSON.parse($("data").value || "{}");
    return data && typeof data === "object" && !Array.isArray(data) ? data : {};
  } catch (error) {
    return {};
  }
}

// One input per property of the chosen action's schema; each edit writes the data box.
function buildFields() {
  const declared = state.actions[$("action").value];
  const properties = (declared && declared.schema && declared.schema.properties) || {};
  const required = new Set((declared && declared.schema && declared.schema.required) || []);
  text($("action-description"), declared ? declared.description : "");
  // A data box still holding an example (or nothing) takes the chosen action's example.
  const examples = Object.values(state.actions).flatMap((other) => (other.schema && other.schema.examples) || [])
    .map((example) => JSON.stringify(example));
  const shown = $("data").value.trim();
  const example = declared && declared.schema && declared.schema.examples && declared.schema.examples[0];
  if (example && (!shown || shown === DEFAULT_DATA || examples.includes(JSON.stringify(currentData())))) {
    $("data").value = JSON.stringify(example);
  }
  const data = currentData();
  const nodes = [];
  for (const [name, property] of Object.entries(properties)) {
    const id = "field-" + name;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = name + (required.has(name) ? " *" : "") + (property.description ? " — " + property.description : "");
    const input = document.createElement(property.type === "array" || property.type === "object" ? "textarea" : "input");
    input.id = id;
    input.dataset.field = name;
    input.dataset.type = property.type || "";
    if (property.type === "boolean") {
      input.type = "checkbox";
      input.checked = data[name] === true;
    } else if (name in data) {
      input.value = typeof data[name] === "string" ? data[name] : JSON.stringify(data[name]);
    }
    if (input.tagName === "TEXTAREA") input.rows = 2;
    input.placeholder = property.type === "array" ? "[1, 2, 3]" : (property.type || "");
    input.addEventListener("input", fieldsToData);
    input.addEventListener("change", fieldsToData);
    const error = document.createElement("p");
    error.className = "field-error";
    error.id = "field-error-" + name;
    error.setAttribute("role", "alert");
    nodes.push(label, input, error);
  }
  $("schema-fields").replaceChildren(...nodes);
}

function fieldValue(input) {
  const type = input.dataset.type;
  if (type === "boolean") return input.checked;
  const raw = input.value;
  if (raw === "") return undefined;
  if (type === "string") return raw;
  if (type === "number" || type === "integer") return Number.isFinite(Number(raw)) ? Number(raw) : raw;
  try { return JSON.parse(raw); } catch (error) { return raw; }  // the API names what is wrong
}

function fieldsToData() {
  const data = currentData();
  for (const input of $("schema-fields").querySelectorAll("[data-field]")) {
    const value = fieldValue(input);
    if (value === undefined) delete data[input.dataset.field];
    else data[input.dataset.field] = value;
  }
  $("data").value = JSON.stringify(data);
}

async function submitTask(event) {
  event.preventDefault();
  for (const id of ["action-error", "data-error", "delay-error", "form-error", "form-ok"]) text($(id), "");
  for (const node of $("schema-fields").querySelectorAll(".field-error")) text(node, "");
  const action = $("action").value;
  const rawData = $("data").value.trim();
  let data;
  if (rawData) {
    try {
      data = JSON.parse(rawData);
    } catch (error) {
      text($("data-error"), "data is not valid JSON: " + error.message);
      return;
    }
  }
  const body = data === undefined ? { action } : { action, data };
  const delay = $("delay").value.trim();
  if (delay) body.delay_seconds = Number.isFinite(Number(delay)) ? Number(delay) : delay;
  try {
    const accepted = await api("POST", "tasks", JSON.stringify(body));
    text($("form-ok"), "Queued " + accepted.id);
    state.page = 0;
    await refresh();
  } catch (error) {
    text($(fieldFor(error)), error.message);
  }
}

// Retry and cancel take an empty JSON object; delete takes nothing.
async function act(method, suffix, body) {
  text($("detail-message"), "");
  try {
    await api(method, "tasks/" + encodeURIComponent(state.selected) + suffix, body);
    if (method === "DELETE") {
      $("detail").hidden = true;
      state.selected = null;
    }
    await refresh();
  } catch (error) {
    text($("detail-message"), error.message);
  }
}

function goTo(page) {
  state.page = page;
  refreshList().catch((error) => text($("list-error"), error.message));
  refresh();
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY_STORAGE, key);
  $("api-key").value = "";
  $("key-form").hidden = true;
  text($("key-error"), "");
  loadActions().catch((error) => text($("form-error"), "Could not load the actions: " + error.message));
  refresh();
});
$("submit-form").addEventListener("submit", submitTask);
$("action").addEventListener("input", buildFields);
$("action-filter").addEventListener("change", (event) => {
  state.action = event.target.value;
  state.cursors = [null];
  goTo(0);
});
$("status-filter").addEventListener("change", (event) => {
  state.status = event.target.value;
  state.cursors = [null];
  goTo(0);
});
$("older").addEventListener("click", () => {
  state.cursors[state.page + 1] = state.nextCursor;
  goTo(state.page + 1);
});
$("newer").addEventListener("click", () => goTo(Math.max(0, state.page - 1)));
$("retry").addEventListener("click", () => act("POST", "/retry", "{}"));
$("cancel").addEventListener("click", () => act("POST", "/cancel", "{}"));
$("delete").addEventListener("click", () => act("DELETE", ""));
$("close-detail").addEventListener("click", () => { $("detail").hidden = true; state.selected = null; });

loadActions().catch((error) => text($("form-error"), "Could not load the actions: " + error.message));
refresh();
setInterval(refresh, REFRESH_MS);
