// The textvae explorer's page: every panel asks the JSON API under /api/ and shows what it answers.
// Plain JavaScript, no libraries; text from the model is always set as text, never as HTML.
"use strict";

const SLIDER_STEPS = 41;          // points of the path the slider walks, decoded in one request
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"];
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

const $ = (id) => document.getElementById(id);
const state = {info: null, map: null, path: null, picks: 0, picked: {}, marker: null, view: null};

async function api(route, body) {
  const init = body === undefined ? {} :
    {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  const response = await fetch(`/api/${route}`, init);
  const data = await response.json().catch(() => ({error: `${response.status} ${response.statusText}`}));
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

// Run `work` for a panel: its button is disabled meanwhile, and a failure is shown in its error line.
async function guarded(panel, work) {
  const error = $(`${panel}-error`), button = $(`${panel}-run`);
  error.textContent = "";
  if (button) button.disabled = true;
  try {
    await work();
  } catch (e) {
    error.textContent = e.message;
  } finally {
    if (button) button.disabled = false;
  }
}

function element(tag, text, className) {
  const el = document.createElement(tag);
  if (text !== undefined) el.textContent = text;
  if (className) el.className = className;
  return el;
}

// The fields a panel shares: its label (conditional models) and guidance (when set).
function common(section, labelSelect) {
  const out = {};
  if (state.info.conditional && labelSelect && labelSelect.value) out.label = labelSelect.value;
  const guidance = $(section).querySelector(".guidance");
  if (state.info.guidable && guidance && guidance.value !== "") out.guidance = Number(guidance.value);
  return out;
}

function numberOr(input, fallback) {
  return input.value === "" ? fallback : Number(input.value);
}

function fillList(list, texts) {
  list.replaceChildren(...texts.map((t) => element("li", t)));
}

// ---------------------------------------------------------------------------- model info

async function start() {
  try {
    state.info = await api("info");
  } catch (e) {
    $("model-info").textContent = `cannot reach the model: ${e.message}`;
    return;
  }
  const info = state.info, map = info.map;
  $("model-info").textContent = `${info.model || "model"} · codes of ${info.latent_dim} dimensions · texts up to ` +
    `${info.max_len} characters` + (info.conditional ? ` · labels: ${info.labels.join(", ")}` : "") +
    (map.items ? ` · map: ${map.items.toLocaleString()} of ${map.source}` : "");
  if (info.prior) $("prior-name").textContent = info.prior;
  document.body.classList.toggle("conditional", info.conditional);
  document.body.classList.toggle("guidable", info.guidable);
  for (const select of document.querySelectorAll("select.labels")) {
    const options = info.labels.map((y) => new Option(y, y));
    if (select.classList.contains("same")) options.unshift(new Option("(A's label)", ""));
    select.replaceChildren(...options);
  }
  if (info.conditional && info.labels.length > 1) $("transfer-to").value = info.labels[1];
  loadMap();
}

// ---------------------------------------------------------------------------- homotopy

function homotopyBody(steps) {
  const body = {a: $("hom-a").value, b: $("hom-b").value, steps, method: $("hom-method").value,
                ...common("homotopy", $("hom-label"))};
  if (state.info.conditional && $("hom-label-b").value) body.label_b = $("hom-label-b").value;
  return body;
}

async function runHomotopy(event) {
  event.preventDefault();
  await guarded("hom", async () => {
    const steps = Number($("hom-steps").value);
    const result = await api("interpolate", homotopyBody(steps));
    showRows(result);
    const slider = $("hom-slider");
    slider.disabled = true;
    $("hom-point").textContent = "decoding the slider's path…";
    state.path = await api("interpolate", homotopyBody(SLIDER_STEPS));
    slider.max = SLIDER_STEPS - 1;
    slider.value = 0;
    slider.disabled = false;
    showPoint();
  });
}

function showRows(result) {
  const rows = result.changed.map((pieces, i) => {
    const tr = element("tr");
    tr.append(element("td", result.fractions[i].toFixed(2), "f"));
    const td = element("td", undefined, "t");
    for (const [piece, changed] of pieces) td.append(changed ? element("mark", piece) : document.createTextNode(piece));
    if (!result.texts[i]) td.textContent = "\u00a0";
    tr.append(td);
    return tr;
  });
  $("hom-rows").replaceChildren(...rows);
  const f = result.fidelity;
  const end = (name, r) => `${name} decodes to “${r.decoded}” (${r.exact ? "exact" : `edit distance ${r.edit_distance}`})`;
  $("hom-fidelity").textContent = `Endpoint fidelity: ${end("A", f.a)}; ${end("B", f.b)}.` +
    (result.unknown ? ` Characters the model never saw: ${result.unknown.join(" ")}.` : "");
}

function showPoint() {
  if (!state.path) return;
  const k = Number($("hom-slider").value), t = state.path.fractions[k];
  $("hom-point").textContent = `${t.toFixed(2)}  ${state.path.texts[k]}`;
  const rows = $("hom-rows").rows;           // the row nearest the slider
  const nearest = Math.round(t * (rows.length - 1));
  for (let i = 0; i < rows.length; i++) rows[i].classList.toggle("current", i === nearest);
}

// ---------------------------------------------------------------------------- around a sentence, samples, transfer

async function runNear(event) {
  if (event) event.preventDefault();
  if (!$("near-text").value.trim()) return;
  await guarded("near", async () => {
    const result = await api("near", {text: $("near-text").value, radius: Number($("near-radius").value),
                                      n: Number($("near-n").value), seed: numberOr($("near-seed"), undefined),
                                      ...common("near", $("near-label"))});
    fillList($("near-list"), result.texts);
  });
}

let nearTimer = null;
function radiusMoved() {
  $("near-radius-value").textContent = Number($("near-radius").value).toFixed(2);
  clearTimeout(nearTimer);
  nearTimer = setTimeout(runNear, 200);
}

async function runSamples(event) {
  event.preventDefault();
  await guarded("sample", async () => {
    const body = {n: Number($("sample-n").value), seed: numberOr($("sample-seed"), undefined),
                  temperature: numberOr($("sample-temperature"), undefined), top_p: numberOr($("sample-top-p"), undefined),
                  ...common("samples", $("sample-label"))};
    if ($("sample-strategy").value) body.strategy = $("sample-strategy").value;
    fillList($("sample-list"), (await api("sample", body)).texts);
  });
}

async function runTransfer(event) {
  event.preventDefault();
  await guarded("transfer", async () => {
    const text = $("transfer-text").value, to = $("transfer-to").value;
    const result = await api("reconstruct", {text, to_label: to, ...common("transfer", $("transfer-label"))});
    $("transfer-out").textContent = `as ${to}: ${result.text}`;
  });
}

// ---------------------------------------------------------------------------- map

async function loadMap() {
  if (!state.info.map.items) {
    $("map-error").textContent = state.info.map.note || "no map";
    return;
  }
  await guarded("map", async () => {
    $("map-readout").textContent = `encoding ${state.info.map.items.toLocaleString()} items…`;
    state.map = await api("map");
    $("map-readout").textContent = "";
    drawMap();
    drawLegend();
  });
}

function colourOf(i) {
  const m = state.map;
  if (m.labels) return PALETTE[state.info.labels.indexOf(m.labels[i]) % PALETTE.length];
  const [lo, hi] = m.lengthRange, s = hi > lo ? (m.texts[i].length - lo) / (hi - lo) : 0.5;
  const x = s * (VIRIDIS.length - 1), j = Math.min(Math.floor(x), VIRIDIS.length - 2), f = x - j;
  const c = VIRIDIS[j].map((v, k) => Math.round(v + f * (VIRIDIS[j + 1][k] - v)));
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}

// Map coordinates <-> canvas pixels (CSS pixels), with a margin around the points.
function fitView(canvas) {
  const m = state.map, pad = 12;
  const [x0, x1] = [Math.min(...m.x), Math.max(...m.x)], [y0, y1] = [Math.min(...m.y), Math.max(...m.y)];
  const w = canvas.clientWidth, h = canvas.clientHeight;
  const sx = (w - 2 * pad) / Math.max(x1 - x0, 1e-9), sy = (h - 2 * pad) / Math.max(y1 - y0, 1e-9);
  return {
    toScreen: (x, y) => [pad + (x - x0) * sx, h - pad - (y - y0) * sy],
    toMap: (px, py) => [x0 + (px - pad) / sx, y0 + (h - pad - py) / sy],
  };
}

function drawMap() {
  const canvas = $("map-canvas"), m = state.map, ratio = window.devicePixelRatio || 1;
  canvas.width = canvas.clientWidth * ratio;
  canvas.height = canvas.clientHeight * ratio;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, canvas.clientWidth, canvas.clientHeight);
  if (!m.lengthRange) {
    const lengths = m.texts.map((t) => t.length);
    m.lengthRange = [Math.min(...lengths), Math.max(...lengths)];
  }
  state.view = fitView(canvas);
  ctx.globalAlpha = 0.7;
  for (let i = 0; i < m.texts.length; i++) {
    const [px, py] = state.view.toScreen(m.x[i], m.y[i]);
    ctx.fillStyle = colourOf(i);
    ctx.beginPath();
    ctx.arc(px, py, 2.5, 0, 2 * Math.PI);
    ctx.fill();
  }
  ctx.globalAlpha = 1;
  ctx.font = "bold 12px system-ui, sans-serif";
  for (const [end, i] of Object.entries(state.picked)) {       // the points chosen as A and B
    const [px, py] = state.view.toScreen(m.x[i], m.y[i]);
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    ctx.arc(px, py, 6, 0, 2 * Math.PI);
    ctx.stroke();
    ctx.fillStyle = "#000";
    ctx.fillText(end, px + 8, py - 6);
  }
  if (state.marker) {
    const [px, py] = state.view.toScreen(...state.marker);
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(px - 6, py); ctx.lineTo(px + 6, py); ctx.moveTo(px, py - 6); ctx.lineTo(px, py + 6);
    ctx.stroke();
  }
}

function drawLegend() {
  const m = state.map, legend = $("map-legend");
  const axes = element("span", `PC 1: ${(100 * m.variance[0]).toFixed(0)}% of the variance, ` +
                               `PC 2: ${(100 * m.variance[1]).toFixed(0)}%`, "axes");
  if (m.labels) {
    const items = state.info.labels.map((y, k) => {
      const item = element("span", y, "key");
      item.prepend(swatch(PALETTE[k % PALETTE.length]));
      return item;
    });
    legend.replaceChildren(...items, axes);
  } else {
    const bar = element("span", undefined, "gradient");
    legend.replaceChildren(element("span", `length ${m.lengthRange[0]}`), bar,
                           element("span", `${m.lengthRange[1]} characters`), axes);
  }
}

function swatch(colour) {
  const s = element("span", undefined, "swatch");
  s.style.backgroundColor = colour;
  return s;
}

// The index of the point within `radius` CSS pixels of (px, py), nearest first; -1 when none.
function pointAt(px, py, radius = 6) {
  const m = state.map;
  let best = -1, bestD = radius * radius;
  for (let i = 0; i < m.texts.length; i++) {
    const [sx, sy] = state.view.toScreen(m.x[i], m.y[i]);
    const d = (sx - px) ** 2 + (sy - py) ** 2;
    if (d <= bestD) [best, bestD] = [i, d];
  }
  return best;
}

function canvasXY(event) {
  const r = $("map-canvas").getBoundingClientRect();
  return [event.clientX - r.left, event.clientY - r.top];
}

function mapHover(event) {
  if (!state.map) return;
  const [px, py] = canvasXY(event), i = pointAt(px, py), tip = $("map-tip");
  tip.hidden = i < 0;
  if (i < 0) return;
  tip.textContent = state.map.labels ? `${state.map.texts[i]}  (${state.map.labels[i]})` : state.map.texts[i];
  tip.style.left = `${px + 12}px`;
  tip.style.top = `${py + 12}px`;
}

async function mapClick(event) {
  if (!state.map) return;
  const [px, py] = canvasXY(event), i = pointAt(px, py);
  if (i >= 0) {
    pick(i);
    return;
  }
  const [x, y] = state.view.toMap(px, py);
  state.marker = [x, y];
  drawMap();
  await guarded("map", async () => {
    const result = await api("decode", {xy: [x, y], ...common("map", $("map-label"))});
    $("map-readout").textContent = `(${x.toFixed(2)}, ${y.toFixed(2)}) decodes to: ${result.texts[0]}`;
  });
}

// Clicking points fills the homotopy's A, then B, then A again…
function pick(i) {
  const end = state.picks % 2 === 0 ? "a" : "b", m = state.map;
  state.picks += 1;
  state.picked[end.toUpperCase()] = i;
  drawMap();
  $(`hom-${end}`).value = m.texts[i];
  if (m.labels) $(end === "a" ? "hom-label" : "hom-label-b").value = m.labels[i];
  $("map-readout").textContent = `${end.toUpperCase()} ← ${m.texts[i]}` +
    (end === "b" ? " (press Interpolate in the homotopy panel)" : "; click another point for B");
}

// For scripts and tests: where point i of the map is drawn, in the window's pixels (as mouse events count them).
function pointInWindow(i) {
  const r = $("map-canvas").getBoundingClientRect(), [x, y] = state.view.toScreen(state.map.x[i], state.map.y[i]);
  return [r.left + x, r.top + y];
}

window.explorer = {state, pointInWindow};

document.addEventListener("DOMContentLoaded", () => {
  $("hom-form").addEventListener("submit", runHomotopy);
  $("hom-slider").addEventListener("input", showPoint);
  $("near-form").addEventListener("submit", runNear);
  $("near-radius").addEventListener("input", radiusMoved);
  $("sample-form").addEventListener("submit", runSamples);
  $("transfer-form").addEventListener("submit", runTransfer);
  $("map-canvas").addEventListener("mousemove", mapHover);
  $("map-canvas").addEventListener("mouseleave", () => { $("map-tip").hidden = true; });
  $("map-canvas").addEventListener("click", mapClick);
  window.addEventListener("resize", () => { if (state.map) drawMap(); });
  start();
});
