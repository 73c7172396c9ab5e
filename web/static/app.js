// Progressive enhancement only: every form works without this file.
// htmx requests carry the CSRF token that the page was rendered with.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  document.addEventListener("htmx:configRequest", function (event) {
    if (meta) { event.detail.headers["X-CSRFToken"] = meta.content; }
  });
}());

// A page that answers with a refusal takes focus to it: scrolled into view (clear of the header
// and the call bar) and read out, instead of the form looking unchanged under the bar.
(function () {
  "use strict";
  var refusal = document.querySelector('main [role="alert"]');
  if (!refusal || (document.activeElement && document.activeElement !== document.body)) { return; }
  refusal.setAttribute("tabindex", "-1");
  refusal.focus();
}());

// The app shell works offline once the service worker has been installed.
if ("serviceWorker" in navigator && window.isSecureContext) {
  navigator.serviceWorker.register("/sw.js").catch(function () { /* pages work without it */ });
}

// The login page means nobody is signed in here (logged out, or the session ended elsewhere):
// the last copies of the volunteer's pages, kept for a walk without signal, go too.
if (window.caches && document.querySelector('form[action="/login"]')) {
  caches.delete("timebank-pages-v1").catch(function () { /* nothing cached */ });
}

// The elder's ask form: while today is the day, a part of today that is over cannot be chosen
// (the server refuses it too), and her choices stay in the address, so that a header button
// (text size, language) comes back to them.
(function () {
  "use strict";
  var form = document.querySelector("form[data-ask-choices]");
  if (!form) { return; }
  var next = document.querySelector('form.prefs input[name="next"]');
  function update() {
    var today = form.querySelector('input[name="day"][data-today]');
    var overToday = form.querySelectorAll('input[name="part"][data-over-today]');
    Array.prototype.forEach.call(overToday, function (part) {
      part.disabled = Boolean(today && today.checked);
      if (part.disabled) { part.checked = false; }
    });
    if (!form.querySelector('input[name="part"]:checked')) {
      var first = form.querySelector('input[name="part"]:not(:disabled)');
      if (first) { first.checked = true; }
    }
    var query = new URLSearchParams();
    ["day", "part", "minutes", "pay"].forEach(function (name) {
      var chosen = form.querySelector('input[name="' + name + '"]:checked');
      if (chosen) { query.set(name, chosen.value); }
    });
    var here = location.pathname + "?" + query.toString();
    history.replaceState(null, "", here);
    if (next) { next.value = here; }
  }
  form.addEventListener("change", update);
  update();
}());
