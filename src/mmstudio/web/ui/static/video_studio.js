// mmstudio Video Studio: projects, the next shot's settings (each change PATCHed at once, the server's
// refusal shown next to its field; start and end frames from the gallery, an upload or the selected
// clip's last frame; a camera pad; a seed that can be locked), Generate onto a timeline of clips (sized
// by duration under a time ruler with the playhead; drag to reorder, drag the edges to trim, keys,
// duplicate, delete, undo, retry after asking), generating clips followed through their jobs' events,
// a preview that plays the whole sequence honouring trims (and looping on request), and Export.
// The server keeps everything; the page keeps only the project id in the URL and the seed lock.
// User and vendor text is only ever set as textContent or attributes.
//
// One file over the usual size on purpose: the page's parts share one state (the project, the
// selection, the playhead, the preview) and the page loads a single script.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const { el } = window.mm;
  const KEY_STORE = "mmstudio-key";
  const LOCK_STORE = "mmstudio-vs-seed-lock-"; // + project id
  const BASE = "/api/video-studio/projects";
  const TERMINAL = new Set(["complete", "failed", "cancelled"]); // mmstudio.domain.jobs.types.TERMINAL
  const UNUSED = "not used by this model";
  const DEBOUNCE_MS = 300;
  const SAVE_VIEW_MS = 400; // selection and playhead: at most one PATCH this often
  const FALLBACK_POLL_MS = 3000; // when a job's event stream fails, or more clips run than streams
  const MAX_STREAMS = 3; // a browser keeps about 6 connections per host: leave room for the page's calls
  const GALLERY_PAGE = 40;
  const FALLBACK_S = 4; // a clip's width while its length is unknown (and no duration was asked)
  const MIN_TRIM_S = 0.1;
  const MIN_PX_PER_S = 16;
  const MAX_PX_PER_S = 160;
  const MIN_CLIP_PX = 44; // the shortest clip still shows its handles
  const DRAG_PX = 6; // a press that moves less is a click
  const TICK_STEPS = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600];
  const MEDIA_CACHE_MAX = 60;

  let project = null; // the project view as the server last answered
  let models = [];
  let clipsKey = "";
  let scale = MAX_PX_PER_S; // timeline pixels per second, set by layout()
  let dragEndedAt = 0;
  const timers = new Map(); // field -> pending debounce timer
  const play = { clipId: null, at: 0, timeline: false, loop: false, autoplay: false, switching: false, target: 0, raf: 0 };
  const follow = { streams: new Map(), ended: new Set(), poll: null, soon: null, exporting: null };
  const viewSave = { id: null, pending: {}, inflight: {}, timer: null };

  function hasKey() {
    try { return !!localStorage.getItem(KEY_STORE); } catch (e) { return false; }
  }

  function announce(text) { $("vs-announce").textContent = text; }

  function pid() { return project ? encodeURIComponent(project.id) : ""; }

  function clamp(value, low, high) { return Math.min(high, Math.max(low, value)); }

  function tenth(value) { return Number((Math.round(value * 10) / 10).toFixed(1)); }

  function wait(ms, signal) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      if (signal) signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
    });
  }

  // With gateway keys on, <video src> and <img src> cannot send the key: the bytes come through mm.api,
  // once per URL (the timeline is redrawn often and the preview reloads clips as it plays them).
  const mediaCache = new Map();
  function mediaSrc(url) {
    if (!hasKey()) return Promise.resolve(url);
    if (!mediaCache.has(url)) {
      const made = mm.api(url).then((r) => r.blob()).then((blob) => URL.createObjectURL(blob));
      made.catch(() => mediaCache.delete(url));
      mediaCache.set(url, made);
      if (mediaCache.size > MEDIA_CACHE_MAX) {
        const [oldest, old] = mediaCache.entries().next().value;
        mediaCache.delete(oldest);
        old.then((u) => URL.revokeObjectURL(u)).catch(() => {});
      }
    }
    return mediaCache.get(url);
  }

  function setMedia(node, attr, url) {
    node["vsWant" + attr] = url || "";
    if (!url) { node.removeAttribute(attr); return; }
    if (!hasKey()) { node.setAttribute(attr, url); return; }
    mediaSrc(url).then((src) => { if (node["vsWant" + attr] === url) node.setAttribute(attr, src); })
      .catch(() => node.setAttribute("aria-label", "the media could not be loaded"));
  }

  function fieldError(field, message) {
    const box = $("vs-err-" + field);
    if (box) box.textContent = message || "";
    else if (message) mm.toast(message, "error");
  }

  function clearErrors() {
    for (const node of document.querySelectorAll(".vs-error")) node.textContent = "";
  }

  // -- projects --------------------------------------------------------------------------------------
  function projectFromUrl() {
    return new URLSearchParams(location.search).get("project");
  }

  function setUrl(id) {
    const url = new URL(location.href);
    if (id) url.searchParams.set("project", id); else url.searchParams.delete("project");
    history.replaceState(null, "", url);
  }

  async function loadProjects(selected) {
    const body = await mm.apiJson(BASE);
    const select = $("vs-project");
    select.replaceChildren(el("option", { value: "", text: "Choose a project…" }));
    for (const item of body.items) select.append(el("option", { value: item.id, text: item.name }));
    select.value = selected && body.items.some((p) => p.id === selected) ? selected : "";
  }

  async function openProject(id) {
    clearErrors();
    if (!id) {
      leaveProject();
      project = null;
      setUrl(null);
      $("vs-work").hidden = true;
      $("vs-empty").hidden = false;
      return;
    }
    try {
      show(await mm.apiJson(BASE + "/" + encodeURIComponent(id)), { all: true });
      setUrl(id);
      $("vs-project").value = id;
    } catch (e) {
      mm.toast(e.message, "error");
      setUrl(null);
    }
  }

  $("vs-projects").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = $("vs-new-name").value.trim();
    fieldError("name", "");
    if (!name) { fieldError("name", "Give the project a name."); $("vs-new-name").focus(); return; }
    try {
      const made = await mm.apiJson(BASE, { method: "POST", json: { name } });
      $("vs-new-name").value = "";
      await loadProjects(made.id);
      show(made, { all: true });
      setUrl(made.id);
      announce("Project " + made.name + " created.");
    } catch (e) {
      fieldError("name", e.message);
    }
  });
  $("vs-project").addEventListener("change", () => openProject($("vs-project").value));

  // -- models ----------------------------------------------------------------------------------------
  function pricePerSecond(m) {
    const p = m.capabilities && m.capabilities.pricePerSecondUsd;
    return p === null || p === undefined ? null : Number(p);
  }

  function modelLabel(m) {
    const p = pricePerSecond(m);
    return m.name + " (" + m.id + ")" + (p === null ? "" : " · $" + p.toFixed(2) + "/s")
      + (m.usable ? " · ready" : " · unavailable: " + (m.reason || "not set up"));
  }

  // Grouped by provider (local engines first), each group saying how many of its models are ready.
  function fillModels() {
    const select = $("vs-model");
    const chosen = project && project.nextShot.model;
    select.replaceChildren(el("option", { value: "", text: "Choose a model…", disabled: !!chosen }));
    const groups = new Map();
    const sorted = models.slice().sort((a, b) => (a.kind === b.kind ? 0 : a.kind === "local" ? -1 : 1));
    for (const m of sorted) {
      if (!groups.has(m.provider)) groups.set(m.provider, { kind: m.kind, items: [] });
      groups.get(m.provider).items.push(m);
    }
    for (const [provider, group] of groups) {
      const ready = group.items.filter((m) => m.usable).length;
      const health = ready === group.items.length ? "ready" : ready ? ready + " of " + group.items.length + " ready" : "not available";
      const node = el("optgroup", { label: provider + " · " + group.kind + " · " + health });
      for (const m of group.items) {
        node.append(el("option", { value: m.id, text: modelLabel(m), "data-usable": m.usable ? "true" : "false" }));
      }
      select.append(node);
    }
    if (chosen && !models.some((m) => m.id === chosen)) {
      select.append(el("option", { value: chosen, text: chosen + " · unknown here" }));
    }
    select.value = chosen || "";
  }

  function modelInfo() {
    const info = $("vs-model-info");
    const selected = project && project.selectedModel;
    info.classList.remove("vs-warn");
    if (!selected) { info.textContent = project && project.nextShot.model ? "" : "No model chosen yet."; return; }
    if (!selected.usable) {
      info.textContent = "Cannot be used now: " + (selected.reason || "unavailable") + " It stays selected.";
      info.classList.add("vs-warn");
      return;
    }
    const caps = selected.capabilities;
    const parts = [selected.kind === "local" ? "Runs locally" : "Cloud (" + selected.provider + ")", "ready"];
    const p = pricePerSecond(selected);
    if (p !== null) parts.push("$" + p.toFixed(2) + " per second");
    if (caps.durations && caps.durations.length) parts.push("durations: " + caps.durations.join(", ") + " s");
    info.textContent = parts.join(" · ");
  }

  // -- the next shot ---------------------------------------------------------------------------------
  function shotValue(field) {
    const s = project.nextShot;
    switch (field) {
      case "model": return s.model || "";
      case "prompt": return s.prompt || "";
      case "negative_prompt": return s.negativePrompt || "";
      case "pan_x": return s.camera.pan.x;
      case "pan_y": return s.camera.pan.y;
      case "zoom": case "tilt": case "roll": return s.camera[field];
      case "stability": case "amplitude": case "coherence": return s.tunes[field];
      case "duration_s": return s.durationS;
      case "seed": return s.seed;
      case "loop": return s.loop;
      case "interpolate": return s.interpolate;
      default: return null;
    }
  }

  function controls() {
    return document.querySelectorAll("#vs-shot-form [data-field]");
  }

  // A badge per control saying how it reaches the model, whatever words the server uses; styled by
  // those words (vs-how-native, vs-how-via-prompt, ...), never by which control it is.
  function renderBadges() {
    for (const badge of document.querySelectorAll(".vs-how")) {
      const how = (project.controls || {})[badge.dataset.control] || "";
      badge.textContent = how;
      badge.hidden = !how;
      badge.dataset.how = how;
      badge.className = "badge vs-how" + (how ? " vs-how-" + how.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "") : "");
      badge.title = how ? "How this reaches the model: " + how : "";
    }
  }

  function renderShot() {
    for (const input of controls()) {
      const field = input.dataset.field;
      if (field === "model") continue;
      if (document.activeElement === input && input.type !== "range" && input.type !== "checkbox") continue;
      if (timers.has(field)) continue; // the user's own value is on its way
      const value = shotValue(field);
      if (input.type === "checkbox") input.checked = !!value;
      else input.value = value === null || value === undefined ? "" : String(value);
      const out = $(input.id + "-out");
      if (out) out.textContent = Number(input.value).toFixed(2);
    }
    fillModels();
    modelInfo();
    renderBadges();
    renderFrame("start", project.nextShot.startFrame, (project.controls || {}).startFrame);
    renderFrame("end", project.nextShot.endFrame, (project.controls || {}).endFrame);
    drawPad();
    renderLock();
    updateLastFrameButton();
  }

  const patching = new Set(); // PATCHes on their way: Generate waits for them

  function patch(field, value) {
    const sent = sendPatch(field, value);
    patching.add(sent);
    sent.finally(() => patching.delete(sent));
    return sent;
  }

  async function sendPatch(field, value) {
    if (!project) return false;
    const id = project.id;
    try {
      const view = await mm.apiJson(BASE + "/" + encodeURIComponent(id), { method: "PATCH", json: { [field]: value } });
      fieldError(field, "");
      if (project && project.id === id) show(view);
      return true;
    } catch (e) {
      fieldError((e.body && e.body.field) || field, e.message);
      if (e.body && e.body.field && e.body.field !== field) fieldError(field, e.message);
      return false;
    }
  }

  function valueOf(input) {
    if (input.type === "checkbox") return input.checked;
    if (input.dataset.number !== undefined) {
      if (input.value.trim() === "") return null;
      return input.dataset.field === "seed" ? parseInt(input.value, 10) : Number(input.value);
    }
    return input.value;
  }

  function schedule(input, delay) {
    const field = input.dataset.field;
    clearTimeout(timers.get(field));
    const send = () => {
      timers.delete(field);
      const value = valueOf(input);
      if (value === null) { fieldError(field, "Enter a number."); return; }
      patch(field, value);
    };
    if (delay) timers.set(field, setTimeout(send, delay)); else send();
  }

  function flush(input) { // send a value still waiting for its debounce now
    if (timers.has(input.dataset.field)) schedule(input, 0);
  }

  for (const input of controls()) {
    if (input.dataset.field === "model") continue;
    if (input.type === "checkbox") {
      input.addEventListener("change", () => schedule(input, 0));
    } else {
      input.addEventListener("input", () => {
        const out = $(input.id + "-out");
        if (out) out.textContent = Number(input.value).toFixed(2);
        if (input.dataset.field === "pan_x" || input.dataset.field === "pan_y") drawPad();
        schedule(input, DEBOUNCE_MS);
      });
    }
  }
  $("vs-model").addEventListener("change", () => patch("model", $("vs-model").value));

  // -- camera pad: pan x and y at once, the same values as the two sliders --------------------------
  const pad = $("vs-pad");
  const panX = $("vs-pan_x");
  const panY = $("vs-pan_y");

  function drawPad() {
    const low = Number(panX.min), high = Number(panX.max);
    const x = Number(panX.value), y = Number(panY.value);
    const dot = $("vs-pad-dot");
    dot.style.left = ((x - low) / (high - low)) * 100 + "%";
    dot.style.top = ((high - y) / (high - low)) * 100 + "%"; // up is positive (pan up)
    const side = (v, neg, pos) => (Math.abs(v) < 0.005 ? "" : v < 0 ? " " + neg : " " + pos);
    pad.setAttribute("aria-valuenow", x.toFixed(2));
    pad.setAttribute("aria-valuetext", "pan x " + x.toFixed(2) + side(x, "left", "right") + ", pan y " + y.toFixed(2) + side(y, "down", "up"));
  }

  function setPan(x, y, delay) {
    for (const [input, value] of [[panX, x], [panY, y]]) {
      const snapped = clamp(Math.round(value / 0.05) * 0.05, Number(input.min), Number(input.max));
      if (Math.abs(Number(input.value) - snapped) < 1e-9) continue;
      input.value = String(Number(snapped.toFixed(2)));
      $(input.id + "-out").textContent = Number(input.value).toFixed(2);
      schedule(input, delay);
    }
    drawPad();
  }

  function padPoint(event) {
    const box = pad.getBoundingClientRect();
    const low = Number(panX.min), high = Number(panX.max);
    const fx = clamp((event.clientX - box.left) / box.width, 0, 1);
    const fy = clamp((event.clientY - box.top) / box.height, 0, 1);
    setPan(low + fx * (high - low), high - fy * (high - low), DEBOUNCE_MS);
  }

  pad.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    pad.focus();
    pad.setPointerCapture(event.pointerId);
    padPoint(event);
    const stop = new AbortController();
    pad.addEventListener("pointermove", padPoint, { signal: stop.signal });
    const end = () => { stop.abort(); flush(panX); flush(panY); };
    pad.addEventListener("pointerup", end, { signal: stop.signal });
    pad.addEventListener("pointercancel", end, { signal: stop.signal });
  });
  pad.addEventListener("keydown", (event) => {
    const step = event.shiftKey ? 0.25 : 0.05;
    const x = Number(panX.value), y = Number(panY.value);
    const moves = { ArrowLeft: [x - step, y], ArrowRight: [x + step, y], ArrowUp: [x, y + step], ArrowDown: [x, y - step], Home: [0, 0], "0": [0, 0] };
    if (!moves[event.key] || event.altKey || event.ctrlKey || event.metaKey) return;
    event.preventDefault();
    setPan(moves[event.key][0], moves[event.key][1], DEBOUNCE_MS);
  });

  // -- seed: the dice, and a lock kept per project in this browser -------------------------------------
  function seedLocked() {
    try { return !!project && localStorage.getItem(LOCK_STORE + project.id) === "1"; } catch (e) { return false; }
  }

  function renderLock() {
    const locked = seedLocked();
    $("vs-seed-lock").setAttribute("aria-pressed", locked ? "true" : "false");
    $("vs-seed-hint").textContent = locked
      ? "Locked: every Generate uses this seed."
      : "Unlocked: a new random seed after each Generate (-1 lets the model pick).";
  }

  function drawSeed() {
    $("vs-seed").value = String(Math.floor(Math.random() * 2147483647));
    schedule($("vs-seed"), 0);
  }

  $("vs-dice").addEventListener("click", drawSeed);
  $("vs-seed-lock").addEventListener("click", () => {
    if (!project) return;
    const locked = !seedLocked();
    try {
      if (locked) localStorage.setItem(LOCK_STORE + project.id, "1"); else localStorage.removeItem(LOCK_STORE + project.id);
    } catch (e) {
      mm.toast("This browser does not keep settings: the lock lasts until the page is closed.", "error");
    }
    renderLock();
    announce(locked ? "Seed locked." : "Seed unlocked.");
  });

  // -- start and end frames ----------------------------------------------------------------------------
  const FRAMES = { start: "start_frame", end: "end_frame" };

  function renderFrame(key, id, how) {
    const thumb = $("vs-" + key + "-thumb");
    thumb.hidden = !id;
    $("vs-" + key + "-none").hidden = !!id;
    $("vs-" + key + "-clear").hidden = !id;
    if (id) setMedia(thumb, "src", "/api/media/" + encodeURIComponent(id) + "/thumb");
    const unused = how === UNUSED;
    $("vs-" + key + "-gallery").disabled = unused;
    $("vs-" + key + "-file").disabled = unused;
    $("vs-" + key + "-frame").classList.toggle("vs-unused", unused);
    const note = $("vs-" + key + "-note");
    note.hidden = !unused;
    note.textContent = unused ? "This model: " + how + "." + (id ? " Clear it, or choose a model that takes one." : "") : "";
  }

  for (const [key, field] of Object.entries(FRAMES)) {
    $("vs-" + key + "-file").addEventListener("change", async () => {
      const input = $("vs-" + key + "-file");
      const file = input.files[0];
      if (!file) return;
      fieldError(field, "");
      try {
        const form = new FormData();
        form.append("file", file);
        const asset = await mm.apiJson("/api/media", { method: "POST", body: form });
        await patch(field, asset.id);
      } catch (e) {
        fieldError(field, e.message);
      }
      input.value = "";
    });
    $("vs-" + key + "-clear").addEventListener("click", async () => {
      if (await patch(field, null)) $("vs-" + key + "-gallery").focus();
    });
    $("vs-" + key + "-gallery").addEventListener("click", (event) => openGallery(field, event.currentTarget));
  }

  $("vs-last-frame").addEventListener("click", async () => {
    const clip = selectedClip();
    if (!clip) return;
    fieldError("start_frame", "");
    try {
      show(await mm.apiJson(BASE + "/" + pid() + "/clips/" + encodeURIComponent(clip.id) + "/last-frame", { method: "POST" }));
      announce("The selected clip's last frame is the next shot's start frame.");
    } catch (e) {
      fieldError("start_frame", e.message);
    }
  });

  // The gallery: a modal dialog of image buttons, a page at a time (More), arrows move between them.
  const gallery = { field: null, offset: 0, opener: null };
  const galleryDialog = $("vs-gallery");

  function openGallery(field, opener) {
    gallery.field = field;
    gallery.offset = 0;
    gallery.opener = opener;
    $("vs-gallery-title").textContent = field === "end_frame" ? "Choose the end frame" : "Choose the start frame";
    $("vs-gallery-grid").replaceChildren();
    $("vs-gallery-more").hidden = true;
    galleryDialog.showModal();
    loadGallery(true);
  }

  async function loadGallery(first) {
    const status = $("vs-gallery-status");
    const more = $("vs-gallery-more");
    status.textContent = "Loading images…";
    more.disabled = true;
    try {
      const body = await mm.apiJson("/api/images?uploads=true&limit=" + GALLERY_PAGE + "&offset=" + gallery.offset);
      const current = project && (gallery.field === "end_frame" ? project.nextShot.endFrame : project.nextShot.startFrame);
      const made = body.items.map((item, i) => {
        const n = gallery.offset + i + 1;
        const label = "Use image " + n + (item.prompt ? ": " + item.prompt.slice(0, 80) : "");
        const pick = el("button", { type: "button", className: "vs-pick", "aria-label": label, title: label, "data-asset": item.id, "aria-current": item.id === current ? "true" : null });
        const img = el("img", { alt: "", loading: "lazy" });
        setMedia(img, "src", item.thumbUrl);
        pick.append(img);
        pick.addEventListener("click", () => choose(item.id));
        return el("li", {}, [pick]);
      });
      $("vs-gallery-grid").append(...made);
      gallery.offset += body.items.length;
      more.hidden = !body.items.length || gallery.offset >= body.total;
      status.textContent = body.total
        ? "Showing " + gallery.offset + " of " + body.total + " images."
        : "No images yet: make some in the Image Studio, or upload one.";
      const focus = made.length ? made[0].firstChild : first ? $("vs-gallery-close") : null;
      if (focus && galleryDialog.open) focus.focus();
    } catch (e) {
      status.textContent = e.message;
    } finally {
      more.disabled = false;
    }
  }

  async function choose(assetId) {
    const field = gallery.field;
    galleryDialog.close();
    fieldError(field, "");
    if (await patch(field, assetId)) announce((field === "end_frame" ? "End" : "Start") + " frame chosen from the gallery.");
  }

  $("vs-gallery-more").addEventListener("click", () => loadGallery(false));
  $("vs-gallery-close").addEventListener("click", () => galleryDialog.close());
  galleryDialog.addEventListener("click", (event) => { if (event.target === galleryDialog) galleryDialog.close(); });
  galleryDialog.addEventListener("close", () => { if (gallery.opener && !gallery.opener.disabled) gallery.opener.focus(); });
  $("vs-gallery-grid").addEventListener("keydown", (event) => {
    const picks = [...$("vs-gallery-grid").querySelectorAll(".vs-pick")];
    const at = picks.indexOf(event.target);
    if (at < 0) return;
    const columns = Math.max(1, picks.filter((p) => p.offsetTop === picks[0].offsetTop).length);
    const to = { ArrowLeft: at - 1, ArrowRight: at + 1, ArrowUp: at - columns, ArrowDown: at + columns, Home: 0, End: picks.length - 1 }[event.key];
    if (to === undefined) return;
    event.preventDefault();
    picks[clamp(to, 0, picks.length - 1)].focus();
  });

  // -- Generate ------------------------------------------------------------------------------------------
  $("vs-shot-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = $("vs-generate");
    $("vs-generate-error").textContent = "";
    for (const [field, timer] of timers) { // send what is still waiting first
      clearTimeout(timer);
      timers.delete(field);
      const input = document.querySelector('#vs-shot-form [data-field="' + field + '"]');
      if (input && valueOf(input) !== null) patch(field, valueOf(input));
    }
    await Promise.all([...patching]); // the shot as the page shows it, not as it was a moment ago
    button.disabled = true;
    try {
      const key = "gen-" + project.id + "-" + Math.random().toString(36).slice(2, 10);
      const made = await mm.apiJson(BASE + "/" + pid() + "/generate", { method: "POST", headers: { "Idempotency-Key": key } });
      announce("Generating clip " + made.clip.id + ".");
      dropLocalSelection(); // the server selected the new clip
      document.body.dispatchEvent(new CustomEvent("mm:jobs-changed"));
      if (!seedLocked() && valueOf($("vs-seed")) !== -1) drawSeed(); // the job has its seed already
      await refresh();
    } catch (e) {
      $("vs-generate-error").textContent = e.message;
    } finally {
      button.disabled = false;
    }
  });

  // -- following jobs ------------------------------------------------------------------------------------
  // A job's events (GET /api/jobs/{id}/events: `job` at every change, then `done` or `error`) read over
  // fetch, so a gateway key rides along (EventSource cannot send one). When the stream fails before the
  // end, the job is asked for every few seconds instead. Resolves with the last job seen, or null once
  // `signal` aborts.
  async function trackJob(id, signal, onJob) {
    let last = null;
    const seen = (job) => { last = job; onJob(job); };
    const inner = new AbortController(); // closes the stream once the end is read
    const relay = () => inner.abort();
    signal.addEventListener("abort", relay);
    try {
      const response = await mm.api("/api/jobs/" + encodeURIComponent(id) + "/events", { signal: inner.signal, headers: { Accept: "text/event-stream" } });
      for await (const { event, data } of mm.events(response, inner.signal)) {
        if ((event === "job" || event === "done" || event === "error") && data && data.id === id) seen(data);
        if (event === "done" || event === "error") break;
      }
    } catch (e) {
      // the stream failed: ask below
    } finally {
      inner.abort();
      signal.removeEventListener("abort", relay);
    }
    while (!signal.aborted && !(last && TERMINAL.has(last.state))) {
      await wait(FALLBACK_POLL_MS, signal);
      if (signal.aborted) break;
      try {
        seen(await mm.apiJson("/api/jobs/" + encodeURIComponent(id), { signal }));
      } catch (e) {
        if (e.status === 404) return last;
      }
    }
    return signal.aborted ? null : last;
  }

  // Each generating clip's job is followed (up to MAX_STREAMS at once; the rest, and a clip whose job is
  // done but whose video is not linked yet, by a slow poll of the project). A job's change updates its
  // clip in place; its end reloads the project once, for the clip's video and poster.
  function watch() {
    const wanted = new Set();
    let unfollowed = false;
    for (const clip of clips()) {
      if (!pending(clip) || (!clip.jobId && !clip.assetId)) continue; // (a clip whose job is gone never changes)
      const id = clip.jobId;
      if (id && !TERMINAL.has(clip.state) && !follow.ended.has(id) && (follow.streams.has(id) || follow.streams.size < MAX_STREAMS)) {
        wanted.add(id);
        if (!follow.streams.has(id)) openStream(id);
      } else if (!wanted.has(id)) {
        unfollowed = true;
      }
    }
    for (const [id, controller] of follow.streams) {
      if (!wanted.has(id)) { controller.abort(); follow.streams.delete(id); }
    }
    if (unfollowed && !follow.poll) {
      follow.poll = setTimeout(() => { follow.poll = null; refresh(); }, FALLBACK_POLL_MS);
    }
  }

  function openStream(jobId) {
    const controller = new AbortController();
    follow.streams.set(jobId, controller);
    trackJob(jobId, controller.signal, (job) => updateClipJob(jobId, job)).then(() => {
      if (controller.signal.aborted) return;
      follow.streams.delete(jobId);
      follow.ended.add(jobId);
      document.body.dispatchEvent(new CustomEvent("mm:jobs-changed"));
      refreshSoon();
    });
  }

  function refreshSoon() {
    clearTimeout(follow.soon);
    follow.soon = setTimeout(refresh, 100); // several clips ending together: one reload
  }

  function stopFollowing() {
    for (const controller of follow.streams.values()) controller.abort();
    follow.streams.clear();
    follow.ended.clear();
    clearTimeout(follow.poll);
    clearTimeout(follow.soon);
    follow.poll = null;
    if (follow.exporting) { follow.exporting.abort(); follow.exporting = null; }
  }

  function progressText(clip) {
    return clip.progress === null || clip.progress === undefined ? (clip.state || "queued") : Math.round(clip.progress) + " %";
  }

  function updateClipJob(jobId, job) {
    if (!project) return;
    for (const clip of clips().filter((c) => c.jobId === jobId)) {
      const changed = clip.state !== job.state;
      clip.state = job.state;
      clip.progress = job.progress;
      clip.error = job.error;
      for (const box of [clipNode(clip.id), clip.id === project.selectedClipId ? $("vs-clip-panel") : null]) {
        if (!box) continue;
        const badge = box.querySelector(".vs-state");
        if (badge) { badge.textContent = job.state; badge.className = "badge vs-state " + job.state; }
        const bar = box.querySelector(".vs-progress progress");
        if (bar && job.progress !== null && job.progress !== undefined) bar.value = job.progress;
        const percent = box.querySelector(".vs-percent");
        if (percent) percent.textContent = progressText(clip);
        if (box.dataset.clip) box.dataset.state = job.state;
      }
      if (changed && clip.id === project.selectedClipId) renderInspector();
    }
  }

  // -- the timeline: data --------------------------------------------------------------------------------
  function clips() { return project ? project.clips : []; }
  function selectedClip() { return clips().find((c) => c.id === project.selectedClipId) || null; }
  function clipNode(id) { return $("vs-timeline").querySelector('li[data-clip="' + CSS.escape(id) + '"]'); }

  function fullLength(clip) { return clip.durationS || (clip.settings && clip.settings.durationS) || FALLBACK_S; }

  function trimOut(clip) { return clip.trimOutS === null || clip.trimOutS === undefined ? null : clip.trimOutS; }

  function length(clip) {
    const out = trimOut(clip) === null ? fullLength(clip) : trimOut(clip);
    return Math.max(MIN_TRIM_S, out - (clip.trimInS || 0));
  }

  function pending(clip) {
    return !TERMINAL.has(clip.state) || (clip.state === "complete" && !clip.assetId);
  }

  // The sequence: where each clip starts on the timeline and what of it plays.
  function segments() {
    let start = 0;
    return clips().map((clip, index) => {
      const seg = { clip, index, start, length: length(clip), inS: clip.trimInS || 0, outS: trimOut(clip) };
      start += seg.length;
      return seg;
    });
  }

  function totalLength() { return clips().reduce((sum, c) => sum + length(c), 0); }

  function segAt(t) {
    const segs = segments();
    return segs.find((s) => t >= s.start && t < s.start + s.length) || (segs.length && t >= segs[segs.length - 1].start ? segs[segs.length - 1] : null);
  }

  // -- the timeline: drawing -----------------------------------------------------------------------------
  function button(text, label, action, onClick, opts) {
    const b = el("button", Object.assign({ type: "button", className: "secondary vs-small", text, "aria-label": label, title: label, "data-action": action }, opts || {}));
    b.addEventListener("click", onClick);
    return b;
  }

  function clipItem(clip, index, hasSelection) {
    const n = index + 1;
    const selected = clip.id === project.selectedClipId;
    const li = el("li", { className: "vs-clip" + (selected ? " selected" : ""), "data-clip": clip.id, "data-state": clip.state || "", "aria-current": selected ? "true" : null, "data-loop": clip.settings && clip.settings.loop ? "true" : null });
    const summary = "Clip " + n + " · " + length(clip).toFixed(1) + " s" + (clip.settings && clip.settings.prompt ? " · " + clip.settings.prompt : "");
    const thumb = el("button", { type: "button", className: "vs-thumb", "aria-pressed": selected ? "true" : "false", "aria-label": "Select clip " + n, title: summary, tabindex: selected || (!hasSelection && index === 0) ? "0" : "-1" });
    if (clip.posterUrl) {
      const img = el("img", { alt: "", loading: "lazy", draggable: "false" });
      setMedia(img, "src", clip.posterUrl);
      thumb.append(img);
    } else {
      thumb.append(el("span", { className: "vs-thumb-text", text: clip.state || "waiting" }));
    }
    thumb.addEventListener("click", () => { if (performance.now() - dragEndedAt > 300) select(clip.id); });
    thumb.addEventListener("pointerdown", (event) => startDrag(event, li, clip));
    li.append(thumb);

    const head = el("div", { className: "vs-clip-head" }, [
      el("span", { className: "vs-clip-n", text: "#" + n }),
      el("span", { className: "badge vs-state " + (clip.state || ""), text: clip.state || "…" }),
    ]);
    if (clip.settings && clip.settings.loop) head.append(el("span", { className: "badge vs-loop", text: "loop", title: "This clip was made to loop" }));
    head.append(el("span", { className: "vs-len", text: length(clip).toFixed(1) + " s" }));
    li.append(head);
    if (pending(clip)) {
      const bar = el("progress", { max: "100", "aria-label": "Progress of clip " + n });
      if (clip.progress !== null && clip.progress !== undefined) bar.value = clip.progress;
      li.append(el("div", { className: "vs-progress" }, [bar, el("span", { className: "vs-percent small", text: progressText(clip) })]));
    }
    if (clip.error && clip.state !== "complete") li.append(el("span", { className: "vs-clip-flag", text: "!", title: clip.error }));
    if (clip.assetId && clip.durationS) {
      for (const edge of ["in", "out"]) {
        const handle = el("span", { className: "vs-handle vs-handle-" + edge, "aria-hidden": "true", title: edge === "in" ? "Drag to trim the start of clip " + n : "Drag to trim the end of clip " + n, "data-edge": edge });
        handle.addEventListener("pointerdown", (event) => startTrim(event, li, clip, edge));
        li.append(handle);
      }
    }
    return li;
  }

  function renderTimeline(force) {
    const list = clips();
    const key = JSON.stringify([project.selectedClipId, list.map((c) => [c.id, c.state, c.progress, c.assetId, c.trimInS, c.trimOutS, c.error, c.durationS, c.posterUrl, c.settings && c.settings.loop])]);
    if (!force && key === clipsKey) return;
    clipsKey = key;
    const ol = $("vs-timeline");
    const focusClip = ol.contains(document.activeElement) ? document.activeElement.closest(".vs-clip").dataset.clip : null;
    const hasSelection = list.some((c) => c.id === project.selectedClipId);
    ol.replaceChildren(...list.map((c, i) => clipItem(c, i, hasSelection)));
    $("vs-timeline-empty").hidden = list.length > 0;
    $("vs-track").hidden = !list.length;
    const total = totalLength();
    $("vs-timeline-total").textContent = list.length ? list.length + (list.length === 1 ? " clip · " : " clips · ") + total.toFixed(1) + " s" : "";
    if (focusClip) focusThumb(list.some((c) => c.id === focusClip) ? focusClip : project.selectedClipId);
    renderInspector();
    layout();
    updateLastFrameButton();
  }

  function focusThumb(id) {
    const li = id && clipNode(id);
    const thumb = li ? li.querySelector(".vs-thumb") : $("vs-timeline").querySelector(".vs-thumb");
    if (thumb) thumb.focus();
  }

  // Widths by trimmed length at one scale that fits the track (within bounds), the ruler, the playhead.
  function layout() {
    const list = clips();
    const track = $("vs-track");
    if (!list.length) return;
    const total = totalLength();
    const shortest = Math.min(...list.map(length));
    const room = Math.max(200, track.clientWidth - 4);
    scale = clamp(room / total, MIN_PX_PER_S, MAX_PX_PER_S);
    scale = Math.max(scale, Math.min(MIN_CLIP_PX / shortest, MAX_PX_PER_S * 2));
    const ol = $("vs-timeline");
    ol.style.width = total * scale + "px";
    for (const seg of segments()) {
      const li = clipNode(seg.clip.id);
      if (li) li.style.width = seg.length * scale + "px";
    }
    drawRuler(total, Math.max(total * scale, room));
    drawPlayhead();
  }

  function tickLabel(t) {
    if (t < 60) return (Number.isInteger(t) ? String(t) : t.toFixed(1)) + " s";
    const s = Math.round(t % 60);
    return Math.floor(t / 60) + ":" + (s < 10 ? "0" : "") + s;
  }

  function drawRuler(total, width) {
    const ruler = $("vs-ruler");
    ruler.style.width = width + "px";
    const step = TICK_STEPS.find((s) => s * scale >= 72) || TICK_STEPS[TICK_STEPS.length - 1];
    const minor = step <= 1 ? step / 2 : step <= 10 ? 1 : step / 5;
    ruler.style.backgroundSize = minor * scale >= 6 ? minor * scale + "px 6px" : "0 0";
    const ticks = [];
    for (let i = 0; i * step * scale <= width; i++) {
      ticks.push(el("span", { className: "vs-tick", style: "left:" + i * step * scale + "px", text: tickLabel(i * step) }));
    }
    ruler.replaceChildren(...ticks);
    ruler.setAttribute("aria-valuemax", total.toFixed(1));
  }

  function drawPlayhead() {
    const total = totalLength();
    play.at = clamp(play.at, 0, total);
    const x = play.at * scale;
    $("vs-playhead").style.left = $("vs-timeline").offsetLeft + x + "px";
    const ruler = $("vs-ruler");
    ruler.setAttribute("aria-valuenow", play.at.toFixed(1));
    ruler.setAttribute("aria-valuetext", play.at.toFixed(1) + " s of " + total.toFixed(1) + " s");
    const track = $("vs-track");
    if (!video.paused && (x < track.scrollLeft || x > track.scrollLeft + track.clientWidth - 24)) track.scrollLeft = Math.max(0, x - 40);
  }

  new ResizeObserver(() => { if (project) layout(); }).observe($("vs-track"));

  // The selected clip's details and actions (the timeline's thumbnails are too small to hold them).
  function renderInspector() {
    const panel = $("vs-clip-panel");
    const active = document.activeElement;
    const focusAction = panel.contains(active) && active.dataset ? active.dataset.action : null;
    const list = clips();
    const index = list.findIndex((c) => c.id === project.selectedClipId);
    if (index < 0) {
      panel.replaceChildren(el("p", { className: "small muted", text: list.length ? "Select a clip to move, trim, duplicate or delete it." : "" }));
      if (focusAction) focusThumb(null);
      return;
    }
    const clip = list[index];
    const n = index + 1;
    const head = el("div", { className: "vs-inspect-head" }, [
      el("h3", { className: "vs-inspect-title", text: "Clip " + n + " of " + list.length }),
      el("span", { className: "badge vs-state " + (clip.state || ""), text: clip.state || "…" }),
      el("span", { className: "small muted", text: length(clip).toFixed(1) + " s" + (clip.durationS ? " of " + clip.durationS.toFixed(1) + " s" : "") }),
    ]);
    if (clip.settings && clip.settings.loop) head.append(el("span", { className: "badge vs-loop", text: "loop" }));
    const parts = [head];
    if (pending(clip)) parts.push(el("div", { className: "vs-progress" }, [el("span", { className: "vs-percent small", text: progressText(clip) })]));
    if (clip.settings && clip.settings.prompt) parts.push(el("p", { className: "vs-clip-prompt small", text: clip.settings.prompt }));
    if (clip.error && clip.state !== "complete") parts.push(el("p", { className: "vs-clip-error small", text: clip.error }));
    const actions = el("div", { className: "vs-clip-actions" }, [
      button("←", "Move clip " + n + " left", "left", () => move(clip.id, -1), { disabled: index === 0 }),
      button("→", "Move clip " + n + " right", "right", () => move(clip.id, 1), { disabled: index === list.length - 1 }),
      button("Duplicate", "Duplicate clip " + n, "duplicate", () => duplicate(clip.id)),
      button("Delete", "Delete clip " + n, "delete", () => remove(clip.id)),
    ]);
    if (clip.state === "failed" || clip.state === "cancelled") actions.append(button("Retry", "Retry clip " + n, "retry", () => retry(clip.id)));
    parts.push(actions);
    if (clip.assetId) {
      const max = clip.durationS || "";
      const tin = el("input", { type: "number", min: "0", max: String(max), step: "0.1", value: String(clip.trimInS || 0), "aria-label": "Trim in (s) of clip " + n, className: "vs-trim-in", "data-action": "trim-in" });
      const tout = el("input", { type: "number", min: "0", max: String(max), step: "0.1", value: trimOut(clip) === null ? "" : String(clip.trimOutS), placeholder: max ? String(max) : "end", "aria-label": "Trim out (s) of clip " + n, className: "vs-trim-out", "data-action": "trim-out" });
      const err = el("p", { className: "vs-error vs-trim-error", id: "vs-trim-error", "aria-live": "polite" });
      const send = () => saveTrim(clip.id, tin.value.trim() === "" ? 0 : Number(tin.value), tout.value.trim() === "" ? null : Number(tout.value));
      tin.addEventListener("change", send);
      tout.addEventListener("change", send);
      parts.push(el("div", { className: "vs-trims" }, [el("span", { className: "small muted", text: "Trim" }), tin, el("span", { className: "small muted", text: "to" }), tout, err]));
    }
    panel.replaceChildren(...parts);
    if (focusAction) {
      const again = panel.querySelector('[data-action="' + focusAction + '"]');
      if (again && !again.disabled) again.focus(); else focusThumb(clip.id);
    }
  }

  function updateLastFrameButton() {
    const clip = project && selectedClip();
    $("vs-last-frame").disabled = !(clip && clip.assetId) || (project.controls || {}).startFrame === UNUSED;
  }

  // -- the timeline: actions -----------------------------------------------------------------------------
  // The selection and the playhead are the page's to change: PATCHed at most every SAVE_VIEW_MS, and a
  // project view answered meanwhile does not take them back.
  function saveView(fields) {
    if (!project) return;
    if (viewSave.id !== project.id) { viewSave.id = project.id; viewSave.pending = {}; }
    Object.assign(viewSave.pending, fields);
    if (!viewSave.timer) flushView();
  }

  async function flushView() {
    const body = viewSave.pending;
    viewSave.pending = {};
    if (!Object.keys(body).length || !project || viewSave.id !== project.id) return;
    const id = viewSave.id;
    viewSave.inflight = body;
    viewSave.timer = setTimeout(() => { viewSave.timer = null; flushView(); }, SAVE_VIEW_MS);
    try {
      await mm.apiJson(BASE + "/" + encodeURIComponent(id), { method: "PATCH", json: body });
    } catch (e) {
      if (!(e.status === 400 && e.body && e.body.field === "selected_clip_id")) mm.toast(e.message, "error"); // a clip deleted meanwhile
    } finally {
      if (viewSave.inflight === body) viewSave.inflight = {};
    }
  }

  function dropLocalSelection() {
    delete viewSave.pending.selected_clip_id;
    delete viewSave.inflight.selected_clip_id;
  }

  function localSelection() {
    for (const source of [viewSave.pending, viewSave.inflight]) {
      if (source && "selected_clip_id" in source) return source.selected_clip_id;
    }
    return undefined;
  }

  function select(id, opts) {
    if (!project || !id) return;
    project.selectedClipId = id;
    renderTimeline();
    const seg = segments().find((s) => s.clip.id === id);
    const here = segAt(play.at);
    if (seg && !(here && here.clip.id === id && play.clipId === id)) seekTo(seg.start, play.timeline);
    saveView({ selected_clip_id: id, playhead_s: tenth(play.at) });
    if (opts && opts.focus) focusThumb(id);
  }

  async function reorder(ids, place) {
    try {
      show(await mm.apiJson(BASE + "/" + pid() + "/order", { method: "PUT", json: { clip_ids: ids } }));
      announce("Clip moved to place " + (place + 1) + ".");
    } catch (e) {
      mm.toast(e.message, "error");
      renderTimeline(true);
    }
  }

  function move(id, step) {
    const ids = clips().map((c) => c.id);
    const at = ids.indexOf(id);
    const to = at + step;
    if (at < 0 || to < 0 || to >= ids.length) return Promise.resolve();
    [ids[at], ids[to]] = [ids[to], ids[at]];
    return reorder(ids, to);
  }

  async function duplicate(id) {
    try {
      const copy = await mm.apiJson(BASE + "/" + pid() + "/clips/" + encodeURIComponent(id) + "/duplicate", { method: "POST" });
      dropLocalSelection(); // the server selected the copy
      await refresh();
      select(copy.id); // and a selection PATCH still on its way must not take it back
      announce("Clip duplicated.");
      return copy;
    } catch (e) {
      mm.toast(e.message, "error");
      return null;
    }
  }

  async function remove(id) {
    const list = clips();
    const at = list.findIndex((c) => c.id === id);
    const keyboard = $("vs-track").contains(document.activeElement) || $("vs-clip-panel").contains(document.activeElement);
    try {
      await mm.apiJson(BASE + "/" + pid() + "/clips/" + encodeURIComponent(id), { method: "DELETE" });
      await refresh();
      announce("Clip deleted. Undo delete puts it back.");
      const rest = clips();
      if (rest.length && !rest.some((c) => c.id === project.selectedClipId)) select(rest[Math.min(at, rest.length - 1)].id, { focus: keyboard });
    } catch (e) {
      mm.toast(e.message, "error");
    }
  }

  $("vs-undo").addEventListener("click", async () => {
    if (!project) return;
    try {
      await mm.apiJson(BASE + "/" + pid() + "/clips/undo", { method: "POST" });
      await refresh();
      announce("Clip restored.");
    } catch (e) {
      mm.toast(e.message, "error");
    }
  });

  async function saveTrim(id, trimIn, trimOutS) {
    const err = $("vs-trim-error");
    if (err) err.textContent = "";
    try {
      await mm.apiJson(BASE + "/" + pid() + "/clips/" + encodeURIComponent(id), { method: "PATCH", json: { trim_in_s: trimIn, trim_out_s: trimOutS } });
      await refresh();
      return true;
    } catch (e) {
      const here = project && project.selectedClipId === id ? $("vs-trim-error") : null;
      if (here) here.textContent = e.message; else mm.toast(e.message, "error");
      renderTimeline(true); // back to the saved trims
      if (here) $("vs-trim-error").textContent = e.message;
      return false;
    }
  }

  async function retry(id, confirm) {
    try {
      await mm.apiJson(BASE + "/" + pid() + "/clips/" + encodeURIComponent(id) + "/retry", confirm ? { method: "POST", json: { confirm: true } } : { method: "POST" });
      announce("The shot was submitted again.");
      document.body.dispatchEvent(new CustomEvent("mm:jobs-changed"));
      await refresh();
    } catch (e) {
      if (!confirm && e.status === 400 && e.body && e.body.field === "confirm") { askRetry(id, e.message); return; }
      mm.toast(e.message, "error");
    }
  }

  function askRetry(id, message) {
    const dialog = $("vs-retry-dialog");
    $("vs-retry-text").textContent = message;
    dialog.returnValue = "";
    dialog.addEventListener("close", function done() {
      dialog.removeEventListener("close", done);
      if (dialog.returnValue === "retry") retry(id, true);
    });
    dialog.showModal();
    $("vs-retry-confirm").focus();
  }

  // -- the timeline: pointer ------------------------------------------------------------------------------
  // Pointer events, not HTML drag and drop (which touch screens do not send): press a clip and move it
  // sideways; where it lands is shown by a bar, and letting go PUTs the new order.
  function startDrag(event, li, clip) {
    if (event.button !== 0 || !event.isPrimary) return;
    const thumb = event.currentTarget;
    const ol = $("vs-timeline");
    const track = $("vs-track");
    const drop = $("vs-drop");
    const startX = event.clientX;
    const scroll0 = track.scrollLeft;
    const others = [...ol.children].filter((n) => n !== li);
    const from = [...ol.children].indexOf(li);
    let to = from;
    let dragging = false;
    thumb.setPointerCapture(event.pointerId);
    const stop = new AbortController();
    const moveTo = (e) => {
      const dx = e.clientX - startX;
      if (!dragging) {
        if (Math.abs(dx) < DRAG_PX) return;
        dragging = true;
        li.classList.add("vs-dragging");
      }
      const box = track.getBoundingClientRect();
      if (e.clientX > box.right - 30) track.scrollLeft += 12;
      else if (e.clientX < box.left + 30) track.scrollLeft -= 12;
      li.style.transform = "translateX(" + (dx + track.scrollLeft - scroll0) + "px)";
      to = others.filter((n) => { const r = n.getBoundingClientRect(); return r.left + r.width / 2 < e.clientX; }).length;
      const x = to === 0 ? (others[0] ? others[0].offsetLeft : 0) : others[to - 1].offsetLeft + others[to - 1].offsetWidth;
      drop.style.left = ol.offsetLeft + x + "px";
      drop.hidden = to === from;
    };
    const end = (e) => {
      stop.abort();
      li.classList.remove("vs-dragging");
      li.style.transform = "";
      drop.hidden = true;
      if (!dragging) return;
      dragEndedAt = performance.now(); // the click that follows is not a selection
      if (e.type === "pointercancel" || to === from) return;
      const ids = others.map((n) => n.dataset.clip);
      ids.splice(to, 0, clip.id);
      reorder(ids, to);
    };
    thumb.addEventListener("pointermove", moveTo, { signal: stop.signal });
    thumb.addEventListener("pointerup", end, { signal: stop.signal });
    thumb.addEventListener("pointercancel", end, { signal: stop.signal });
  }

  // A clip's edges: drag to trim in or out (to a tenth of a second), shown as you go, saved on release.
  function startTrim(event, li, clip, edge) {
    if (event.button !== 0 || !event.isPrimary) return;
    event.preventDefault();
    event.stopPropagation();
    const handle = event.currentTarget;
    handle.setPointerCapture(event.pointerId);
    const dur = clip.durationS;
    const in0 = clip.trimInS || 0;
    const out0 = trimOut(clip) === null ? dur : trimOut(clip);
    const startX = event.clientX;
    let tin = in0;
    let tout = out0;
    const ghost = el("div", { className: "vs-trim-ghost", "aria-hidden": "true" });
    li.append(ghost);
    li.classList.add("vs-trimming");
    const len = li.querySelector(".vs-len");
    const moveTo = (e) => {
      const delta = (e.clientX - startX) / scale;
      if (edge === "in") tin = clamp(tenth(in0 + delta), 0, tenth(out0 - MIN_TRIM_S));
      else tout = clamp(tenth(out0 + delta), tenth(in0 + MIN_TRIM_S), dur);
      ghost.style.left = (tin - in0) * scale + "px";
      ghost.style.right = (out0 - tout) * scale + "px";
      ghost.textContent = edge === "in" ? "in " + tin.toFixed(1) + " s" : "out " + tout.toFixed(1) + " s";
      if (len) len.textContent = (tout - tin).toFixed(1) + " s";
    };
    const stop = new AbortController();
    const end = (e) => {
      stop.abort();
      ghost.remove();
      li.classList.remove("vs-trimming");
      if (project.selectedClipId !== clip.id) select(clip.id); // its trims show below, errors too
      if (e.type === "pointercancel" || (tin === in0 && tout === out0)) { if (len) len.textContent = length(clip).toFixed(1) + " s"; return; }
      saveTrim(clip.id, tin, tout >= dur - 1e-6 ? null : tout).then((ok) => {
        if (ok) announce("Clip trimmed to " + tin.toFixed(1) + " – " + tout.toFixed(1) + " s.");
      });
    };
    handle.addEventListener("pointermove", moveTo, { signal: stop.signal });
    handle.addEventListener("pointerup", end, { signal: stop.signal });
    handle.addEventListener("pointercancel", end, { signal: stop.signal });
  }

  // The ruler: click or drag to move the playhead (arrows too, when it has focus).
  const ruler = $("vs-ruler");
  function rulerTime(event) {
    return (event.clientX - $("vs-timeline").getBoundingClientRect().left) / scale;
  }
  function movePlayhead(t) {
    seekTo(t, play.timeline && !video.paused);
    saveView({ playhead_s: tenth(play.at) });
  }
  ruler.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || !project) return;
    ruler.setPointerCapture(event.pointerId);
    movePlayhead(rulerTime(event));
    const stop = new AbortController();
    ruler.addEventListener("pointermove", (e) => movePlayhead(rulerTime(e)), { signal: stop.signal });
    ruler.addEventListener("pointerup", () => stop.abort(), { signal: stop.signal });
    ruler.addEventListener("pointercancel", () => stop.abort(), { signal: stop.signal });
  });
  ruler.addEventListener("keydown", (event) => {
    if (!project || event.altKey || event.ctrlKey || event.metaKey) return;
    const step = event.shiftKey ? 1 : 0.1;
    const to = { ArrowLeft: play.at - step, ArrowDown: play.at - step, ArrowRight: play.at + step, ArrowUp: play.at + step, Home: 0, End: totalLength() }[event.key];
    if (to === undefined) return;
    event.preventDefault();
    movePlayhead(to);
  });

  // Keys on the timeline (or with nothing focused): ← → choose, Alt+← → move, Home End, Delete or
  // Backspace removes, Space plays or pauses. Never while typing in a field.
  document.addEventListener("keydown", (event) => {
    if (!project || event.defaultPrevented || event.ctrlKey || event.metaKey) return;
    const t = event.target;
    if (!t.closest || t.closest("input, textarea, select, dialog, [contenteditable], video, .topbar")) return;
    if (!t.closest("#vs-track") && t !== document.body && t !== document.documentElement) return;
    const list = clips();
    const at = list.findIndex((c) => c.id === project.selectedClipId);
    const key = event.key;
    if ((key === "ArrowLeft" || key === "ArrowRight") && event.altKey) {
      if (at < 0) return;
      event.preventDefault();
      const id = list[at].id;
      move(id, key === "ArrowLeft" ? -1 : 1).then(() => focusThumb(id));
    } else if (event.altKey) {
      return;
    } else if (key === "ArrowLeft" || key === "ArrowRight" || key === "Home" || key === "End") {
      if (!list.length) return;
      event.preventDefault();
      const next = key === "Home" ? 0 : key === "End" ? list.length - 1 : key === "ArrowLeft" ? Math.max(0, at - 1) : Math.min(list.length - 1, at + 1);
      select(list[next].id, { focus: true });
    } else if (key === "Delete" || key === "Backspace") {
      if (at < 0) return;
      event.preventDefault();
      remove(list[at].id);
    } else if (key === " " || key === "Spacebar") {
      event.preventDefault();
      togglePlay();
    }
  });

  // -- preview: the sequence, clip after clip -------------------------------------------------------------
  const video = $("vs-video");

  function updatePlayButton() {
    $("vs-play").textContent = play.timeline ? "Pause" : "Play timeline";
  }

  function nowPlaying(seg) {
    $("vs-now-playing").textContent = seg ? "Clip " + (seg.index + 1) + " of " + clips().length : "";
  }

  // Show (and, with autoplay, play) `seg` from `offset` seconds into its trimmed part.
  function loadClip(seg, offset, autoplay) {
    const clip = seg.clip;
    const target = seg.inS + clamp(offset, 0, Math.max(0, seg.length - 0.05));
    play.autoplay = !!autoplay;
    play.clipId = clip.id;
    nowPlaying(seg);
    if (video.dataset.url === clip.videoUrl && video.readyState >= 1 && !play.switching) { // already loaded (or a duplicate)
      video.dataset.clip = clip.id;
      if (Math.abs(video.currentTime - target) > 0.04) video.currentTime = target;
      if (autoplay && video.paused) video.play().catch(blocked);
      return;
    }
    video.dataset.clip = clip.id;
    video.dataset.url = clip.videoUrl;
    play.target = target;
    play.switching = true;
    setMedia(video, "poster", clip.posterUrl);
    setMedia(video, "src", clip.videoUrl);
  }

  function blocked(e) {
    if (e && e.name === "AbortError") return; // another clip was loaded meanwhile
    play.timeline = false;
    updatePlayButton();
    announce("The browser did not start the video: press Play timeline.");
  }

  // Move the playhead to `t` seconds into the sequence and show the frame there.
  function seekTo(t, autoplay) {
    play.at = clamp(t, 0, totalLength());
    drawPlayhead();
    const seg = segAt(play.at);
    if (seg && seg.clip.videoUrl) loadClip(seg, play.at - seg.start, autoplay);
    else if (seg) nowPlaying(seg);
  }

  // After a project view: the preview shows the clip under the playhead, unless it already does.
  function syncPreview() {
    const seg = segAt(play.at);
    if (!seg || !seg.clip.videoUrl) return;
    if (play.clipId === seg.clip.id && video.dataset.url === seg.clip.videoUrl) { nowPlaying(seg); return; }
    loadClip(seg, play.at - seg.start, false);
  }

  function currentSeg() {
    return segments().find((s) => s.clip.id === play.clipId) || null;
  }

  function syncFromVideo() {
    const seg = currentSeg();
    if (!seg || play.switching) return;
    play.at = seg.start + clamp(video.currentTime - seg.inS, 0, seg.length);
    drawPlayhead();
  }

  function checkOut() {
    const seg = currentSeg();
    if (!seg || play.switching || video.seeking || video.paused || seg.outS === null) return;
    if (video.currentTime >= seg.outS - 0.03) {
      if (play.timeline) playNext(); else video.pause();
    }
  }

  function playNext() {
    const segs = segments();
    const at = segs.findIndex((s) => s.clip.id === play.clipId);
    let next = segs.slice(at + 1).find((s) => s.clip.videoUrl);
    if (!next && play.loop) next = segs.find((s) => s.clip.videoUrl);
    if (!next) {
      play.timeline = false;
      play.autoplay = false;
      if (!video.paused) video.pause();
      play.at = totalLength();
      drawPlayhead();
      updatePlayButton();
      saveView({ playhead_s: tenth(play.at) });
      return;
    }
    play.at = next.start;
    drawPlayhead();
    loadClip(next, 0, true);
  }

  function frame() {
    play.raf = 0;
    if (video.paused) return;
    syncFromVideo();
    checkOut();
    if (!video.paused) play.raf = requestAnimationFrame(frame);
  }

  video.addEventListener("loadedmetadata", () => {
    if (play.target > 0) video.currentTime = play.target;
    play.switching = false;
    if (play.autoplay) video.play().catch(blocked);
  });
  video.addEventListener("play", () => {
    play.timeline = true;
    updatePlayButton();
    if (!play.raf) play.raf = requestAnimationFrame(frame);
  });
  video.addEventListener("pause", () => {
    if (play.switching || video.ended) return; // a clip change, or the end (`ended` follows)
    play.timeline = false;
    play.autoplay = false;
    updatePlayButton();
    syncFromVideo();
    saveView({ playhead_s: tenth(play.at) });
  });
  video.addEventListener("ended", () => { if (play.timeline) playNext(); });
  video.addEventListener("timeupdate", checkOut);
  video.addEventListener("seeked", () => { if (video.paused) syncFromVideo(); });

  function togglePlay() {
    if (!project) return;
    if (!video.paused || (play.timeline && play.switching)) {
      play.timeline = false;
      play.autoplay = false;
      video.pause();
      updatePlayButton();
      return;
    }
    const segs = segments().filter((s) => s.clip.videoUrl);
    if (!segs.length) { announce("No clip is ready to play yet."); return; }
    let at = play.at >= totalLength() - 0.05 ? 0 : play.at;
    let seg = segAt(at);
    if (!seg || !seg.clip.videoUrl) {
      seg = segs.find((s) => s.start >= at) || segs[0];
      at = seg.start;
    }
    play.timeline = true;
    updatePlayButton();
    play.at = at;
    drawPlayhead();
    loadClip(seg, at - seg.start, true);
  }
  $("vs-play").addEventListener("click", togglePlay);
  $("vs-loop-preview").addEventListener("click", () => {
    play.loop = !play.loop;
    $("vs-loop-preview").setAttribute("aria-pressed", play.loop ? "true" : "false");
    announce(play.loop ? "The preview starts again after the last clip." : "The preview stops after the last clip.");
  });

  // -- export ----------------------------------------------------------------------------------------
  $("vs-export").addEventListener("click", async () => {
    if (!project) return;
    const box = $("vs-export-box");
    const bar = $("vs-export-progress");
    const link = $("vs-download");
    const state = $("vs-export-state");
    const name = project.name;
    box.hidden = false;
    link.hidden = true;
    bar.removeAttribute("value");
    state.textContent = "starting";
    $("vs-export").disabled = true;
    const controller = new AbortController();
    follow.exporting = controller;
    const progress = (job) => {
      if (job.progress !== null && job.progress !== undefined) bar.value = job.progress;
      state.textContent = job.state + (job.progress !== null && job.progress !== undefined ? " " + Math.round(job.progress) + " %" : "");
    };
    try {
      let job = await mm.apiJson(BASE + "/" + pid() + "/export", { method: "POST" });
      document.body.dispatchEvent(new CustomEvent("mm:jobs-changed"));
      progress(job);
      job = TERMINAL.has(job.state) ? job : await trackJob(job.id, controller.signal, progress);
      if (!job) return; // the project was left
      document.body.dispatchEvent(new CustomEvent("mm:jobs-changed"));
      if (job.state === "complete" && job.outputs.length) {
        bar.value = 100;
        state.textContent = "complete";
        link.href = job.outputs[0].url;
        link.setAttribute("download", (name || "film") + ".mp4");
        link.hidden = false;
        announce("The film is ready to download.");
      } else {
        state.textContent = job.state + (job.error ? ": " + job.error : "");
      }
    } catch (e) {
      state.textContent = e.message;
    } finally {
      if (follow.exporting === controller) follow.exporting = null;
      $("vs-export").disabled = false;
    }
  });
  $("vs-download").addEventListener("click", (event) => {
    if (!hasKey()) return;
    event.preventDefault(); // the key cannot ride on a plain link: fetch, then save
    const link = $("vs-download");
    mm.api(link.getAttribute("href")).then((r) => r.blob()).then((blob) => {
      el("a", { href: URL.createObjectURL(blob), download: link.getAttribute("download") }).click();
    }).catch((e) => mm.toast(e.message, "error"));
  });

  // -- loading and following -------------------------------------------------------------------------
  function leaveProject() {
    stopFollowing();
    play.timeline = false;
    play.autoplay = false;
    play.clipId = null;
    video.pause();
    delete video.dataset.clip;
    delete video.dataset.url;
    setMedia(video, "src", null);
    setMedia(video, "poster", null);
    if (video.currentSrc) video.load(); // let go of the last project's clip
    nowPlaying(null);
    updatePlayButton();
    $("vs-export-box").hidden = true;
    viewSave.id = null;
    viewSave.pending = {};
    viewSave.inflight = {};
  }

  function show(view, opts) {
    const switched = !project || project.id !== view.id;
    const fresh = switched || (opts && opts.all);
    if (switched) leaveProject();
    if (fresh) {
      play.at = view.playheadS || 0;
    } else {
      const mine = localSelection(); // a selection on its way to the server wins over this answer
      if (mine !== undefined && view.clips.some((c) => c.id === mine)) view.selectedClipId = mine;
    }
    project = view;
    $("vs-work").hidden = false;
    $("vs-empty").hidden = true;
    renderShot();
    renderTimeline(fresh);
    if (video.paused && !play.switching && !play.timeline) syncPreview();
    watch();
    $("vs-work").dataset.ready = "true";
  }

  async function refresh() {
    if (!project) return;
    const id = project.id;
    try {
      const view = await mm.apiJson(BASE + "/" + encodeURIComponent(id));
      if (project && project.id === id) show(view);
    } catch (e) {
      // the studio is restarting: the next follow or poll shows it
      if (project && project.id === id && !follow.poll) follow.poll = setTimeout(() => { follow.poll = null; refresh(); }, FALLBACK_POLL_MS);
    }
  }

  window.addEventListener("pagehide", stopFollowing);
  window.addEventListener("pageshow", (event) => { if (event.persisted) refresh(); }); // back from the page cache

  async function start() {
    try {
      const body = await mm.apiJson("/api/videos/models");
      models = body.models || [];
    } catch (e) {
      models = [];
    }
    const wanted = projectFromUrl();
    try {
      await loadProjects(wanted);
    } catch (e) {
      mm.toast(e.message, "error");
    }
    if (wanted) await openProject(wanted);
    document.body.dataset.vsReady = "true";
  }
  start();
})();
