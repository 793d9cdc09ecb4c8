// Passkey ceremonies for buttons marked data-passkey="register" or "authenticate".
// Uses @simplewebauthn/browser (from npm, loaded as a global). Nothing is kept in browser storage.
(function () {
  "use strict";

  function csrfToken() {
    var input = document.querySelector('input[name="csrf_token"]');
    return input ? input.value : "";
  }

  function say(button, text) {
    var status = document.getElementById(button.getAttribute("aria-describedby"));
    if (status) { status.textContent = text; }
  }

  async function post(url, body) {
    var headers = { "X-CSRFToken": csrfToken() };
    if (body !== undefined) { headers["Content-Type"] = "application/json"; }
    var response = await fetch(url, {
      method: "POST", credentials: "same-origin", headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body)
    });
    var data = {};
    try { data = await response.json(); } catch (ignored) { data = {}; }
    return { ok: response.ok, data: data };
  }

  async function runCeremony(button) {
    var lib = window.SimpleWebAuthnBrowser;
    if (!lib || !lib.browserSupportsWebAuthn()) {
      say(button, button.dataset.messageUnsupported);
      return;
    }
    if (!navigator.onLine) { say(button, button.dataset.messageOffline); return; }
    button.disabled = true;
    say(button, "");
    try {
      var options = await post(button.dataset.optionsUrl);
      if (!options.ok) { say(button, options.data.error || button.dataset.messageFailed); return; }
      var answer = button.dataset.passkey === "register"
        ? await lib.startRegistration({ optionsJSON: options.data })
        : await lib.startAuthentication({ optionsJSON: options.data });
      var result = await post(button.dataset.verifyUrl, answer);
      if (result.ok && result.data.redirect) {
        window.location.assign(result.data.redirect);
        return;
      }
      say(button, result.data.error || button.dataset.messageFailed);
    } catch (error) {
      var cancelled = error && (error.name === "NotAllowedError" || error.name === "AbortError");
      say(button, cancelled ? button.dataset.messageCancelled : button.dataset.messageFailed);
    } finally {
      button.disabled = false;
    }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-passkey]");
    if (button) { event.preventDefault(); runCeremony(button); }
  });
})();
