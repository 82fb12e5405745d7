// The manual poser page: sliders for the 45 pose parameters (described by GET /api/talkinghead/pose_params),
// an exact preview (POST /render), and the templates, character and sprite export around them.
// Plain ES module, no build step, no external code.

const API = "/api/talkinghead";
const KEY_STORAGE = "talkinghead.apiKey";
const PREVIEW_DEBOUNCE_MS = 60;
const HISTORY_LIMIT = 200;

const $ = (id) => document.getElementById(id);
const state = {
  params: [],           // [{name, section, label, low, high, side, pair}]
  byName: new Map(),
  values: {},           // name -> number: the pose being edited
  linked: new Set(),    // left names of linked pairs
  rows: new Map(),      // name -> {range, number}
  links: new Map(),     // left name -> link button
  templates: {},        // GET /templates: builtin, server, saved, current, persistent
  undo: [], redo: [],
};

// -- HTTP ------------------------------------------------------------------------------------------------
/** fetch with the API key; a non-2xx answer throws its JSON error message. */
async function call(path, {method = "GET", json, body, raw = false} = {}) {
  const headers = {};
  const key = $("api-key").value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  const response = await fetch(API + path, {method, headers, body});
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch { /* not JSON */ }
    if (response.status === 401) message += " — enter the server's API key (api_key.txt) above";
    throw new Error(message);
  }
  return raw ? response : response.headers.get("Content-Type")?.includes("json") ? response.json() : response.text();
}

function say(text, kind = "ok") {
  const el = $("message");
  el.textContent = text;
  el.className = `message ${kind}`;
}
const fail = (what) => (e) => say(`${what}: ${e.message}`, "error");

// -- sliders ---------------------------------------------------------------------------------------------
function buildSliders(description) {
  state.params = description.params;
  for (const p of state.params) {
    state.byName.set(p.name, p);
    state.values[p.name] = 0;  // until a template is applied (a failed first load leaves it so)
  }
  const root = $("sliders");
  for (const section of description.sections) {
    const box = el("fieldset", {className: `section section-${section.id}`});
    box.append(el("legend", {textContent: section.title}));
    for (const name of section.params) {
      const p = state.byName.get(name);
      if (p.side === "right") continue;  // built with its left partner
      box.append(p.side === "left" ? pairBlock(p, state.byName.get(p.pair)) : singleBlock(p));
    }
    root.append(box);
  }
}

function pairBlock(left, right) {
  const block = el("div", {className: "param pair"});
  const head = el("div", {className: "param-head"});
  const link = el("button", {type: "button", className: "link", title: "Move left and right together"});
  link.setAttribute("aria-label", `link left and right ${left.label}`);
  link.addEventListener("click", () => setLinked(left.name, !state.linked.has(left.name), true));
  state.links.set(left.name, link);
  head.append(el("span", {className: "label", textContent: left.label}),
              el("code", {textContent: left.name.replace("_left_", "_{left,right}_")}), link);
  block.append(head, sliderRow(left, "L"), sliderRow(right, "R"));
  return block;
}

function singleBlock(p) {
  const block = el("div", {className: "param"});
  const head = el("div", {className: "param-head"});
  head.append(el("span", {className: "label", textContent: p.label}), el("code", {textContent: p.name}));
  block.append(head, sliderRow(p, ""));
  return block;
}

function sliderRow(p, side) {
  const row = el("div", {className: "slider-row"});
  // step "any": a template's 0.333 shows as 0.333; the keys move by 1 % / 10 % of the range (keydown below)
  const range = el("input", {type: "range", min: p.low, max: p.high, step: "any", value: 0, id: `r-${p.name}`});
  const number = el("input", {type: "number", min: p.low, max: p.high, step: 0.01, value: 0, className: "num"});
  range.setAttribute("aria-label", p.name);
  number.setAttribute("aria-label", `${p.name} value`);
  range.title = number.title = `${p.name}: ${p.low} … ${p.high}`;
  range.addEventListener("input", () => setValue(p.name, Number(range.value)));
  range.addEventListener("change", commit);
  range.addEventListener("keydown", (e) => stepByKey(e, p));
  number.addEventListener("change", () => {
    const v = Number(number.value);
    if (number.value === "" || !Number.isFinite(v)) { showValue(p.name); return; }
    if (v < p.low || v > p.high) say(`${p.name} goes from ${p.low} to ${p.high}; ${v} was clamped`, "warn");
    setValue(p.name, v);
    commit();
  });
  state.rows.set(p.name, {range, number});
  row.append(el("span", {className: "side", textContent: side}), range, number);
  return row;
}

