// Small, CSP-safe behaviour of our own. No health data is ever written to browser storage.
(function () {
  "use strict";

  // After an htmx page swap, move focus to the main region so screen readers announce the page.
  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.detail.boosted) {
      var main = document.getElementById("main");
      if (main) { main.focus({ preventScroll: false }); }
    }
  });
})();
