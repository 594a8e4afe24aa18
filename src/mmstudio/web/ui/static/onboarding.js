// Onboarding: choose a platform, test the address, list its models, name one, save it and make it the
// active model; or pick a cloud model. Everything goes through the JSON API (/api/models/...).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  let detected = null; // the models the current address served at the last test, or null
  let sequence = 0; // an answer to an older request (the address changed since) is dropped

  function chosenPlatform() {
    return document.querySelector('input[name="platform"]:checked');
  }

  function formatMs(value) {
    return value >= 10 ? Math.round(value).toLocaleString("en") + " ms" : value.toFixed(1) + " ms";
  }

  function plural(count, word) {
    return count + " " + word + (count === 1 ? "" : "s");
  }

  function busy(button, on) {
    button.disabled = on;
    button.classList.toggle("is-busy", on);
    button.setAttribute("aria-busy", on ? "true" : "false");
  }

  // A result in words: kind "ok", "error" or "info"; `next` is what to do about an error.
  function say(targetId, kind, title, text, next) {
    const target = $(targetId);
    target.replaceChildren();
    if (kind === null) return null;
    const box = document.createElement("div");
    box.className = kind === "ok" ? "ok-box" : kind === "error" ? "error-box" : "info-box";
    if (kind === "error") box.setAttribute("role", "alert");
    if (title) {
      const strong = document.createElement("strong");
      strong.textContent = title;
      box.append(strong, " ");
    }
    box.append(text);
    if (next) {
      const step = document.createElement("div");
      step.className = "next-step";
      step.textContent = next;
      box.append(step);
    }
    target.append(box);
    return box;
  }

  function nextStep(cause, platform) {
    if (cause === "connection_refused") return platform.dataset.start;
    if (cause === "timeout") return "The server may be busy, loading a model for instance. Try again, or check the address.";
    if (cause === "authentication") return "Check the API key, or leave it empty if the server does not use one.";
    if (cause && cause.startsWith("not_")) {
      return platform.value === "ollama"
        ? "Check that this is an Ollama server, or choose the platform it really is."
        : "Check that the platform matches the server and that the address ends in /v1.";
    }
    if (cause && cause.startsWith("http_")) return "Check the address: the server answered with an error.";
    return "Check the address and that the server is running.";
  }

  // -- the platform --------------------------------------------------------------------------------
  function showSteps(kind) {
    document.querySelectorAll("[data-for]").forEach((step) => { step.hidden = step.dataset.for !== kind; });
  }

  function applyPlatform() {
    const platform = chosenPlatform();
    if (!platform) return;
    say("save-result", null);
    say("cloud-result", null);
    if (platform.dataset.kind === "cloud") {
      showSteps("cloud");
      fillCloudModels(platform);
      return;
    }
    showSteps("local");
    const url = $("base-url");
    const usual = Array.from(document.querySelectorAll('input[name="platform"][data-url]'), (i) => i.dataset.url);
    if (!url.value.trim() || usual.includes(url.value.trim())) url.value = platform.dataset.url;
    $("base-url-hint").textContent = platform.dataset.label + " usually listens on " + platform.dataset.url + ".";
    const takesKey = platform.dataset.takesKey === "true";
    $("api-key-field").hidden = !takesKey;
    if (!takesKey) $("api-key").value = "";
    $("save-label").textContent = platform.dataset.images === "true" ? "Save this image model" : "Save and use this model";
    forgetModels();
  }

  function forgetModels() {
    sequence++;
    detected = null;
    const options = $("model-options");
    const hint = document.createElement("p");
    hint.className = "muted small";
    hint.append("Press ", Object.assign(document.createElement("strong"), { textContent: "Detect models" }),
      " to list what the server serves.");
    options.replaceChildren(hint);
    say("connection-result", null);
    say("save-result", null);
    document.querySelectorAll("button.busy-able").forEach((button) => busy(button, false));
  }

  // -- test and detect ------------------------------------------------------------------------------
  async function testConnection(button) {
    const platform = chosenPlatform();
    const url = $("base-url").value.trim();
    if (!url) {
      say("connection-result", "error", "No address.", "Type the server's address, e.g. " + platform.dataset.url + ".");
      $("base-url").focus();
      return null;
    }
    const mine = ++sequence;
    busy(button, true);
    say("connection-result", "info", "", "Connecting to " + url + "…");
    const body = { platform: platform.value, base_url: url, api_key: $("api-key").value.trim() || null };
    try {
      const result = await mm.apiJson("/api/models/endpoints/test", { method: "POST", json: body });
      if (mine !== sequence) return null;
      if (!result.ok) {
        const box = say("connection-result", "error", "", result.message, nextStep(result.cause, platform));
        box.dataset.cause = result.cause || "";
        return null;
      }
      const box = say("connection-result", "ok", "Connected", "in " + formatMs(result.latency_ms) + " · serves " +
        plural(result.models.length, "model") + ".");
      box.dataset.latency = String(result.latency_ms);
      return result;
    } catch (error) {
      if (mine !== sequence) return null;
      const typo = error.status === 400 || error.status === 422;
      say("connection-result", "error", "Could not test the connection.", error.message,
        typo ? "Type the full address, e.g. " + platform.dataset.url + "." : "");
      return null;
    } finally {
      if (mine === sequence) busy(button, false);
    }
  }

  async function detectModels() {
    const result = await testConnection($("detect-models"));
    if (!result) return;
    detected = result.models;
    const options = $("model-options");
    if (!detected.length) {
      const empty = document.createElement("p");
      empty.className = "muted";
      empty.textContent = "The server is running but serves no models yet. Load or pull one there, then press Detect models again.";
      options.replaceChildren(empty);
      return;
    }
    options.replaceChildren(...detected.map((model, index) => {
      const label = document.createElement("label");
      label.className = "model-option";
      const radio = Object.assign(document.createElement("input"), { type: "radio", name: "model", value: model });
      radio.checked = detected.length === 1 || index === 0;
      const text = document.createElement("span");
      text.textContent = model;
      label.append(radio, text);
      return label;
    }));
    $("connection-result").querySelector(".ok-box").append(" Choose one below and give it a name.");
  }

  // -- save -------------------------------------------------------------------------------------------
  async function makeActive(modelId) {
    const answer = await mm.apiJson("/api/models/active", { method: "PUT", json: { model: modelId } });
    document.body.dispatchEvent(new CustomEvent("mm:active-changed", { detail: { model: modelId } }));
    return answer.model;
  }

  function showDone(name, modelId, images) {
    $("done-name").textContent = name;
    $("done-id").textContent = modelId;
    $("done-image-id").textContent = modelId;
    $("done-chat").hidden = Boolean(images);
    $("done-images").hidden = !images;
    $("done-go").textContent = images ? "Make an image" : "Start chatting";
    $("done-go").setAttribute("href", images ? "/images" : "/chat");
    $("onboarding-form").hidden = true;
    $("done").hidden = false;
    $("done").focus();
  }

  async function saveLocal() {
    if (!detected) {
      await detectModels(); // Enter in the address field lists the models first
      return;
    }
    const chosen = document.querySelector('input[name="model"]:checked');
    if (!chosen) {
      say("save-result", "error", "", "Choose one of the server's models first.");
      const first = document.querySelector('input[name="model"]');
      if (first) first.focus();
      return;
    }
    const platform = chosenPlatform();
    const body = {
      platform: platform.value,
      base_url: $("base-url").value.trim(),
      api_key: $("api-key").value.trim() || null,
      models: [{ model: chosen.value, name: $("model-name").value.trim() }],
    };
    const serverName = $("server-name").value.trim();
    if (serverName) body.name = serverName;
    const button = $("save-model");
    busy(button, true);
    say("save-result", "info", "", "Testing the connection and saving…");
    let saved = null;
    try {
      const endpoint = await mm.apiJson("/api/models/endpoints", { method: "POST", json: body });
      saved = endpoint.models.find((m) => m.model === chosen.value || m.model === chosen.value + ":latest")
        || endpoint.models[endpoint.models.length - 1];
      const images = platform.dataset.images === "true"; // image models are chosen per request
      if (!images) await makeActive(saved.model_id);
      say("save-result", null);
      showDone(saved.name, saved.model_id, images);
    } catch (error) {
      if (saved) {
        say("save-result", "error", "Saved, but not made active.", error.message,
          "Choose it from Switch model at the top, or on the Models page.");
      } else {
        say("save-result", "error", "Nothing was saved.", error.message,
          error.status === 400 || error.status === 422 ? "Correct the form and press Save again." : "");
      }
    } finally {
      busy(button, false);
    }
  }

  // -- cloud -------------------------------------------------------------------------------------------
  function fillCloudModels(platform) {
    const select = $("cloud-model");
    const models = document.querySelector('template[data-models-for="' + platform.dataset.provider + '"]');
    select.replaceChildren();
    if (models) select.append(models.content.cloneNode(true));
    $("cloud-model-hint").textContent = "Chat and code models from " + platform.dataset.label +
      "; the key comes from " + platform.dataset.keyEnv + ".";
    $("use-cloud-model").disabled = !select.options.length;
  }

  async function useCloud() {
    const select = $("cloud-model");
    const option = select.selectedOptions[0];
    if (!option) {
      say("cloud-result", "error", "", "Choose a model first.");
      select.focus();
      return;
    }
    const button = $("use-cloud-model");
    busy(button, true);
    say("cloud-result", null);
    try {
      await makeActive(option.value);
      showDone(option.dataset.name, option.value);
    } catch (error) {
      say("cloud-result", "error", "Could not make it active.", error.message, "");
    } finally {
      busy(button, false);
    }
  }

  function startOver() {
    const form = $("onboarding-form");
    form.reset();
    $("base-url").value = "";
    form.hidden = false;
    $("done").hidden = true;
    applyPlatform();
    const platform = chosenPlatform();
    if (platform) platform.focus();
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = $("onboarding-form");
    if (!form) return;
    form.addEventListener("change", (event) => {
      if (event.target.name === "platform") applyPlatform();
    });
    $("base-url").addEventListener("input", forgetModels);
    $("api-key").addEventListener("input", forgetModels);
    $("test-connection").addEventListener("click", (event) => testConnection(event.currentTarget));
    $("detect-models").addEventListener("click", detectModels);
    $("use-cloud-model").addEventListener("click", useCloud);
    $("add-another").addEventListener("click", startOver);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const platform = chosenPlatform();
      if (platform && platform.dataset.kind === "cloud") useCloud();
      else if (platform) saveLocal();
    });
    document.body.addEventListener("htmx:afterSwap", (event) => {
      if (event.detail.target && event.detail.target.id === "platforms") applyPlatform();
    });
  });
})();
