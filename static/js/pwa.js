// Registers the service worker (patient_portal/templates/pwa/sw.js) and tells it the page's
// language, so that an offline navigation shows the offline page in that language.
(function () {
  "use strict";
  if (!("serviceWorker" in navigator)) { return; }
  var workerUrl = document.currentScript.dataset.worker;

  function tellLanguage(worker) {
    if (worker) { worker.postMessage({ language: document.documentElement.lang }); }
  }

  window.addEventListener("load", function () {
    // updateViaCache "none": every navigation checks for a new worker, so a deploy is seen at once.
    navigator.serviceWorker
      .register(workerUrl, { scope: "/", updateViaCache: "none" })
      .catch(function () { /* The portal works without it; only offline help is missing. */ });
  });
  navigator.serviceWorker.ready.then(function (registration) { tellLanguage(registration.active); });
  navigator.serviceWorker.addEventListener("controllerchange", function () {
    tellLanguage(navigator.serviceWorker.controller);
  });
})();
