// What the public page's two checkers share (receipt.js, statement.js): the log's formats
// (ledger/note.py), the entry's canonical form (RFC 8785), Ed25519 and the RFC 9162 tree.
// The browser does every check itself; nothing here asks the server.
"use strict";

export const HEADER = "c2sp.org/tlog-proof@v1";
const SIG_PREFIX = "\u2014 ";
const NO_POSTINGS = new Set(["policy", "seal", "registration", "approval", "report"]);

export class Refusal extends Error {
  constructor(code, detail = "", values = {}) {
    super(code);
    this.code = code;
    this.values = { detail, ...values };
  }
}

export const fill = (text, values) =>
  text.replace(/%\((\w+)\)s/g, (whole, name) => (name in values ? String(values[name]) : whole));

export function unb64(text, what) {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    throw new Refusal("format", `${what} is not valid base64`);
  }
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

export const concat = (...parts) => {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { all.set(p, at); at += p.length; }
  return all;
};
export const sha256 = async (bytes) => new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
export const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
export const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

// ------------------------------------------------------------------ formats (ledger/note.py)

export function parseProof(text) {
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

export function parseNote(text) {
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

export async function parseKey(text) {
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
export const verifiedWith = () => how;
export async function ed25519Verify(publicKey, signature, message) {
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

export function canonical(value) {
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

export function decodeEntry(leaf) {
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

export function postingProblem(entry) {
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

export async function rootFromProof(leafHash, index, size, proof) {
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

