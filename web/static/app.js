// Progressive enhancement only: every form works without this file.
// htmx requests carry the CSRF token that the page was rendered with.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  document.addEventListener("htmx:configRequest", function (event) {
    if (meta) { event.detail.headers["X-CSRFToken"] = meta.content; }
  });
}());
