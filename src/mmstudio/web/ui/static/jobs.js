// mmstudio Jobs page: every job with its state, live progress, model, elapsed time, cost estimate,
// cancel and retry (asked first: a retry is a new paid submission), and the result playing inline.
// One connection (/api/jobs/events) keeps the whole list live. User and vendor text (prompts, errors,
// model names) is only ever set as textContent or attributes.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const { el } = window.mm;
  const KEY_STORE = "mmstudio-key";
  const TERMINAL = new Set(["complete", "failed", "cancelled"]);
  const list = $("jb-list");
  const PAGE = Number(list.dataset.pageSize || 50);

  const jobs = new Map(); // id -> the job as last seen
  let models = {}; // video model id -> {name, price, duration}
  let loaded = 0;
  let total = 0;

  function hasKey() {
    try { return !!localStorage.getItem(KEY_STORE); } catch (e) { return false; }
  }

  function announce(text) {
    $("jb-announce").textContent = text;
  }

  function clock(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + " min " + (s % 60) + " s";
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }

  function elapsed(job) {
    const end = job.finishedAt ? Date.parse(job.finishedAt) : Date.now();
    return clock(end - Date.parse(job.createdAt));
  }

  // Dollars for a video: the model's price per second times the seconds asked (or its first duration).
  function cost(job) {
    if (job.kind !== "video") return null;
    const info = models[job.model || job.plan[0]];
    if (!info || info.price === null || info.price === undefined) return null;
    const seconds = Number(job.request.duration_s) || info.duration;
    return seconds ? info.price * seconds : null;
  }

  function money(value) {
    return value === null ? "unknown" : "about $" + value.toFixed(2);
  }

  function modelName(id) {
    return (models[id] && models[id].name) || id;
  }

  // With gateway keys on, <video src> and <img src> cannot send the key: the bytes come through mm.api.
  function setMedia(node, attr, url) {
    if (!hasKey()) { node.setAttribute(attr, url); return; }
    mm.api(url).then((r) => r.blob()).then((blob) => node.setAttribute(attr, URL.createObjectURL(blob)))
      .catch(() => node.setAttribute("aria-label", "the result could not be loaded"));
  }

  // -- one job ---------------------------------------------------------------------------------------
  function notes(job) {
    const parts = [];
    for (const [field, change] of Object.entries((job.notes && job.notes.adjusted) || {})) {
      parts.push(field + " " + change.asked + " sent as " + change.sent);
    }
    const dropped = (job.notes && job.notes.dropped) || [];
    if (dropped.length) parts.push("not used by this model: " + dropped.join(", "));
    return parts.length ? "Fitted to the model: " + parts.join("; ") + "." : "";
  }

  function meta(term, value, className) {
    return el("div", {}, [el("dt", { text: term }), el("dd", { text: value, className: className || null })]);
  }

  function result(job) {
    const box = el("div", { className: "jb-result" });
    for (const output of job.outputs) {
      let media;
      if (job.kind === "video") {
        media = el("video", { controls: true, playsinline: true, preload: "metadata", "aria-label": "result of " + job.id });
        setMedia(media, "poster", output.posterUrl);
        setMedia(media, "src", output.url);
      } else {
        media = el("img", { alt: "result of " + job.id, loading: "lazy" });
        setMedia(media, "src", output.url);
      }
      const download = el("a", { href: output.url, download: output.id, className: "button secondary", text: "Download" });
      download.addEventListener("click", (event) => {
        if (!hasKey()) return;
        event.preventDefault(); // the key cannot ride on a plain link: fetch, then save
        mm.api(output.url).then((r) => r.blob()).then((blob) => {
          const link = el("a", { href: URL.createObjectURL(blob), download: output.id });
          link.click();
        }).catch((e) => mm.toast(e.message, "error"));
      });
      box.append(media, download);
    }
    return box;
  }

  function card(job) {
    const li = el("li", { className: "card jb-job", "data-job": job.id, "data-state": job.state });
    const model = job.model ? modelName(job.model) : job.plan.length ? modelName(job.plan[0]) + " (planned)" : "none";
    const main = el("div", { className: "jb-main" }, [
      el("h2", { className: "jb-title", text: String(job.request.prompt || job.id) }),
      el("dl", { className: "jb-meta" }, [
        meta("Kind", job.kind),
        meta("Model", model),
        meta("Elapsed", elapsed(job), "jb-elapsed"),
        meta("Cost", money(cost(job))),
        meta("Id", job.id),
      ]),
    ]);
    const actions = el("div", { className: "jb-actions" }, [
      el("span", { className: "badge jb-state " + job.state, text: job.cancelRequested && !TERMINAL.has(job.state) ? "cancelling" : job.state }),
    ]);
    if (!TERMINAL.has(job.state) && !job.cancelRequested) {
      const cancel = el("button", { type: "button", className: "secondary", text: "Cancel", "aria-label": "Cancel " + job.id });
      cancel.addEventListener("click", () => act(job, "cancel"));
      actions.append(cancel);
    }
    if (job.state === "failed" || job.state === "cancelled") {
      const retry = el("button", { type: "button", className: "secondary", text: "Retry", "aria-label": "Retry " + job.id });
      retry.addEventListener("click", () => askRetry(job));
      actions.append(retry);
    }
    li.append(main, actions);
    if (job.state !== "failed" && job.state !== "cancelled") {
      const percent = job.state === "complete" ? 100 : job.progress;
      const bar = el("progress", { max: "100", "aria-label": "Progress of " + job.id });
      if (percent !== null && percent !== undefined) bar.value = percent;
      const label = percent === null || percent === undefined
        ? (job.state === "queued" ? "queued" : "starting")
        : Math.round(percent) + " %" + (job.progressEstimated ? " (estimate)" : "");
      li.append(el("div", { className: "jb-progress" }, [bar, el("span", { className: "jb-percent", text: label })]));
    }
    const fitted = notes(job);
    if (fitted) li.append(el("p", { className: "jb-notes", text: fitted }));
    if (job.error && job.state !== "complete") li.append(el("p", { className: "jb-error", text: job.error }));
    if (job.outputs.length) li.append(result(job));
    return li;
  }

  function matches(job) {
    const kind = $("jb-kind").value;
    const state = $("jb-state").value;
    return (!kind || job.kind === kind) && (!state || job.state === state);
  }

  function row(id) {
    return list.querySelector('li[data-job="' + CSS.escape(id) + '"]');
  }

  function upsert(job, { fresh } = {}) {
    const before = jobs.get(job.id);
    if (before && before.updatedAt > job.updatedAt) return; // an older event after a newer one
    jobs.set(job.id, job);
    const existing = row(job.id);
    if (!matches(job)) {
      if (existing) { existing.remove(); total = Math.max(0, total - 1); }
    } else if (existing) {
      if (!before || before.updatedAt !== job.updatedAt || before.state !== job.state) existing.replaceWith(card(job));
    } else if (fresh) {
      list.prepend(card(job));
      total += 1;
    } else {
      list.append(card(job));
    }
    if (before && before.state !== job.state && TERMINAL.has(job.state)) {
      announce("Job " + job.id + " is " + job.state + ".");
    }
    summary();
  }

  function summary() {
    const shown = list.children.length;
    $("jb-empty").hidden = shown > 0;
    $("jb-total").textContent = total ? shown + " of " + total + " jobs" : "";
    $("jb-more").hidden = shown >= total;
  }

  // -- actions ---------------------------------------------------------------------------------------
  async function act(job, action, headers) {
    try {
      const changed = await mm.apiJson("/api/jobs/" + encodeURIComponent(job.id) + "/" + action, { method: "POST", headers });
      upsert(changed, { fresh: action === "retry" });
      document.body.dispatchEvent(new CustomEvent("mm:jobs-changed"));
      mm.toast(action === "retry" ? "Submitted again as " + changed.id + "." : "Cancel asked for " + job.id + ".", "ok");
    } catch (e) {
      mm.toast(e.message, "error");
    }
  }

  function askRetry(job) {
    const dialog = $("jb-retry-dialog");
    const where = job.provider || (job.plan[0] || "").split("/")[0] || "the vendor";
    const price = cost(job);
    $("jb-retry-text").textContent =
      "This sends the same " + job.kind + " to " + where + " again: a second submission, which the vendor bills again" +
      (price !== null ? " (" + money(price) + ")" : "") + ". The " + job.state + " job stays as it is.";
    dialog.returnValue = "";
    dialog.addEventListener("close", function done() {
      dialog.removeEventListener("close", done);
      if (dialog.returnValue !== "retry") return;
      const key = "retry-" + job.id + "-" + Math.random().toString(36).slice(2, 10);
      act(job, "retry", { "Idempotency-Key": key });
    });
    dialog.showModal();
    $("jb-retry-confirm").focus();
  }

  // -- loading and following -------------------------------------------------------------------------
  async function load(more) {
    const params = new URLSearchParams({ limit: String(PAGE), offset: String(more ? loaded : 0) });
    if ($("jb-kind").value) params.set("kind", $("jb-kind").value);
    if ($("jb-state").value) params.set("state", $("jb-state").value);
    try {
      const page = await mm.apiJson("/api/jobs?" + params);
      if (!more) { list.replaceChildren(); loaded = 0; }
      total = page.total;
      loaded += page.items.length;
      for (const job of page.items) { jobs.delete(job.id); upsert(job); }
      summary();
    } catch (e) {
      mm.toast(e.message, "error");
    }
  }

  async function loadModels() {
    try {
      const body = await mm.apiJson("/api/videos/models");
      for (const m of body.models) {
        models[m.id] = { name: m.name, price: m.capabilities.pricePerSecondUsd, duration: m.capabilities.durations[0] || null };
      }
    } catch (e) {
      models = {};
    }
  }

  async function follow() {
    for (;;) {
      try {
        const response = await mm.api("/api/jobs/events");
        for await (const { event, data } of mm.events(response)) {
          if (event !== "job") continue;
          upsert(data, { fresh: !jobs.has(data.id) });
          document.body.dispatchEvent(new CustomEvent("mm:jobs-changed"));
        }
      } catch (e) {
        // the studio restarted or the network dropped: reconnect below, then catch up
      }
      await new Promise((resolve) => setTimeout(resolve, 2000));
      await load(false);
    }
  }

  function tick() {
    for (const li of list.querySelectorAll("li[data-job]")) {
      const job = jobs.get(li.dataset.job);
      if (job && !TERMINAL.has(job.state)) li.querySelector(".jb-elapsed").textContent = elapsed(job);
    }
  }

  $("jb-kind").addEventListener("change", () => load(false));
  $("jb-state").addEventListener("change", () => load(false));
  $("jb-more").addEventListener("click", () => load(true));
  $("jb-filters").addEventListener("submit", (event) => event.preventDefault());
  setInterval(tick, 1000);
  loadModels().then(() => load(false)).then(() => { list.dataset.ready = "true"; follow(); });
})();
