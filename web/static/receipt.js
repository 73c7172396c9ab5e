// The public page's receipt checker: the browser verifies a c2sp.org/tlog-proof@v1 receipt
// on its own, without asking the server, with the same checks as `timebank audit receipt`:
//
//   1. the checkpoint note is signed (Ed25519) by the verifier key in the form;
//   2. the entry (the receipt's `extra` line) is canonical JSON whose seq is the index, and
//      its postings keep the ledger's basic rules;
//   3. its RFC 6962 leaf hash SHA-256(0x00 ‖ leaf) folds with the proof (RFC 9162 §2.1.3.2)
//      to the checkpoint's signed root.
//
// Ed25519 comes from WebCrypto where the browser has it, else the vendored @noble/ed25519.
// A receipt's QR code in a photo or screenshot is read by the vendored jsQR (below).
// WebCrypto needs a secure context (https:// or http://127.0.0.1); elsewhere the form posts
// to the server, which then says that it did the check.
"use strict";

const HEADER = "c2sp.org/tlog-proof@v1";
const SIG_PREFIX = "\u2014 ";
const form = document.getElementById("receipt-form");
const out = document.getElementById("result");
const texts = document.getElementById("check-texts").dataset;
const reasons = JSON.parse(texts.reasons);
const kinds = JSON.parse(texts.kinds);
const NO_POSTINGS = new Set(["policy", "seal", "registration", "approval"]);

class Refusal extends Error {
  constructor(code, detail = "", values = {}) {
    super(code);
    this.code = code;
    this.values = { detail, ...values };
  }
}

const fill = (text, values) =>
  text.replace(/%\((\w+)\)s/g, (whole, name) => (name in values ? String(values[name]) : whole));

function unb64(text, what) {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    throw new Refusal("format", `${what} is not valid base64`);
  }
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

const concat = (...parts) => {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { all.set(p, at); at += p.length; }
  return all;
};
const sha256 = async (bytes) => new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

// ------------------------------------------------------------------ formats (ledger/note.py)

function parseProof(text) {
  const split = text.indexOf("\n\n");
  if (split < 0) { throw new Refusal("format", "no blank line before its checkpoint"); }
  const lines = text.slice(0, split).split("\n");
  if (lines[0] !== HEADER) { throw new Refusal("format", `it must start with ${HEADER}`); }
  const rest = lines.slice(1);
  let extra = null;
  if (rest.length && rest[0].startsWith("extra ")) { extra = unb64(rest.shift().slice(6), "extra"); }
  if (!rest.length || !/^index [0-9]+$/.test(rest[0])) { throw new Refusal("format", "no index line"); }
  const index = Number(rest.shift().slice(6));
  if (!Number.isSafeInteger(index)) { throw new Refusal("format", "the index is too large"); }
  const hashes = rest.map((line) => unb64(line, "a proof hash"));
  if (hashes.some((h) => h.length !== 32)) { throw new Refusal("format", "a proof hash is not 32 bytes"); }
  return { index, hashes, checkpoint: text.slice(split + 2), extra };
}

