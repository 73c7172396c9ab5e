// The OpenAPI page, served from this server's own files (no CDN, no validator badge).
window.addEventListener("load", function () {
  "use strict";
  window.SwaggerUIBundle({
    url: document.getElementById("swagger-ui").dataset.url,
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true,
  });
});
