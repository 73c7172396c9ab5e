// The visit on the volunteer's phone: check in, check out, sign the record, send it — or keep
// it until the phone is online again. Progressive: without this file the forms post as usual.
//
// The device key is made here on first use: WebCrypto Ed25519 (private key non-extractable)
// where the browser has it, else the vendored @noble/ed25519. Its public half is registered
// with POST /v1/me/devices; the private half never leaves this phone. Each record is checked
// by POST /v1/records/draft, whose signing bytes (the record digest, prefixed) are signed here, then sent to
// POST /v1/records with an Idempotency-Key kept beside it in IndexedDB, so a retry after a
// lost answer never logs it twice.
"use strict";

const DB_NAME = "timebank";
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const lang = document.documentElement.lang;
const texts = (document.getElementById("visit-texts") || { dataset: {} }).dataset;

function openDb() {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(DB_NAME, 1);
    open.onupgradeneeded = () => {
      open.result.createObjectStore("keys");
      open.result.createObjectStore("visits");
      open.result.createObjectStore("outbox", { keyPath: "key" });
    };
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error);
  });
}

async function store(name, mode, action) {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(name, mode);
    const request = action(tx.objectStore(name));
    tx.oncomplete = () => resolve(request ? request.result : undefined);
    tx.onerror = () => reject(tx.error);
  });
}

const b64 = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)));
const unb64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
const randomHex = () => Array.from(crypto.getRandomValues(new Uint8Array(16)),
  (b) => b.toString(16).padStart(2, "0")).join("");
const nowText = () => new Date().toISOString().replace(/\.\d+Z$/, "Z");

class Offline extends Error {}
class Refused extends Error {}
class KeyRefused extends Error {}  // the phone's key, not the record: the record stays queued

async function api(path, body, headers = {}) {
  let response;
  try {
    response = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrftoken": csrf,
        "accept-language": lang, ...headers },
      body: JSON.stringify(body),
    });
  } catch (error) {
    throw new Offline(String(error));
  }
  const answer = await response.json().catch(() => ({}));
  if (response.ok) { return answer; }
  if (response.status >= 500 || response.status === 409 && answer.type === "urn:timebank:problem:in-progress") {
    throw new Offline(answer.detail || String(response.status));
  }
  throw new Refused(answer.detail || answer.title || String(response.status));
}

async function makeKey() {
  try {
    const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
    const raw = await crypto.subtle.exportKey("raw", pair.publicKey);
    return { kind: "webcrypto", privateKey: pair.privateKey, publicKey: b64(raw) };
  } catch (unsupported) {
    const ed = await import("/static/vendor/noble-ed25519.js");
    const secret = ed.utils.randomPrivateKey();
    return { kind: "noble", secret, publicKey: b64(await ed.getPublicKeyAsync(secret)) };
  }
}

async function deviceKey() {
  let key = await store("keys", "readonly", (s) => s.get("device"));
  if (key && key.id) { return key; }
  key = key || await makeKey();
  await store("keys", "readwrite", (s) => s.put(key, "device"));  // kept even if offline
  let device;
  try {
    device = await api("/v1/me/devices", { public_key: key.publicKey, name: "phone browser" });
  } catch (error) {
    throw error instanceof Refused ? new KeyRefused(error.message) : error;
  }
  key.id = device.id;
  await store("keys", "readwrite", (s) => s.put(key, "device"));
  return key;
}

async function sign(key, bytes) {
  if (key.kind === "webcrypto") {
    return b64(await crypto.subtle.sign({ name: "Ed25519" }, key.privateKey, bytes));
  }
  const ed = await import("/static/vendor/noble-ed25519.js");
  return b64(await ed.signAsync(bytes, key.secret));
}

async function send(item) {
  const draft = await api("/v1/records/draft", item.draft);
  const key = await deviceKey();
  const signature = await sign(key, unb64(draft.to_sign));
  return api("/v1/records", { ...item.draft, ...item.extra, device_key_id: key.id, signature },
    { "idempotency-key": item.key });
}

