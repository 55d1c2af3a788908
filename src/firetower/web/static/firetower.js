// firetower console: the live timeline and a guard for HTMX answers that are not fragments.
(function () {
  "use strict";

  // Connect the timeline to its server-sent event stream. The browser reconnects on its
  // own and sends Last-Event-ID, so nothing is missed; an entry already shown is skipped.
  function connectTimeline() {
    var list = document.getElementById("timeline");
    if (!list || list.dataset.connected) return;
    list.dataset.connected = "yes";
    var indicator = document.getElementById("live-indicator");
    var source = new EventSource(list.dataset.stream);
    function show(state, text) {
      if (!indicator) return;
      indicator.dataset.state = state;
      indicator.textContent = text;
    }
    source.onopen = function () { show("live", "● live"); };
    source.onerror = function () {
      show("down", source.readyState === EventSource.CLOSED ? "○ disconnected; reload the page" : "○ reconnecting…");
    };
    source.addEventListener("entry", function (event) {
      var holder = document.createElement("template");
      holder.innerHTML = event.data.trim();
      var entry = holder.content.firstElementChild;
      if (!entry || document.getElementById(entry.id)) return;
      entry.classList.add("fresh");
      list.appendChild(entry);
      if (window.htmx) window.htmx.process(entry);
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  document.addEventListener("DOMContentLoaded", connectTimeline);

  // An answer without the fragment HTMX wanted (a logged-out session, an expired CSRF
  // token, an error page) is shown by loading the page normally instead of swapping in nothing.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var wanted = event.detail.elt.closest("[hx-select]");
    var selector = wanted && wanted.getAttribute("hx-select");
    if (!selector) return;
    var holder = document.createElement("template");
    holder.innerHTML = event.detail.serverResponse || "";
    if (!holder.content.querySelector(selector)) {
      event.detail.shouldSwap = false;
      window.location.reload();
    }
  });
})();
