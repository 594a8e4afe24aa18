// mmstudio: what every page shares. Theme, gateway key, API calls, toasts, the header's switcher.
"use strict";

(function () {
  const KEY_STORE = "mmstudio-key";
  const THEME_STORE = "mmstudio-theme";

  function storedKey() {
    try { return localStorage.getItem(KEY_STORE); } catch (e) { return null; }
  }

  // -- toasts --------------------------------------------------------------------------------------
  function toast(message, kind, ms) {
    const box = document.getElementById("toasts");
    if (!box) return;
    const item = document.createElement("div");
    item.className = "toast " + (kind || "");
    item.setAttribute("role", kind === "error" ? "alert" : "status");
    item.textContent = message;
    box.appendChild(item);
    setTimeout(() => item.remove(), ms || (kind === "error" ? 9000 : 4500));
  }

  // -- errors in words -----------------------------------------------------------------------------
  // The API's errors are JSON: {"error": ..., "message": ...} (studio) or {"error": {"message"}} (OpenAI).
  function messageOf(body, status) {
    if (body && typeof body === "object") {
      if (typeof body.message === "string" && body.message) return body.message;
      if (body.error && typeof body.error === "object" && body.error.message) return body.error.message;
      if (typeof body.detail === "string") return body.detail;
      if (Array.isArray(body.detail) && body.detail.length) {
        const d = body.detail[0];
        return (d.loc ? d.loc.filter((p) => p !== "body").join(".") + ": " : "") + d.msg;
      }
      if (typeof body.error === "string") return body.error;
    }
    if (status === 0) return "The studio is not answering. Is `mmstudio serve` still running?";
    if (status >= 500) return "The studio hit an internal error (HTTP " + status + "). Try again; the server log has details.";
    return "The request failed (HTTP " + status + ").";
  }

  async function readError(response) {
    let body = null;
    try { body = await response.clone().json(); } catch (e) {
      try { body = { message: (await response.text()).slice(0, 300) }; } catch (e2) { body = null; }
    }
    return messageOf(body, response.status);
  }

  class ApiError extends Error {
    constructor(message, status, body) { super(message); this.status = status; this.body = body; }
  }

  // -- gateway key ---------------------------------------------------------------------------------
  let asking = null;
  function askForKey() {
    if (asking) return asking;
    const dialog = document.getElementById("key-dialog");
    if (!dialog || !dialog.showModal) return Promise.resolve(null);
    asking = new Promise((resolve) => {
      dialog.addEventListener("close", function done() {
        dialog.removeEventListener("close", done);
        asking = null;
        const value = dialog.returnValue === "save" ? document.getElementById("key-input").value.trim() : "";
        if (value) { try { localStorage.setItem(KEY_STORE, value); } catch (e) {} }
        resolve(value || null);
      });
      dialog.showModal();
    });
    return asking;
  }

  function withKey(headers) {
    const key = storedKey();
    const result = new Headers(headers || {});
    if (key && !result.has("Authorization")) result.set("Authorization", "Bearer " + key);
    return result;
  }

  // fetch() for /api: adds the key, asks for one on 401 and retries once, throws ApiError with the
  // server's own words on any other failure. `json` is sent as a JSON body.
  async function api(path, options) {
    const opts = Object.assign({}, options || {});
    if (opts.json !== undefined) {
      opts.body = JSON.stringify(opts.json);
      opts.headers = Object.assign({ "Content-Type": "application/json" }, opts.headers || {});
      delete opts.json;
    }
    for (let attempt = 0; attempt < 2; attempt++) {
      let response;
      try {
        response = await fetch(path, Object.assign({}, opts, { headers: withKey(opts.headers) }));
      } catch (e) {
        if (e && e.name === "AbortError") throw e;
        throw new ApiError(messageOf(null, 0), 0, null);
      }
      if (response.status === 401 && attempt === 0 && (await askForKey())) continue;
      if (!response.ok) {
        let body = null;
        try { body = await response.clone().json(); } catch (e) { body = null; }
        throw new ApiError(await readError(response), response.status, body);
      }
      return response;
    }
    throw new ApiError("A gateway key is needed.", 401, null);
  }

  async function apiJson(path, options) {
    const response = await api(path, options);
    return response.status === 204 ? null : response.json();
  }

  // -- server-sent events over fetch ---------------------------------------------------------------
  // EventSource only does GET, so the POST's body is read here. Events end at a blank line; a chunk
  // may end anywhere (mid-line, between \r and \n); `data:` may span several lines.
  class SseParser {
    constructor(onEvent) {
      this.onEvent = onEvent;
      this.buffer = "";
      this.reset();
    }

    reset() {
      this.event = "";
      this.data = [];
    }

    push(text) {
      this.buffer += text;
      let start = 0;
      for (;;) {
        const cr = this.buffer.indexOf("\r", start);
        const lf = this.buffer.indexOf("\n", start);
        let end = cr < 0 ? lf : lf < 0 ? cr : Math.min(cr, lf);
        if (end < 0) break;
        let next = end + 1;
        if (this.buffer[end] === "\r") {
          // A \r at the very end may be the first half of \r\n: wait for the next chunk.
          if (end === this.buffer.length - 1) break;
          if (this.buffer[end + 1] === "\n") next = end + 2;
        }
        this.line(this.buffer.slice(start, end));
        start = next;
      }
      this.buffer = this.buffer.slice(start);
    }

    end() {
      // A stream cut without its final blank line: what was whole is still told.
      if (this.buffer) this.line(this.buffer.replace(/\r$/, ""));
      this.buffer = "";
      this.line("");
    }

    line(line) {
      if (line === "") {
        if (this.data.length) this.onEvent(this.event || "message", this.data.join("\n"));
        this.reset();
        return;
      }
      if (line[0] === ":") return; // a comment (keep-alive)
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value[0] === " ") value = value.slice(1);
      if (field === "event") this.event = value;
      else if (field === "data") this.data.push(value);
    }
  }

  // Read a fetch body (a ReadableStream of bytes) as events; bytes of one character may be split too.
  async function readSse(body, onEvent) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    const parser = new SseParser(onEvent);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.push(decoder.decode(value, { stream: true }));
      }
      parser.push(decoder.decode());
      parser.end();
    } finally {
      reader.releaseLock();
    }
  }

  // An async iterator of a fetch response's events as {event, data} (data parsed as JSON when it is
  // JSON); stops quietly when `signal` aborts.
  async function* events(response, signal) {
    const queue = [];
    const parser = new SseParser((event, raw) => {
      let data;
      try { data = JSON.parse(raw); } catch (e) { data = { text: raw }; }
      queue.push({ event, data });
    });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const abort = () => reader.cancel().catch(() => {});
    if (signal) signal.addEventListener("abort", abort);
    try {
      for (;;) {
        let chunk;
        try {
          chunk = await reader.read();
        } catch (e) {
          if (signal && signal.aborted) return;
          throw e;
        }
        if (chunk.done) break;
        parser.push(decoder.decode(chunk.value, { stream: true }));
        while (queue.length) yield queue.shift();
      }
      parser.push(decoder.decode());
      parser.end();
      while (queue.length) yield queue.shift();
    } finally {
      if (signal) signal.removeEventListener("abort", abort);
    }
  }

  // -- theme ---------------------------------------------------------------------------------------
  function applyTheme(theme) {
    document.documentElement.dataset.theme = theme;
    const button = document.getElementById("theme-toggle");
    if (button) button.setAttribute("aria-label", theme === "dark" ? "Switch to light theme" : "Switch to dark theme");
    document.dispatchEvent(new CustomEvent("mm:theme", { detail: { theme } }));
  }

  function setupTheme() {
    applyTheme(document.documentElement.dataset.theme || "light");
    const button = document.getElementById("theme-toggle");
    if (!button) return;
    button.addEventListener("click", () => {
      const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
      try { localStorage.setItem(THEME_STORE, next); } catch (e) {}
      applyTheme(next);
    });
  }

  // -- HTMX glue -----------------------------------------------------------------------------------
  // Registered at once, not on DOMContentLoaded: HTMX sends the page's `load` requests (the header's
  // status among them) before that handler runs, and they must carry the stored key too.
  document.addEventListener("htmx:configRequest", (event) => {
    const key = storedKey();
    if (key) event.detail.headers["Authorization"] = "Bearer " + key;
  });

  function setupHtmx() {
    document.body.addEventListener("htmx:responseError", async (event) => {
      const xhr = event.detail.xhr;
      if (xhr.status === 401) {
        if (await askForKey()) htmx.trigger(event.detail.elt, event.detail.requestConfig.triggeringEvent ? event.detail.requestConfig.triggeringEvent.type : "load");
        return;
      }
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = { message: xhr.responseText.slice(0, 300) }; }
      toast(messageOf(body, xhr.status), "error");
    });
    document.body.addEventListener("htmx:sendError", () => toast(messageOf(null, 0), "error"));
    // The header status carries the "no model yet" banner as a template.
    document.body.addEventListener("htmx:afterSwap", (event) => {
      if (event.detail.target && event.detail.target.id === "active-model") {
        const holder = document.getElementById("no-model-banner");
        const banner = event.detail.target.querySelector("template[data-banner]");
        if (holder) holder.innerHTML = banner ? banner.innerHTML : "";
        document.dispatchEvent(new CustomEvent("mm:header-updated"));
      }
    });
    document.body.addEventListener("mm:toast", (event) => toast(event.detail.message, event.detail.kind));
  }

  function setupSwitcher() {
    const switcher = document.getElementById("model-switcher");
    if (!switcher) return;
    switcher.addEventListener("toggle", () => {
      if (switcher.open) htmx.trigger(switcher, "mm:open-switcher");
    });
    document.addEventListener("click", (event) => {
      if (switcher.open && !switcher.contains(event.target)) switcher.open = false;
    });
    document.body.addEventListener("mm:active-changed", () => { switcher.open = false; });
  }

  // Copy buttons on code blocks (rendered Markdown) and anything with data-copy-text.
  function setupCopy() {
    document.addEventListener("click", async (event) => {
      const button = event.target.closest("[data-copy], [data-copy-text]");
      if (!button) return;
      const text = button.dataset.copyText !== undefined
        ? button.dataset.copyText
        : (button.closest(".code") || button.parentElement).querySelector("code").innerText;
      try {
        await navigator.clipboard.writeText(text);
        const old = button.textContent;
        button.textContent = "Copied";
        setTimeout(() => { button.textContent = old; }, 1200);
      } catch (e) {
        toast("Copying needs clipboard permission; select the text instead.", "error");
      }
    });
  }

  // A DOM element: `attrs` are attributes (`text` sets the text, `className` the class; null, undefined
  // and false are left out, true is an empty attribute), `children` are appended.
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  // The header's badge: how many jobs are queued or running, every 15 s and soon after a page says
  // jobs changed. It never asks for a key (the page's own calls do).
  function setupJobsBadge() {
    const badge = document.getElementById("jobs-badge");
    if (!badge) return;
    let soon = null;
    async function refresh() {
      try {
        const response = await fetch("/api/jobs/summary", { headers: withKey() });
        if (!response.ok) return;
        const active = (await response.json()).active;
        badge.hidden = !active;
        badge.textContent = active ? String(active) : "";
        badge.title = active === 1 ? "1 job running" : active + " jobs running";
        badge.setAttribute("aria-label", badge.title);
      } catch (e) {
        // the studio is restarting: the next refresh shows it
      }
    }
    refresh();
    setInterval(refresh, 15000);
    document.body.addEventListener("mm:jobs-changed", () => {
      clearTimeout(soon);
      soon = setTimeout(refresh, 300);
    });
  }

  window.mm = { api, apiJson, toast, messageOf, ApiError, askForKey, SseParser, readSse, events, el };

  document.addEventListener("DOMContentLoaded", () => {
    setupTheme();
    setupHtmx();
    setupSwitcher();
    setupCopy();
    setupJobsBadge();
  });
})();
