// Questionnaire pages: tap-on-line for 0–100 scales, and the offline banner with a resend.
// CSP-safe (no inline script). The unsent answer is kept in memory only: never in
// any kind of browser storage, so no health data stays on a shared phone.
(function () {
  "use strict";
  if (window.careQuestionnaire) { return; }
  window.careQuestionnaire = true;

  var unsent = null; // the form whose answer did not reach the server

  function banner(show) {
    var element = document.getElementById("offline-banner");
    if (element) { element.hidden = !show; }
  }

  function resend() {
    if (!unsent || !navigator.onLine) { return; }
    var form = unsent;
    unsent = null;
    if (form.isConnected) {
      form.requestSubmit();
    } else {
      banner(false);
    }
  }

  document.addEventListener("htmx:sendError", function (event) {
    var form = event.detail.elt && event.detail.elt.closest ? event.detail.elt.closest("form") : null;
    if (form) { unsent = form; }
    banner(true);
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail.successful || (event.detail.xhr && event.detail.xhr.status > 0)) {
      if (!unsent) { banner(false); }
    }
  });

  window.addEventListener("offline", function () { banner(true); });
  window.addEventListener("online", function () {
    if (unsent) { resend(); } else { banner(false); }
  });

  function showIfOffline() {
    if (!navigator.onLine) { banner(true); }
  }
  document.addEventListener("DOMContentLoaded", showIfOffline);
  document.addEventListener("htmx:afterSettle", showIfOffline);

  // Tap on the line of a 0–100 scale: the position becomes the answer (no dragging).
  document.addEventListener("click", function (event) {
    var line = event.target.closest ? event.target.closest(".vas-line") : null;
    if (!line) { return; }
    var form = line.closest("form");
    var box = line.getBoundingClientRect();
    if (!form || box.width <= 0) { return; }
    var low = Number(line.dataset.min), high = Number(line.dataset.max);
    var ratio = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
    form.querySelector("input[name=value]").value = String(Math.round(low + ratio * (high - low)));
    form.requestSubmit();
  });
})();
