// Tessera's web console: plain JavaScript over the HTTP API, no build step and nothing fetched from
// elsewhere. The API key lives in sessionStorage (this tab only) and travels in the x-api-key
// header, never in a URL; media of a hit are fetched with it and shown from blob: URLs.
"use strict";

const KEY = "tessera-api-key";
const $ = (sel) => document.querySelector(sel);
let droppedFile = null;
let corpora = [];

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const key = sessionStorage.getItem(KEY);
  if (key) h["x-api-key"] = key;
  return h;
}

async function api(path, options) {
  options = options || {};
  const response = await fetch(path, Object.assign({}, options, { headers: headers(options.headers) }));
  if (!response.ok) {
    let code = "HTTP_" + response.status, message = response.statusText;
    try { const body = await response.json(); code = body.error.code; message = body.error.message; } catch (e) { /* not JSON */ }
    const error = new Error(message);
    error.code = code;
    error.status = response.status;
    throw error;
  }
  return response;
}

const json = async (path, options) => (await api(path, options)).json();

function showError(error) {
  const box = $("#error");
  if (!error) { box.hidden = true; box.textContent = ""; return; }
  let text = (error.code ? error.code + ": " : "") + error.message;
  if (error.status === 401) text += " (enter an API key above)";
  box.textContent = text;
  box.hidden = false;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

// ---- corpora -----------------------------------------------------------------------------
async function loadCorpora() {
  const body = await json("/v1/corpora");
  corpora = body.corpora;
  const tbody = $("#corpora tbody");
  tbody.replaceChildren();
  for (const c of corpora) {
    const box = el("input", { type: "checkbox", class: "pick", value: c.name });
    const link = el("a", { href: "#/corpus/" + encodeURIComponent(c.name), class: "corpus-link", text: c.name });
    const state = c.damaged ? "damaged: " + c.damage : c.index_searching + " (" + c.index_state + ")";
    tbody.append(el("tr", { "data-corpus": c.name },
      el("td", {}, box), el("td", {}, link), el("td", { text: c.modality }), el("td", { text: c.space_id }),
      el("td", { class: "count", text: String(c.count) }), el("td", { text: state })));
  }
}

async function loadSpaces() {
  const body = await json("/v1/spaces");
  const select = $("#space");
  for (const s of body.spaces) select.append(el("option", { value: s.name, text: s.name + " (" + s.modalities.join(", ") + ")" }));
}

// ---- results -----------------------------------------------------------------------------
async function mediaFor(hit) {
  if (hit.modality === "text" || hit.modality === "vector") return null;
  const holder = el("div", { class: "media" });
  try {
    const url = "/v1/corpora/" + encodeURIComponent(hit.corpus) + "/content?id=" + encodeURIComponent(hit.id);
    const blob = await (await api(url)).blob();
    const src = URL.createObjectURL(blob);
    if (hit.modality === "image") holder.append(el("img", { src, alt: hit.id }));
    else if (hit.modality === "audio") holder.append(el("audio", { src, controls: "" }));
    else if (hit.modality === "video") holder.append(el("video", { src, preload: "metadata", muted: "", controls: "" }));
  } catch (e) {
    holder.append(el("span", { class: "muted", text: "no media" }));
  }
  return holder;
}

function fmt(x) { return (x >= 0 ? "+" : "") + Number(x).toFixed(3); }

async function renderHits(list, hits, withRank) {
  list.replaceChildren();
  const items = hits.map((hit, i) => {
    const meta = Object.keys(hit.metadata || {}).length ? JSON.stringify(hit.metadata) : "";
    const body = el("div", { class: "body" },
      el("div", { class: "title", text: hit.id }),
      hit.text ? el("div", { class: "snippet", text: hit.text.length > 240 ? hit.text.slice(0, 240) + "…" : hit.text }) : null,
      el("div", { class: "meta" }, el("span", { class: "badge corpus", text: hit.corpus }),
        el("span", { class: "badge modality", text: hit.modality }), hit.uri ? hit.uri + " " : "", meta));
    const scores = el("div", { class: "scores" }, el("b", { class: "calibrated", text: fmt(hit.calibrated_score) }),
      el("div", { class: "raw", text: "raw " + fmt(hit.raw_score) }));
    const li = el("li", { class: "hit", "data-id": hit.id, "data-corpus": hit.corpus, "data-modality": hit.modality,
      "data-metadata": JSON.stringify(hit.metadata || {}) },
      withRank ? el("span", { class: "rank", text: String(i + 1) }) : null, el("div", { class: "media" }), body,
      withRank ? scores : null);
    list.append(li);
    return [li, hit];
  });
  await Promise.all(items.map(async ([li, hit]) => {
    const media = await mediaFor(hit);
    if (media) li.querySelector(".media").replaceWith(media);
  }));
}

async function search(event) {
  event.preventDefault();
  showError(null);
  const picked = [...document.querySelectorAll("#corpora .pick:checked")].map((b) => b.value);
  const text = $("#query-text").value.trim();
  const file = droppedFile || $("#query-file").files[0];
  const topK = parseInt($("#top-k").value || "10", 10);
  const filter = $("#filter").value.trim();
  const space = $("#space").value;
  let options;
  if (file) {
    const form = new FormData();
    form.append("file", file, file.name);
    if (text) form.append("text", text);
    for (const c of picked) form.append("corpora", c);
    if (filter) form.append("filter", filter);
    if (space) form.append("space", space);
    form.append("top_k", String(topK));
    options = { method: "POST", body: form };
  } else if (text) {
    const body = { query: text, top_k: topK };
    if (picked.length) body.corpora = picked;
    if (space) body.space = space;
    if (filter) {
      try { body.filter = JSON.parse(filter); } catch (e) { showError({ code: "INVALID_ARGUMENT", message: "filter is not valid JSON: " + e.message }); return; }
    }
    options = { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } };
  } else {
    showError({ code: "INVALID_ARGUMENT", message: "type a query or choose a file" });
    return;
  }
  $("#results").setAttribute("aria-busy", "true");
  try {
    const result = await json("/v1/search", options);
    const skipped = result.skipped.length ? "; skipped " + result.skipped.map((s) => s.corpus + " (" + s.reason + ")").join(", ") : "";
    $("#searched").textContent = "searched " + result.searched.join(", ") + skipped;
    await renderHits($("#results"), result.hits, true);
    $("#results").setAttribute("data-done", String(Date.now()));
  } catch (e) {
    showError(e);
  } finally {
    $("#results").removeAttribute("aria-busy");
  }
}

