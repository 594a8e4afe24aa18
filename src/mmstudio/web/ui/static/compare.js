// mmstudio compare page: pick 2-4 models, stream their answers side by side, vote, see the leaderboard.
// One file (about 480 lines) on purpose: no build step, and its parts (picker, arena, stored runs,
// votes) share the page state; each part is a section below.
"use strict";

(function () {
  const MIN = 2;
  const MAX = 4;
  const LETTERS = "ABCD";
  const PICK_STORE = "mmstudio-compare-models";
  const POLL_MS = 1500;

  const { readSse } = window.mm; // the shared event-stream reader (app.js)

  // -- small helpers -----------------------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);

  const { el } = window.mm; // DOM element builder (app.js)

  function duration(ms) {
    if (ms === null || ms === undefined) return null;
    if (ms < 10) return ms.toFixed(1) + " ms";
    if (ms < 1000) return Math.round(ms) + " ms";
    return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
  }

  function sentence(text) {
    const t = String(text || "").trim();
    if (!t) return "The model could not answer.";
    const s = t[0].toUpperCase() + t.slice(1);
    return /[.!?]$/.test(s) ? s : s + ".";
  }

  function announce(text) {
    const box = $("cmp-announce");
    if (box) box.textContent = text;
  }

  function fire(name) {
    document.body.dispatchEvent(new CustomEvent(name));
  }

  // -- the model picker ----------------------------------------------------------------------------------
  function boxes() {
    return Array.from(document.querySelectorAll('#cmp-models input[name="models"]'));
  }

  function chosen() {
    return boxes().filter((b) => b.checked && !b.disabled);
  }

  function nameOf(modelId) {
    const box = boxes().find((b) => b.value === modelId);
    return box ? box.dataset.name : modelId;
  }

  function savePick() {
    try { localStorage.setItem(PICK_STORE, JSON.stringify(chosen().map((b) => b.value))); } catch (e) {}
  }

  function restorePick() {
    const usable = boxes().filter((b) => !b.disabled);
    let saved = null;
    try { saved = JSON.parse(localStorage.getItem(PICK_STORE) || "null"); } catch (e) { saved = null; }
    if (Array.isArray(saved)) {
      for (const box of usable) box.checked = saved.includes(box.value);
    } else {
      // First visit: the first two healthy models, so one prompt is all it takes.
      const healthy = usable.filter((b) => b.parentElement.querySelector('[data-status="healthy"]'));
      for (const box of (healthy.length >= MIN ? healthy : usable).slice(0, MIN)) box.checked = true;
    }
    updateCount();
  }

  function countProblem(n) {
    if (n < MIN) {
      return n === 0
        ? "Choose at least 2 models: a comparison puts 2 to 4 answers side by side."
        : "Choose at least one more model: a comparison needs 2 to 4 models.";
    }
    if (n > MAX) return "Choose at most 4 models: uncheck " + (n - MAX) + " to compare up to 4 at once.";
    return null;
  }

  function updateCount() {
    const count = $("cmp-count");
    if (!count) return;
    const n = chosen().length;
    const problem = countProblem(n);
    count.dataset.valid = problem ? "false" : "true";
    if (n === 0) count.textContent = "Choose 2 to 4 models to compare.";
    else if (n < MIN) count.textContent = "1 model chosen: choose at least one more.";
    else if (n > MAX) count.textContent = n + " models chosen: at most 4 can be compared at once.";
    else count.textContent = n + " models chosen.";
    if (!problem) hideFormError();
  }

  function showFormError(message, focus) {
    const box = $("cmp-form-error");
    box.textContent = message;
    box.hidden = false;
    if (focus) focus.focus();
  }

  function hideFormError() {
    const box = $("cmp-form-error");
    if (box) { box.hidden = true; box.textContent = ""; }
  }

  // -- the arena -------------------------------------------------------------------------------------------
  let markPickerReady;
  const pickerReady = new Promise((resolve) => { markPickerReady = resolve; });
  let current = null; // {id, controller, sides: Map(side -> {...}), complete, models}
  let poll = null;

  function stopListening() {
    if (poll) { clearTimeout(poll); poll = null; }
    if (current && current.controller) current.controller.abort();
  }

  function setBusy(busy) {
    const button = $("cmp-run");
    button.disabled = busy;
    button.textContent = busy ? "Running…" : "Run";
    $("cmp-form").setAttribute("aria-busy", busy ? "true" : "false");
  }

  const STATUS_WORDS = { waiting: "waiting", streaming: "streaming", done: "done", error: "error", interrupted: "interrupted" };

  function buildSides(sides, prompt) {
    const holder = $("cmp-sides");
    holder.replaceChildren();
    holder.dataset.count = String(sides.length);
    $("cmp-prompt-echo").textContent = prompt;
    $("cmp-arena").hidden = false;
    $("cmp-stream-error").hidden = true;
    $("cmp-vote").hidden = true;
    $("cmp-vote-status").textContent = "";
    const map = new Map();
    for (const { side, model } of sides) {
      const letter = LETTERS[side] || String(side + 1);
      const nameId = "cmp-side-" + side + "-name";
      const status = el("span", { className: "badge cmp-status", "data-role": "status", text: "waiting" });
      const text = document.createTextNode("");
      const textBox = el("div", { className: "cmp-text" }, [text]);
      const body = el("div", { className: "cmp-body", "data-role": "body", tabindex: "0", "aria-label": "Answer " + letter }, [textBox]);
      const error = el("div", { className: "error-box cmp-error", "data-role": "error", hidden: true });
      const meta = el("div", { className: "cmp-meta muted small", "data-role": "meta" });
      const column = el("article", { className: "cmp-side", "data-side": String(side), "data-model": model, "data-status": "waiting", "aria-labelledby": nameId }, [
        el("header", { className: "cmp-side-head" }, [
          el("span", { className: "cmp-letter", "aria-hidden": "true", text: letter }),
          el("div", { className: "cmp-side-title" }, [
            el("h3", { className: "cmp-side-name", id: nameId, text: nameOf(model) }),
            el("span", { className: "cmp-side-id muted small", text: model }),
          ]),
          status,
        ]),
        error,
        body,
        meta,
      ]);
      holder.append(column);
      map.set(side, { side, model, letter, column, status, text, textBox, body, error, meta, state: "waiting" });
    }
    return map;
  }

  function setState(entry, state) {
    entry.state = state;
    entry.column.dataset.status = state;
    entry.status.textContent = STATUS_WORDS[state] || state;
    entry.body.setAttribute("aria-busy", state === "streaming" || state === "waiting" ? "true" : "false");
  }

  function appendText(entry, piece) {
    const body = entry.body;
    const atBottom = body.scrollHeight - body.scrollTop - body.clientHeight < 24;
    entry.text.appendData(piece);
    if (atBottom) body.scrollTop = body.scrollHeight;
  }

  function showMeta(entry, info) {
    const parts = [];
    const total = duration(info.latencyMs);
    if (total) parts.push(total);
    const first = duration(info.timeToFirstTokenMs);
    if (first) parts.push("first token " + first);
    if (info.outputTokens !== null && info.outputTokens !== undefined) parts.push(info.outputTokens + " tokens");
    entry.meta.textContent = parts.join(" · ");
  }

  function showError(entry, message, status) {
    setState(entry, status === "interrupted" ? "interrupted" : "error");
    entry.error.textContent = (status === "interrupted" ? "Stopped: " : "Could not answer: ") + sentence(message);
    entry.error.hidden = false;
  }

  // Swap a finished side's plain text for the server's rendered Markdown (when it is still shown).
  async function renderSides(runId, side) {
    const query = side === undefined ? "" : "?side=" + side;
    let html;
    try {
      html = await (await mm.api("/api/ui/compare/runs/" + encodeURIComponent(runId) + "/answers" + query)).text();
    } catch (e) {
      return; // the plain text stays: nothing is lost
    }
    if (!current || current.id !== runId) return;
    const holder = document.createElement("div");
    holder.innerHTML = html;
    for (const template of holder.querySelectorAll("template[data-side]")) {
      const entry = current.sides.get(Number(template.dataset.side));
      if (!entry || entry.state === "streaming" || entry.state === "waiting") continue;
      if (!template.content.childNodes.length) continue;
      entry.textBox.replaceChildren(template.content.cloneNode(true));
      entry.column.dataset.rendered = "true";
    }
  }

  function handle(name, data) {
    if (name === "run") {
      current.id = data.id;
      current.models = data.models;
      current.sides = buildSides(data.sides, data.prompt);
      try { history.replaceState(null, "", "/compare?run=" + encodeURIComponent(data.id)); } catch (e) {}
      announce("Asking " + data.sides.length + " models.");
      // On a phone the answers start below the form: bring them into view.
      const arena = $("cmp-arena");
      if (arena.getBoundingClientRect().top > window.innerHeight * 0.6) arena.scrollIntoView({ block: "start" });
      return;
    }
    if (!current.sides) return;
    if (name === "complete") {
      current.complete = true;
      for (const answer of data.answers || []) {
        const entry = current.sides.get(answer.side);
        if (entry && (entry.state === "waiting" || entry.state === "streaming")) {
          if (answer.status === "complete") setState(entry, "done");
          else showError(entry, answer.error, answer.status);
          showMeta(entry, answer);
        }
      }
      showVote(current.id, current.models, null);
      announce("All answers are in. Vote for the better one.");
      fire("mm:compare-changed");
      return;
    }
    const entry = current.sides.get(data.side);
    if (!entry) return;
    if (name === "start") setState(entry, "streaming");
    else if (name === "delta") {
      if (entry.state === "waiting") setState(entry, "streaming");
      appendText(entry, data.text || "");
    } else if (name === "done") {
      setState(entry, "done");
      showMeta(entry, data);
      announce(nameOf(entry.model) + " finished" + (data.latencyMs ? " in " + duration(data.latencyMs) : "") + ".");
      renderSides(current.id, entry.side);
    } else if (name === "error") {
      showError(entry, data.message, data.status);
      announce(nameOf(entry.model) + " could not answer.");
      if (entry.text.length) renderSides(current.id, entry.side);
    }
  }

  async function run(prompt, models) {
    stopListening();
    const controller = new AbortController();
    current = { id: null, controller, sides: null, complete: false, models };
    setBusy(true);
    fire("mm:compare-started");
    try {
      const response = await mm.api("/api/chat/ui/compare", { method: "POST", json: { prompt, models }, signal: controller.signal });
      await readSse(response.body, (name, raw) => {
        let data;
        try { data = JSON.parse(raw); } catch (e) { return; } // a garbled frame must not end the run
        if (current && current.controller === controller) handle(name, data);
      });
    } catch (e) {
      if (e && e.name === "AbortError") return;
      if (!current || current.controller !== controller) return;
      if (!current.id) {
        showFormError(e instanceof mm.ApiError ? sentence(e.message) : "The comparison could not start. Is the studio still running?");
        return;
      }
    } finally {
      if (current && current.controller === controller) {
        setBusy(false);
        current.controller = null;
      }
    }
    if (current && current.id && !current.complete) {
      // The stream ended early (a proxy, a restart). The run is the server's: read it from there.
      const box = $("cmp-stream-error");
      box.textContent = "The connection to the studio was lost while the answers streamed. The run goes on without this page; it is shown here when it ends.";
      box.hidden = false;
      followStored(current.id, true);
    }
  }

  // -- a stored run (recent runs, ?run=, a lost stream) ---------------------------------------------------------
  function showStored(run) {
    const keep = current && current.id === run.id && current.sides ? current.sides : null;
    if (!keep) {
      current = { id: run.id, controller: null, sides: null, complete: false, models: run.models };
      current.sides = buildSides(run.answers.map((a) => ({ side: a.side, model: a.model })), run.prompt);
    }
    for (const answer of run.answers) {
      const entry = current.sides.get(answer.side);
      if (!entry) continue;
      if (entry.text.data !== (answer.text || "")) {
        entry.textBox.replaceChildren(entry.text);
        entry.text.data = answer.text || "";
      }
      if (answer.status === "complete") setState(entry, "done");
      else if (answer.status === "error" || answer.status === "interrupted") showError(entry, answer.error, answer.status);
      else setState(entry, answer.status === "pending" ? "waiting" : "streaming");
      showMeta(entry, answer);
    }
    if (run.finished) {
      current.complete = true;
      $("cmp-stream-error").hidden = true;
      showVote(run.id, run.models, run.vote ? run.vote.winner : null);
      renderSides(run.id);
    }
    return run.finished;
  }

  async function followStored(runId, wasRunning) {
    if (poll) { clearTimeout(poll); poll = null; }
    await pickerReady; // the columns are headed by the models' names, which the picker knows
    let run;
    try {
      run = await mm.apiJson("/api/chat/ui/compare/" + encodeURIComponent(runId));
    } catch (e) {
      mm.toast(e.message || "That run could not be read.", "error");
      return;
    }
    if (current && current.id && current.id !== runId && current.controller) return; // a new run began
    const finished = showStored(run);
    if (!finished) {
      poll = setTimeout(() => followStored(runId, true), POLL_MS);
    } else if (wasRunning) {
      fire("mm:compare-changed");
    }
  }

  function openRun(runId) {
    stopListening();
    setBusy(false);
    current = null;
    try { history.replaceState(null, "", "/compare?run=" + encodeURIComponent(runId)); } catch (e) {}
    followStored(runId).then(() => {
      const arena = $("cmp-arena");
      if (!arena.hidden) arena.scrollIntoView({ block: "start" });
    });
  }

  // -- voting ----------------------------------------------------------------------------------------------
  function verdictWords(winner) {
    if (winner === "tie") return "a tie";
    if (winner === "both_bad") return "both bad";
    return nameOf(winner) + " is better";
  }

  function showVote(runId, models, winner) {
    const box = $("cmp-vote");
    const buttons = $("cmp-vote-buttons");
    buttons.replaceChildren();
    const choices = models.map((model, side) => ({
      winner: model,
      letter: LETTERS[side],
      label: nameOf(model) + " is better",
    }));
    choices.push({ winner: "tie", label: "Tie" }, { winner: "both_bad", label: "Both bad" });
    for (const choice of choices) {
      const button = el("button", { type: "button", className: "cmp-vote-button", "data-winner": choice.winner, "aria-pressed": choice.winner === winner ? "true" : "false" }, [
        choice.letter ? el("span", { className: "cmp-letter", "aria-hidden": "true", text: choice.letter }) : "",
        el("span", { text: choice.label }),
      ]);
      button.addEventListener("click", () => vote(runId, choice.winner));
      buttons.append(button);
    }
    const status = $("cmp-vote-status");
    status.dataset.kind = winner ? "ok" : "";
    status.textContent = winner ? "Your vote: " + verdictWords(winner) + ". Vote again to change it." : "";
    box.hidden = false;
  }

  async function vote(runId, winner) {
    const buttons = Array.from(document.querySelectorAll("#cmp-vote-buttons button"));
    const status = $("cmp-vote-status");
    buttons.forEach((b) => { b.disabled = true; });
    status.dataset.kind = "";
    status.textContent = "Sending your vote…";
    try {
      await mm.apiJson("/api/chat/ui/compare/" + encodeURIComponent(runId) + "/vote", { method: "POST", json: { winner } });
      buttons.forEach((b) => b.setAttribute("aria-pressed", b.dataset.winner === winner ? "true" : "false"));
      status.dataset.kind = "ok";
      status.textContent = "Vote recorded: " + verdictWords(winner) + ". The leaderboard is updated.";
      fire("mm:compare-voted");
      fire("mm:compare-changed");
    } catch (e) {
      status.dataset.kind = "error";
      status.textContent = "Your vote was not recorded: " + sentence(e.message);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  // -- wiring --------------------------------------------------------------------------------------------
  function submit(event) {
    if (event) event.preventDefault();
    if ($("cmp-run").disabled) return;
    const models = chosen();
    const problem = countProblem(models.length);
    if (problem) {
      showFormError(problem, models.length ? null : boxes().find((b) => !b.disabled) || null);
      return;
    }
    const prompt = $("cmp-prompt").value;
    if (!prompt.trim()) {
      showFormError("Write a prompt for the models to answer.", $("cmp-prompt"));
      return;
    }
    hideFormError();
    savePick();
    run(prompt, models.map((b) => b.value));
  }

  function setup() {
    const form = $("cmp-form");
    if (!form) return;
    form.addEventListener("submit", submit);
    $("cmp-prompt").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) submit(event);
    });
    $("cmp-models").addEventListener("change", () => { updateCount(); savePick(); });
    document.body.addEventListener("htmx:afterSwap", (event) => {
      if (event.detail.target && event.detail.target.id === "cmp-models") { restorePick(); markPickerReady(); }
    });
    for (const failed of ["htmx:responseError", "htmx:sendError"]) {
      document.body.addEventListener(failed, (event) => {
        if (event.detail.elt && event.detail.elt.id === "cmp-models") markPickerReady();
      });
    }
    if (!document.querySelector("#cmp-models [data-loading]")) { restorePick(); markPickerReady(); } // swapped before this ran
    $("cmp-runs").addEventListener("click", (event) => {
      const button = event.target.closest("[data-run-id]");
      if (button) openRun(button.dataset.runId);
    });
    const wanted = new URLSearchParams(location.search).get("run");
    if (wanted) followStored(wanted);
  }

  document.addEventListener("DOMContentLoaded", setup);
})();
