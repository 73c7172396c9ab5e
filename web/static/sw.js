// The service worker: the app shell from the cache, the volunteer's pages from the network
// with the last copy as a fallback when there is no signal. API calls are never cached. A new
// release changes the shell's cache name, so the browser installs this worker again. Logging
// out drops the copies of the pages: on a shared phone, the next person must not read them.
"use strict";
const SHELL = "timebank-shell-{shell_version}";  // the server writes a digest of web/static
const PAGES = "timebank-pages-v1";
const SHELL_FILES = [
  "/static/app.css", "/static/app.js", "/static/visit.js", "/static/vendor/htmx.min.js",
  "/static/vendor/noble-ed25519.js", "/static/icon.svg", "/static/manifest.webmanifest",
];

self.addEventListener("install", (event) => {
  // Past the browser's HTTP cache: a new release's shell must not be filled with the old files.
  event.waitUntil(caches.open(SHELL).then((cache) => cache.addAll(
    SHELL_FILES.map((url) => new Request(url, { cache: "reload" })))));
  self.skipWaiting();
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys().then((names) => Promise.all(names
    .filter((n) => n !== SHELL && n !== PAGES).map((n) => caches.delete(n))))
    .then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (url.origin !== self.location.origin) { return; }
  if (event.request.method === "POST" && /^\/logout(-all)?$/.test(url.pathname)) {
    event.waitUntil(caches.delete(PAGES));  // the logout itself goes to the network
    return;
  }
  if (event.request.method !== "GET") { return; }
  if (url.pathname.startsWith("/static/")) {
    event.respondWith(caches.match(event.request).then((hit) => hit || fetch(event.request)));
  } else if (event.request.mode === "navigate" && url.pathname.startsWith("/volunteer")) {
    event.respondWith(fetch(event.request).then((response) => {
      if (response.ok) {
        const copy = response.clone();
        caches.open(PAGES).then((cache) => cache.put(event.request, copy));
      }
      return response;
    }).catch(() => caches.match(event.request).then((hit) => hit || Response.error())));
  }
});
