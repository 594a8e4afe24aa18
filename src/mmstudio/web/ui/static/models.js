// The models dashboard: the list is HTMX fragments; this keeps what the user opened or closed open or
// closed when the list reloads after an action, and hides the detection results on request.
"use strict";

(function () {
  // endpoint id → open, for the groups the user toggled (a click on the summary, which Enter and Space
  // also send; "toggle" would also fire for the list's own defaults)
  const chosen = new Map();

  document.addEventListener("click", (event) => {
    const summary = event.target.closest("details.group > summary");
    if (!summary) return;
    const group = summary.parentElement;
    chosen.set(group.dataset.endpoint, !group.open);
  });

  document.addEventListener("htmx:afterSwap", (event) => {
    if (!event.detail.target || event.detail.target.id !== "model-list") return;
    event.detail.target.querySelectorAll("details.group").forEach((group) => {
      const open = chosen.get(group.dataset.endpoint);
      if (open !== undefined) group.open = open;
    });
  });

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-dismiss]");
    if (!button) return;
    const target = document.querySelector(button.dataset.dismiss);
    if (target) target.innerHTML = "";
    const detect = document.getElementById("detect-models");
    if (detect) detect.focus();
  });
})();
