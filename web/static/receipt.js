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

import {
  Refusal, concat, decodeEntry, ed25519Verify, equal, fill, parseKey, parseNote, parseProof,
  postingProblem, rootFromProof, sha256, verifiedWith,
} from "/static/tlog.js";

const form = document.getElementById("receipt-form");
const out = document.getElementById("result");
const texts = document.getElementById("check-texts").dataset;
const reasons = JSON.parse(texts.reasons);
const kinds = JSON.parse(texts.kinds);

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
    box.append(paragraph(fill(texts.trust, { how: verifiedWith() })));
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