async function showQueue(message) {
  const items = await store("outbox", "readonly", (s) => s.getAll());
  for (const banner of document.querySelectorAll("#queue")) {
    const text = message || (items.length ? (texts.waiting || "%(n)s").replace("%(n)s", items.length) : "");
    banner.textContent = text;
    banner.hidden = !text;
  }
  return items;
}

let flushing = false;
async function flush() {
  if (flushing) { return "busy"; }
  flushing = true;
  let outcome = "sent";
  try {
    for (const item of await showQueue()) {
      // A phone that reports no connection is believed: nothing is tried until its "online"
      // event (a phone that wrongly reports one fails at fetch below, and waits the same way).
      if (navigator.onLine === false) { outcome = "waiting"; break; }
      try {
        await send(item);
      } catch (error) {
        if (error instanceof Offline) { outcome = "waiting"; break; }
        if (error instanceof KeyRefused) {
          await showQueue(`${texts.keyRefused || ""} ${error.message}`);
          outcome = "refused";
          break;
        }
        await store("outbox", "readwrite", (s) => s.delete(item.key));
        await showQueue(`${texts.refused || ""} ${error.message}`);
        outcome = "refused";
        continue;
      }
      await store("outbox", "readwrite", (s) => s.delete(item.key));
      await store("visits", "readwrite", (s) => s.delete(item.draft.request_id));
    }
  } finally {
    flushing = false;
  }
  if (outcome !== "refused") { await showQueue(); }
  if (outcome === "waiting" && navigator.onLine) {
    // Online but not through: the server was busy, or another page of this phone is sending the
    // same record right now (its answer tells this one "in progress"). Try again shortly.
    setTimeout(flush, 3000);
  }
  return outcome;
}

// The time in the bank's time zone (the one the visit's window is shown in), not the phone's.
function shownTime(time) {
  const zone = document.getElementById("visit")?.dataset.zone;
  try {
    return new Date(time).toLocaleTimeString(lang, zone ? { timeZone: zone } : {});
  } catch {  // an unknown zone name: the phone's own
    return new Date(time).toLocaleTimeString(lang);
  }
}

function showCheckedIn(time) {
  const state = document.getElementById("visit-state");
  state.textContent = (texts.checkedIn || "%(time)s").replace("%(time)s", shownTime(time));
  document.getElementById("check-in-form")?.setAttribute("hidden", "");
  document.getElementById("check-out-form").hidden = false;
  document.getElementById("signing-note").hidden = false;
}

async function setUpVisit(visit) {
  const requestId = visit.dataset.request;
  const saved = await store("visits", "readonly", (s) => s.get(requestId));
  if (saved) { showCheckedIn(saved.checkIn); }
  document.getElementById("check-in-form")?.addEventListener("submit", async (event) => {
    event.preventDefault();
    const checkIn = nowText();
    await store("visits", "readwrite", (s) => s.put({ checkIn }, requestId));
    showCheckedIn(checkIn);
  });
  document.getElementById("check-out-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const button = form.querySelector("button");
    // A second tap while the first is on its way would queue a second record of the same
    // visit (a new key, a later check-out), which the server refuses as an overlap.
    if (button.disabled) { return; }
    button.disabled = true;
    let outcome = "waiting";
    try {
      const code = form.elements.confirmation_code.value.trim();
      const extra = code ? { confirmation_code: code } : {};
      const queued = await store("outbox", "readonly", (s) => s.getAll());
      // Waiting already (no signal): that record goes, under its key (a refused one leaves
      // the outbox, and the next tap queues the visit again).
      if (!queued.some((item) => item.draft.request_id === requestId)) {
        const saved = await store("visits", "readonly", (s) => s.get(requestId));
        const checkIn = saved ? saved.checkIn : form.elements.check_in.value;
        await store("outbox", "readwrite", (s) => s.put({
          key: randomHex(),
          draft: { elder_id: visit.dataset.elder, service_code: visit.dataset.service,
            check_in: checkIn, check_out: nowText(), request_id: requestId },
          extra,
        }));
      }
      outcome = await flush();
    } finally {
      if (outcome === "sent") {
        window.location.assign("/volunteer?done=1");
      } else {
        button.disabled = false;
      }
    }
  });
}

const visit = document.getElementById("visit");
if (visit) { setUpVisit(visit); }
window.addEventListener("online", flush);
flush();
