// The print button of the desk's paper pages (shown only where JavaScript runs).
for (const button of document.querySelectorAll("[data-print]")) {
  button.hidden = false;
  button.addEventListener("click", () => window.print());
}
