// mmstudio story mode: a tier's home (start a story), the scene view (written live, its picture and
// clip, choices and branches), the gallery (import; each card reads, downloads, deletes), the reader
// (download, delete), the characters (memory mode's cast) and /stories (the enabled tiers). Every page is a shell (story_*.html) whose #st-page says which view it is;
// everything shown comes from the story API.
// Model output and people's words (titles, narratives, choices, prompts, names, descriptions) are only
// ever set as textContent or attributes.
// One file on purpose: no build step, and the views share the media box (a scene's picture or clip
// followed through its status route) and the helpers; each view is a section.
"use strict";

(function () {
  const KEY_STORE = "mmstudio-key";
  const POLL_MS = 1000; // how often a picture or clip still being made is asked about
  const $ = (id) => document.getElementById(id);
  const { el } = window.mm;

  const root = $("st-page");
  if (!root) return;
  const tier = root.dataset.tier;
  const enc = encodeURIComponent;
  const api = (path) => "/api/stories/" + enc(tier) + path;
  const sceneUrl = (storyId, sceneId) => "/" + enc(tier) + "/story/" + enc(storyId) + "/scene/" + enc(sceneId);
  const readerUrl = (storyId) => "/" + enc(tier) + "/read/" + enc(storyId);

  // Everything that polls or streams stops when the page goes away.
  const stoppers = new Set();
  window.addEventListener("pagehide", () => { for (const stop of stoppers) stop(); stoppers.clear(); });

  function announce(text) {
    const box = $("st-announce");
    if (box) box.textContent = text;
  }

  function sentence(text) {
    const t = String(text || "").trim();
    if (!t) return "The studio gave no reason.";
    const s = t[0].toUpperCase() + t.slice(1);
    return /[.!?…]$/.test(s) ? s : s + ".";
  }

  function showError(box, message) {
    box.textContent = message;
    box.hidden = false;
  }

  function plural(n, one, many) {
    return n === 1 ? "1 " + one : n + " " + many;
  }

  function filenameOf(response, fallback) {
    const header = response.headers.get("Content-Disposition") || "";
    const star = /filename\*=UTF-8''([^;]+)/i.exec(header);
    if (star) { try { return decodeURIComponent(star[1]); } catch (e) { /* the plain one below */ } }
    const plain = /filename="?([^";]+)"?/i.exec(header);
    return plain ? plain[1] : fallback;
  }

  // Through mm.api (fetch), so the gateway key goes along when keys are on; a plain link would not.
  // The bytes are saved from a Blob with a temporary <a download>.
  async function download(button, url, fallback) {
    const old = button.textContent;
    button.disabled = true;
    button.textContent = "Preparing…";
    try {
      const response = await mm.api(url);
      const blob = await response.blob();
      const href = URL.createObjectURL(blob);
      const link = el("a", { href, download: filenameOf(response, fallback), hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(href), 30000);
      announce("The download has started.");
    } catch (e) {
      mm.toast("The story could not be downloaded: " + sentence(e.message), "error");
    } finally {
      button.disabled = false;
      button.textContent = old;
    }
  }

  // A story's export (`kind` json or html) saved through `button`: the reader's and each gallery card's.
  function exportStory(button, storyId, kind) {
    return download(button, api("/stories/" + enc(storyId) + "/export." + kind), "story." + kind);
  }

  // A narrative as paragraphs (blank lines between them), as text.
  function paragraphs(holder, text) {
    const parts = String(text || "").split(/\n\s*\n/).map((p) => p.trim()).filter(Boolean);
    holder.replaceChildren(...parts.map((p) => el("p", { text: p })));
  }

  // Scenes from the first down to `sceneId` (the tree lists parents before children).
  function pathTo(tree, sceneId) {
    const byId = new Map(tree.scenes.map((s) => [s.id, s]));
    const path = [];
    for (let s = byId.get(sceneId); s; s = s.parentId ? byId.get(s.parentId) : null) path.unshift(s);
    return path;
  }

  function firstScene(tree) {
    return tree.scenes.find((s) => !s.parentId) || tree.scenes[0] || null;
  }

  function sceneName(scene) {
    return scene.title || "Scene " + (scene.depth + 1);
  }

  // -- media: a scene's picture or clip, followed through its status route --------------------------
  function hasKey() {
    try { return !!localStorage.getItem(KEY_STORE); } catch (e) { return false; }
  }

  // With gateway keys on, a plain src would be refused (no Authorization header): fetch the bytes.
  function setSource(node, url) {
    if (!hasKey()) { node.src = url; return; }
    mm.api(url).then((r) => r.blob()).then((blob) => { node.src = URL.createObjectURL(blob); })
      .catch(() => node.dispatchEvent(new Event("error")));
  }

  const WORDS = {
    image: { waiting: "Generating image...", none: "No picture yet.", retry: "Retry the image" },
    video: { waiting: "Generating video...", none: "", retry: "Retry the video" },
  };

  // The box for one scene's `kind` ("image" or "video"). A video of status none shows nothing at all.
  // `onRetried` is told after a Retry (an image's retry makes its clip again too).
  function mediaBox(scene, kind, onRetried) {
    const box = el("div", { className: "st-" + kind, "data-kind": kind, "data-status": "loading" });
    const words = WORDS[kind];
    let timer = null;
    let shown = "";
    let stopped = false;
    let seq = 0;

    function stop() { stopped = true; clearTimeout(timer); stoppers.delete(stop); }

    function failed(reason) {
      shown = "failed";
      box.dataset.status = "failed";
      box.hidden = false;
      const retry = el("button", { type: "button", className: "st-media-retry", text: "Retry" });
      retry.addEventListener("click", () => doRetry(retry));
      box.replaceChildren(el("div", { className: "error-box st-media-failed", role: "alert" }, [
        el("p", { text: (kind === "image" ? "The picture failed: " : "The video failed: ") + sentence(reason) }),
        retry,
      ]));
    }

    async function doRetry(button) {
      button.disabled = true;
      try {
        const state = await mm.apiJson("/" + enc(tier) + "/story/" + kind + "/" + enc(scene.id) + "/retry", { method: "POST" });
        show(state);
        if (onRetried) onRetried();
        follow();
      } catch (e) {
        button.disabled = false;
        mm.toast(e.message, "error");
      }
    }

    function show(state) {
      const status = state.status;
      const key = status === "pending" || status === "generating" ? "waiting" : status === "complete" ? "complete:" + state.url : status;
      if (key === shown && status !== "failed") return;
      if (status === "failed") { failed(state.error); return; }
      shown = key;
      box.dataset.status = status;
      if (key === "waiting") {
        box.hidden = false;
        box.replaceChildren(el("p", { className: "st-media-wait", role: "status" }, [
          el("span", { className: "st-spinner", "aria-hidden": "true" }), words.waiting,
        ]));
      } else if (status === "complete") {
        box.hidden = false;
        box.replaceChildren(kind === "image" ? picture(state.url) : clip(state.url));
      } else if (kind === "image") { // none: the job never started; Retry starts it
        box.hidden = false;
        const retry = el("button", { type: "button", className: "st-media-retry", text: "Retry" });
        retry.addEventListener("click", () => doRetry(retry));
        box.replaceChildren(el("p", { className: "muted st-media-none", text: words.none }), retry);
      } else {
        box.hidden = true;
        box.replaceChildren();
      }
    }

    function picture(url) {
      const img = el("img", { alt: scene.imagePrompt || sceneName(scene), loading: "lazy", decoding: "async" });
      img.addEventListener("error", () => failed("the image could not be loaded"), { once: true });
      setSource(img, url);
      return img;
    }

    function clip(url) {
      const video = el("video", { controls: true, playsinline: true, preload: "metadata", "aria-label": "Video of " + sceneName(scene) });
      // A clip that does not play may only be a codec this browser lacks: ask the studio whether its
      // file is still there before calling it failed.
      video.addEventListener("error", () => {
        mm.apiJson("/" + enc(tier) + "/story/video/" + enc(scene.id)).then((state) => {
          if (state.status === "failed") failed(state.error);
        }).catch(() => {});
      }, { once: true });
      setSource(video, url);
      return video;
    }

    async function poll() {
      const mine = ++seq;
      let state;
      try {
        state = await mm.apiJson("/" + enc(tier) + "/story/" + kind + "/" + enc(scene.id));
      } catch (e) {
        if (stopped || mine !== seq) return;
        if (e.status === 0) { timer = setTimeout(poll, POLL_MS * 3); return; } // the studio restarts
        state = { status: "failed", error: e.message };
      }
      if (stopped || mine !== seq) return;
      show(state);
      if (state.status === "pending" || state.status === "generating") timer = setTimeout(poll, POLL_MS);
      else stoppers.delete(stop);
    }

    function follow() {
      stopped = false;
      clearTimeout(timer);
      stoppers.add(stop);
      poll();
    }

    box.hidden = kind === "video";
    follow();
    return { box, follow, stop };
  }

  // The picture (and, in video mode, the clip) of a scene, in `holder`.
  function sceneMedia(holder, scene, videoMode) {
    let video = null;
    const image = mediaBox(scene, "image", () => { if (video) video.follow(); });
    holder.append(image.box);
    if (videoMode) {
      video = mediaBox(scene, "video", () => image.follow());
      holder.append(video.box);
    }
    return video ? [image, video] : [image];
  }

  // -- the home: start a story -------------------------------------------------------------------
  async function home() {
    const form = $("st-start");
    const select = $("st-image-model");
    const error = $("st-start-error");
    const start = $("st-start-button");
    castLine();
    let info = null;
    try {
      info = await mm.apiJson(api(""));
    } catch (e) {
      showError(error, e.message);
      return;
    }
    const groups = new Map();  // by provider, in the order the studio gives them (local first)
    for (const model of info.imageModels) {
      if (!groups.has(model.provider)) groups.set(model.provider, []);
      groups.get(model.provider).push(model);
    }
    select.replaceChildren(...[...groups].map(([provider, models]) => el("optgroup", { label: provider },
      models.map((m) => el("option", { value: m.id, text: m.name, title: m.id })))));
    const ids = info.imageModels.map((m) => m.id);
    if (ids.length) {
      select.disabled = false;
      select.value = ids.includes(info.defaultImageModel) ? info.defaultImageModel : ids[0];
    } else {
      select.replaceChildren(el("option", { value: "", text: "No image model is usable" }));
      error.replaceChildren("No image model is usable here yet. ", el("a", { href: "/onboarding", text: "Set one up" }), ".");
      error.hidden = false;
      start.disabled = true;
    }
    $("st-video-toggle").hidden = !(info.videoAllowed && info.videoAvailable);

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.hidden = true;
      const premise = $("st-premise").value.trim();
      if (!premise) { showError(error, "Say what the story is about."); $("st-premise").focus(); return; }
      const body = {
        premise,
        text_model: $("st-text-model").value || undefined,
        image_model: select.value || undefined,
        memory_mode: $("st-memory").checked,
        video_mode: !$("st-video-toggle").hidden && $("st-video").checked,
      };
      start.disabled = true;
      start.textContent = "Starting…";
      try {
        const made = await mm.apiJson(api("/stories"), { method: "POST", json: body });
        location.assign(sceneUrl(made.story.id, made.scene.id));
      } catch (e) {
        showError(error, e.message);
        start.disabled = false;
        start.textContent = "Start";
      }
    });
  }

  // How many characters memory mode would bring along, next to its toggle.
  async function castLine() {
    const count = $("st-cast-count");
    try {
      const { items } = await mm.apiJson(api("/characters"));
      const names = items.slice(0, 3).map((c) => c.name).join(", ") + (items.length > 3 ? "…" : "");
      count.textContent = items.length
        ? root.dataset.tierName + " has " + plural(items.length, "character", "characters") + " (" + names + ")."
        : root.dataset.tierName + " has no characters yet.";
    } catch (e) {
      count.textContent = "The characters could not be counted: " + sentence(e.message);
    }
  }

  // -- the scene view ----------------------------------------------------------------------------
  async function scenePage() {
    const storyId = root.dataset.story;
    const state = $("st-state");
    let tree;
    try {
      tree = await mm.apiJson(api("/stories/" + enc(storyId)));
    } catch (e) {
      state.textContent = e.message;
      return;
    }
    const wanted = root.dataset.scene || tree.currentSceneId;
    let scene = tree.scenes.find((s) => s.id === wanted) || firstScene(tree);
    if (!scene) { state.textContent = "This story has no scenes."; return; }
    if (!root.dataset.scene) history.replaceState(null, "", sceneUrl(storyId, scene.id));

    function replaceInTree(next) {
      tree.scenes = tree.scenes.map((s) => (s.id === next.id ? next : s));
      scene = next;
    }

    function renderPath() {
      const path = pathTo(tree, scene.id);
      const list = $("st-path-list");
      list.replaceChildren(...path.map((s, i) => {
        const label = (i + 1) + ". " + sceneName(s);
        return el("li", {}, [s.id === scene.id
          ? el("span", { "aria-current": "page", text: label })
          : el("a", { href: sceneUrl(storyId, s.id), text: label })]);
      }));
      $("st-path").hidden = path.length < 2;
      $("st-read").href = readerUrl(storyId) + "?scene=" + enc(scene.id);
    }

    function renderHead(title, narrative) {
      $("st-title").textContent = title || (scene.state === "writing" ? "Writing the scene…" : sceneName(scene));
      paragraphs($("st-narrative"), narrative);
    }

    function render() {
      renderPath();
      document.title = sceneName(scene) + " · mmstudio";
      const led = $("st-led");
      led.hidden = !scene.choice;
      led.textContent = scene.choice ? "You chose: " + scene.choice : "";
      renderHead(scene.title, scene.narrative);
      $("st-error").hidden = scene.state !== "failed";
      $("st-choices").hidden = scene.state !== "written" || !scene.choices.length;
      $("st-end").hidden = scene.state !== "written" || scene.choices.length > 0;
      $("st-branches").hidden = true;
      $("st-scene").setAttribute("aria-busy", scene.state === "writing" ? "true" : "false");
      if (scene.state === "writing") {
        state.textContent = "Writing…";
        return;
      }
      if (scene.state === "failed") {
        showMedia(null);  // a picture started for an answer that was not used is gone
        state.textContent = "This scene could not be written.";
        $("st-error-text").textContent = sentence(scene.error);
        return;
      }
      state.textContent = "";
      showMedia(scene);
      renderChoices();
      renderBranches();
    }

    // The scene's picture (and video): made again only when its jobs changed, so a picture shown
    // while the narrative was written stays as it is.
    let mediaShown = null;
    let mediaBoxes = [];
    function showMedia(current) {
      const key = current ? [current.imageJobId, current.videoJobId].join("|") : null;
      if (key === mediaShown) return;
      mediaShown = key;
      for (const box of mediaBoxes) box.stop();
      $("st-media").replaceChildren();
      mediaBoxes = current ? sceneMedia($("st-media"), current, tree.videoMode) : [];
    }

    function renderChoices() {
      const list = $("st-choice-list");
      list.replaceChildren(...scene.choices.map((choice, index) => {
        const button = el("button", { type: "button", className: "st-choice", text: choice });
        button.addEventListener("click", () => choose({ choice: index }));
        return button;
      }));
    }

    function renderBranches() {
      const children = tree.scenes.filter((s) => s.parentId === scene.id);
      $("st-branches").hidden = !children.length;
      $("st-branch-list").replaceChildren(...children.map((child) => el("li", {}, [
        el("a", { href: sceneUrl(storyId, child.id), text: "Continue: " + (child.choice || sceneName(child)) }),
      ])));
    }

    async function choose(body) {
      const error = $("st-choose-error");
      error.hidden = true;
      const controls = [...document.querySelectorAll("#st-choices button, #st-own-text")];
      controls.forEach((c) => { c.disabled = true; });
      try {
        const next = await mm.apiJson(api("/scenes/" + enc(scene.id) + "/choose"), { method: "POST", json: body });
        location.assign(sceneUrl(storyId, next.id));
      } catch (e) {
        controls.forEach((c) => { c.disabled = false; });
        showError(error, e.message);
      }
    }

    $("st-own").addEventListener("submit", (event) => {
      event.preventDefault();
      const text = $("st-own-text").value.trim();
      if (text) choose({ text });
    });

    $("st-retry").addEventListener("click", async () => {
      const button = $("st-retry");
      button.disabled = true;
      try {
        replaceInTree(await mm.apiJson(api("/scenes/" + enc(scene.id) + "/retry"), { method: "POST" }));
        render();
        follow();
      } catch (e) {
        mm.toast(e.message, "error");
      } finally {
        button.disabled = false;
      }
    });

    // The scene as it is written: partial fields, then the stored scene or why it failed.
    async function follow() {
      const controller = new AbortController();
      const stop = () => controller.abort();
      stoppers.add(stop);
      let ended = false;
      try {
        const response = await mm.api(api("/scenes/" + enc(scene.id) + "/events"), { signal: controller.signal });
        for await (const { event, data } of mm.events(response, controller.signal)) {
          if (event === "partial") {
            renderHead(data.title, data.narrative);
          } else if (event === "picture" && data.scene) {
            showMedia(data.scene);  // the picture is on its way while the narrative is written
          } else if (event === "scene" || event === "error") {
            ended = true;
            const next = data.scene || Object.assign({}, scene, { state: "failed", error: data.error });
            if (event === "error" && data.error) next.error = data.error;
            replaceInTree(next);
            render();
            announce(event === "scene" ? "The scene is written." : "The scene could not be written.");
          }
        }
      } catch (e) {
        if (controller.signal.aborted) return;
      } finally {
        stoppers.delete(stop);
      }
      if (ended || controller.signal.aborted) return;
      // The stream ended without the scene (the studio restarted): look again.
      try {
        replaceInTree(await mm.apiJson(api("/scenes/" + enc(scene.id))));
      } catch (e) {
        state.textContent = e.message;
        return;
      }
      render();
      if (scene.state === "writing") {
        const timer = setTimeout(follow, POLL_MS * 2);
        stoppers.add(() => clearTimeout(timer));
      }
    }

    render();
    if (scene.state === "writing") follow();
  }

  // -- the gallery -------------------------------------------------------------------------------
  function gallery() {
    const size = Number(root.dataset.pageSize) || 12;
    const cards = $("st-cards");
    const more = $("st-more");
    const error = $("st-gallery-error");
    let offset = 0;
    let total = 0;
    let seq = 0;
    let debounce = null;

    function showTotal() {
      $("st-total").textContent = plural(total, "story", "stories");
    }

    // A deleted story's card leaves the grid; the count, the empty line and More's offset follow it,
    // and focus goes to the next card (else the previous one, else the search box).
    const askDelete = deleteDialog((storyId) => {
      const gone = cards.querySelector('.st-card[data-story="' + CSS.escape(storyId) + '"]');
      if (gone) {
        const next = gone.nextElementSibling || gone.previousElementSibling;
        gone.remove();
        offset = Math.max(0, offset - 1);
        (next ? next.querySelector(".st-card-link") : $("st-search")).focus();
      }
      total = Math.max(0, total - 1);
      showTotal();
      $("st-empty").hidden = total > 0 || !!$("st-search").value.trim();
      announce("The story was deleted.");
    });

    // Read, Continue, the two downloads and Delete, each named with the story (a grid has many).
    function cardActions(story) {
      const name = story.title || "Untitled";
      const button = (text, label, className) => el("button", { type: "button", className, text, "aria-label": label });
      const json = button("Download JSON", "Download JSON of " + name, "st-card-action");
      const html = button("Download web page", "Download web page of " + name, "st-card-action");
      const remove = button("Delete", "Delete " + name, "st-card-action danger");
      json.addEventListener("click", () => exportStory(json, story.id, "json"));
      html.addEventListener("click", () => exportStory(html, story.id, "html"));
      remove.addEventListener("click", () => askDelete(story.id, "Delete “" + name + "”?"));
      return el("div", { className: "st-card-actions", role: "group", "aria-label": "Actions for " + name }, [
        el("a", { href: readerUrl(story.id), className: "button st-card-action", text: "Read", "aria-label": "Read " + name }),
        el("a", { href: "/" + enc(tier) + "/story/" + enc(story.id), className: "button st-card-action", text: "Continue", "aria-label": "Continue " + name }),
        json, html, remove,
      ]);
    }

    function card(story) {
      const cover = story.coverUrl
        ? el("img", { src: story.coverUrl, alt: "", loading: "lazy" })
        : el("div", { className: "st-no-cover", "aria-hidden": "true", text: "✎" });
      if (story.coverUrl && hasKey()) { cover.removeAttribute("src"); setSource(cover, story.coverUrl); }
      cover.addEventListener("error", () => cover.replaceWith(el("div", { className: "st-no-cover", "aria-hidden": "true", text: "✎" })));
      const premise = story.premise.length > 140 ? story.premise.slice(0, 140).trimEnd() + "…" : story.premise;
      const created = new Date(story.createdAt);
      const meta = [
        el("span", { text: story.sceneCount === 1 ? "1 scene" : story.sceneCount + " scenes" }),
        el("time", { datetime: story.createdAt, text: created.toLocaleDateString() }),
      ];
      if (story.hasVideo) meta.push(el("span", { className: "badge accent st-video-badge", text: "Video" }));
      return el("li", { className: "card st-card", "data-story": story.id }, [
        el("div", { className: "st-cover" }, [cover]),
        el("h2", {}, [el("a", { href: readerUrl(story.id), className: "st-card-link", text: story.title || "Untitled" })]),
        el("p", { className: "muted small st-premise", text: premise }),
        el("p", { className: "small st-meta" }, meta),
        cardActions(story),
      ]);
    }

    async function load(reset) {
      const mine = ++seq;
      if (reset) offset = 0;
      const params = new URLSearchParams({ limit: String(size), offset: String(offset), sort: $("st-sort").value });
      const q = $("st-search").value.trim();
      if (q) params.set("q", q);
      more.disabled = true;
      let page;
      try {
        page = await mm.apiJson(api("/stories?" + params));
      } catch (e) {
        if (mine === seq) { showError(error, e.message); more.disabled = false; }
        return;
      }
      if (mine !== seq) return; // a newer search answered first
      error.hidden = true;
      if (reset) cards.replaceChildren();
      cards.append(...page.items.map(card));
      offset += page.items.length;
      total = page.total;
      showTotal();
      $("st-empty").hidden = page.total > 0 || !!q;
      more.hidden = offset >= page.total;
      more.disabled = false;
      if (q && !page.total) announce("No story matches.");
    }

    $("st-search").addEventListener("input", () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => load(true), 300);
    });
    $("st-sort").addEventListener("change", () => load(true));
    more.addEventListener("click", () => load(false));

    // A story file (an export, or the older format) as the JSON body; then its reader.
    const importer = $("st-import");
    importer.addEventListener("change", async () => {
      const file = importer.files[0];
      if (!file) return;
      const box = $("st-import-error");
      box.hidden = true;
      importer.disabled = true;
      announce("Importing " + file.name + "…");
      try {
        const text = await file.text();
        const story = await mm.apiJson(api("/import"), {
          method: "POST", body: text, headers: { "Content-Type": "application/json" },
        });
        location.assign(readerUrl(story.id));
      } catch (e) {
        showError(box, file.name + " could not be imported: " + sentence(e.message));
        importer.disabled = false;
        importer.value = "";
      }
    });
    load(true);
  }

  // -- the reader --------------------------------------------------------------------------------
  async function reader() {
    const storyId = root.dataset.story;
    const error = $("st-read-error");
    for (const button of [$("st-download-json"), $("st-download-html")]) {
      button.addEventListener("click", () => exportStory(button, storyId, button.dataset.kind));
    }
    const askDelete = deleteDialog(() => location.assign("/" + enc(tier) + "/gallery"));
    $("st-delete").addEventListener("click", () => askDelete(storyId));
    let tree;
    try {
      tree = await mm.apiJson(api("/stories/" + enc(storyId)));
    } catch (e) {
      showError(error, e.message);
      return;
    }
    const asked = new URLSearchParams(location.search).get("scene");
    const known = (id) => id && tree.scenes.some((s) => s.id === id);
    const target = known(asked) ? asked : known(tree.currentSceneId) ? tree.currentSceneId : (firstScene(tree) || {}).id;
    const path = target ? pathTo(tree, target) : [];
    $("st-read-title").textContent = tree.title || "Untitled story";
    $("st-read-premise").textContent = tree.premise;
    if (target) $("st-continue").href = sceneUrl(storyId, target);
    $("st-reader").replaceChildren(...path.map((scene, i) => {
      const media = el("div", { className: "st-media" });
      const item = el("li", { className: "card st-read-scene", "data-scene": scene.id }, [
        el("h2", { text: (i + 1) + ". " + sceneName(scene) }),
      ]);
      if (scene.choice) item.append(el("p", { className: "muted small", text: "You chose: " + scene.choice }));
      if (scene.state === "written") {
        item.append(media);
        const image = mediaBox(scene, "image", null);
        media.append(image.box);
        if (scene.videoJobId) media.append(mediaBox(scene, "video", null).box);
      }
      const text = el("div", { className: "st-narrative" });
      paragraphs(text, scene.narrative);
      if (scene.state === "writing") text.append(el("p", { className: "muted", text: "This scene is still being written." }));
      if (scene.state === "failed") text.append(el("p", { className: "muted", text: "This scene could not be written: " + sentence(scene.error) }));
      item.append(text);
      return item;
    }));
  }

  // Delete asks first in the page's #st-delete-dialog (the reader's and the gallery's); the story's
  // pictures and videos are kept unless the box is ticked. Returns ask(storyId, heading?): it opens the
  // dialog for that story (`heading` replaces its title); `onDeleted(storyId)` follows a delete, and a
  // failure stays in the dialog with the studio's words.
  function deleteDialog(onDeleted) {
    const dialog = $("st-delete-dialog");
    const confirm = $("st-delete-confirm");
    const problem = $("st-delete-error");
    let storyId = null;
    function ask(id, heading) {
      storyId = id;
      if (heading) $("st-delete-title").textContent = heading;
      problem.hidden = true;
      $("st-delete-media").checked = false;
      confirm.disabled = false;
      dialog.showModal();
    }
    dialog.querySelector("form").addEventListener("submit", async (event) => {
      if (!event.submitter || event.submitter.value !== "delete") return; // Cancel closes it
      event.preventDefault();
      const id = storyId;
      confirm.disabled = true;
      problem.hidden = true;
      const query = $("st-delete-media").checked ? "?media=delete" : "";
      try {
        await mm.apiJson(api("/stories/" + enc(id)) + query, { method: "DELETE" });
      } catch (e) {
        showError(problem, "The story could not be deleted: " + sentence(e.message));
        confirm.disabled = false;
        return;
      }
      dialog.close("deleted");
      onDeleted(id);
    });
    return ask;
  }

  // -- the characters (memory mode's cast) -------------------------------------------------------
  function characters() {
    const max = Number(root.dataset.photosMax) || 8;
    const form = $("st-char-form");
    const save = $("st-char-save");
    const fileInput = $("st-char-photo");
    const listError = $("st-chars-error");
    const dialog = $("st-char-delete");
    // A 400's `field` -> the input whose message box shows it.
    const FIELDS = { name: "st-char-name", description: "st-char-description", photo_ids: "st-char-photo", file: "st-char-photo" };
    let editing = null; // the character in the form, or null for a new one
    let photos = []; // the form's photos: {id, url, thumbUrl}
    let uploading = 0;
    let deleting = null;

    function clearErrors() {
      for (const id of new Set(Object.values(FIELDS))) {
        $(id + "-error").hidden = true;
        $(id).removeAttribute("aria-invalid");
      }
      $("st-char-error").hidden = true;
    }

    function fieldError(field, message) {
      const id = FIELDS[field];
      if (!id) { showError($("st-char-error"), sentence(message)); return; }
      showError($(id + "-error"), sentence(message));
      $(id).setAttribute("aria-invalid", "true");
      $(id).focus();
    }

    function thumb(photo, alt) {
      const img = el("img", { alt, loading: "lazy", decoding: "async" });
      setSource(img, photo.thumbUrl);
      return img;
    }

    function renderPhotos() {
      $("st-char-photos").replaceChildren(...photos.map((photo, i) => {
        const remove = el("button", { type: "button", className: "st-photo-remove", text: "×", "aria-label": "Remove photo " + (i + 1) });
        remove.addEventListener("click", () => {
          photos = photos.filter((p) => p !== photo);
          renderPhotos();
          fileInput.focus();
        });
        return el("li", { className: "st-photo" }, [thumb(photo, "Photo " + (i + 1)), remove]);
      }));
      fileInput.disabled = photos.length >= max;
    }

    function setMode(character) {
      editing = character;
      clearErrors();
      $("st-char-form-title").textContent = character ? "Edit " + character.name : "New character";
      save.textContent = character ? "Save changes" : "Create character";
      $("st-char-cancel").hidden = !character;
      $("st-char-name").value = character ? character.name : "";
      $("st-char-description").value = character ? character.description : "";
      photos = character ? character.photos.slice() : [];
      renderPhotos();
    }

    function card(character) {
      const edit = el("button", { type: "button", text: "Edit", "aria-label": "Edit " + character.name });
      const remove = el("button", { type: "button", className: "danger", text: "Delete", "aria-label": "Delete " + character.name });
      edit.addEventListener("click", () => { setMode(character); $("st-char-name").focus(); });
      remove.addEventListener("click", () => {
        deleting = character;
        $("st-char-delete-title").textContent = "Delete " + character.name + "?";
        dialog.returnValue = "";
        dialog.showModal();
      });
      return el("li", { className: "card st-char", "data-character": character.id }, [
        el("div", { className: "st-char-photos" }, character.photos.map((p, i) => thumb(p, character.name + ", photo " + (i + 1)))),
        el("div", { className: "st-char-body" }, [
          el("h2", { text: character.name }),
          el("p", { className: "muted st-char-description", text: character.description || "No description." }),
          el("div", { className: "row st-char-actions" }, [edit, remove]),
        ]),
      ]);
    }

    async function load() {
      let items;
      try {
        items = (await mm.apiJson(api("/characters"))).items;
      } catch (e) {
        showError(listError, e.message);
        return;
      }
      listError.hidden = true;
      $("st-chars").replaceChildren(...items.map(card));
      $("st-char-empty").hidden = items.length > 0;
      $("st-char-total").textContent = plural(items.length, "character", "characters");
    }

    // Each photo is uploaded as soon as it is picked; the character takes their ids when saved.
    fileInput.addEventListener("change", async () => {
      const files = [...fileInput.files];
      fileInput.value = "";
      if (!files.length) return;
      clearErrors();
      const room = max - photos.length;
      if (files.length > room) fieldError("file", "at most " + max + " photos per character: only the first " + room + " are kept");
      uploading++;
      save.disabled = true;
      for (const file of files.slice(0, Math.max(room, 0))) {
        const data = new FormData();
        data.append("file", file, file.name);
        try {
          photos.push(await mm.apiJson(api("/photos"), { method: "POST", body: data }));
          renderPhotos();
          announce(file.name + " was added.");
        } catch (e) {
          fieldError("file", file.name + ": " + e.message);
        }
      }
      uploading--;
      save.disabled = uploading > 0;
    });

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (uploading) return;
      clearErrors();
      const name = $("st-char-name").value;
      const description = $("st-char-description").value;
      const ids = photos.map((p) => p.id);
      const was = editing;
      let request;
      if (was) { // only what changed
        const body = {};
        if (name !== was.name) body.name = name;
        if (description !== was.description) body.description = description;
        if (ids.join(" ") !== was.photos.map((p) => p.id).join(" ")) body.photo_ids = ids;
        if (!Object.keys(body).length) { setMode(null); announce("Nothing changed."); return; }
        request = () => mm.apiJson(api("/characters/" + enc(was.id)), { method: "PATCH", json: body });
      } else {
        request = () => mm.apiJson(api("/characters"), { method: "POST", json: { name, description, photo_ids: ids } });
      }
      save.disabled = true;
      try {
        const saved = await request();
        setMode(null);
        await load();
        announce((was ? "Saved " : "Created ") + saved.name + ".");
      } catch (e) {
        fieldError(e.body && e.body.field, e.message);
      } finally {
        save.disabled = uploading > 0;
      }
    });

    $("st-char-cancel").addEventListener("click", () => setMode(null));

    dialog.addEventListener("close", async () => {
      const character = deleting;
      deleting = null;
      if (dialog.returnValue !== "delete" || !character) return;
      try {
        await mm.apiJson(api("/characters/" + enc(character.id)), { method: "DELETE" });
      } catch (e) {
        showError(listError, character.name + " could not be deleted: " + sentence(e.message));
        return;
      }
      if (editing && editing.id === character.id) setMode(null);
      await load();
      announce(character.name + " was deleted.");
    });

    setMode(null);
    load();
  }

  // -- /stories: the enabled tiers, each with its story count from the API ----------------------------
  function tiersPage() {
    for (const item of document.querySelectorAll(".st-tier-card")) {
      const count = item.querySelector(".st-tier-count");
      mm.apiJson("/api/stories/" + enc(item.dataset.tier) + "/stories?limit=1")
        .then((page) => { count.textContent = plural(page.total, "story", "stories"); })
        .catch((e) => { count.textContent = "The stories could not be counted: " + sentence(e.message); });
    }
  }

  const views = { home, scene: scenePage, gallery, read: reader, characters, tiers: tiersPage };
  document.addEventListener("DOMContentLoaded", () => {
    const view = views[root.dataset.view];
    if (view) view();
  });
})();
