// Questionnaire pages: the answer queue (autosave that retries by itself), tap-on-line for
// 0–100 scales, and the status bar. CSP-safe (no inline script).
//
// A tap shows its answer as chosen at once and the status bar says "Saving…"; when the server
// has it, the bar says "Saved", and after a one-tap answer (one choice, 0–10, yes/no) the
// server sends the next question, which takes this one's place (and its address in the
// history, so that the browser's Back button comes back to it with its answer).
//
// Every tap on an answer goes into a queue, sent in order, one at a time. A save that fails
// (no network, or the server answers 5xx, 408 or 429) is sent again after 1, 2, 4, 8… seconds,
// at most 30, without waiting for the browser to say it is back online; the question and its
// buttons stay on screen, the tapped answer stays shown as chosen, and the status bar
// (#answer-status) says the answer is not saved yet. A later tap on the same question replaces an unsent earlier one.
// The queue lives in this page's memory only: never in any kind of browser storage, so no
// health data stays on a shared phone.
(function () {
  "use strict";
  if (window.careQuestionnaire) { return; }
  window.careQuestionnaire = true;

  var FIRST_DELAY = 1000;
  var MAX_DELAY = 30000;
  var queue = [];       // {url, body, values, kind}, in the order tapped
  var sending = null;   // the entry on its way (still queue[0])
  var failing = false;  // the last attempt failed: the status area says so
  var delay = 0;
  var timer = null;
  var leaving = false;  // a link to another page was followed: the question is not redrawn

  function banner(show) {
    var element = document.getElementById("offline-banner");
    if (element) { element.hidden = !show; }
  }

  function question() { return document.getElementById("question"); }

  function urlOf(form) { return form.getAttribute("hx-post") || form.getAttribute("action"); }

  // The question on screen is the one this URL saves.
  function onScreen(url) {
    var section = question();
    if (!section) { return false; }
    return Array.prototype.some.call(section.querySelectorAll("form"), function (form) {
      return urlOf(form) === url;
    });
  }

  function pendingFor(url) {
    for (var i = queue.length - 1; i >= 0; i -= 1) {
      if (queue[i].url === url) { return queue[i]; }
    }
    return null;
  }

  // --- What the participant sees --------------------------------------------------------------

  // The status bar's line on the last answer: "saving", "saved" or "failed".
  function saveState(state) {
    var bar = document.querySelector(".q-statusbar");
    var status = document.getElementById("save-status");
    if (!bar || !status) { return; }
    var line = document.createElement("p");
    if (state === "saving") {
      line.className = "q-saving";
      line.textContent = bar.dataset.saving;
    } else if (state === "failed") {
      // #answer-status says it, with what happens next.
      status.replaceChildren();
      return;
    } else {
      line.className = "q-saved";
      line.textContent = "✓ " + bar.dataset.saved;
    }
    status.replaceChildren(line);
  }

  function showStatus() {
    var status = document.getElementById("answer-status");
    var template = document.getElementById("save-retrying");
    if (!status) { return; }
    var shown = status.querySelector(".q-retrying");
    if (failing && queue.length) {
      if (!shown && template) {
        status.replaceChildren(template.content.cloneNode(true));
      }
    } else if (shown) {
      status.replaceChildren();
    }
  }

  function pressOnly(section, form) {
    section.querySelectorAll("button[aria-pressed]").forEach(function (button) {
      button.setAttribute("aria-pressed", button.form === form ? "true" : "false");
    });
  }

  function showValue(section, value) {
    var current = section.querySelector(".q-current");
    var meter = section.querySelector(".vas-meter");
    if (meter) { meter.value = Number(value); }
    if (!current) { return; }
    var strong = document.createElement("strong");
    strong.textContent = value;
    var parts = [current.dataset.label + " ", strong];
    if (current.dataset.unit) { parts.push(" " + current.dataset.unit); }
    current.replaceChildren.apply(current, parts);
  }

  // The answer this tap stands for, as shown on screen now (which may be an unsent earlier
  // tap): a toggle adds to or removes from what is shown, − and + move from what is shown.
  function valuesOf(form) {
    var section = question();
    var toggles = form.closest(".q-choices[data-exclusive]");
    var stepper = form.closest(".q-stepper");
    if (toggles && form.dataset.option !== undefined) {
      var exclusive = JSON.parse(toggles.dataset.exclusive).map(String);
      var options = [], chosen = [];
      toggles.querySelectorAll("form[data-option]").forEach(function (each) {
        options.push(each.dataset.option);
        var button = each.querySelector("button");
        if (button && button.getAttribute("aria-pressed") === "true") {
          chosen.push(each.dataset.option);
        }
      });
      var option = form.dataset.option;
      var keep;
      if (chosen.indexOf(option) >= 0) {
        keep = chosen.filter(function (v) { return v !== option; });
      } else if (exclusive.indexOf(option) >= 0) {
        keep = [option];
      } else {
        keep = chosen.filter(function (v) { return exclusive.indexOf(v) < 0; }).concat([option]);
      }
      var selection = options.filter(function (v) { return keep.indexOf(v) >= 0; });
      toggles.querySelectorAll("form[data-option]").forEach(function (each) {
        var button = each.querySelector("button");
        if (button) {
          button.setAttribute("aria-pressed", selection.indexOf(each.dataset.option) >= 0 ? "true" : "false");
        }
      });
      return {values: selection, kind: "toggle"};
    }
    if (stepper && section) {
      var low = Number(stepper.dataset.min), high = Number(stepper.dataset.max);
      var step = Number(stepper.dataset.step);
      var up = form === stepper.querySelectorAll("form")[1];
      var shown = stepper.dataset.value;
      var next;
      if (shown === "") {
        next = up ? Math.min(high, low + step) : low;
      } else {
        next = up ? Math.min(high, Number(shown) + step) : Math.max(low, Number(shown) - step);
      }
      stepper.dataset.value = String(next);
      showValue(section, String(next));
      return {values: [String(next)], kind: "number"};
    }
    var values = new FormData(form).getAll("value").map(String);
    if (form.classList.contains("vas-form") && section) {
      var scale = section.querySelector(".q-stepper");
      if (scale) { scale.dataset.value = values[0]; }
      showValue(section, values[0]);
    } else if (section && form.querySelector("button[aria-pressed]")) {
      pressOnly(section, form);
    }
    return {values: values, kind: "value"};
  }

  // --- The queue --------------------------------------------------------------------------------

  function enqueue(form) {
    var url = urlOf(form);
    var answer = valuesOf(form);
    var body = new URLSearchParams();
    new FormData(form).forEach(function (value, name) {
      if (name !== "value") { body.append(name, value); }
    });
    answer.values.forEach(function (value) { body.append("value", value); });
    // An unsent earlier tap on the same question is replaced; the one on its way is not
    // recalled, and this one follows it.
    queue = queue.filter(function (entry) { return entry === sending || entry.url !== url; });
    queue.push({url: url, body: body});
    saveState("saving");
    if (timer) {
      clearTimeout(timer);
      timer = null;
    }
    sendNext();
  }

  function retryLater() {
    failing = true;
    delay = delay ? Math.min(delay * 2, MAX_DELAY) : FIRST_DELAY;
    saveState("failed");
    showStatus();
    if (!navigator.onLine) { banner(true); }
    timer = setTimeout(function () {
      timer = null;
      sendNext();
    }, delay);
  }

  function sendNext() {
    if (sending || timer || !queue.length) { return; }
    var entry = queue[0];
    sending = entry;
    fetch(entry.url, {
      method: "POST",
      body: entry.body,
      credentials: "same-origin",
      cache: "no-store",
      headers: {
        "HX-Request": "true",
        "HX-Target": "question",
        "HX-Current-URL": window.location.href
      }
    }).then(function (response) {
      if (response.status >= 500 || response.status === 408 || response.status === 429) {
        throw new Error("not saved: " + response.status);
      }
      return response.text().then(function (html) { return [response, html]; });
    }).then(function (result) {
      sending = null;
      queue.shift();
      failing = false;
      delay = 0;
      banner(false);
      arrived(entry, result[0], result[1]);
      showStatus();
      sendNext();
    }).catch(function () {
      sending = null;
      // Tapped again while this one was on its way: the later answer replaces it.
      if (queue.slice(1).some(function (later) { return later.url === entry.url; })) {
        queue.shift();
      }
      retryLater();
    });
  }

  // The server's answer to a save: its question fragment (saved, or refused with the reason)
  // replaces the question, unless the participant has moved on or tapped again since.
  function arrived(entry, response, html) {
    var redirect = response.headers.get("HX-Redirect");
    if (redirect) {
      window.location.href = redirect;
      return;
    }
    if (leaving || pendingFor(entry.url) || !onScreen(entry.url)) {
      // Not shown (tapped again, or the participant has moved on): the bar still tells.
      if (!queue.length && response.ok) { saveState("saved"); }
      return;
    }
    if (response.status === 204) {
      saveState("saved");
      return;
    }
    var next = response.headers.get("HX-Push-Url");
    if (next && queue.length) {
      // An answer to another question is still on its way: stay until it is saved.
      saveState("saving");
      return;
    }
    window.htmx.swap(question(), html, {swapStyle: "outerHTML"});
    if (next) { moved(next); }
  }

  // The next question has taken this one's place: its address in the history (htmx reloads it
  // from the server on Back, it keeps no copy), read from its top, its text focused for
  // screen readers.
  function moved(url) {
    // The entry being left (often the page as first loaded) is marked as htmx's too, so that
    // Back to it is reloaded from the server rather than left showing the later question.
    if (!window.history.state || !window.history.state.htmx) {
      window.history.replaceState({htmx: true}, "", window.location.href);
    }
    window.history.pushState({htmx: true}, "", url);
    window.scrollTo(0, 0);
    var heading = document.getElementById("question-text");
    if (heading) { heading.focus({preventScroll: true}); }
  }

  // Answer forms are sent by the queue, not by htmx (their hx-post stays for the markup, and
  // without JavaScript they post as plain forms).
  document.addEventListener("htmx:confirm", function (event) {
    var form = event.detail.elt;
    if (!form || form.tagName !== "FORM" || !form.closest("#question")) { return; }
    event.preventDefault();
    enqueue(form);
  });

  // A save that comes back while the next page is on its way must not redraw the question
  // under it: htmx would then swap that page in without its address.
  function boosted(event) {
    return Boolean(event.detail && (event.detail.boosted
      || (event.detail.requestConfig && event.detail.requestConfig.boosted)));
  }
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (boosted(event)) { leaving = true; }
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    if (boosted(event)) { leaving = false; }
  });

  window.addEventListener("beforeunload", function (event) {
    if (queue.length) { event.preventDefault(); }
  });

  // Offline is worth saying at once; back online, an unsent answer goes without waiting.
  window.addEventListener("offline", function () { banner(true); });
  window.addEventListener("online", function () {
    banner(false);
    if (timer) {
      clearTimeout(timer);
      timer = null;
    }
    sendNext();
  });
  document.addEventListener("htmx:sendError", function () {
    if (!navigator.onLine) { banner(true); }
  });

  function showState() {
    if (!navigator.onLine) { banner(true); }
    showStatus();
  }
  document.addEventListener("DOMContentLoaded", showState);
  document.addEventListener("htmx:afterSettle", showState);

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