function stepByKey(e, p) {
  const span = p.high - p.low;
  const steps = {ArrowRight: 0.01, ArrowUp: 0.01, ArrowLeft: -0.01, ArrowDown: -0.01, PageUp: 0.1, PageDown: -0.1};
  let v;
  if (e.key in steps) v = state.values[p.name] + steps[e.key] * span * (e.shiftKey ? 10 : 1);
  else if (e.key === "Home") v = p.low;
  else if (e.key === "End") v = p.high;
  else return;
  e.preventDefault();
  setValue(p.name, v);
  commit();
}

const clamp = (p, v) => Math.min(p.high, Math.max(p.low, Math.round(v * 1e4) / 1e4));

/** Set one parameter (and its partner when the pair is linked); the preview follows. */
function setValue(name, v) {
  const p = state.byName.get(name);
  state.values[name] = clamp(p, v);
  showValue(name);
  const left = p.side === "left" ? name : p.side === "right" ? p.pair : null;
  if (left && state.linked.has(left)) {
    state.values[p.pair] = state.values[name];
    showValue(p.pair);
  }
  schedulePreview();
}

function showValue(name) {
  const {range, number} = state.rows.get(name);
  range.value = state.values[name];
  number.value = state.values[name];
}

function setLinked(left, on, align = false) {
  if (on) state.linked.add(left); else state.linked.delete(left);
  const button = state.links.get(left);
  button.setAttribute("aria-pressed", String(on));
  button.textContent = on ? "linked" : "unlinked";
  if (on && align) setValue(left, state.values[left]);  // the right one follows the left
}

/** A whole pose at once (a template, a random pose, undo): pairs with equal sides start linked. */
function setPose(values, {relink = true} = {}) {
  for (const p of state.params) state.values[p.name] = clamp(p, values[p.name] ?? 0);
  for (const p of state.params) showValue(p.name);
  if (relink) {
    for (const p of state.params) {
      if (p.side === "left") setLinked(p.name, state.values[p.name] === state.values[p.pair]);
    }
  }
  schedulePreview();
}

// -- undo / redo -----------------------------------------------------------------------------------------
let committed = null;  // the pose after the last history step

function commit() {
  const now = JSON.stringify(state.values);
  if (now === committed) return;
  if (committed !== null) state.undo.push(committed);
  if (state.undo.length > HISTORY_LIMIT) state.undo.shift();
  state.redo = [];
  committed = now;
  updateHistoryButtons();
}

function travel(from, to) {
  if (!from.length) return;
  to.push(committed);
  committed = from.pop();
  setPose(JSON.parse(committed), {relink: false});
  updateHistoryButtons();
}
const undo = () => travel(state.undo, state.redo);
const redo = () => travel(state.redo, state.undo);

function updateHistoryButtons() {
  $("undo").disabled = !state.undo.length;
  $("redo").disabled = !state.redo.length;
}

// -- preview: debounced, one request in flight, the latest pose wins --------------------------------------
let previewTimer = null, previewBusy = false, previewAgain = false, previewUrl = null;

function schedulePreview() {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(renderPreview, PREVIEW_DEBOUNCE_MS);
}

async function renderPreview() {
  if (previewBusy) { previewAgain = true; return; }
  previewBusy = true;
  $("render-state").textContent = "rendering…";
  const started = performance.now();
  try {
    const response = await call("/render", {method: "POST", json: {pose: nonZero(state.values)}, raw: true});
    const blob = await response.blob();
    const ms = performance.now() - started;
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(blob);
    $("preview").src = previewUrl;
    $("render-time").textContent = `exact render: ${Math.round(ms)} ms`;
    $("preview").dataset.renders = String(Number($("preview").dataset.renders || 0) + 1);
  } catch (e) {
    fail("Preview")(e);
  } finally {
    previewBusy = false;
    $("render-state").textContent = "";
    if (previewAgain) { previewAgain = false; renderPreview(); }
  }
}

const nonZero = (values) => Object.fromEntries(Object.entries(values).filter(([, v]) => v !== 0));

