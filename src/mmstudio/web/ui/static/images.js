// mmstudio Image Studio: a prompt and the chosen model's settings, reference photos, generation with
// live progress (which model is tried, failures, the fallback), and the gallery with a lightbox.
// User text (prompts, file names, model names, errors) is only ever set as textContent or attributes.
// One file (about 750 lines) on purpose: no build step, and its parts (form, progress, gallery,
// lightbox) share the page state; each part is a section below.
"use strict";

(function () {
  const KEY_STORE = "mmstudio-key";
  const PRESET_SIZES = ["512x512", "768x768", "1024x1024", "768x512", "512x768", "1024x768", "768x1024"];

  // -- small helpers -----------------------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);
  const { el } = window.mm; // DOM element builder (app.js)

  function sentence(text) {
    const t = String(text || "").trim();
    if (!t) return "The studio gave no reason.";
    const s = t[0].toUpperCase() + t.slice(1);
    return /[.!?…]$/.test(s) ? s : s + ".";
  }

  function period(text) {
    return /[.!?…]$/.test(text) ? text : text + ".";
  }

  function names(list) {
    if (list.length <= 1) return list.join("");
    return list.slice(0, -1).join(", ") + " and " + list[list.length - 1];
  }

  function duration(ms) {
    if (ms === null || ms === undefined) return "";
    return ms < 1000 ? Math.round(ms) + " ms" : (ms / 1000).toFixed(1) + " s";
  }

  function seconds(ms) {
    const s = (ms || 0) / 1000;
    return (s < 10 ? s.toFixed(1) : String(Math.round(s))) + " s";
  }

  function announce(text) {
    $("im-announce").textContent = text;
  }

  function hasKey() {
    try { return !!localStorage.getItem(KEY_STORE); } catch (e) { return false; }
  }

  // With gateway keys on, a plain <img src> would be refused (no Authorization header): the bytes are
  // fetched through mm.api and shown from an object URL. Without keys the browser loads them itself.
  const objectUrls = new WeakMap();
  function showMedia(img, url) {
    if (!hasKey()) { img.src = url; return; }
    mm.api(url).then((r) => r.blob()).then((blob) => {
      const old = objectUrls.get(img);
      if (old) URL.revokeObjectURL(old);
      const made = URL.createObjectURL(blob);
      objectUrls.set(img, made);
      img.src = made;
    }).catch(() => { img.alt = "(the image could not be loaded)"; });
  }

  function healthClass(status) {
    return status === "healthy" ? "dot-healthy" : status === "offline" ? "dot-offline" : "dot-checking";
  }

  // -- models and the settings they allow ----------------------------------------------------------------
  let models = [];
  let chosen = ""; // "" = automatic (the image fallback chain)

  function modelById(id) {
    return models.find((m) => m.id === id) || null;
  }

  function firstUsable() {
    return models.find((m) => m.usable) || null;
  }

  // The model whose capabilities shape the form: the chosen one, else the one the chain tries first.
  function shaping() {
    return (chosen && modelById(chosen)) || firstUsable();
  }

  function caps() {
    const model = shaping();
    return (model && model.capabilities) || { sizes: [], aspectRatios: [], qualities: [], maxN: 1, maxReferences: 0 };
  }

  async function loadModels() {
    let body;
    try {
      body = await mm.apiJson("/api/images/models");
    } catch (e) {
      $("im-picker-current").textContent = "Models could not be loaded";
      mm.toast("The image models could not be loaded: " + sentence(e.message), "error");
      return;
    }
    models = body.models || [];
    if (chosen && !modelById(chosen)) chosen = "";
    renderPicker();
    applyCaps();
    const none = !firstUsable();
    $("im-no-model").hidden = !none;
    document.body.dataset.imageModels = none ? "none" : "some";
    updateEmpty();
  }

  function pickerItem(model) {
    const id = "im-model-" + models.indexOf(model);
    const input = el("input", { type: "radio", name: "model", id, value: model.id, disabled: !model.usable, checked: chosen === model.id });
    const why = model.usable ? duration(model.latencyMs) : model.keyEnv && /key/i.test(model.reason || "") ? "set " + model.keyEnv : model.reason || "not available";
    return el("label", { className: "im-model" + (model.usable ? "" : " is-disabled"), for: id, "data-model": model.id }, [
      input,
      el("span", { className: "dot " + (model.usable ? healthClass(model.health) : ""), "data-status": model.usable ? model.health : "disabled", "aria-hidden": "true" }),
      el("span", { className: "im-model-name", text: model.name }),
      el("span", { className: "badge", text: model.kind }),
      why ? el("span", { className: "im-model-why small" + (model.usable ? " muted" : ""), text: why }) : "",
    ]);
  }

  function renderPicker() {
    const menu = $("im-models");
    const first = firstUsable();
    const auto = el("label", { className: "im-model im-model-auto", for: "im-model-auto", "data-model": "" }, [
      el("input", { type: "radio", name: "model", id: "im-model-auto", value: "", checked: chosen === "" }),
      el("span", { className: "dot " + (first ? healthClass(first.health) : "dot-offline"), "aria-hidden": "true" }),
      el("span", { className: "im-model-name", text: "Automatic" }),
      el("span", { className: "im-model-why small muted", text: first ? first.name + " first, then the fallbacks" : "no image model is ready" }),
    ]);
    const groups = new Map(); // provider → models, in the API's order (local engines first)
    for (const model of models) {
      if (!groups.has(model.provider)) groups.set(model.provider, []);
      groups.get(model.provider).push(model);
    }
    const parts = [auto];
    for (const list of groups.values()) {
      const head = list[0];
      parts.push(el("div", { className: "im-model-group", role: "group", "aria-label": head.providerName + " (" + head.kind + ")" }, [
        el("p", { className: "im-group-label muted", text: head.providerName + " · " + head.kind }),
        ...list.map(pickerItem),
      ]));
    }
    menu.replaceChildren(...parts);
    showChosen();
  }

  function showChosen() {
    const model = chosen ? modelById(chosen) : null;
    const first = firstUsable();
    const dot = $("im-picker-dot");
    if (model) {
      $("im-picker-current").textContent = model.name + " · " + model.providerName;
      dot.className = "dot " + healthClass(model.health);
      dot.dataset.status = model.health;
    } else {
      $("im-picker-current").textContent = first ? "Automatic (" + first.name + " first)" : "Automatic (no image model is ready)";
      dot.className = "dot " + (first ? healthClass(first.health) : "dot-offline");
      dot.dataset.status = first ? first.health : "offline";
    }
  }

  function choose(modelId) {
    chosen = modelId;
    const input = Array.from(document.querySelectorAll('#im-models input[name="model"]')).find((i) => i.value === modelId);
    if (input) input.checked = true;
    showChosen();
    applyCaps();
  }

  function fillSelect(select, values, keep) {
    const options = [el("option", { value: "", text: "auto" }), ...values.map((v) => el("option", { value: v, text: v }))];
    select.replaceChildren(...options);
    select.value = values.includes(keep) ? keep : "";
  }

  function applyCaps() {
    const c = caps();
    const sizes = c.sizes && c.sizes.length ? c.sizes : c.aspectRatios && c.aspectRatios.length ? c.aspectRatios : PRESET_SIZES;
    fillSelect($("im-size"), sizes, $("im-size").value);
    const qualities = c.qualities || [];
    $("im-quality-field").hidden = !qualities.length;
    fillSelect($("im-quality"), qualities, $("im-quality").value);
    const max = Math.max(1, c.maxN || 1);
    const n = $("im-n");
    n.max = String(max);
    if (Number(n.value) > max) n.value = String(max);
    $("im-n-hint").textContent = max === 1 ? "one at a time" : "1 to " + max;
    $("im-seed-field").hidden = !c.seed;
    $("im-steps-field").hidden = !c.steps;
    $("im-negative-field").hidden = !c.negativePrompt;
    const refs = c.maxReferences || 0;
    $("im-refs-hint").textContent = refs ? "optional, up to " + refs : "this model does not take reference photos";
  }

  // -- reference photos ----------------------------------------------------------------------------------
  let refs = []; // [{id, name, thumbUrl}]

  function renderRefs() {
    $("im-refs").replaceChildren(...refs.map((ref) => {
      const img = el("img", { alt: "", width: "40", height: "40", loading: "lazy" });
      showMedia(img, ref.thumbUrl);
      return el("li", { className: "im-ref", "data-id": ref.id }, [
        img,
        el("span", { className: "im-ref-name", text: ref.name, title: ref.name }),
        el("button", { type: "button", className: "icon-button im-ref-remove", "data-remove": ref.id, "aria-label": "Remove " + ref.name, text: "✕" }),
      ]);
    }));
    $("im-drop").classList.toggle("has-refs", refs.length > 0);
  }

  function addRef(ref) {
    if (refs.some((r) => r.id === ref.id)) return;
    refs.push(ref);
    renderRefs();
  }

  async function upload(files) {
    hideFormError();
    const failures = [];
    for (const file of files) {
      const form = new FormData();
      form.append("file", file, file.name);
      try {
        const asset = await mm.apiJson("/api/media", { method: "POST", body: form });
        addRef({ id: asset.id, name: file.name, thumbUrl: asset.thumbUrl });
        announce("Added " + file.name + " as a reference.");
      } catch (e) {
        // The server's words name the file already ("notes.txt is not an image…").
        const words = String(e.message || "").trim();
        failures.push(words.includes(file.name) ? period(words) : file.name + ": " + period(words));
      }
    }
    if (failures.length) {
      const box = $("im-form-error");
      box.replaceChildren(el("p", { className: "im-error-title", text: failures.length === 1 ? "The photo was not added." : "Some photos were not added." }),
        el("ul", {}, failures.map((f) => el("li", { text: f }))));
      box.hidden = false;
    }
  }

  // -- the form -------------------------------------------------------------------------------------------
  function showFormError(message, link) {
    const box = $("im-form-error");
    box.replaceChildren(el("p", { className: "im-error-title", text: sentence(message) }));
    if (link) box.append(linkLine(link));
    box.hidden = false;
  }

  function hideFormError() {
    $("im-form-error").hidden = true;
    $("im-form-error").replaceChildren();
  }

  function linkLine(link) {
    const words = link === "/onboarding" ? "Set up an image model" : "How to fix this";
    return el("p", { className: "im-error-link" }, [el("a", { href: link, text: words }), " and try again."]);
  }

  function number(id) {
    const value = $(id).value.trim();
    return value === "" ? null : Number(value);
  }

  function payload() {
    const body = { prompt: $("im-prompt").value.trim(), stream: true, n: number("im-n") || 1 };
    if (chosen) body.model = chosen;
    if ($("im-size").value) body.size = $("im-size").value;
    if (!$("im-quality-field").hidden && $("im-quality").value) body.quality = $("im-quality").value;
    if (!$("im-seed-field").hidden && number("im-seed") !== null) body.seed = number("im-seed");
    if (!$("im-steps-field").hidden && number("im-steps") !== null) body.steps = number("im-steps");
    const negative = $("im-negative").value.trim();
    if (!$("im-negative-field").hidden && negative) body.negative_prompt = negative;
    if (refs.length) body.references = refs.map((r) => r.id);
    return body;
  }

  function submit(event) {
    event.preventDefault();
    if ($("im-generate").disabled) return;
    const prompt = $("im-prompt");
    prompt.setCustomValidity(prompt.value.trim() || !prompt.value ? "" : "Write something here, not only spaces.");
    if (!$("im-form").reportValidity()) return;
    hideFormError();
    generate(payload());
  }

  // Fill the form from a `POST /api/images` body (Reuse settings).
  function fill(body) {
    $("im-prompt").value = body.prompt || "";
    choose(body.model && modelById(body.model) ? body.model : "");
    if (body.size) {
      const size = $("im-size");
      if (!Array.from(size.options).some((o) => o.value === body.size)) size.add(el("option", { value: body.size, text: body.size }));
      size.value = body.size;
    }
    if (body.quality) $("im-quality").value = body.quality;
    $("im-n").value = String(body.n || 1);
    $("im-seed").value = body.seed === undefined || body.seed === null ? "" : String(body.seed);
    $("im-steps").value = body.steps ? String(body.steps) : "";
    $("im-negative").value = body.negative_prompt || "";
    refs = (body.references || []).map((id) => ({ id, name: "reference " + id.slice(0, 8), thumbUrl: "/api/media/" + encodeURIComponent(id) + "/thumb" }));
    renderRefs();
  }

  // -- progress -------------------------------------------------------------------------------------------
  let run = null; // {controller, names: Map(model → name), failed: [names]}

  function setBusy(busy) {
    const button = $("im-generate");
    button.disabled = busy;
    button.textContent = busy ? "Generating…" : "Generate";
    $("im-stop").hidden = !busy;
    $("im-form").setAttribute("aria-busy", busy ? "true" : "false");
  }

  const STATE_WORDS = { starting: "starting", generating: "generating", done: "done", failed: "failed", stopped: "stopped" };

  function setState(state, status) {
    const badge = $("im-state");
    badge.dataset.state = state;
    badge.textContent = STATE_WORDS[state] || state;
    $("im-progress").dataset.state = state;
    if (status !== undefined) $("im-status").textContent = status;
  }

  function resetProgress() {
    $("im-progress").hidden = false;
    $("im-progress-title").textContent = "Generating";
    $("im-attempts").replaceChildren();
    $("im-error").hidden = true;
    $("im-error").replaceChildren();
    setBar(null);
    setState("starting", "Sending the request to the studio…");
  }

  function setBar(data) {
    const bar = $("im-bar");
    const text = $("im-percent");
    if (!data) {
      bar.removeAttribute("value"); // indeterminate until the engine reports
      text.textContent = "";
      delete bar.dataset.percent;
      return;
    }
    const percent = Math.max(0, Math.min(100, Math.round(data.percent || 0)));
    bar.value = percent;
    bar.dataset.percent = String(percent);
    text.textContent = percent + "%" + (data.steps ? " · step " + data.step + " of " + data.steps : "");
  }

  function attemptRow(list, a) {
    const ok = a.outcome === "ok";
    const row = el("li", { className: "im-attempt", "data-model": a.model, "data-outcome": a.outcome || "trying" }, [
      el("span", { className: "im-attempt-name", text: a.modelName || (run && run.names.get(a.model)) || a.model }),
      a.kind === "local" || a.kind === "cloud" ? el("span", { className: "badge", text: a.kind }) : "",
      el("span", { className: "badge " + (ok ? "ok" : a.outcome === "error" ? "danger" : "accent"), "data-role": "outcome", text: ok ? "made it" : a.outcome === "error" ? "failed" : "trying" }),
      el("span", { className: "muted small", "data-role": "latency", text: duration(a.latencyMs) }),
      el("span", { className: "im-attempt-error small", "data-role": "error", text: a.error ? sentence(a.error) : "", hidden: !a.error }),
    ]);
    list.append(row);
    return row;
  }

  function lastRow(model) {
    const rows = Array.from($("im-attempts").children).filter((r) => r.dataset.model === model);
    return rows[rows.length - 1] || null;
  }

  function markRow(row, outcome, data) {
    row.dataset.outcome = outcome;
    const badge = row.querySelector('[data-role="outcome"]');
    badge.textContent = { ok: "made it", error: "failed", stopped: "stopped" }[outcome] || outcome;
    badge.className = "badge " + (outcome === "ok" ? "ok" : outcome === "error" ? "danger" : "warn");
    if (data && data.latencyMs !== undefined) row.querySelector('[data-role="latency"]').textContent = duration(data.latencyMs);
    if (data && data.error) {
      const error = row.querySelector('[data-role="error"]');
      error.textContent = sentence(data.error);
      error.hidden = false;
    }
  }

  function onAttempt(data) {
    const name = data.modelName || data.model;
    run.names.set(data.model, name);
    attemptRow($("im-attempts"), { model: data.model, modelName: name, kind: data.kind });
    setBar(null);
    const again = run.failed.length ? "Falling back: trying " : "Trying ";
    $("im-progress-title").textContent = "Generating with " + name;
    setState("generating", again + name + " (" + (data.kind || "model") + ")…");
    announce("Trying " + name + ".");
  }

  function onFailed(data) {
    const name = data.modelName || run.names.get(data.model) || data.model;
    run.failed.push(name);
    markRow(lastRow(data.model) || attemptRow($("im-attempts"), data), "error", data);
    setState("generating", name + " failed: " + sentence(data.error) + " Trying the next model…");
    announce(name + " failed.");
  }

  function onDone(data) {
    const name = data.modelName || data.modelUsed || "the model";
    const row = lastRow(data.modelUsed);
    if (row) markRow(row, "ok", {});
    const failed = [];
    for (const a of data.attempts || []) {
      const who = run.names.get(a.model) || a.model;
      if (a.outcome !== "ok" && !failed.includes(who)) failed.push(who);
    }
    let message = "Made with " + name + " in " + seconds(data.latencyMs);
    if (failed.length) message += " after " + names(failed) + " failed";
    const images = data.images || [];
    $("im-progress-title").textContent = images.length === 1 ? "Made 1 image" : "Made " + images.length + " images";
    setBar({ percent: 100 });
    const notes = (data.notes || []).join(" ");
    setState("done", message + "." + (notes ? " " + notes : ""));
    const seeds = images.map((i) => i.seed).filter((s) => s !== null && s !== undefined);
    const used = $("im-seed-used");
    if (seeds.length) {
      used.replaceChildren("Seed used: ", el("strong", { "data-seed": String(seeds[0]), text: String(seeds[0]) }), " ",
        el("button", { type: "button", className: "link", "data-keep-seed": String(seeds[0]), text: "keep it" }));
      used.hidden = false;
    } else used.hidden = true;
    mm.toast(message, "ok");
    announce(message + ".");
  }

  function onError(data) {
    const box = $("im-error");
    box.replaceChildren(el("p", { className: "im-error-title" }, [el("strong", { text: "Generation failed: " }), sentence(data.message || data.error)]));
    if (data.link) box.append(linkLine(data.link));
    box.hidden = false;
    for (const row of $("im-attempts").querySelectorAll('[data-outcome="trying"]')) markRow(row, "error", null);
    $("im-progress-title").textContent = "No image was made";
    setState("failed", "No model made the image.");
    mm.toast("No image was made: " + sentence(data.message || data.error), "error");
  }

  async function generate(body) {
    if (run && run.controller) run.controller.abort();
    const controller = new AbortController();
    run = { controller, names: new Map(), failed: [] };
    setBusy(true);
    resetProgress();
    let ended = false;
    try {
      const response = await mm.api("/api/images", { method: "POST", json: body, signal: controller.signal });
      for await (const { event, data } of mm.events(response, controller.signal)) {
        if (!run || run.controller !== controller) return;
        if (event === "attempt") onAttempt(data);
        else if (event === "attempt_failed") onFailed(data);
        else if (event === "progress") setBar(data);
        else if (event === "image") addCard(data, true);
        else if (event === "done") { ended = true; onDone(data); }
        else if (event === "error") { ended = true; onError(data); }
      }
      if (!ended && run.controller === controller && !controller.signal.aborted) {
        setState("failed", "The connection to the studio was lost before the end.");
      }
    } catch (e) {
      if ((e && e.name === "AbortError") || controller.signal.aborted) return;
      if (!run || run.controller !== controller) return;
      $("im-progress").hidden = true;
      showFormError(e instanceof mm.ApiError ? e.message : "The request could not start. Is the studio still running?", e && e.body && e.body.link);
    } finally {
      if (run && run.controller === controller) {
        run.controller = null;
        setBusy(false);
      }
    }
  }

  function stop() {
    if (!run || !run.controller) return;
    run.controller.abort();
    run.controller = null;
    setBusy(false);
    for (const row of $("im-attempts").querySelectorAll('[data-outcome="trying"]')) markRow(row, "stopped", null);
    $("im-progress-title").textContent = "Stopped";
    setState("stopped", "Stopped. The studio was told to cancel the generation.");
    announce("Stopped.");
  }

  // -- the gallery ------------------------------------------------------------------------------------------
  const gallery = { q: "", offset: 0, total: null, loading: false, ticket: 0, ids: new Set() };

  function pageSize() {
    return Number($("im-form").dataset.pageSize) || 40;
  }

  function card(item) {
    const img = el("img", { alt: item.prompt || "image", loading: "lazy", decoding: "async", width: String(item.width || 256), height: String(item.height || 256) });
    showMedia(img, item.thumbUrl);
    return el("li", { className: "im-card", "data-id": item.id }, [
      el("button", { type: "button", className: "im-open", "data-open": item.id, "aria-label": "Open " + (item.prompt || "image") }, [img]),
      el("div", { className: "im-card-meta" }, [
        el("span", { className: "badge accent im-card-model", title: item.modelUsed || "", text: item.modelName || item.modelUsed || "upload" }),
        el("span", { className: "im-card-prompt small", title: item.prompt || "", text: item.prompt || "" }),
      ]),
    ]);
  }

  function addCard(item, fresh) {
    if (gallery.ids.has(item.id)) return;
    const q = gallery.q.toLowerCase();
    if (fresh && q && !q.split(/\s+/).every((w) => (item.prompt || "").toLowerCase().includes(w))) return;
    gallery.ids.add(item.id);
    const node = card(item);
    if (fresh) {
      $("im-cards").prepend(node);
      gallery.offset += 1;
      gallery.total = (gallery.total || 0) + 1;
    } else $("im-cards").append(node);
    updateEmpty();
  }

  function updateEmpty() {
    const count = $("im-cards").children.length;
    const empty = $("im-empty");
    empty.hidden = count > 0 || gallery.total === null;
    empty.textContent = gallery.q ? "No images match “" + gallery.q + "”." : "No images yet. Write a prompt above and press Generate.";
    $("im-total").textContent = gallery.total ? "· " + gallery.total + (gallery.total === 1 ? " image" : " images") : "";
    const more = $("im-more");
    more.textContent = gallery.loading ? "Loading…" : "";
    $("im-cards").dataset.count = String(count);
  }

  async function loadPage() {
    if (gallery.loading) return;
    if (gallery.total !== null && gallery.offset >= gallery.total) return;
    gallery.loading = true;
    updateEmpty();
    const ticket = gallery.ticket;
    const params = new URLSearchParams({ limit: String(pageSize()), offset: String(gallery.offset) });
    if (gallery.q) params.set("q", gallery.q);
    let page;
    try {
      page = await mm.apiJson("/api/images?" + params.toString());
    } catch (e) {
      if (ticket === gallery.ticket) {
        gallery.loading = false;
        updateEmpty();
        mm.toast("The gallery could not be loaded: " + sentence(e.message), "error");
      }
      return;
    }
    if (ticket !== gallery.ticket) return; // a newer search started: its answer wins
    gallery.loading = false;
    gallery.total = page.total;
    gallery.offset += page.items.length;
    for (const item of page.items) addCard(item, false);
    updateEmpty();
    // A tall screen may show the sentinel still: keep filling until it scrolls out of sight.
    if (page.items.length && sentinelVisible()) loadPage();
  }

  function sentinelVisible() {
    const box = $("im-more").getBoundingClientRect();
    return box.top < window.innerHeight + 400;
  }

  function resetGallery(q) {
    gallery.q = q;
    gallery.offset = 0;
    gallery.total = null;
    gallery.loading = false;
    gallery.ticket += 1;
    gallery.ids = new Set();
    $("im-cards").replaceChildren();
    loadPage();
  }

  function removeCard(id) {
    const node = $("im-cards").querySelector('.im-card[data-id="' + CSS.escape(id) + '"]');
    if (node) {
      node.remove();
      gallery.ids.delete(id);
      gallery.offset = Math.max(0, gallery.offset - 1);
      gallery.total = Math.max(0, (gallery.total || 1) - 1);
    }
    updateEmpty();
  }

  // -- the lightbox ----------------------------------------------------------------------------------------
  let opened = null; // the image shown in the lightbox (GET /api/images/{id})

  function recipeRow(term, value) {
    if (value === null || value === undefined || value === "" || (Array.isArray(value) && !value.length)) return [];
    const dd = el("dd", {}, [value instanceof Node ? value : String(value)]);
    return [el("dt", { text: term }), dd];
  }

  // "GPT Image 1 (openai/gpt-image-1)"; an id that already says the name (a local checkpoint) alone.
  function modelNameOf(id) {
    const model = id && modelById(id);
    if (!model || id === model.provider + "/" + model.name) return id;
    return model.name + " (" + id + ")";
  }

  async function openImage(id) {
    let image;
    try {
      image = await mm.apiJson("/api/images/" + encodeURIComponent(id));
    } catch (e) {
      mm.toast("That image could not be opened: " + sentence(e.message), "error");
      if (e.status === 404) removeCard(id);
      return;
    }
    opened = image;
    const r = image.recipe || {};
    $("im-lb-title").textContent = image.modelName || r.model_used || "Image";
    $("im-lb-prompt").textContent = r.prompt || image.prompt || "";
    const img = $("im-lb-img");
    img.removeAttribute("src");
    img.alt = r.prompt || "image";
    img.width = image.width || 512;
    img.height = image.height || 512;
    showMedia(img, image.url);
    const refList = (r.references || []).length
      ? el("ul", { className: "im-lb-refs" }, r.references.map((ref) => el("li", {}, [el("code", { text: ref })])))
      : null;
    const revised = r.extra && r.extra.revised_prompt;
    $("im-recipe").replaceChildren(
      ...recipeRow("Model requested", r.model_requested ? modelNameOf(r.model_requested) : "automatic"),
      ...recipeRow("Model used", modelNameOf(r.model_used)),
      ...recipeRow("Provider", r.provider),
      ...recipeRow("Negative prompt", r.negative_prompt),
      ...recipeRow("Revised prompt", revised),
      ...recipeRow("Size", image.width && image.height ? image.width + "×" + image.height + (r.size && r.size !== image.width + "x" + image.height ? " (asked " + r.size + ")" : "") : r.size),
      ...recipeRow("Aspect ratio", r.aspect_ratio),
      ...recipeRow("Quality", r.quality),
      ...recipeRow("Seed", r.seed),
      ...recipeRow("Steps", r.steps),
      ...recipeRow("Workflow", r.workflow),
      ...recipeRow("References", refList),
      ...recipeRow("Made", image.createdAt ? new Date(image.createdAt).toLocaleString() : null),
      ...recipeRow("Took", duration(image.latencyMs)),
      ...recipeRow("Cost", image.costUsd ? "$" + image.costUsd.toFixed(4) : null),
    );
    const list = $("im-lb-attempts");
    list.replaceChildren();
    for (const a of image.attempts || []) attemptRow(list, { ...a, modelName: modelById(a.model) ? modelById(a.model).name : a.model });
    list.previousElementSibling.hidden = !list.children.length;
    const download = $("im-lb-download");
    download.href = image.url;
    download.setAttribute("download", "mmstudio-" + image.id + "." + ((image.mime || "image/png").split("/")[1] || "png"));
    const dialog = $("im-lightbox");
    if (!dialog.open) dialog.showModal();
    $("im-lb-close").focus();
  }

  function closeLightbox() {
    const dialog = $("im-lightbox");
    if (dialog.open) dialog.close();
  }

  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      try { await navigator.clipboard.writeText(text); return true; } catch (e) { /* the old way below */ }
    }
    const area = el("textarea", { readonly: true, "aria-hidden": "true", className: "im-copy-buffer" });
    area.value = text;
    $("im-lightbox").append(area); // inside the modal dialog: the rest of the page is inert
    area.select();
    let ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    area.remove();
    return ok;
  }

  async function copyPrompt() {
    if (!opened) return;
    const ok = await copyText((opened.recipe && opened.recipe.prompt) || opened.prompt || "");
    if (ok) {
      const button = $("im-lb-copy");
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = "Copy prompt"; }, 1500);
      announce("Prompt copied.");
    } else mm.toast("Copying needs clipboard permission; select the prompt instead.", "error");
  }

  function useAsReference() {
    if (!opened) return;
    addRef({ id: opened.id, name: (opened.prompt || "image").slice(0, 40), thumbUrl: opened.thumbUrl });
    closeLightbox();
    mm.toast("Added as a reference photo.", "ok");
    $("im-refs").scrollIntoView({ block: "center" });
  }

  async function reuse() {
    if (!opened) return;
    let body;
    try {
      body = await mm.apiJson("/api/images/" + encodeURIComponent(opened.id) + "/reuse", { method: "POST" });
    } catch (e) {
      mm.toast("The settings could not be read: " + sentence(e.message), "error");
      return;
    }
    fill(body);
    closeLightbox();
    $("im-form").scrollIntoView({ block: "start" });
    $("im-prompt").focus({ preventScroll: true });
    mm.toast("The form has this image's settings. Press Generate to make it again.", "ok");
  }

  function askDelete() {
    if (!opened) return;
    const confirm = $("im-confirm");
    confirm.returnValue = "";
    confirm.showModal();
  }

  async function confirmed() {
    const confirm = $("im-confirm");
    if (confirm.returnValue !== "delete" || !opened) return;
    const id = opened.id;
    try {
      await mm.apiJson("/api/images/" + encodeURIComponent(id), { method: "DELETE" });
    } catch (e) {
      mm.toast("The image was not deleted: " + sentence(e.message), "error");
      return;
    }
    removeCard(id);
    refs = refs.filter((r) => r.id !== id);
    renderRefs();
    closeLightbox();
    mm.toast("Image deleted.", "ok");
    announce("Image deleted.");
  }

  // Through mm.api when keys are on (a plain link would not carry the key); else the link itself.
  async function download(event) {
    if (!hasKey() || !opened) return;
    event.preventDefault();
    const link = event.currentTarget;
    try {
      const blob = await (await mm.api(link.getAttribute("href"))).blob();
      const url = URL.createObjectURL(blob);
      const temp = el("a", { href: url, download: link.getAttribute("download"), hidden: true });
      $("im-lightbox").append(temp);
      temp.click();
      temp.remove();
      setTimeout(() => URL.revokeObjectURL(url), 30000);
    } catch (e) {
      mm.toast("The image could not be downloaded: " + sentence(e.message), "error");
    }
  }

  // -- wiring ------------------------------------------------------------------------------------------------
  function setupDrop() {
    const drop = $("im-drop");
    const file = $("im-file");
    $("im-pick").addEventListener("click", () => file.click());
    file.addEventListener("change", () => {
      const files = Array.from(file.files || []);
      file.value = "";
      if (files.length) upload(files);
    });
    drop.addEventListener("dragover", (event) => {
      if (!event.dataTransfer || !Array.from(event.dataTransfer.types || []).includes("Files")) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      drop.classList.add("is-over");
    });
    drop.addEventListener("dragleave", () => drop.classList.remove("is-over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("is-over");
      const files = Array.from((event.dataTransfer && event.dataTransfer.files) || []);
      if (files.length) upload(files);
    });
    $("im-refs").addEventListener("click", (event) => {
      const button = event.target.closest("[data-remove]");
      if (!button) return;
      refs = refs.filter((r) => r.id !== button.dataset.remove);
      renderRefs();
      $("im-pick").focus();
    });
  }

  function setup() {
    const form = $("im-form");
    if (!form) return;
    form.addEventListener("submit", submit);
    $("im-prompt").addEventListener("input", () => $("im-prompt").setCustomValidity(""));
    $("im-prompt").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); form.requestSubmit(); }
    });
    $("im-stop").addEventListener("click", stop);
    $("im-models").addEventListener("change", (event) => {
      if (event.target.name !== "model") return;
      choose(event.target.value);
      $("im-picker").open = false;
      $("im-picker-summary").focus();
    });
    document.addEventListener("click", (event) => {
      const picker = $("im-picker");
      if (picker.open && !picker.contains(event.target)) picker.open = false;
    });
    $("im-picker").addEventListener("keydown", (event) => {
      if (event.key === "Escape" && $("im-picker").open) { event.stopPropagation(); $("im-picker").open = false; $("im-picker-summary").focus(); }
    });
    $("im-seed-used").addEventListener("click", (event) => {
      const keep = event.target.closest("[data-keep-seed]");
      if (keep) $("im-seed").value = keep.dataset.keepSeed;
    });
    setupDrop();

    $("im-cards").addEventListener("click", (event) => {
      const open = event.target.closest("[data-open]");
      if (open) openImage(open.dataset.open);
    });
    let searchTimer = null;
    $("im-search").addEventListener("input", () => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => resetGallery($("im-search").value.trim()), 250);
    });
    $("im-search").addEventListener("keydown", (event) => {
      if (event.key === "Enter") { event.preventDefault(); clearTimeout(searchTimer); resetGallery($("im-search").value.trim()); }
    });
    new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) loadPage();
    }, { rootMargin: "400px" }).observe($("im-more"));

    $("im-lb-close").addEventListener("click", closeLightbox);
    $("im-lightbox").addEventListener("click", (event) => {
      if (event.target === $("im-lightbox")) closeLightbox(); // a click on the backdrop
    });
    $("im-lb-copy").addEventListener("click", copyPrompt);
    $("im-lb-reference").addEventListener("click", useAsReference);
    $("im-lb-reuse").addEventListener("click", reuse);
    $("im-lb-delete").addEventListener("click", askDelete);
    $("im-lb-download").addEventListener("click", download);
    $("im-confirm").addEventListener("close", confirmed);
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && run && run.controller && !document.querySelector("dialog[open]")) stop();
    });

    loadModels();
    resetGallery("");
  }

  document.addEventListener("DOMContentLoaded", setup);
})();
