// Registers the service worker (patient_portal/templates/pwa/sw.js) and tells it the page's
// language, so that an offline navigation shows the offline page in that language.
(function () {
  "use strict";
  // Android's install prompt, kept until the participant taps "Install the app" in settings:
  // browsers only show it from a tap, and we never show it unasked.
  var deferredInstall = null;
  window.addEventListener("beforeinstallprompt", function (event) {
    event.preventDefault();
    deferredInstall = event;
    var button = document.getElementById("install-app");
    if (button) { button.hidden = false; }
  });
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("#install-app");
    if (!button || !deferredInstall) { return; }
    deferredInstall.prompt();
    deferredInstall.userChoice.then(function () {
      deferredInstall = null;
      button.hidden = true;
    });
  });
  window.addEventListener("appinstalled", function () {
    var button = document.getElementById("install-app");
    if (button) { button.hidden = true; }
  });

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