function parseNote(text) {
  const split = text.lastIndexOf("\n\n");
  if (split < 0 || !text.endsWith("\n")) {
    throw new Refusal("format", "the checkpoint has no blank line before its signatures");
  }
  if (/[\r\x00-\x09\x0b-\x1f]/.test(text)) { throw new Refusal("format", "control characters"); }
  const body = text.slice(0, split + 1);
  const signatures = text.slice(split + 2, -1).split("\n").filter((l) => l !== "").map((line) => {
    if (!line.startsWith(SIG_PREFIX)) { throw new Refusal("format", `malformed signature line ${line.slice(0, 40)}`); }
    const rest = line.slice(SIG_PREFIX.length);
    const space = rest.indexOf(" ");
    const name = space < 0 ? rest : rest.slice(0, space);
    const b64 = space < 0 ? "" : rest.slice(space + 1);
    if (!name || !b64 || b64.includes(" ")) { throw new Refusal("format", `malformed signature line ${line.slice(0, 40)}`); }
    const raw = unb64(b64, `the signature by ${name}`);
    if (raw.length < 5) { throw new Refusal("format", `the signature by ${name} is too short`); }
    return { name, keyId: raw.slice(0, 4), signature: raw.slice(4) };
  });
  if (!signatures.length) { throw new Refusal("format", "the checkpoint has no signatures"); }
  const lines = body.split("\n");
  if (lines.length < 4 || lines[lines.length - 1] !== "") {
    throw new Refusal("format", "the checkpoint must have origin, size and root lines");
  }
  const [origin, size, root] = lines;
  if (!origin || !/^(0|[1-9][0-9]*)$/.test(size) || !Number.isSafeInteger(Number(size))) {
    throw new Refusal("format", "the checkpoint's origin or size is malformed");
  }
  const rootBytes = unb64(root, "the checkpoint root");
  if (rootBytes.length !== 32) { throw new Refusal("format", "the checkpoint root is not 32 bytes"); }
  return { body, signatures, origin, size: Number(size), root: rootBytes };
}

async function parseKey(text) {
  const first = text.indexOf("+");
  const second = first < 0 ? -1 : text.indexOf("+", first + 1);
  if (second < 0) { throw new Refusal("key", "it must be <name>+<hex id>+<base64 key>"); }
  const name = text.slice(0, first);
  const id = text.slice(first + 1, second).toLowerCase();
  if (/[\s+]/.test(name) || !name) { throw new Refusal("key", "the name is malformed"); }
  if (!/^[0-9a-f]{8}$/.test(id)) { throw new Refusal("key", "the key id is not 8 hex digits"); }
  let raw;
  try { raw = unb64(text.slice(second + 1), "the key"); } catch (e) { throw new Refusal("key", "the key is not base64"); }
  if (raw.length !== 33 || raw[0] !== 0x01) { throw new Refusal("key", "it is not an Ed25519 (0x01) key"); }
  const computed = hex((await sha256(concat(new TextEncoder().encode(name + "\n"), raw))).slice(0, 4));
  if (computed !== id) { throw new Refusal("key", `its id ${id} does not match the key`); }
  return { name, keyId: Uint8Array.from(id.match(/../g), (h) => parseInt(h, 16)), publicKey: raw.slice(1) };
}

// ------------------------------------------------------------------ Ed25519

let how = "WebCrypto Ed25519";
async function ed25519Verify(publicKey, signature, message) {
  try {
    const key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
    how = "WebCrypto Ed25519";
    return await crypto.subtle.verify({ name: "Ed25519" }, key, signature, message);
  } catch (unsupported) {
    const ed = await import("/static/vendor/noble-ed25519.js");
    how = "@noble/ed25519";
    try { return await ed.verifyAsync(signature, message, publicKey); } catch (bad) { return false; }
  }
}

// ------------------------------------------------------------------ the entry

function canonical(value) {
  if (value === null || typeof value === "boolean" || typeof value === "string") { return JSON.stringify(value); }
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) { throw new Error("a number that is not a safe integer"); }
    return String(value);
  }
  if (Array.isArray(value)) { return "[" + value.map(canonical).join(",") + "]"; }
  const keys = Object.keys(value).sort();
  return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonical(value[k])).join(",") + "}";
}

const FIELDS = ["body", "id", "kind", "postings", "prev", "seq", "signatures", "time", "v"];