function setFile(file) {
  droppedFile = file;
  $("#file-name").textContent = file ? file.name : "";
  $("#clear-file").hidden = !file;
}

// ---- the corpus page ---------------------------------------------------------------------
async function showCorpus(name) {
  $("#home").hidden = true;
  $("#corpus-page").hidden = false;
  $("#corpus-title").textContent = name;
  const tbody = $("#describe tbody");
  tbody.replaceChildren();
  $("#samples").replaceChildren();
  const body = await json("/v1/corpora/" + encodeURIComponent(name));
  for (const [k, v] of Object.entries(body.corpus)) tbody.append(el("tr", {}, el("th", { text: k }), el("td", { text: String(v) })));
  if (body.corpus.damaged) return;
  const sample = await json("/v1/corpora/" + encodeURIComponent(name) + "/sample?n=6");
  await renderHits($("#samples"), sample.items, false);
  $("#samples").setAttribute("data-done", String(Date.now()));
}

async function route() {
  showError(null);
  const match = location.hash.match(/^#\/corpus\/(.+)$/);
  try {
    if (match) { await showCorpus(decodeURIComponent(match[1])); return; }
    $("#corpus-page").hidden = true;
    $("#home").hidden = false;
    await loadCorpora();
  } catch (e) {
    showError(e);
  }
}

async function start() {
  $("#api-key").value = sessionStorage.getItem(KEY) || "";
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("#api-key").value.trim());
    loadSpaces().catch(() => {});
    route();
  });
  $("#search-form").addEventListener("submit", search);
  $("#query-file").addEventListener("change", () => setFile($("#query-file").files[0] || null));
  $("#clear-file").addEventListener("click", () => { $("#query-file").value = ""; setFile(null); });
  const zone = $("#drop-zone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer.files.length) setFile(e.dataTransfer.files[0]);
  });
  window.addEventListener("hashchange", route);
  try { $("#health").textContent = (await json("/healthz")).status.toLowerCase(); } catch (e) { $("#health").textContent = "unreachable"; }
  loadSpaces().catch(() => {});
  await route();
  document.body.setAttribute("data-ready", "true");
}

start();
