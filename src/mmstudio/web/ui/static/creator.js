// mmstudio Creator Studio: describe a project, watch a model write it (which model is tried, failures
// and the fallback, the raw output), then browse the files as a tree with highlighted code, copy them
// or download a zip. Generated code is only ever text: set as textContent, or in the server's escaped
// fragment; never an iframe, never run.
// One file (about 730 lines) on purpose: no build step, and its parts (form, progress, result, history)
// share the page state; each part is a section below.
"use strict";

(function () {
  const POLL_MS = 1500;

  // -- small helpers -----------------------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);

  const { el } = window.mm; // DOM element builder (app.js)

  function sentence(text) {
    const t = String(text || "").trim();
    if (!t) return "The studio gave no reason.";
    const s = t[0].toUpperCase() + t.slice(1);
    return /[.!?…]$/.test(s) ? s : s + ".";
  }

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  function duration(ms) {
    if (ms === null || ms === undefined) return null;
    if (ms < 10) return ms.toFixed(1) + " ms";
    return Math.round(ms).toLocaleString("en-US") + " ms";
  }

  function size(bytes) {
    if (bytes < 1000) return bytes + " B";
    if (bytes < 1000000) return (bytes / 1000).toFixed(1) + " kB";
    return (bytes / 1000000).toFixed(1) + " MB";
  }

  function names(list) {
    if (list.length <= 1) return list.join("");
    return list.slice(0, -1).join(", ") + " and " + list[list.length - 1];
  }

  function announce(text) {
    const box = $("cr-announce");
    if (box) box.textContent = text;
  }

  function fire(name) {
    document.body.dispatchEvent(new CustomEvent(name));
  }

  // -- page state --------------------------------------------------------------------------------------
  // `run`: the generation this page is listening to. `shown`: the project in the result view.
  let run = null; // {controller, projectId, name, names: Map(model -> name), chars, files: Map(path -> file), ended}
  let shown = null;
  let poll = null;
  let selectedPath = null;
  let opening = 0; // the latest showProject() wins: an older answer arriving late is dropped

  function setBusy(busy) {
    const button = $("cr-generate");
    button.disabled = busy;
    button.textContent = busy ? "Generating…" : "Generate";
    $("cr-stop").hidden = !busy;
    $("cr-form").setAttribute("aria-busy", busy ? "true" : "false");
  }

  function stopPolling() {
    if (poll) { clearTimeout(poll); poll = null; }
  }

  function setShown(projectId) {
    shown = projectId;
    try {
      const url = projectId ? "/creator-studio?project=" + encodeURIComponent(projectId) : "/creator-studio";
      history.replaceState(null, "", url);
    } catch (e) { /* a sandboxed page may refuse; the view still works */ }
    for (const item of document.querySelectorAll("#cr-history .cr-history-item")) {
      const current = item.dataset.projectId === projectId;
      item.classList.toggle("is-current", current);
      const open = item.querySelector("[data-open]");
      if (open) { if (current) open.setAttribute("aria-current", "true"); else open.removeAttribute("aria-current"); }
    }
  }

  // -- the form ------------------------------------------------------------------------------------------
  function showFormError(message, details) {
    const box = $("cr-form-error");
    box.replaceChildren(el("p", { className: "cr-error-title", text: sentence(message) }));
    if (details) details(box);
    box.hidden = false;
  }

  function hideFormError() {
    const box = $("cr-form-error");
    box.hidden = true;
    box.replaceChildren();
  }

  function targetHint() {
    const select = $("cr-target");
    const option = select.options[select.selectedIndex];
    if (option) $("cr-target-hint").textContent = sentence(option.dataset.description || "");
  }

  function payload() {
    const model = $("cr-model") ? $("cr-model").value : "";
    const body = {
      projectName: $("cr-name").value.trim(),
      description: $("cr-description").value.trim(),
      framework: $("cr-framework").value,
      targetType: $("cr-target").value,
      stream: true,
    };
    if (model) body.model = model;
    return body;
  }

  function submit(event) {
    event.preventDefault();
    if ($("cr-generate").disabled) return;
    const form = $("cr-form");
    // Spaces only are not a name: the browser's `required` lets them through, the form does not.
    for (const id of ["cr-name", "cr-description"]) {
      const field = $(id);
      field.setCustomValidity(field.value.trim() || !field.value ? "" : "Write something here, not only spaces.");
    }
    if (!form.reportValidity()) return;
    hideFormError();
    generate(payload());
  }

  // -- progress --------------------------------------------------------------------------------------------
  const STATE_WORDS = { starting: "starting", generating: "generating", done: "done", failed: "failed", stopped: "stopped listening", lost: "connection lost" };

  const TITLES = { done: "Generated ", failed: "Could not generate ", stopped: "Stopped listening to ", lost: "Lost the connection to " };

  function setState(state, status) {
    if (run) $("cr-progress-title").textContent = (TITLES[state] || "Generating ") + run.name;
    const badge = $("cr-state");
    badge.dataset.state = state;
    badge.textContent = STATE_WORDS[state] || state;
    $("cr-progress").dataset.state = state;
    if (status !== undefined) $("cr-status").textContent = status;
  }

  function resetProgress(name) {
    const progress = $("cr-progress");
    progress.hidden = false;
    $("cr-progress-title").textContent = "Generating " + name;
    $("cr-attempts").replaceChildren();
    $("cr-plan").replaceChildren();
    $("cr-plan").hidden = true;
    $("cr-raw").textContent = "";
    $("cr-output-size").textContent = "";
    $("cr-error").hidden = true;
    $("cr-error").replaceChildren();
    counts();
    setState("starting", "Sending the request to the studio…");
  }

  function counts() {
    const chars = run ? run.chars : 0;
    const files = run ? run.files.size : 0;
    const box = $("cr-counts");
    box.dataset.chars = String(chars);
    box.dataset.files = String(files);
    box.textContent = chars.toLocaleString("en-US") + (chars === 1 ? " character" : " characters") + " · " + plural(files, "file") + " received";
    $("cr-output-size").textContent = chars ? plural(chars, "character") : "";
  }

  function attemptRow(data) {
    const name = data.modelName || data.model;
    const row = el("li", { className: "cr-attempt", "data-model": data.model, "data-outcome": "trying" }, [
      el("span", { className: "cr-attempt-name", text: name }),
      el("span", { className: "badge", text: data.kind || "model" }),
      el("span", { className: "badge accent", "data-role": "outcome", text: "trying" }),
      el("span", { className: "muted small", "data-role": "latency" }),
      el("span", { className: "cr-attempt-error small", "data-role": "error", hidden: true }),
    ]);
    $("cr-attempts").append(row);
    return row;
  }

  function lastRow(model) {
    const rows = Array.from($("cr-attempts").querySelectorAll(".cr-attempt")).filter((r) => r.dataset.model === model);
    return rows[rows.length - 1] || null;
  }

  function markRow(row, outcome, data) {
    row.dataset.outcome = outcome;
    const badge = row.querySelector('[data-role="outcome"]');
    badge.textContent = outcome === "ok" ? "answered" : outcome === "error" ? "failed" : outcome;
    badge.className = "badge " + (outcome === "ok" ? "ok" : outcome === "error" ? "danger" : "accent");
    const latency = data && duration(data.latencyMs);
    if (latency) row.querySelector('[data-role="latency"]').textContent = latency;
    if (data && data.error) {
      const error = row.querySelector('[data-role="error"]');
      error.textContent = sentence(data.error);
      error.hidden = false;
    }
  }

  // The order the models will be tried in, and the ones left out (offline, no key, cooling down).
  function onPlan(data) {
    const box = $("cr-plan");
    const candidates = data.candidates || [];
    const skipped = data.skipped || [];
    box.replaceChildren();
    for (const c of candidates) run.names.set(c.model, c.modelName || c.model);
    if (candidates.length > 1) {
      box.append(el("span", { text: "Order: " + candidates.map((c) => (c.modelName || c.model) + " (" + c.kind + ")").join(" → ") }));
    }
    if (skipped.length) {
      if (box.childNodes.length) box.append(el("br"));
      box.append(el("span", { text: "Skipped: " + skipped.map((s) => (run.names.get(s.model) || s.model) + " (" + s.reason + ")").join("; ") }));
    }
    box.hidden = !box.childNodes.length;
  }

  function onAttempt(data) {
    const name = data.modelName || data.model;
    run.names.set(data.model, name);
    attemptRow(data);
    const timeout = data.timeoutS ? ", up to " + Math.round(data.timeoutS) + " s" : "";
    const again = data.index > 1 || run.failed.length ? "Falling back: trying " : "Trying ";
    setState("generating", again + name + " (" + (data.kind || "model") + timeout + ")…");
    announce("Trying " + name + ".");
  }

  function onAttemptFailed(data) {
    const name = data.modelName || run.names.get(data.model) || data.model;
    run.failed.push(name);
    const row = lastRow(data.model) || attemptRow(data);
    markRow(row, "error", data);
    setState("generating", name + " failed: " + sentence(data.error) + " Trying the next model…");
    announce(name + " failed.");
  }

  function onText(data) {
    const piece = data.text || "";
    if (!piece) return;
    run.chars += piece.length;
    const raw = $("cr-raw");
    const atBottom = raw.scrollHeight - raw.scrollTop - raw.clientHeight < 24;
    raw.append(piece);
    if (atBottom) raw.scrollTop = raw.scrollHeight;
    counts();
  }

  function attemptsList(attempts) {
    const list = el("ol", { className: "cr-attempts" });
    for (const a of attempts || []) {
      const name = (run && run.names.get(a.model)) || a.modelName || a.model;
      list.append(el("li", { className: "cr-attempt", "data-outcome": a.outcome || "error" }, [
        el("span", { className: "cr-attempt-name", text: name }),
        a.model && a.model !== name ? el("span", { className: "muted small", text: a.model }) : "",
        el("span", { className: "badge " + (a.outcome === "ok" ? "ok" : "danger"), text: a.outcome === "ok" ? "answered" : "failed" }),
        duration(a.latencyMs) ? el("span", { className: "muted small", text: duration(a.latencyMs) }) : "",
        a.error ? el("span", { className: "cr-attempt-error small", text: sentence(a.error) + (a.kind && a.kind !== "local" && a.kind !== "cloud" ? " (" + a.kind + ")" : "") }) : "",
      ]));
    }
    return list;
  }

  // An error in words, with each model tried and why it failed, and where to fix it.
  // `listed`: the attempts are on show already (the live list), so they are not repeated.
  function errorDetails(body, listed) {
    return (box) => {
      const attempts = body && Array.isArray(body.attempts) && !listed ? body.attempts : [];
      if (attempts.length) {
        box.append(el("p", { className: "small cr-error-sub", text: "Models tried:" }), attemptsList(attempts));
      }
      const skipped = body && Array.isArray(body.skipped) ? body.skipped : [];
      if (skipped.length && !attempts.length && !listed) {
        const list = el("ul", { className: "cr-skipped-models small" });
        for (const s of skipped) list.append(el("li", { text: s.model + ": " + s.reason }));
        box.append(el("p", { className: "small cr-error-sub", text: "Models skipped:" }), list);
      }
      if (body && body.link) {
        const words = body.link === "/onboarding" ? "Set up a model" : "How to fix this";
        box.append(el("p", { className: "cr-error-link" }, [el("a", { href: body.link, text: words }), " and try again."]));
      }
    };
  }

  function onError(data) {
    run.ended = true;
    const box = $("cr-error");
    box.replaceChildren(el("p", { className: "cr-error-title" }, [el("strong", { text: "Generation failed: " }), sentence(data.message || data.error)]));
    errorDetails(data, $("cr-attempts").children.length > 0)(box);
    box.hidden = false;
    for (const row of $("cr-attempts").querySelectorAll('.cr-attempt[data-outcome="trying"]')) markRow(row, "error", null);
    setState("failed", "No model produced the project. It is kept in History as failed.");
    announce("Generation failed.");
    mm.toast("“" + run.name + "” could not be generated: see why under Progress.", "error");
    // What the model wrote before it failed is kept with the project; with no files there is no result.
    if (data.files && data.files.length && run.projectId) showProject(run.projectId, { quiet: true });
    else clearResult();
    fire("mm:codegen-changed");
  }

  function onDone(data) {
    run.ended = true;
    const row = lastRow(data.modelUsed);
    if (row) markRow(row, "ok", { latencyMs: null });
    const name = data.modelName || data.modelUsed || "the model";
    const failed = [];
    for (const a of data.attempts || []) {
      if (a.outcome !== "ok") {
        const who = run.names.get(a.model) || a.model;
        if (!failed.includes(who)) failed.push(who);
      }
    }
    const files = (data.files || []).length;
    let message = "Generated with " + name + " in " + Math.round(data.latencyMs || 0) + " ms";
    if (failed.length) message += " (after " + names(failed) + " failed)";
    setState("done", message + ": " + plural(files, "file") + ".");
    mm.toast(message, "ok");
    announce(message + ".");
    showProject(data.projectId, { quiet: true });
    fire("mm:codegen-changed");
  }

  // -- the stream ------------------------------------------------------------------------------------------
  async function generate(body) {
    stopListening();
    stopPolling();
    const controller = new AbortController();
    run = { controller, projectId: null, name: body.projectName, names: new Map(), failed: [], chars: 0, files: new Map(), ended: false };
    setBusy(true);
    resetProgress(body.projectName);
    clearResult();
    try {
      const response = await mm.api("/api/codegen", { method: "POST", json: body, signal: controller.signal });
      for await (const { event, data } of mm.events(response, controller.signal)) {
        if (!run || run.controller !== controller) return;
        handle(event, data);
      }
    } catch (e) {
      if (e && e.name === "AbortError") return;
      if (!run || run.controller !== controller) return;
      if (!run.projectId) {
        // Refused before anything started (bad input, rate limit, no model): nothing was stored.
        $("cr-progress").hidden = true;
        showFormError(e instanceof mm.ApiError ? e.message : "The request could not start. Is the studio still running?", errorDetails(e && e.body));
        return;
      }
    } finally {
      if (run && run.controller === controller) {
        setBusy(false);
        run.controller = null;
      }
    }
    if (run && run.projectId && !run.ended && !run.stopped) {
      setState("lost", "The connection to the studio was lost. The project goes on without this page; it is shown here when it ends.");
      follow(run.projectId, true);
    }
  }

  function handle(name, data) {
    if (name === "project") {
      run.projectId = data.projectId;
      run.name = data.name || run.name;
      setShown(data.projectId);
      setState("starting", "Project saved. Choosing a model…");
      streamingResult(data);
      fire("mm:codegen-changed");
      // On a phone the progress starts below the form: bring it into view.
      const progress = $("cr-progress");
      if (progress.getBoundingClientRect().top > window.innerHeight * 0.6) progress.scrollIntoView({ block: "start" });
    } else if (name === "plan") onPlan(data);
    else if (name === "attempt") onAttempt(data);
    else if (name === "attempt_failed") onAttemptFailed(data);
    else if (name === "text") onText(data);
    else if (name === "file") onFile(data);
    else if (name === "done") onDone(data);
    else if (name === "error") onError(data);
  }

  function stopListening() {
    if (run && run.controller) {
      run.controller.abort();
      run.controller = null;
    }
  }

  function stop() {
    if (!run || !run.controller) return;
    run.stopped = true;
    stopListening();
    setBusy(false);
    setState("stopped", "Stopped listening. The studio finishes this project on its own; it appears in History.");
    for (const row of $("cr-attempts").querySelectorAll('.cr-attempt[data-outcome="trying"]')) markRow(row, "not followed", null);
    announce("Stopped listening.");
    fire("mm:codegen-changed");
    if (run.projectId) watchUntilFinished(run.projectId);
  }

  // After "Stop": the history shows the project when it ends (the result view is left as it is). Its own
  // timer: a new generation or an opened project does not end this watch.
  function watchUntilFinished(projectId) {
    setTimeout(async () => {
      let project;
      try { project = await mm.apiJson("/api/codegen/projects/" + encodeURIComponent(projectId)); } catch (e) { return; }
      if (project.status === "generating") watchUntilFinished(projectId);
      else fire("mm:codegen-changed");
    }, POLL_MS);
  }

  // -- the result: a file tree and the files ----------------------------------------------------------------
  function clearResult() {
    const result = $("cr-result");
    opening++;
    result.hidden = true;
    result.replaceChildren();
    selectedPath = null;
  }

  // While streaming: the page builds what the server renders when it is done, with plain text.
  function streamingResult(project) {
    const result = $("cr-result");
    const article = el("article", { className: "cr-project", "data-project-id": project.projectId, "data-status": "generating" }, [
      el("header", { className: "cr-project-head" }, [
        el("div", { className: "cr-project-title" }, [
          el("h2", { id: "cr-result-title", tabindex: "-1", text: project.name || run.name }),
          el("p", { className: "cr-project-meta small" }, [
            el("span", { className: "badge warn", text: "generating" }),
            el("span", { className: "muted", text: "Files appear as soon as each is complete." }),
          ]),
        ]),
      ]),
      el("div", { className: "cr-files", hidden: true }, [
        el("nav", { className: "cr-tree", "aria-label": "Files of " + (project.name || run.name) }, [
          el("p", { className: "cr-tree-title small muted" }),
          el("ul", { className: "cr-tree-list cr-tree-root" }),
        ]),
        el("div", { className: "cr-viewer" }),
      ]),
    ]);
    result.replaceChildren(article);
    result.hidden = false;
  }

  function onFile(data) {
    if (!data.path) return;
    run.files.set(data.path, data);
    counts();
    const article = $("cr-result").querySelector('.cr-project[data-status="generating"]');
    if (!article) return;
    const viewer = article.querySelector(".cr-viewer");
    let panel = Array.from(viewer.children).find((p) => p.dataset.path === data.path);
    if (!panel) {
      panel = el("section", { className: "cr-file", "data-path": data.path, "aria-label": data.path, hidden: true }, [
        el("div", { className: "cr-file-bar" }, [
          el("span", { className: "cr-file-path", text: data.path }),
          el("span", { className: "badge", "data-role": "language" }),
          el("span", { className: "muted small cr-file-size" }),
          el("button", { type: "button", className: "cr-copy", "data-copy-file": true, "aria-label": "Copy " + data.path, text: "Copy" }),
        ]),
        el("pre", { className: "cr-code", tabindex: "0", "aria-label": "Code of " + data.path }, [el("code")]),
      ]);
      viewer.append(panel);
    }
    panel.querySelector('[data-role="language"]').textContent = data.language || "text";
    panel.querySelector(".cr-file-size").textContent = size(data.size !== undefined ? data.size : new Blob([data.content || ""]).size);
    panel.querySelector("code").textContent = data.content || "";
    const files = article.querySelector(".cr-files");
    files.hidden = false;
    renderTree(article, Array.from(run.files.keys()));
    article.querySelector(".cr-tree-title").textContent = plural(run.files.size, "file");
    select(article, selectedPath && run.files.has(selectedPath) ? selectedPath : run.files.keys().next().value);
  }

  // The same tree as the server's partial: folders first (collapsible), then files, both by name.
  function renderTree(article, paths) {
    const root = article.querySelector(".cr-tree-root");
    const closed = new Set(Array.from(root.querySelectorAll("details:not([open])")).map((d) => d.dataset.path));
    const tree = { folders: new Map(), files: [] };
    for (const path of paths) {
      const parts = path.split("/");
      let node = tree;
      for (let i = 0; i < parts.length - 1; i++) {
        if (!node.folders.has(parts[i])) node.folders.set(parts[i], { folders: new Map(), files: [], path: parts.slice(0, i + 1).join("/") });
        node = node.folders.get(parts[i]);
      }
      node.files.push(path);
    }
    const byName = (a, b) => a.toLowerCase().localeCompare(b.toLowerCase());
    function items(node) {
      const out = [];
      for (const name of Array.from(node.folders.keys()).sort(byName)) {
        const sub = node.folders.get(name);
        out.push(el("li", { className: "cr-dir" }, [
          el("details", { open: !closed.has(sub.path), "data-path": sub.path }, [
            el("summary", {}, [el("span", { className: "cr-dir-name", text: name })]),
            el("ul", { className: "cr-tree-list" }, items(sub)),
          ]),
        ]));
      }
      for (const path of node.files.sort(byName)) {
        out.push(el("li", { className: "cr-leaf" }, [
          el("button", { type: "button", className: "cr-file-link", "data-path": path, title: path, text: path.split("/").pop() }),
        ]));
      }
      return out;
    }
    root.replaceChildren(...items(tree));
  }

  function select(article, path) {
    if (!article || !path) return;
    selectedPath = path;
    for (const panel of article.querySelectorAll(".cr-file")) panel.hidden = panel.dataset.path !== path;
    for (const link of article.querySelectorAll(".cr-file-link")) {
      if (link.dataset.path === path) {
        link.setAttribute("aria-current", "true");
        // A file inside a closed folder is shown: open the folders on its way.
        for (let d = link.closest("details"); d; d = d.parentElement.closest("details")) d.open = true;
      } else link.removeAttribute("aria-current");
    }
  }

  // The stored project, rendered by the server (tree, highlighted files), into the result view.
  async function showProject(projectId, options) {
    const opts = options || {};
    const ticket = ++opening;
    let html;
    try {
      html = await (await mm.api("/api/ui/codegen/projects/" + encodeURIComponent(projectId))).text();
    } catch (e) {
      if (ticket !== opening) return false;
      if (!opts.quiet) mm.toast("That project could not be opened: " + sentence(e.message), "error");
      if (shown === projectId && !(run && run.projectId === projectId)) setShown(null);
      return false;
    }
    if (ticket !== opening) return false;
    if (run && run.controller && run.projectId !== projectId) return false; // a new generation began
    const result = $("cr-result");
    const keep = selectedPath;
    result.innerHTML = html; // server-rendered and escaped (Pygments' spans, Jinja's autoescape)
    result.hidden = false;
    const article = result.querySelector(".cr-project");
    if (!article) return false;
    setShown(projectId);
    // The file shown: the one chosen before, else the first the model wrote (usually its entry point).
    const paths = Array.from(article.querySelectorAll(".cr-file")).map((p) => p.dataset.path);
    select(article, paths.includes(keep) ? keep : paths[0]);
    stopPolling();
    if (article.dataset.status === "generating") {
      poll = setTimeout(() => { poll = null; follow(projectId, true); }, POLL_MS);
    }
    return true;
  }

  // A project that is still generating without this page listening: re-read it until it ends.
  async function follow(projectId, wasRunning) {
    const opened = await showProject(projectId, { quiet: true });
    if (!opened) return;
    const article = $("cr-result").querySelector(".cr-project");
    if (article && article.dataset.status !== "generating" && wasRunning) {
      if (run && run.projectId === projectId && !run.ended) {
        run.ended = true;
        setState(article.dataset.status === "complete" ? "done" : "failed", "The project ended while this page was not listening: " + article.dataset.status + ".");
      }
      fire("mm:codegen-changed");
    }
  }

  function openProject(projectId) {
    if (run && run.controller) {
      run.stopped = true;
      stopListening();
      setBusy(false);
    }
    $("cr-progress").hidden = true;
    stopPolling();
    selectedPath = null;
    showProject(projectId).then((opened) => {
      if (!opened) return;
      const title = $("cr-result-title");
      $("cr-result").scrollIntoView({ block: "start" });
      if (title) title.focus({ preventScroll: true });
      announce("Opened " + (title ? title.textContent : "the project") + ".");
    });
  }

  // -- copy and download ------------------------------------------------------------------------------------
  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      try { await navigator.clipboard.writeText(text); return true; } catch (e) { /* try the old way */ }
    }
    const area = el("textarea", { readonly: true, "aria-hidden": "true", className: "cr-copy-buffer" });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    area.remove();
    return ok;
  }

  async function copyFile(button) {
    const panel = button.closest(".cr-file");
    const code = panel && panel.querySelector("code");
    if (!code) return;
    const ok = await copyText(code.textContent);
    if (!ok) {
      mm.toast("Copying needs clipboard permission; select the code instead.", "error");
      return;
    }
    button.textContent = "Copied";
    button.dataset.copied = "true";
    announce("Copied " + panel.dataset.path + ".");
    setTimeout(() => { button.textContent = "Copy"; delete button.dataset.copied; }, 1500);
  }

  function filenameOf(response, fallback) {
    const header = response.headers.get("Content-Disposition") || "";
    const star = /filename\*=UTF-8''([^;]+)/i.exec(header);
    if (star) { try { return decodeURIComponent(star[1]); } catch (e) { /* the plain one below */ } }
    const plain = /filename="?([^";]+)"?/i.exec(header);
    return plain ? plain[1] : fallback;
  }

  // Through mm.api (fetch), so the gateway key goes along when keys are on; a plain link would not.
  async function download(button) {
    const old = button.textContent;
    button.disabled = true;
    button.textContent = "Preparing…";
    try {
      const response = await mm.api(button.dataset.zip);
      const blob = await response.blob();
      const url = URL.createObjectURL(blob);
      const link = el("a", { href: url, download: filenameOf(response, button.dataset.filename || "project.zip"), hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 30000);
    } catch (e) {
      mm.toast("The zip could not be downloaded: " + sentence(e.message), "error");
    } finally {
      button.disabled = false;
      button.textContent = old;
    }
  }

  // -- history ---------------------------------------------------------------------------------------------
  async function remove(button) {
    const projectId = button.dataset.delete;
    const name = button.dataset.name || "this project";
    if (!confirm(`Delete “${name}” and its files? This cannot be undone.`)) return;
    button.disabled = true;
    try {
      await mm.apiJson("/api/codegen/projects/" + encodeURIComponent(projectId), { method: "DELETE" });
    } catch (e) {
      button.disabled = false;
      mm.toast("“" + name + "” was not deleted: " + sentence(e.message), "error");
      return;
    }
    if (shown === projectId) {
      clearResult();
      $("cr-progress").hidden = true;
      setShown(null);
    }
    mm.toast("Deleted “" + name + "”.", "ok");
    announce("Deleted " + name + ".");
    fire("mm:codegen-changed");
  }

  // -- keyboard in the tree: the arrows move between the visible folders and files ------------------------------
  function treeKeys(event) {
    if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
    const tree = event.target.closest(".cr-tree");
    if (!tree) return;
    const stops = Array.from(tree.querySelectorAll("summary, .cr-file-link")).filter((n) => n.offsetParent !== null);
    const at = stops.indexOf(event.target);
    if (at < 0) return;
    const next = stops[at + (event.key === "ArrowDown" ? 1 : -1)];
    if (next) { event.preventDefault(); next.focus(); }
  }

  // -- wiring ----------------------------------------------------------------------------------------------
  function setup() {
    const form = $("cr-form");
    if (!form) return;
    form.addEventListener("submit", submit);
    for (const id of ["cr-name", "cr-description"]) $(id).addEventListener("input", () => $(id).setCustomValidity(""));
    $("cr-description").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); form.requestSubmit(); }
    });
    $("cr-target").addEventListener("change", targetHint);
    targetHint();
    $("cr-stop").addEventListener("click", stop);
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && run && run.controller && !document.querySelector("dialog[open]")) stop();
    });
    const result = $("cr-result");
    result.addEventListener("click", (event) => {
      const link = event.target.closest(".cr-file-link");
      if (link) { select(link.closest(".cr-project"), link.dataset.path); return; }
      const copy = event.target.closest("[data-copy-file]");
      if (copy) { copyFile(copy); return; }
      const zip = event.target.closest("[data-zip]");
      if (zip) download(zip);
    });
    result.addEventListener("keydown", treeKeys);
    $("cr-history").addEventListener("click", (event) => {
      const open = event.target.closest("[data-open]");
      if (open) { openProject(open.dataset.open); return; }
      const del = event.target.closest("[data-delete]");
      if (del) remove(del);
    });
    const wanted = new URLSearchParams(location.search).get("project");
    if (wanted) { shown = wanted; showProject(wanted); }
  }

  window.mmCreator = { current: () => shown };
  document.addEventListener("DOMContentLoaded", setup);
})();
