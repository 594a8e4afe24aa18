// Chat Studio page: conversations, streaming answers, branches, profiles, the tree, documents.
//
// The server renders what is stored (fragments under /api/ui/chat); this script sends through the
// Chat Studio API (/api/chat/ui), shows tokens as they stream, and re-attaches to answers that are
// still being written after a reload, so closing the tab mid-answer loses nothing.
"use strict";

(function () {
  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));

  let chat, conversationEl, composer, promptEl, sendButton, stopButton;
  const state = {
    id: null,          // the open conversation
    streams: new Map(), // assistant message id -> AbortController of the reader following it
    sending: false,
  };

  // -- rendering helpers ---------------------------------------------------------------------------
  function messagesEl() { return $("#messages", conversationEl); }

  function scrollToEnd(force) {
    const box = messagesEl();
    if (!box) return;
    const near = box.scrollHeight - box.scrollTop - box.clientHeight < 160;
    if (force || near) box.scrollTop = box.scrollHeight;
  }

  function fromTemplate(id) {
    return document.getElementById(id).content.firstElementChild.cloneNode(true);
  }

  function lastMessageId() {
    const all = $$("#messages > .msg[data-id]", conversationEl);
    return all.length ? all[all.length - 1].dataset.id : null;
  }

  function setBusy(busy) {
    state.sending = busy;
    const running = busy || state.streams.size > 0;
    stopButton.hidden = !running;
    sendButton.disabled = running;
  }

  async function fetchHtml(path) {
    const response = await mm.api(path);
    return response.text();
  }

  async function replaceMessage(id) {
    const old = document.getElementById("m-" + id);
    if (!old) return;
    try {
      const html = await fetchHtml("/api/ui/chat/messages/" + encodeURIComponent(id));
      const holder = document.createElement("div");
      holder.innerHTML = html.trim();
      const fresh = holder.firstElementChild;
      if (fresh && old.isConnected) old.replaceWith(fresh);
    } catch (e) {
      mm.toast(e.message, "error");
    }
  }

  // -- the conversation list ---------------------------------------------------------------------------
  function refreshList() {
    document.body.dispatchEvent(new CustomEvent("mm:conversations"));
  }

  function markCurrent() {
    $$(".conversation-item", chat).forEach((item) => {
      const current = item.dataset.conversation === state.id;
      item.classList.toggle("current", current);
      const link = $(".conversation-link", item);
      if (current) link.setAttribute("aria-current", "true"); else link.removeAttribute("aria-current");
    });
  }

  async function conversationAction(button) {
    const item = button.closest(".conversation-item");
    const id = item.dataset.conversation;
    const action = button.dataset.action;
    const title = $(".conversation-title", item).textContent.trim();
    try {
      if (action === "delete") {
        if (!confirm(`Delete “${title}” and all its messages? This cannot be undone.`)) return;
        await mm.api("/api/chat/ui/conversations/" + encodeURIComponent(id), { method: "DELETE" });
        mm.toast("Conversation deleted", "ok");
        if (id === state.id) await openConversation(null);
      } else {
        const field = action === "pin" ? "pinned" : "archived";
        await mm.api("/api/chat/ui/conversations/" + encodeURIComponent(id), {
          method: "PATCH", json: { [field]: button.dataset.value === "true" },
        });
      }
      refreshList();
    } catch (e) {
      mm.toast(e.message, "error");
    }
  }

  // -- opening a conversation ------------------------------------------------------------------------
  function stopFollowing() {
    for (const controller of state.streams.values()) controller.abort();
    state.streams.clear();
    setBusy(false);
  }

  // While another conversation loads, the composer waits (a message must not land in the old one).
  async function openConversation(id, options) {
    const hadFocus = document.activeElement === promptEl;
    promptEl.disabled = true;
    try {
      await loadConversation(id, options);
    } finally {
      promptEl.disabled = false;
      if (hadFocus) promptEl.focus();
    }
  }

  async function loadConversation(id, options) {
    const opts = Object.assign({ push: true }, options || {});
    stopFollowing();
    const started = performance.now();
    let html;
    try {
      html = await fetchHtml(id ? "/api/ui/chat/conversations/" + encodeURIComponent(id) : "/api/ui/chat/new");
    } catch (e) {
      if (id && e.status === 404) {
        mm.toast("That conversation no longer exists.", "error");
        return loadConversation(null, opts);
      }
      conversationEl.innerHTML = "";
      const box = document.createElement("div");
      box.className = "error-box";
      box.textContent = e.message;
      conversationEl.appendChild(box);
      return;
    }
    state.id = id || null;
    chat.dataset.conversation = state.id || "";
    conversationEl.innerHTML = html; // no hx- attributes inside: htmx.process would only walk it
    if (opts.push) history.pushState({ id: state.id }, "", state.id ? "/chat/c/" + state.id : "/chat");
    document.title = (state.id ? titleText() : "New conversation") + " · mmstudio";
    markCurrent();
    chat.classList.remove("side-open");
    scrollToEnd(true);
    attachRunning();
    if (state.id) loadDocuments();
    const count = $$("#messages > .msg", conversationEl).length;
    document.dispatchEvent(new CustomEvent("mm:conversation-rendered", {
      detail: { id: state.id, messages: count, ms: performance.now() - started },
    }));
  }

  function titleText() {
    const heading = $("#conversation-title", conversationEl);
    return heading ? heading.textContent.trim() : "Conversation";
  }

  // -- sending and streaming ------------------------------------------------------------------------
  function selection() {
    const model = $("#conversation-model", conversationEl);
    const prompt = $("#prompt-profile", conversationEl);
    const routing = $("#routing-profile", conversationEl);
    return {
      model: model ? model.value : "",
      prompt_profile_id: prompt ? prompt.value : "",
      routing_profile: routing ? routing.value : "direct",
    };
  }

  function appendUser(text) {
    const welcome = $("#welcome", conversationEl);
    if (welcome) welcome.remove();
    const el = fromTemplate("tpl-user");
    $(".md", el).textContent = text;
    messagesEl().appendChild(el);
    scrollToEnd(true);
    return el;
  }

  function appendAssistant(message, before) {
    const el = fromTemplate("tpl-assistant");
    el.id = "m-" + message.id;
    el.dataset.id = message.id;
    el.dataset.parent = message.parentId || message.parent_id || "";
    el.dataset.status = message.status || "pending";
    if (before) before.after(el); else messagesEl().appendChild(el);
    scrollToEnd(true);
    return el;
  }

  async function send(text) {
    if (state.sending || state.streams.size > 0) {
      mm.toast("An answer is still being written: wait for it, or press Stop (Esc).", "error");
      return;
    }
    if (!messagesEl()) return; // the conversation is still loading
    setBusy(true);
    const userEl = appendUser(text);
    const body = { content: text };
    const chosen = selection();
    if (state.id) {
      body.conversation_id = state.id;
      const parent = userEl.previousElementSibling && userEl.previousElementSibling.dataset
        ? userEl.previousElementSibling.dataset.id : null;
      if (parent) body.parent_id = parent;
    } else {
      if (chosen.model) body.model = chosen.model;
      if (chosen.prompt_profile_id) body.prompt_profile_id = chosen.prompt_profile_id;
      body.routing_profile = chosen.routing_profile;
    }
    try {
      const response = await mm.api("/api/chat/ui/send", { method: "POST", json: body });
      promptEl.value = "";
      saveDraft();
      await consume(response, { userEl });
    } catch (e) {
      userEl.remove();
      mm.toast(e.message, "error");
    } finally {
      setBusy(false);
    }
  }

  // Reads a send/edit/regenerate response: the stored messages, then the answer's events.
  async function consume(response, ctx) {
    const controller = new AbortController();
    let assistant = null;
    let following = null;
    for await (const { event, data } of mm.events(response, controller.signal)) {
      if (event === "conversation") {
        if (data.created || !state.id) {
          state.id = data.conversation.id;
          chat.dataset.conversation = state.id;
          history.replaceState({ id: state.id }, "", "/chat/c/" + state.id);
          refreshList();
          await refreshBar();
        }
      } else if (event === "user_message") {
        const m = data.message;
        if (ctx.userEl) {
          ctx.userEl.id = "m-" + m.id;
          ctx.userEl.dataset.id = m.id;
          ctx.userEl.dataset.parent = m.parentId || "";
          ctx.userEl.dataset.status = m.status;
        }
      } else if (event === "assistant_message") {
        const m = data.message;
        assistant = document.getElementById("m-" + m.id) || appendAssistant(m);
        following = m.id;
        state.streams.set(m.id, controller);
        setBusy(true);
      } else if (assistant) {
        applyEvent(assistant, event, data);
      }
    }
    if (following) {
      state.streams.delete(following);
      await finish(following, ctx);
    }
    setBusy(false);
  }

  function streamingBox(el) {
    let box = $(".md.streaming", el);
    if (!box) {
      box = document.createElement("div");
      box.className = "md streaming";
      $(".msg-body", el).appendChild(box);
    }
    return box;
  }

  function meta(el, text) {
    const used = $(".model-used", el);
    if (used) used.textContent = text;
  }

  function toolDetails(kind, data) {
    const details = document.createElement("details");
    details.className = "tool tool-" + kind + (data.isError ? " tool-error" : "");
    const summary = document.createElement("summary");
    const code = document.createElement("code");
    code.textContent = data.name;
    summary.append(kind === "call" ? "⚙ Called " : (data.isError ? "✗ Error from " : "↩ Result of "), code);
    const pre = document.createElement("pre");
    pre.textContent = kind === "call" ? JSON.stringify(data.arguments, null, 2) : String(data.content);
    details.append(summary, pre);
    return details;
  }

  // One event of a running answer, applied to its element.
  function applyEvent(el, event, data) {
    const parts = $(".parts", el);
    switch (event) {
      case "start":
        el.dataset.status = "streaming";
        meta(el, data.modelRequested ? "Asking " + data.modelRequested + "…" : "Asking the model…");
        break;
      case "model":
        meta(el, (data.name || data.model) + (data.fallback ? " (fallback)" : ""));
        el.dataset.model = data.model;
        break;
      case "delta": {
        el.dataset.status = "streaming";
        const box = streamingBox(el);
        box.appendChild(document.createTextNode(data.text));
        scrollToEnd(false);
        break;
      }
      case "tool_call":
      case "tool_result": {
        // Text streamed so far stays above the tool call, as the stored message will show it.
        const box = $(".md.streaming", el);
        if (box && box.textContent) {
          const done = document.createElement("div");
          done.className = "md plain";
          done.textContent = box.textContent;
          parts.appendChild(done);
          box.textContent = "";
        }
        parts.appendChild(toolDetails(event === "tool_call" ? "call" : "result", data));
        scrollToEnd(false);
        break;
      }
      case "citations":
        break; // shown from the stored message when the answer ends
      case "done":
      case "error":
      case "interrupted":
        el.dataset.status = event === "done" ? "complete" : event;
        if (event === "error") {
          const box = document.createElement("div");
          box.className = "error-box msg-error";
          box.setAttribute("role", "alert");
          box.textContent = data.message || "The answer failed.";
          $(".msg-body", el).appendChild(box);
        }
        break;
      case "title": {
        const heading = $("#conversation-title", conversationEl);
        if (heading) heading.textContent = data.title;
        document.title = data.title + " · mmstudio";
        refreshList();
        break;
      }
      default:
        break;
    }
  }

  // The answer ended: show it as stored (Markdown, code, model, latency, tokens/s, versions).
  async function finish(messageId, ctx) {
    await replaceMessage(messageId);
    const user = ctx && ctx.userEl && ctx.userEl.dataset.id;
    if (user) await replaceMessage(user);
    if (ctx && ctx.refreshUser) await replaceMessage(ctx.refreshUser);
    scrollToEnd(false);
    refreshList(); // its place (newest first) and message count changed
  }

  // After a reload (or opening a conversation) an answer may still be running: follow it again.
  function attachRunning() {
    $$('#messages > .msg[data-running="true"]', conversationEl).forEach((el) => follow(el));
  }

  async function follow(el) {
    const id = el.dataset.id;
    if (state.streams.has(id)) return;
    const controller = new AbortController();
    state.streams.set(id, controller);
    setBusy(state.sending);
    try {
      const response = await mm.api("/api/chat/ui/messages/" + encodeURIComponent(id) + "/stream", {
        signal: controller.signal,
      });
      const type = response.headers.get("content-type") || "";
      if (type.startsWith("text/event-stream")) {
        // The generation's events from its beginning: start over from an empty answer.
        $(".parts", el).textContent = "";
        streamingBox(el).textContent = "";
        for await (const { event, data } of mm.events(response, controller.signal)) {
          if (event !== "assistant_message") applyEvent(el, event, data);
        }
      }
      if (!controller.signal.aborted) await finish(id);
    } catch (e) {
      if (!(e && e.name === "AbortError")) mm.toast(e.message, "error");
    } finally {
      if (state.streams.get(id) === controller) state.streams.delete(id);
      setBusy(state.sending);
    }
  }

  async function stop() {
    const ids = Array.from(state.streams.keys());
    for (const id of ids) {
      try {
        await mm.api("/api/chat/ui/messages/" + encodeURIComponent(id) + "/stop", { method: "POST" });
      } catch (e) {
        mm.toast(e.message, "error");
      }
    }
  }

  // -- branches: edit, regenerate, versions, the tree ------------------------------------------------
  async function branchRequest(path, body) {
    setBusy(true);
    try {
      const response = await mm.api(path, { method: "POST", json: body });
      // The new branch is current now: render it, then follow its answer from the stream.
      const controller = new AbortController();
      let answerId = null;
      let userId = null;
      for await (const { event, data } of mm.events(response, controller.signal)) {
        if (event === "user_message") userId = data.message.id;
        if (event === "assistant_message") { answerId = data.message.id; break; }
      }
      controller.abort();
      await openConversation(state.id, { push: false });
      if (answerId && !state.streams.has(answerId)) {
        const el = document.getElementById("m-" + answerId);
        if (el) follow(el);
      }
      return userId;
    } catch (e) {
      mm.toast(e.message, "error");
      return null;
    } finally {
      setBusy(false);
    }
  }

  function startEdit(article) {
    if ($(".edit-form", article)) return;
    const body = $(".msg-body", article);
    const original = $(".md", body) ? $(".md", body).textContent : "";
    const form = document.createElement("form");
    form.className = "edit-form";
    const label = document.createElement("label");
    label.className = "sr-only";
    label.textContent = "Edit message";
    const area = document.createElement("textarea");
    area.value = original;
    area.rows = Math.min(12, Math.max(2, original.split("\n").length));
    area.id = "edit-" + article.dataset.id;
    label.htmlFor = area.id;
    const row = document.createElement("div");
    row.className = "row end";
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.textContent = "Cancel";
    const save = document.createElement("button");
    save.type = "submit";
    save.className = "primary";
    save.textContent = "Save and send";
    row.append(cancel, save);
    form.append(label, area, row);
    body.hidden = true;
    article.insertBefore(form, body.nextSibling);
    area.focus();
    cancel.addEventListener("click", () => { form.remove(); body.hidden = false; });
    area.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); form.requestSubmit(); }
      if (event.key === "Escape") { event.preventDefault(); cancel.click(); }
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = area.value.trim();
      if (!text) { mm.toast("A message cannot be empty.", "error"); return; }
      await branchRequest("/api/chat/ui/messages/" + encodeURIComponent(article.dataset.id) + "/edit", { content: text });
    });
  }

  function startRegenerate(article, button) {
    const existing = $(".regen-form", article);
    if (existing) { existing.remove(); return; }
    const form = document.createElement("form");
    form.className = "regen-form row";
    const source = $("#conversation-model", conversationEl);
    const select = source.cloneNode(true);
    select.id = "regen-model-" + article.dataset.id;
    select.value = article.querySelector(".model-used") ? (article.querySelector(".model-used").dataset.model || "") : "";
    if (!select.value) select.selectedIndex = 0;
    const label = document.createElement("label");
    label.htmlFor = select.id;
    label.textContent = "Regenerate with";
    const go = document.createElement("button");
    go.type = "submit";
    go.className = "primary";
    go.textContent = "Regenerate";
    form.append(label, select, go);
    button.closest(".msg-meta").after(form);
    select.focus();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = select.value ? { model: select.value } : {};
      await branchRequest("/api/chat/ui/messages/" + encodeURIComponent(article.dataset.id) + "/regenerate", body);
    });
  }

  async function navigate(messageId, step) {
    // The version arrows swap a message for its sibling: keep that place in view afterwards.
    const current = document.getElementById("m-" + messageId);
    const parent = step && current ? current.dataset.parent : null;
    try {
      const body = { message_id: messageId };
      if (step) body.step = step;
      await mm.api("/api/chat/ui/conversations/" + encodeURIComponent(state.id) + "/navigate", { method: "POST", json: body });
      const graphOpen = !$("#graph-panel", conversationEl).hidden;
      await openConversation(state.id, { push: false });
      if (parent !== null) {
        const swapped = $$("#messages > .msg", conversationEl).find((el) => el.dataset.parent === parent);
        if (swapped) swapped.scrollIntoView({ block: "nearest" });
      }
      if (graphOpen) await toggleGraph(true);
    } catch (e) {
      mm.toast(e.message, "error");
    }
  }

  async function toggleGraph(forceOpen) {
    const panel = $("#graph-panel", conversationEl);
    const button = $("#show-graph", conversationEl);
    if (!panel || !state.id) return;
    const open = forceOpen === true || panel.hidden;
    if (!open) {
      panel.hidden = true;
      if (button) button.setAttribute("aria-expanded", "false");
      return;
    }
    try {
      panel.innerHTML = await fetchHtml("/api/ui/chat/conversations/" + encodeURIComponent(state.id) + "/graph");
      panel.hidden = false;
      if (button) button.setAttribute("aria-expanded", "true");
      const current = $(".node.active:last-of-type", panel);
      if (current) current.scrollIntoView({ block: "nearest", inline: "center" });
    } catch (e) {
      mm.toast(e.message, "error");
    }
  }

  // -- toolbar: model, profiles, title, documents --------------------------------------------------------
  async function refreshBar() {
    // A conversation was just created by the first send: show its real toolbar (rename, export, tree).
    try {
      const html = await fetchHtml("/api/ui/chat/conversations/" + encodeURIComponent(state.id));
      const holder = document.createElement("div");
      holder.innerHTML = html;
      const fresh = $(".conversation-bar", holder);
      const old = $(".conversation-bar", conversationEl);
      if (fresh && old) old.replaceWith(fresh);
      loadDocuments();
    } catch (e) {
      mm.toast(e.message, "error");
    }
  }

  async function patchConversation(body, okMessage) {
    if (!state.id) return true; // a new conversation takes the selection with its first message
    try {
      await mm.api("/api/chat/ui/conversations/" + encodeURIComponent(state.id), { method: "PATCH", json: body });
      if (okMessage) mm.toast(okMessage, "ok");
      return true;
    } catch (e) {
      mm.toast(e.message, "error");
      return false;
    }
  }

  async function onBarChange(event) {
    const target = event.target;
    if (target.id === "conversation-model") {
      const label = target.selectedOptions[0] ? target.selectedOptions[0].textContent : "";
      await patchConversation({ model: target.value || null }, state.id ? "This conversation now uses " + (target.value ? label : "the default model") : null);
    } else if (target.id === "prompt-profile") {
      if (target.value === "__new__") {
        await newProfile(target);
        return;
      }
      target.dataset.previous = target.value;
      await patchConversation({ prompt_profile_id: target.value || null });
    } else if (target.id === "routing-profile") {
      const ok = await patchConversation({ routing_profile: target.value });
      const upload = $("#upload-label", conversationEl);
      if (ok && upload) upload.classList.toggle("hidden", target.value !== "tools+data");
    } else if (target.id === "document-upload") {
      await upload(target);
    }
  }

  // "New profile…" in the prompt-profile selector: create one in a dialog and select it.
  function newProfile(select) {
    const dialog = document.getElementById("profile-dialog");
    const form = document.getElementById("profile-form");
    const error = document.getElementById("profile-error");
    form.reset();
    error.hidden = true;
    return new Promise((resolve) => {
      async function submit(event) {
        const submitter = event.submitter;
        if (!submitter || submitter.value !== "save") return; // Cancel closes the dialog
        event.preventDefault();
        const data = new FormData(form);
        const body = { name: String(data.get("name") || "").trim(), system_prompt: String(data.get("system_prompt") || ""), memory: data.get("memory") === "on" };
        if (data.get("temperature")) body.temperature = parseFloat(data.get("temperature"));
        if (data.get("max_tokens")) body.max_tokens = parseInt(data.get("max_tokens"), 10);
        try {
          const created = await mm.apiJson("/api/chat/ui/prompt-profiles", { method: "POST", json: body });
          const profile = created.profile || created;
          const option = document.createElement("option");
          option.value = profile.id;
          option.textContent = profile.name + (profile.memory ? " (memory)" : "");
          select.insertBefore(option, select.querySelector('option[value="__new__"]'));
          select.value = profile.id;
          select.dataset.previous = profile.id;
          dialog.close("saved");
          await patchConversation({ prompt_profile_id: profile.id });
          mm.toast("Profile “" + profile.name + "” created", "ok");
        } catch (e) {
          error.textContent = e.message;
          error.hidden = false;
        }
      }
      function closed() {
        form.removeEventListener("submit", submit);
        dialog.removeEventListener("close", closed);
        if (select.value === "__new__") select.value = select.dataset.previous || "";
        resolve();
      }
      form.addEventListener("submit", submit);
      dialog.addEventListener("close", closed);
      dialog.showModal();
      document.getElementById("profile-name").focus();
    });
  }

  async function rename() {
    const current = titleText();
    const title = prompt("Conversation title", current);
    if (title === null || !title.trim() || title.trim() === current) return;
    if (await patchConversation({ title: title.trim() })) {
      $("#conversation-title", conversationEl).textContent = title.trim();
      refreshList();
    }
  }

  async function loadDocuments() {
    const box = $("#documents", conversationEl);
    if (!box || !state.id) return;
    try {
      const body = await mm.apiJson("/api/chat/ui/documents?conversation_id=" + encodeURIComponent(state.id));
      const docs = (body.documents || body.items || []).filter((d) => d.conversation_id === state.id || d.conversationId === state.id);
      box.textContent = docs.length ? "Documents: " + docs.map((d) => d.filename).join(", ") : "";
    } catch (e) {
      box.textContent = "";
    }
  }

  async function upload(input) {
    const file = input.files && input.files[0];
    if (!file) return;
    if (!state.id) {
      mm.toast("Send a first message, then upload documents to this conversation.", "error");
      input.value = "";
      return;
    }
    const form = new FormData();
    form.append("file", file);
    form.append("conversation_id", state.id);
    const label = $("#upload-label", conversationEl);
    label.classList.add("busy");
    try {
      const response = await mm.api("/api/chat/ui/documents", { method: "POST", body: form });
      const doc = await response.json();
      mm.toast("Indexed " + doc.filename + " (" + (doc.chunks || doc.chunk_count || 0) + " passages)", "ok");
      loadDocuments();
    } catch (e) {
      mm.toast(e.message, "error");
    } finally {
      label.classList.remove("busy");
      input.value = "";
    }
  }

  // -- drafts: what you typed survives a reload ------------------------------------------------------
  function draftKey() { return "mmstudio-draft-" + (state.id || "new"); }
  function saveDraft() {
    try {
      if (promptEl.value) sessionStorage.setItem(draftKey(), promptEl.value);
      else sessionStorage.removeItem(draftKey());
    } catch (e) { /* private mode */ }
  }

  // -- wiring ---------------------------------------------------------------------------------------
  function onClick(event) {
    const open = event.target.closest("[data-open]");
    if (open && !event.metaKey && !event.ctrlKey && !event.shiftKey) {
      event.preventDefault();
      openConversation(open.dataset.open);
      return;
    }
    const action = event.target.closest(".conversation-item [data-action]");
    if (action) { conversationAction(action); return; }
    const msgAction = event.target.closest(".msg [data-action]");
    if (msgAction) {
      const article = msgAction.closest(".msg");
      if (msgAction.dataset.action === "edit") startEdit(article);
      if (msgAction.dataset.action === "regenerate") startRegenerate(article, msgAction);
      return;
    }
    const sibling = event.target.closest("[data-sibling]");
    if (sibling) { navigate(sibling.closest(".msg").dataset.id, parseInt(sibling.dataset.sibling, 10)); return; }
    const node = event.target.closest("[data-node]");
    if (node) { navigate(node.dataset.node, 0); return; }
    if (event.target.closest("#show-graph")) { toggleGraph(); return; }
    if (event.target.closest("[data-close-graph]")) { toggleGraph(false); return; }
    if (event.target.closest("#rename")) { rename(); return; }
    if (event.target.closest("#side-toggle")) { chat.classList.toggle("side-open"); return; }
    if (event.target.closest("#new-chat")) { openConversation(null).then(() => promptEl.focus()); }
  }

  function onKey(event) {
    if (event.key === "Escape" && state.streams.size > 0) {
      event.preventDefault();
      stop();
      return;
    }
    const node = event.target.closest && event.target.closest("[data-node]");
    if (node && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      navigate(node.dataset.node, 0);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    chat = document.getElementById("chat");
    if (!chat) return;
    conversationEl = document.getElementById("conversation");
    composer = document.getElementById("composer");
    promptEl = document.getElementById("prompt");
    sendButton = document.getElementById("send-button");
    stopButton = document.getElementById("stop-button");

    composer.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = promptEl.value.trim();
      if (!text) { mm.toast("Type a message first.", "error"); return; }
      send(text);
    });
    promptEl.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        composer.requestSubmit();
      }
    });
    promptEl.addEventListener("input", saveDraft);
    stopButton.addEventListener("click", stop);
    chat.addEventListener("click", onClick);
    chat.addEventListener("change", onBarChange);
    document.addEventListener("keydown", onKey);
    document.body.addEventListener("htmx:afterSwap", (event) => {
      if (event.detail.target && event.detail.target.id === "conversation-list") markCurrent();
    });
    window.addEventListener("popstate", (event) => {
      openConversation(event.state ? event.state.id : null, { push: false });
    });

    const first = chat.dataset.conversation || null;
    history.replaceState({ id: first }, "", location.pathname);
    // The conversation first, the list after it: on a long branch the two would compete.
    openConversation(first, { push: false }).finally(() => {
      refreshList();
      try { promptEl.value = sessionStorage.getItem(draftKey()) || ""; } catch (e) { /* ignore */ }
      promptEl.focus();
    });
    window.mmChat = { state, openConversation };
  });
})();