function decodeEntry(leaf) {
  let text;
  let entry;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(leaf);
    entry = JSON.parse(text);
  } catch (e) {
    throw new Refusal("entry", "not UTF-8 JSON");
  }
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)
      || Object.keys(entry).sort().join() !== FIELDS.join()) {
    throw new Refusal("entry", "not the nine fields of an entry");
  }
  let again;
  try { again = canonical(entry); } catch (e) { throw new Refusal("entry", e.message); }
  if (again !== text) { throw new Refusal("entry", "not in canonical form (RFC 8785)"); }
  if (entry.v !== 1 || !Number.isSafeInteger(entry.seq) || typeof entry.kind !== "string"
      || typeof entry.time !== "string" || !Array.isArray(entry.postings)
      || entry.postings.some((p) => typeof p !== "object" || p === null
        || typeof p.account !== "string" || !Number.isSafeInteger(p.minutes))) {
    throw new Refusal("entry", "a field has the wrong type");
  }
  return entry;
}

function postingProblem(entry) {
  const postings = entry.postings;
  if (NO_POSTINGS.has(entry.kind)) {
    return postings.length ? `a ${entry.kind} entry moves no minutes` : null;
  }
  if (postings.length < 2) { return "an entry that moves minutes needs at least two postings"; }
  if (postings.some((p) => p.minutes === 0)) { return "a posting of zero minutes"; }
  if (new Set(postings.map((p) => p.account)).size !== postings.length) { return "an account twice in one entry"; }
  if (postings.reduce((n, p) => n + p.minutes, 0) !== 0) { return "the postings do not sum to zero"; }
  return null;
}

// ------------------------------------------------------------------ the tree (RFC 9162)

