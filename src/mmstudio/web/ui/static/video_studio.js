// mmstudio Video Studio: projects, the next shot's settings (each change PATCHed at once, the server's
// refusal shown next to its field), Generate onto a timeline of clips (reorder, duplicate, delete,
// undo, trim, retry after asking), a preview that plays the clips one after another honouring trims,
// and Export. The server keeps everything; the page keeps only the project id in the URL. User and
// vendor text is only ever set as textContent or attributes.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const { el } = window.mm;
  const KEY_STORE = "mmstudio-key";
  const BASE = "/api/video-studio/projects";
  const TERMINAL = new Set(["complete", "failed", "cancelled"]);
  const PX_PER_S = 48; // timeline width per second of clip
  const DEBOUNCE_MS = 300;

  let project = null; // the project view as the server last answered
  let models = [];
  let pollTimer = null;
  let clipsKey = "";
  const timers = new Map(); // field -> pending debounce timer
  const play = { index: -1, timeline: false };

  function hasKey() {
    try { return !!localStorage.getItem(KEY_STORE); } catch (e) { return false; }
  }

  function announce(text) { $("vs-announce").textContent = text; }

  function pid() { return project ? encodeURIComponent(project.id) : ""; }

  // With gateway keys on, <video src> and <img src> cannot send the key: the bytes come through mm.api.
  function setMedia(node, attr, url) {
    if (!url) { node.removeAttribute(attr); return; }
    if (!hasKey()) { node.setAttribute(attr, url); return; }
    mm.api(url).then((r) => r.blob()).then((blob) => node.setAttribute(attr, URL.createObjectURL(blob)))
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
  function price(m) {
    const p = m.capabilities && m.capabilities.pricePerSecondUsd;
    return p === null || p === undefined ? "" : " · $" + Number(p).toFixed(2) + "/s";
  }

  function modelLabel(m) {
    return m.name + " (" + m.id + ")" + price(m) + (m.usable ? "" : " · unavailable");
  }

  function fillModels() {
    const select = $("vs-model");
    const chosen = project && project.nextShot.model;
    select.replaceChildren(el("option", { value: "", text: "Choose a model…", disabled: !!chosen }));
    const groups = new Map();
    const sorted = models.slice().sort((a, b) => (a.kind === b.kind ? 0 : a.kind === "local" ? -1 : 1));
    for (const m of sorted) {
      const key = m.provider + " · " + m.kind;
      if (!groups.has(key)) groups.set(key, el("optgroup", { label: key }));
      groups.get(key).append(el("option", { value: m.id, text: modelLabel(m), "data-usable": m.usable ? "true" : "false" }));
    }
    for (const group of groups.values()) select.append(group);
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
    const parts = [selected.kind === "local" ? "Runs locally" : "Cloud (" + selected.provider + ")"];
    if (caps.pricePerSecondUsd !== null && caps.pricePerSecondUsd !== undefined) {
      parts.push("$" + Number(caps.pricePerSecondUsd).toFixed(2) + " per second");
    }
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
    for (const badge of document.querySelectorAll(".vs-how")) {
      const how = (project.controls || {})[badge.dataset.control];
      badge.textContent = how || "";
      badge.hidden = !how;
      badge.classList.toggle("warn", how === "not used by this model");
      badge.title = how ? "How this reaches the model: " + how : "";
    }
    const frame = project.nextShot.startFrame;
    $("vs-frame-thumb").hidden = !frame;
    $("vs-frame-none").hidden = !!frame;
    $("vs-frame-clear").hidden = !frame;
    if (frame) setMedia($("vs-frame-thumb"), "src", "/api/media/" + encodeURIComponent(frame));
    updateLastFrameButton();
  }

  async function patch(field, value) {
    if (!project) return;
    const id = project.id;
    try {
      const view = await mm.apiJson(BASE + "/" + encodeURIComponent(id), { method: "PATCH", json: { [field]: value } });
      fieldError(field, "");
      if (project && project.id === id) show(view);
    } catch (e) {
      fieldError((e.body && e.body.field) || field, e.message);
      if (e.body && e.body.field && e.body.field !== field) fieldError(field, e.message);
    }
  }

  function valueOf(input) {
    if (input.type === "checkbox") return input.checked;
    if (input.dataset.number !== undefined) {
      if (input.value.trim() === "") return null;
      return input.step && Number.isInteger(Number(input.step)) && input.dataset.field === "seed"
        ? parseInt(input.value, 10) : Number(input.value);
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

  for (const input of controls()) {
    if (input.dataset.field === "model") continue;
    if (input.type === "checkbox") {
      input.addEventListener("change", () => schedule(input, 0));
    } else {
      input.addEventListener("input", () => {
        const out = $(input.id + "-out");
        if (out) out.textContent = Number(input.value).toFixed(2);
        schedule(input, DEBOUNCE_MS);
      });
    }
  }
  $("vs-model").addEventListener("change", () => patch("model", $("vs-model").value));
  $("vs-dice").addEventListener("click", () => {
    $("vs-seed").value = String(Math.floor(Math.random() * 2147483647));
    schedule($("vs-seed"), 0);
  });

  $("vs-frame-file").addEventListener("change", async () => {
    const file = $("vs-frame-file").files[0];
    if (!file) return;
    fieldError("start_frame", "");
    try {
      const form = new FormData();
      form.append("file", file);
      const asset = await mm.apiJson("/api/media", { method: "POST", body: form });
      await patch("start_frame", asset.id);
    } catch (e) {
      fieldError("start_frame", e.message);
    }
    $("vs-frame-file").value = "";
  });
  $("vs-frame-clear").addEventListener("click", () => patch("start_frame", null));
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

  $("vs-shot-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = $("vs-generate");
    $("vs-generate-error").textContent = "";
    for (const [field, timer] of timers) { // send what is still waiting first
      clearTimeout(timer);
      timers.delete(field);
      const input = document.querySelector('#vs-shot-form [data-field="' + field + '"]');
      if (input && valueOf(input) !== null) await patch(field, valueOf(input));
    }
    button.disabled = true;
    try {
      const key = "gen-" + project.id + "-" + Math.random().toString(36).slice(2, 10);
      const made = await mm.apiJson(BASE + "/" + pid() + "/generate", { method: "POST", headers: { "Idempotency-Key": key } });
      announce("Generating clip " + made.clip.id + ".");
      document.body.dispatchEvent(new CustomEvent("mm:jobs-changed"));
      await refresh();
    } catch (e) {
      $("vs-generate-error").textContent = e.message;
    } finally {
      button.disabled = false;
    }
  });

  // -- the timeline ----------------------------------------------------------------------------------
  function clips() { return project ? project.clips : []; }
  function selectedClip() { return clips().find((c) => c.id === project.selectedClipId) || null; }

  function length(clip) {
    const full = clip.durationS || clip.settings.durationS || 4;
    const out = clip.trimOutS === null || clip.trimOutS === undefined ? full : clip.trimOutS;
    return Math.max(0.5, out - (clip.trimInS || 0));
  }

  function pending(clip) {
    return !TERMINAL.has(clip.state) || (clip.state === "complete" && !clip.assetId);
  }

  function button(text, label, onClick, opts) {
    const b = el("button", Object.assign({ type: "button", className: "secondary vs-small", text, "aria-label": label, title: label }, opts || {}));
    b.addEventListener("click", onClick);
    return b;
  }

  function clipItem(clip, index, count) {
    const n = index + 1;
    const selected = clip.id === project.selectedClipId;
    const li = el("li", { className: "vs-clip" + (selected ? " selected" : ""), "data-clip": clip.id, "data-state": clip.state || "" });
    li.style.setProperty("--w", Math.round(length(clip) * PX_PER_S) + "px");
    const thumb = el("button", { type: "button", className: "vs-thumb", "aria-pressed": selected ? "true" : "false", "aria-label": "Select clip " + n });
    if (clip.posterUrl) {
      const img = el("img", { alt: "", loading: "lazy" });
      setMedia(img, "src", clip.posterUrl);
      thumb.append(img);
    } else {
      thumb.append(el("span", { className: "vs-thumb-text", text: clip.state || "waiting" }));
    }
    thumb.addEventListener("click", () => select(clip.id));
    li.append(thumb);

    const head = el("div", { className: "vs-clip-head" }, [
      el("span", { className: "vs-clip-n", text: "#" + n }),
      el("span", { className: "badge vs-state " + (clip.state || ""), text: clip.state || "…" }),
      el("span", { className: "small muted", text: length(clip).toFixed(1) + " s" }),
    ]);
    li.append(head);
    if (clip.settings && clip.settings.prompt) li.append(el("p", { className: "vs-clip-prompt small", text: clip.settings.prompt }));
    if (pending(clip)) {
      const bar = el("progress", { max: "100", "aria-label": "Progress of clip " + n });
      if (clip.progress !== null && clip.progress !== undefined) bar.value = clip.progress;
      const label = clip.progress === null || clip.progress === undefined ? (clip.state || "queued") : Math.round(clip.progress) + " %";
      li.append(el("div", { className: "vs-progress" }, [bar, el("span", { className: "vs-percent small", text: label })]));
    }
    if (clip.error && clip.state !== "complete") li.append(el("p", { className: "vs-clip-error small", text: clip.error }));

    const actions = el("div", { className: "vs-clip-actions" });
    actions.append(
      button("←", "Move clip " + n + " left", () => move(clip.id, -1), { disabled: index === 0 }),
      button("→", "Move clip " + n + " right", () => move(clip.id, 1), { disabled: index === count - 1 }),
      button("Duplicate", "Duplicate clip " + n, () => duplicate(clip.id)),
      button("Delete", "Delete clip " + n, () => remove(clip.id)),
    );
    if (clip.state === "failed" || clip.state === "cancelled") actions.append(button("Retry", "Retry clip " + n, () => retry(clip.id)));
    li.append(actions);

    if (clip.assetId) {
      const trims = el("div", { className: "vs-trims" });
      const max = clip.durationS || "";
      const tin = el("input", { type: "number", min: "0", max: String(max), step: "0.1", value: String(clip.trimInS || 0), "aria-label": "Trim in (s) of clip " + n, className: "vs-trim-in" });
      const tout = el("input", { type: "number", min: "0", max: String(max), step: "0.1", value: clip.trimOutS === null || clip.trimOutS === undefined ? "" : String(clip.trimOutS), placeholder: max ? String(max) : "end", "aria-label": "Trim out (s) of clip " + n, className: "vs-trim-out" });
      const err = el("p", { className: "vs-error vs-trim-error", "aria-live": "polite" });
      const send = () => trim(clip.id, tin.value, tout.value, err);
      tin.addEventListener("change", send);
      tout.addEventListener("change", send);
      trims.append(el("span", { className: "small muted", text: "Trim" }), tin, el("span", { className: "small muted", text: "to" }), tout, err);
      li.append(trims);
    }
    return li;
  }

  function renderTimeline(force) {
    const list = clips();
    const key = JSON.stringify([project.selectedClipId, list.map((c) => [c.id, c.state, c.progress, c.assetId, c.trimInS, c.trimOutS, c.error])]);
    if (!force && key === clipsKey) return;
    clipsKey = key;
    const focused = document.activeElement && document.activeElement.closest ? document.activeElement.closest(".vs-clip") : null;
    const focusLabel = focused && document.activeElement.getAttribute("aria-label");
    const focusClip = focused && focused.dataset.clip;
    const ol = $("vs-timeline");
    ol.replaceChildren(...list.map((c, i) => clipItem(c, i, list.length)));
    $("vs-timeline-empty").hidden = list.length > 0;
    const total = list.reduce((sum, c) => sum + length(c), 0);
    $("vs-timeline-total").textContent = list.length ? list.length + (list.length === 1 ? " clip · " : " clips · ") + total.toFixed(1) + " s" : "";
    if (focusClip) { // keep the keyboard where it was (the labels carry the clip's new number)
      const li = ol.querySelector('li[data-clip="' + CSS.escape(focusClip) + '"]');
      const same = li && [...li.querySelectorAll("button, input")].find((b) => b.getAttribute("aria-label") && b.getAttribute("aria-label").split(" ")[0] === (focusLabel || "").split(" ")[0] && !b.disabled);
      if (same) same.focus(); else if (li) li.querySelector(".vs-thumb").focus();
    }
    updateLastFrameButton();
  }

  function updateLastFrameButton() {
    const clip = project && selectedClip();
    $("vs-last-frame").disabled = !(clip && clip.assetId);
  }

  async function select(id) {
    if (!project || !id) return;
    project.selectedClipId = id;
    renderTimeline();
    loadPreview(clips().findIndex((c) => c.id === id), false);
    try {
      await mm.apiJson(BASE + "/" + pid(), { method: "PATCH", json: { selected_clip_id: id } });
    } catch (e) {
      mm.toast(e.message, "error");
    }
  }

  async function move(id, step) {
    const ids = clips().map((c) => c.id);
    const at = ids.indexOf(id);
    const to = at + step;
    if (at < 0 || to < 0 || to >= ids.length) return;
    [ids[at], ids[to]] = [ids[to], ids[at]];
    try {
      show(await mm.apiJson(BASE + "/" + pid() + "/order", { method: "PUT", json: { clip_ids: ids } }));
      announce("Clip moved to place " + (to + 1) + ".");
    } catch (e) {
      mm.toast(e.message, "error");
    }
  }

  async function duplicate(id) {
    try {
      const copy = await mm.apiJson(BASE + "/" + pid() + "/clips/" + encodeURIComponent(id) + "/duplicate", { method: "POST" });
      await refresh();
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
    try {
      await mm.apiJson(BASE + "/" + pid() + "/clips/" + encodeURIComponent(id), { method: "DELETE" });
      await refresh();
      announce("Clip deleted. Undo delete puts it back.");
      const rest = clips();
      if (rest.length && !rest.some((c) => c.id === project.selectedClipId)) select(rest[Math.min(at, rest.length - 1)].id);
    } catch (e) {
      mm.toast(e.message, "error");
    }
  }

  $("vs-undo").addEventListener("click", async () => {
    if (!project) return;
    try {
      const back = await mm.apiJson(BASE + "/" + pid() + "/clips/undo", { method: "POST" });
      await refresh();
      announce("Clip restored.");
      return back;
    } catch (e) {
      mm.toast(e.message, "error");
      return null;
    }
  });

  async function trim(id, tin, tout, err) {
    err.textContent = "";
    const body = { trim_in_s: tin.trim() === "" ? 0 : Number(tin), trim_out_s: tout.trim() === "" ? null : Number(tout) };
    try {
      await mm.apiJson(BASE + "/" + pid() + "/clips/" + encodeURIComponent(id), { method: "PATCH", json: body });
      await refresh();
    } catch (e) {
      err.textContent = e.message;
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

  // Keyboard on the timeline (and anywhere outside a form control): ← → choose, Delete removes, Space plays.
  document.addEventListener("keydown", (event) => {
    if (!project || event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
    const t = event.target;
    if (t.closest && t.closest("input, textarea, select, dialog, [contenteditable], video, .topbar")) return;
    const onButton = t.closest && t.closest("button, a, summary");
    const inTimeline = t.closest && t.closest("#vs-timeline");
    const list = clips();
    const at = list.findIndex((c) => c.id === project.selectedClipId);
    if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
      if (onButton && !inTimeline) return;
      if (!list.length) return;
      event.preventDefault();
      const next = event.key === "ArrowLeft" ? Math.max(0, at - 1) : Math.min(list.length - 1, at + 1);
      select(list[next < 0 ? 0 : next].id).then(() => {
        if (inTimeline) {
          const li = $("vs-timeline").querySelector('li[data-clip="' + CSS.escape(list[next < 0 ? 0 : next].id) + '"] .vs-thumb');
          if (li) li.focus();
        }
      });
    } else if (event.key === "Delete") {
      if (at < 0) return;
      event.preventDefault();
      remove(list[at].id);
    } else if (event.key === " " && !onButton) {
      event.preventDefault();
      togglePlay();
    }
  });

  // -- preview ---------------------------------------------------------------------------------------
  const video = $("vs-video");

  function playable() { return clips().filter((c) => c.videoUrl); }

  function loadPreview(index, autoplay) {
    const list = clips();
    const clip = list[index];
    if (!clip || !clip.videoUrl) return;
    play.index = index;
    video.dataset.clip = clip.id;
    setMedia(video, "poster", clip.posterUrl);
    setMedia(video, "src", clip.videoUrl);
    video.dataset.autoplay = autoplay ? "true" : "";
    $("vs-now-playing").textContent = "Clip " + (index + 1) + " of " + list.length;
  }

  function playNext() {
    const list = clips();
    for (let i = play.index + 1; i < list.length; i++) {
      if (list[i].videoUrl) { loadPreview(i, true); return; }
    }
    play.timeline = false;
    video.pause();
    $("vs-play").textContent = "Play timeline";
  }

  video.addEventListener("loadedmetadata", () => {
    const clip = clips()[play.index];
    if (clip && clip.trimInS) video.currentTime = clip.trimInS;
    if (video.dataset.autoplay === "true") video.play().catch(() => {});
  });
  video.addEventListener("timeupdate", () => {
    const clip = clips()[play.index];
    if (!clip || clip.id !== video.dataset.clip) return;
    if (clip.trimOutS !== null && clip.trimOutS !== undefined && video.currentTime >= clip.trimOutS) {
      if (play.timeline) playNext(); else video.pause();
    }
  });
  video.addEventListener("ended", () => { if (play.timeline) playNext(); });
  video.addEventListener("pause", () => { if (!play.timeline) $("vs-play").textContent = "Play timeline"; });

  function togglePlay() {
    if (!video.paused) { video.pause(); play.timeline = false; $("vs-play").textContent = "Play timeline"; return; }
    if (!playable().length) return;
    play.timeline = true;
    $("vs-play").textContent = "Pause";
    const at = clips().findIndex((c) => c.id === project.selectedClipId && c.videoUrl);
    if (video.dataset.clip && clips()[play.index] && clips()[play.index].id === video.dataset.clip && video.currentTime > 0) {
      video.play().catch(() => {});
    } else {
      loadPreview(at >= 0 ? at : clips().indexOf(playable()[0]), true);
    }
  }
  $("vs-play").addEventListener("click", togglePlay);

  // -- export ----------------------------------------------------------------------------------------
  $("vs-export").addEventListener("click", async () => {
    if (!project) return;
    const box = $("vs-export-box");
    const bar = $("vs-export-progress");
    const link = $("vs-download");
    box.hidden = false;
    link.hidden = true;
    bar.removeAttribute("value");
    $("vs-export-state").textContent = "starting";
    $("vs-export").disabled = true;
    try {
      let job = await mm.apiJson(BASE + "/" + pid() + "/export", { method: "POST" });
      document.body.dispatchEvent(new CustomEvent("mm:jobs-changed"));
      while (!TERMINAL.has(job.state)) {
        if (job.progress !== null && job.progress !== undefined) bar.value = job.progress;
        $("vs-export-state").textContent = job.state + (job.progress !== null && job.progress !== undefined ? " " + Math.round(job.progress) + " %" : "");
        await new Promise((resolve) => setTimeout(resolve, 500));
        job = await mm.apiJson("/api/jobs/" + encodeURIComponent(job.id));
      }
      if (job.state === "complete" && job.outputs.length) {
        bar.value = 100;
        $("vs-export-state").textContent = "complete";
        const output = job.outputs[0];
        link.href = output.url;
        link.setAttribute("download", (project.name || "film") + ".mp4");
        link.hidden = false;
        announce("The film is ready to download.");
      } else {
        $("vs-export-state").textContent = job.state + (job.error ? ": " + job.error : "");
      }
    } catch (e) {
      $("vs-export-state").textContent = e.message;
    } finally {
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
  function show(view, opts) {
    const fresh = !project || project.id !== view.id || (opts && opts.all);
    project = view;
    $("vs-work").hidden = false;
    $("vs-empty").hidden = true;
    renderShot();
    renderTimeline(fresh);
    if (fresh || play.index < 0 || !clips()[play.index] || clips()[play.index].id !== video.dataset.clip) {
      if (video.paused) {
        const at = clips().findIndex((c) => c.id === project.selectedClipId && c.videoUrl);
        if (at >= 0) loadPreview(at, false);
      }
    }
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
      // the studio is restarting: the next poll shows it
    }
  }

  // While a clip is still being made, ask for the project every second (its progress and poster).
  function watch() {
    if (pollTimer || !clips().some(pending)) return;
    pollTimer = setTimeout(async () => {
      pollTimer = null;
      await refresh();
    }, 1000);
  }

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