// -- templates -------------------------------------------------------------------------------------------
async function refreshTemplates() {
  state.templates = await call("/templates");
  const saved = new Set(state.templates.saved);
  for (const select of [$("start-emotion"), $("save-emotion")]) {
    for (const option of select.options) {
      option.textContent = option.value + (saved.has(option.value) ? " (saved)" : "");
    }
  }
}

function fillEmotionSelects(names) {
  for (const select of [$("start-emotion"), $("save-emotion")]) {
    for (const name of names) select.append(el("option", {value: name, textContent: name}));
    select.value = "neutral";
  }
}

function startFrom(emotion) {
  setPose(state.templates.current[emotion] || {});
  commit();
}

function randomise() {
  const emotion = $("start-emotion").value;
  const base = state.templates.current[emotion] || {};
  const spread = Math.min(1, Math.max(0, Number($("spread").value) || 0));
  const values = {};
  for (const p of state.params) {
    const v = base[p.name] ?? 0;
    // the morphs this emotion uses, and where the head and eyes look; never breathing (the animator's)
    const moves = p.section !== "breathing" && (v !== 0 || p.section === "head" || p.name.startsWith("iris_rotation"));
    values[p.name] = moves ? v + (Math.random() * 2 - 1) * spread * (p.high - p.low) : v;
  }
  for (const p of state.params) {  // a linked pair stays symmetric
    if (p.side === "right" && state.linked.has(p.pair)) values[p.name] = values[p.pair];
  }
  setPose(values, {relink: false});
  commit();
}

async function saveTemplate() {
  const emotion = $("save-emotion").value;
  const answer = await call(`/templates/${encodeURIComponent(emotion)}`, {method: "PUT", json: {pose: nonZero(state.values)}});
  await refreshTemplates();
  say(`Saved the pose as the template of ${emotion}` + (answer.persistent
    ? " (kept in the server's user data folder)." : " (this server keeps it in memory only: no --user-data folder)."));
}

async function resetTemplate() {
  const emotion = $("save-emotion").value;
  await call(`/templates/${encodeURIComponent(emotion)}`, {method: "DELETE"});
  await refreshTemplates();
  say(`${emotion} is back to the built-in template.`);
}

/** The current templates, every morph of every emotion, as SillyTavern keeps them per character. */
async function downloadEmotions() {
  const current = await call("/emotions");
  const file = {};
  for (const emotion of Object.keys(current).sort()) {
    // 6 decimals: the server's float32 values without their binary noise (0.800000011920929 -> 0.8)
    file[emotion] = Object.fromEntries(state.params.map((p) => [p.name, Math.round((current[emotion][p.name] ?? 0) * 1e6) / 1e6]));
  }
  download(new Blob([JSON.stringify(file, null, 2) + "\n"], {type: "application/json"}), "_emotions.json");
  say("Downloaded _emotions.json: put it beside the character's talkinghead sprite in SillyTavern.");
}

async function loadEmotions(input) {
  const file = input.files[0];
  if (!file) return;
  try {
    let templates;
    try { templates = JSON.parse(await file.text()); } catch (e) { throw new Error(`${file.name} is not JSON (${e.message})`); }
    await call("/load_emotion_templates", {method: "POST", json: templates});
    await refreshTemplates();
    say(`Loaded ${file.name}: the avatar uses its templates now (save one to keep it on the server).`);
  } finally {
    input.value = "";  // the same file again is a new choice
  }
}

// -- character and sprites --------------------------------------------------------------------------------
async function loadCharacter(input) {
  const file = input.files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    await call("/load", {method: "POST", body: form});
    say(`Loaded ${file.name} as the character.`);
    schedulePreview();
  } finally {
    input.value = "";
  }
}

/** The sprite zip is streamed entry by entry; each entry's local header names its emotion: count them. */
async function exportSprites() {
  const button = $("export-sprites"), bar = $("export-progress"), label = $("export-state");
  button.disabled = true;
  bar.hidden = false;
  bar.value = 0;
  label.textContent = "rendering 28 exact frames…";
  const started = performance.now();
  try {
    const response = await call("/sprites.zip", {raw: true});
    const total = Number(response.headers.get("X-Sprite-Count")) || 28;
    bar.max = total;
    const reader = response.body.getReader();
    const chunks = [];
    const counter = entryCounter();
    for (;;) {
      const {done, value} = await reader.read();
      if (done) break;
      chunks.push(value);
      const entries = counter(value);
      bar.value = Math.max(0, entries - 1);  // an entry's header comes when its render is done
      label.textContent = `${bar.value} / ${total}`;
    }
    bar.value = total;
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    label.textContent = `${total} sprites in ${seconds} s`;
    download(new Blob(chunks, {type: "application/zip"}), "sprites.zip");
    say("Exported sprites.zip: upload it in SillyTavern's Character Expressions (Upload sprite pack).");
  } catch (e) {
    label.textContent = "failed";
    throw e;
  } finally {
    button.disabled = false;
  }
}