async function rootFromProof(leafHash, index, size, proof) {
  if (index >= size) { throw new Refusal("inclusion", `index ${index} is not below the tree size ${size}`); }
  let fn = index;
  let sn = size - 1;
  let r = leafHash;
  const one = Uint8Array.of(1);
  for (const p of proof) {
    if (sn === 0) { throw new Refusal("inclusion", "the proof is longer than the path"); }
    if (fn % 2 === 1 || fn === sn) {
      r = await sha256(concat(one, p, r));
      while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    } else {
      r = await sha256(concat(one, r, p));
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) { throw new Refusal("inclusion", "the proof is shorter than the path"); }
  return r;
}

// ------------------------------------------------------------------ the whole check

async function check(receiptText, keyText) {
  const problems = [];
  const refuse = (error) => {
    if (!(error instanceof Refusal)) { throw error; }
    problems.push(error);
  };
  const proof = parseProof(receiptText);
  let note = null;
  try {
    note = parseNote(proof.checkpoint);
    const key = await parseKey(keyText);
    const mine = note.signatures.filter((s) => s.name === key.name && equal(s.keyId, key.keyId));
    if (!mine.length) {
      throw new Refusal("unsigned", [...new Set(note.signatures.map((s) => s.name))].sort().join(", "));
    }
    const body = new TextEncoder().encode(note.body);
    let good = false;
    for (const s of mine) { good = good || (await ed25519Verify(key.publicKey, s.signature, body)); }
    if (!good) { throw new Refusal("signature"); }
    if (note.origin !== key.name) { throw new Refusal("origin", note.origin); }
  } catch (error) {
    refuse(error);
    note = problems.length ? null : note;
  }
  if (proof.extra === null) {
    problems.push(new Refusal("extra"));
    return { proof, note, entry: null, problems };
  }
  let entry = null;
  try {
    entry = decodeEntry(proof.extra);
    if (entry.seq !== proof.index) { problems.push(new Refusal("seq", "", { seq: entry.seq, index: proof.index })); }
    const broken = postingProblem(entry);
    if (broken) { problems.push(new Refusal("postings", broken)); }
  } catch (error) { refuse(error); }
  if (note !== null) {
    try {
      const leafHash = await sha256(concat(Uint8Array.of(0), proof.extra));
      const root = await rootFromProof(leafHash, proof.index, note.size, proof.hashes);
      if (!equal(root, note.root)) { throw new Refusal("inclusion", "the proof does not lead to the signed root"); }
    } catch (error) { refuse(error); }
  }
  return { proof, note, entry, problems };
}

// ------------------------------------------------------------------ the page

function paragraph(text, tag = "p") {
  const p = document.createElement(tag);
  p.textContent = text;
  return p;
}

function describe(entry) {
  const kind = kinds[entry.kind] || entry.kind;
  const moved = entry.postings.filter((p) => p.minutes > 0).reduce((n, p) => n + p.minutes, 0);
  const time = entry.time.slice(0, 19).replace("T", " ") + " UTC";
  const summary = moved
    ? fill(texts.what, { kind, minutes: moved, time })
    : fill(texts.whatNone, { kind, time });
  const list = document.createElement("ul");
  for (const p of entry.postings) {
    list.append(paragraph(`${p.account} ${p.minutes > 0 ? "+" : ""}${p.minutes}`, "li"));
  }
  return [paragraph(summary), list];
}

function show(result) {
  out.replaceChildren();
  const box = document.createElement("div");
  box.id = "browser-result";
  const ok = result.problems.length === 0;
  box.className = ok ? "ok" : "error";
  box.dataset.verdict = ok ? "ok" : "refused";
  box.dataset.reasons = result.problems.map((p) => p.code).join(" ");
  const title = paragraph("");
  title.append(paragraph(ok ? fill(texts.ok, { n: result.proof.index }) : texts.refused, "strong"));
  box.append(title);
  for (const problem of result.problems) {
    box.append(paragraph(fill(reasons[problem.code] || problem.code, problem.values)));
  }
  if (result.entry) {
    if (!ok) { box.append(paragraph(texts.claimed)); }
    box.append(...describe(result.entry));
  }
  if (ok) {
    box.append(paragraph(fill(texts.checkpoint, { origin: result.note.origin, size: result.note.size })));
    box.append(paragraph(fill(texts.trust, { how })));
  }
  out.append(box);
}

form.addEventListener("submit", async (event) => {
  if (!window.crypto || !crypto.subtle) { return; } // no WebCrypto here: the server checks
  event.preventDefault();
  out.replaceChildren(paragraph(texts.working));
  const receipt = form.elements.receipt.value.trim() + "\n";
  const key = form.elements.key.value.trim();
  let result;
  try {
    result = await check(receipt, key);
  } catch (error) {
    if (!(error instanceof Refusal)) { throw error; }
    result = { proof: null, note: null, entry: null, problems: [error] };
  }
  show(result);
});
// ------------------------------------------------------------------ scanning a receipt's QR

// A photo or a screenshot of a receipt's QR code (the one "My hours" shows), read in the
// browser by the vendored jsQR (loaded only when a picture is chosen: it is larger than the
// page) and checked as if its text had been pasted. The picture never leaves the phone.
const picture = document.getElementById("receipt-image");
const LONGEST_SIDE = 2000; // enough for the densest receipt code; a phone photo is larger

async function readQr(file) {
  if (!window.jsQR) { await import("/static/vendor/jsqr.js"); } // UMD: it sets window.jsQR
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, LONGEST_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height);
  const found = window.jsQR(pixels.data, pixels.width, pixels.height);
  return found ? new TextDecoder("utf-8").decode(new Uint8Array(found.binaryData)) : null;
}

if (picture) {
  picture.closest("[hidden]")?.removeAttribute("hidden"); // of use only with JavaScript
  picture.addEventListener("change", async () => {
    const file = picture.files[0];
    if (!file) { return; }
    out.replaceChildren(paragraph(texts.reading));
    let text = null;
    try {
      text = await readQr(file);
    } catch (error) {
      text = null; // not a picture the browser can open
    }
    picture.value = "";
    if (text === null) {
      const box = paragraph(texts.noQr);
      box.className = "error";
      box.id = "scan-result";
      out.replaceChildren(box);
      return;
    }
    form.elements.receipt.value = text;
    form.requestSubmit();
  });
}

form.dataset.ready = "1";
