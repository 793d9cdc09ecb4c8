// Reminder preferences: turning notifications on and off for this phone.
// Permission is asked only when the participant taps the button, after the page has explained
// why. The subscription goes to the server; nothing is kept in the browser's storage.
(function () {
  "use strict";

  function csrfToken() {
    var holder = document.getElementById("page");
    try {
      return JSON.parse(holder.getAttribute("hx-headers"))["X-CSRFToken"];
    } catch (error) {
      return "";
    }
  }

  function keyBytes(base64url) {
    var padded = (base64url + "===".slice((base64url.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    var raw = atob(padded);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i += 1) { bytes[i] = raw.charCodeAt(i); }
    return bytes;
  }

  function isAppleMobile() {
    var ua = navigator.userAgent || "";
    return /iPhone|iPad|iPod/.test(ua) || (ua.indexOf("Macintosh") >= 0 && navigator.maxTouchPoints > 1);
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(body),
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) { throw new Error(data.error || ""); }
        return data;
      });
    });
  }

  function setUp(panel) {
    if (panel.dataset.ready) { return; }
    panel.dataset.ready = "yes";
    var enable = panel.querySelector(".push-enable");
    var disable = panel.querySelector(".push-disable");
    var on = panel.querySelector(".push-on");
    var off = panel.querySelector(".push-off");
    var status = panel.querySelector(".push-status");
    var standalone = window.matchMedia("(display-mode: standalone)").matches || navigator.standalone === true;

    function show(subscribed) {
      on.hidden = !subscribed;
      off.hidden = subscribed;
    }

    if (isAppleMobile() && !standalone) {
      panel.querySelector(".ios-note").hidden = false;
    }
    if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
      enable.disabled = true;
      status.textContent = panel.dataset.msgUnsupported;
      return;
    }
    navigator.serviceWorker.ready.then(function (registration) {
      return registration.pushManager.getSubscription();
    }).then(function (subscription) { show(Boolean(subscription)); });

    enable.addEventListener("click", function () {
      status.textContent = panel.dataset.msgWorking;
      enable.disabled = true;
      Notification.requestPermission().then(function (permission) {
        if (permission !== "granted") { throw new Error(panel.dataset.msgDenied); }
        return navigator.serviceWorker.ready;
      }).then(function (registration) {
        return registration.pushManager.subscribe({
          userVisibleOnly: true,
          applicationServerKey: keyBytes(panel.dataset.key),
        });
      }).then(function (subscription) {
        return post(panel.dataset.subscribeUrl, subscription.toJSON());
      }).then(function (data) {
        status.textContent = data.message;
        show(true);
        // The server now has a phone to reach: the switch can be used (and is on, as saved).
        var toggle = document.getElementById("channel-push");
        var why = document.getElementById("channel-push-why");
        if (toggle) {
          toggle.disabled = false;
          toggle.checked = true;
          toggle.removeAttribute("aria-describedby");
        }
        if (why) { why.hidden = true; }
      }).catch(function (error) {
        var known = error && error.message && error.message !== "" && error.name === "Error";
        status.textContent = known ? error.message : panel.dataset.msgFailed;
      }).then(function () { enable.disabled = false; });
    });

    disable.addEventListener("click", function () {
      status.textContent = panel.dataset.msgWorking;
      navigator.serviceWorker.ready.then(function (registration) {
        return registration.pushManager.getSubscription();
      }).then(function (subscription) {
        if (!subscription) { return null; }
        var endpoint = subscription.endpoint;
        return subscription.unsubscribe().then(function () {
          return post(panel.dataset.unsubscribeUrl, { endpoint: endpoint });
        });
      }).then(function (data) {
        status.textContent = data ? data.message : "";
        show(false);
      }).catch(function () { status.textContent = panel.dataset.msgFailed; });
    });
  }

  // After a form is sent, the page comes back (Post/Redirect/Get) with the confirmation beside
  // the button that was tapped: bring it into view, as the URL's #anchor does without script
  // (htmx's redirect drops the anchor).
  function showConfirmation() {
    var notice = document.querySelector(".reminder-section .notice");
    if (notice) { notice.scrollIntoView({ block: "center" }); }
  }

  function init() {
    var panel = document.getElementById("push-panel");
    if (panel) { setUp(panel); }
    // After htmx's own scrolling (a boosted swap ends by scrolling to the top).
    window.setTimeout(showConfirmation, 0);
  }

  document.addEventListener("DOMContentLoaded", init);
  // hx-boost swaps the body: set up again when the preferences page arrives that way.
  document.addEventListener("htmx:afterSettle", init);
})();