/** Counts zip local file headers (PK\3\4) across chunks; a name check avoids counting look-alikes in data. */
function entryCounter() {
  let tail = new Uint8Array(0), count = 0;
  return (chunk) => {
    const bytes = new Uint8Array(tail.length + chunk.length);
    bytes.set(tail);
    bytes.set(chunk, tail.length);
    let i = 0;
    for (; i + 30 <= bytes.length; i++) {
      if (bytes[i] !== 0x50 || bytes[i + 1] !== 0x4b || bytes[i + 2] !== 3 || bytes[i + 3] !== 4) continue;
      const nameLength = bytes[i + 26] | (bytes[i + 27] << 8);
      if (i + 30 + nameLength > bytes.length) break;  // the name comes with the next chunk
      const name = new TextDecoder().decode(bytes.subarray(i + 30, i + 30 + nameLength));
      if (/^[a-z]+\.png$/.test(name)) count++;
    }
    tail = bytes.slice(i);
    return count;
  };
}

function showStream(on) {
  $("stream-view").hidden = !on;
  // result_feed needs no key (an <img> cannot send one); closing it lets the server stop rendering
  if (on) $("stream").src = `${API}/result_feed`;
  else $("stream").removeAttribute("src");
}

// -- small helpers ---------------------------------------------------------------------------------------
function el(tag, props = {}) {
  return Object.assign(document.createElement(tag), props);
}

function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el("a", {href: url, download: name});
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

function onKeys(e) {
  const typing = e.target.matches("input[type=text], input[type=password], input[type=number], select");
  if (typing || !(e.ctrlKey || e.metaKey)) return;
  const key = e.key.toLowerCase();
  if (key === "z" && !e.shiftKey) { e.preventDefault(); undo(); }
  else if (key === "y" || (key === "z" && e.shiftKey)) { e.preventDefault(); redo(); }
}

// -- start -----------------------------------------------------------------------------------------------
async function main() {
  const key = $("api-key");
  key.value = localStorage.getItem(KEY_STORAGE) || "";
  key.addEventListener("change", () => {
    localStorage.setItem(KEY_STORAGE, key.value.trim());
    init().catch(fail("Connecting"));
  });
  $("start-emotion").addEventListener("change", (e) => { startFrom(e.target.value); $("save-emotion").value = e.target.value; });
  $("reset-pose").addEventListener("click", () => startFrom($("start-emotion").value));
  $("randomise").addEventListener("click", randomise);
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("save-template").addEventListener("click", () => saveTemplate().catch(fail("Saving")));
  $("reset-template").addEventListener("click", () => resetTemplate().catch(fail("Resetting")));
  $("download-emotions").addEventListener("click", () => downloadEmotions().catch(fail("Download")));
  $("load-emotions").addEventListener("change", (e) => loadEmotions(e.target).catch(fail("Loading templates")));
  $("load-character").addEventListener("change", (e) => loadCharacter(e.target).catch(fail("Loading the character")));
  $("export-sprites").addEventListener("click", () => exportSprites().catch(fail("Export")));
  $("show-stream").addEventListener("change", (e) => showStream(e.target.checked));
  document.addEventListener("keydown", onKeys);
  await init();
}

let initialised = false;

/** Needs the API (and so the key): the parameters, the emotions and their templates. */
async function init() {
  if (!initialised) {
    const [description, current] = await Promise.all([call("/pose_params"), call("/emotions")]);
    buildSliders(description);
    fillEmotionSelects(Object.keys(current).sort());
    initialised = true;
    await refreshTemplates();
    startFrom("neutral");
  } else {
    await refreshTemplates();
    schedulePreview();
  }
  say("Ready: move a slider, or start from an emotion.");
  document.body.dataset.ready = "1";
}

main().catch(fail("Connecting"));
