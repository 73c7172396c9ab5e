// The public page's statement checker: the browser verifies a signed statement or service
// certificate (timebank-statement/v1, timebank-certificate/v1) on its own, with the checks of
// `timebank audit statement` (audit/statement.py):
//
//   1. the bank's Ed25519 signature over "timebank-signed-document/v1\n" and the RFC 8785
//      canonical JSON of the document without its signature, with the statement key;
//   2. every entry's leaf and inclusion proof against the one checkpoint the document carries,
//      signed with the log's key (the receipt check of receipt.js);
//   3. each entry is what the document says (seq, id, kind, time, the member's minutes), touches
//      the member's account and lies in the period;
//   4. the totals (a statement) or the verified service and star level (a certificate) add up.
//
// What the receipts cannot prove is that no entry was left out: that rests on the signature.
"use strict";

import {
  Refusal, canonical, concat, decodeEntry, ed25519Verify, equal, fill, parseKey, parseNote,
  rootFromProof, sha256, unb64, verifiedWith,
} from "/static/tlog.js";
import { documentText } from "/static/pdfattach.js";

const PREFIX = "timebank-signed-document/v1\n";
const STATEMENT = "timebank-statement/v1";
const CERTIFICATE = "timebank-certificate/v1";
const SERVICE_KINDS = new Set(["deposit", "correction"]);
const STAR_NAMES = ["一星", "二星", "三星", "四星", "五星"];

const form = document.getElementById("statement-form");
const out = document.getElementById("statement-result");
const texts = document.getElementById("statement-texts").dataset;
const reasons = JSON.parse(texts.reasons);

function ownAccounts(account) {
  const parts = account.split(":");
  if (parts.length !== 3 || parts[1] !== "member") {
    throw new Refusal("document", `${account} is not a member account`);
  }
  return [account, `${parts[0]}:hold:${parts[2]}`];
}

function periodBounds(from, to) {
  if (!/^\d{4}-\d\d-\d\d$/.test(from) || !/^\d{4}-\d\d-\d\d$/.test(to)) {
    throw new Refusal("document", "the period is not two days YYYY-MM-DD");
  }
  const after = new Date(`${to}T00:00:00Z`);
  after.setUTCDate(after.getUTCDate() + 1);
  return [`${from}T00:00:00.000000Z`, `${after.toISOString().slice(0, 10)}T00:00:00.000000Z`];
}

function hoursText(minutes) {
  const hundredths = Math.trunc((minutes * 100) / 60); // rounded toward zero, as Decimal.ROUND_DOWN
  const sign = hundredths < 0 ? "-" : "";
  const whole = Math.abs(hundredths);
  return `${sign}${Math.trunc(whole / 100)}.${String(whole % 100).padStart(2, "0")}`;
}

const minutesOf = (entry, own) =>
  entry.postings.filter((p) => own.includes(p.account)).reduce((n, p) => n + p.minutes, 0);

async function checkSignature(document, keyText, problems) {
  const signature = document.signature;
  if (typeof signature !== "object" || signature === null) {
    problems.push(new Refusal("signature-missing"));
    return;
  }
  const key = await parseKey(keyText);
  if (signature.key !== keyText) { problems.push(new Refusal("signature-key", String(signature.key))); }
  const rest = Object.fromEntries(Object.entries(document).filter(([name]) => name !== "signature"));
  const message = new TextEncoder().encode(PREFIX + canonical(rest));
  const value = unb64(String(signature.value || ""), "the signature");
  if (!(await ed25519Verify(key.publicKey, value, message))) { problems.push(new Refusal("signature-bad")); }
}

async function checkCheckpoint(text, logKeyText) {
  const note = parseNote(text);
  const key = await parseKey(logKeyText);
  const mine = note.signatures.filter((s) => s.name === key.name && equal(s.keyId, key.keyId));
  if (!mine.length) { throw new Refusal("checkpoint", "it is not signed with the log's key"); }
  let good = false;
  for (const s of mine) {
    good = good || (await ed25519Verify(key.publicKey, s.signature, new TextEncoder().encode(note.body)));
  }
  if (!good) { throw new Refusal("checkpoint", "its signature does not verify with the log's key"); }
  return note;
}

async function checkEntries(document, logKeyText, problems) {
  const own = ownAccounts(document.account);
  let [start, end] = periodBounds(document.period.from, document.period.to);
  if (document.format === CERTIFICATE) { start = ""; }
  const items = document.entries;
  if (!Array.isArray(items)) { throw new Refusal("document", "entries is not a list"); }
  if (!items.length) { return []; }
  const note = await checkCheckpoint(document.checkpoint, logKeyText);
  const found = [];
  const seen = new Set();
  for (const [i, item] of items.entries()) {
    const where = `entries[${i}]`;
    try {
      if (!Number.isSafeInteger(item.seq) || seen.has(item.seq)) {
        throw new Refusal("entry", `seq ${item.seq} is not a new whole number`, { where });
      }
      seen.add(item.seq);
      const leaf = unb64(String(item.leaf), `${where}.leaf`);
      const proof = (item.proof || []).map((h) => unb64(String(h), `${where}.proof`));
      const root = await rootFromProof(await sha256(concat(Uint8Array.of(0), leaf)), item.seq, note.size, proof);
      if (!equal(root, note.root)) { throw new Refusal("entry", "its proof does not lead to the signed root", { where }); }
      const entry = decodeEntry(leaf);
      if (entry.seq !== item.seq) { throw new Refusal("entry", `the leaf is entry ${entry.seq}`, { where }); }
      const claimed = { id: entry.id, kind: entry.kind, time: entry.time, minutes: minutesOf(entry, own) };
      for (const [name, value] of Object.entries(claimed)) {
        if (item[name] !== value) {
          problems.push(new Refusal("entry", `${name} is ${JSON.stringify(item[name])} but the log's entry says ${JSON.stringify(value)}`, { where }));
        }
      }
      if (!entry.postings.some((p) => own.includes(p.account))) {
        problems.push(new Refusal("entry", `the entry does not touch the account ${document.account}`, { where }));
      }
      if (!(start <= entry.time && entry.time < end)) {
        problems.push(new Refusal("entry", `the entry's time ${entry.time} is outside the period`, { where }));
      }
      found.push(entry);
    } catch (error) {
      if (!(error instanceof Refusal)) { throw error; }
      error.values.where = error.values.where || where;
      problems.push(error);
    }
  }
  return found;
}

function checkStatementTotals(document, entries, problems) {
  const own = ownAccounts(document.account);
  const minutes = entries.map((e) => minutesOf(e, own));
  const expected = {
    entries: entries.length,
    credited: minutes.filter((m) => m > 0).reduce((n, m) => n + m, 0),
    debited: -minutes.filter((m) => m < 0).reduce((n, m) => n + m, 0),
    net: minutes.reduce((n, m) => n + m, 0),
  };
  for (const [name, value] of Object.entries(expected)) {
    if (document.totals[name] !== value) {
      problems.push(new Refusal("totals", `${name} is ${JSON.stringify(document.totals[name])} but the entries add up to ${value}`));
    }
  }
}

function checkCertificateTotals(document, entries, problems) {
  const [start] = periodBounds(document.period.from, document.period.to);
  const bySeq = new Map(entries.map((e) => [e.seq, e]));
  let cumulative = 0;
  let inPeriod = 0;
  for (const [i, entry] of entries.entries()) {
    if (entry.kind === "reversal") {
      const undone = bySeq.get(Number(entry.body.reverses));
      if (!undone || !SERVICE_KINDS.has(undone.kind)) {
        problems.push(new Refusal("entry", "a reversal of an entry that is not verified service", { where: `entries[${i}]` }));
        continue;
      }
    } else if (!SERVICE_KINDS.has(entry.kind)) {
      problems.push(new Refusal("entry", `a ${entry.kind} entry is not verified service`, { where: `entries[${i}]` }));
      continue;
    }
    const minutes = entry.postings.filter((p) => p.account === document.account).reduce((n, p) => n + p.minutes, 0);
    cumulative += minutes;
    if (entry.time >= start) { inPeriod += minutes; }
  }
  const service = document.service;
  const expected = {
    cumulative_minutes: cumulative,
    cumulative_hours: hoursText(cumulative),
    period_minutes: inPeriod,
    period_hours: hoursText(inPeriod),
    star_level: null,
    star_name: null,
  };
  if (service.star_hours !== null) {
    const level = service.star_hours.filter((hours) => cumulative >= Number(hours) * 60).length;
    expected.star_level = level;
    expected.star_name = level ? STAR_NAMES[level - 1] : null;
  }
  for (const [name, value] of Object.entries(expected)) {
    if (service[name] !== value) {
      problems.push(new Refusal("totals", `service.${name} is ${JSON.stringify(service[name])} but the entries add up to ${JSON.stringify(value)}`));
    }
  }
}

export async function checkDocument(text, statementKey, logKey) {
  const problems = [];
  let document;
  try { document = JSON.parse(text); } catch (e) { throw new Refusal("document", "it is not JSON"); }
  if (typeof document !== "object" || document === null || Array.isArray(document)) {
    throw new Refusal("document", "it is not a JSON object");
  }
  if (document.format !== STATEMENT && document.format !== CERTIFICATE) {
    throw new Refusal("document", `its format is ${JSON.stringify(document.format)}`);
  }
  await checkSignature(document, statementKey, problems);
  let entries = [];
  try {
    entries = await checkEntries(document, logKey, problems);
    if (document.format === STATEMENT) { checkStatementTotals(document, entries, problems); }
    else { checkCertificateTotals(document, entries, problems); }
  } catch (error) {
    if (!(error instanceof Refusal)) { throw new Refusal("document", `it is malformed: ${error.message}`); }
    problems.push(error);
  }
  return { document, entries, problems };
}

function paragraph(text, tag = "p") {
  const p = document.createElement(tag);
  p.textContent = text;
  return p;
}

function show(result) {
  out.replaceChildren();
  const box = document.createElement("div");
  box.id = "statement-verdict";
  const ok = result.problems.length === 0;
  box.className = ok ? "ok" : "error";
  box.dataset.verdict = ok ? "ok" : "refused";
  box.dataset.reasons = [...new Set(result.problems.map((p) => p.code))].join(" ");
  box.append(paragraph(ok ? texts.ok : texts.refused, "strong"));
  for (const problem of result.problems) {
    const line = fill(reasons[problem.code] || problem.code, problem.values);
    box.append(paragraph(problem.values.where ? `${problem.values.where}: ${line}` : line));
  }
  const doc = result.document;
  if (doc) {
    const period = doc.period || {};
    box.append(paragraph(fill(ok ? texts.what : texts.claimed, {
      account: doc.account, from: period.from, to: period.to, n: result.entries.length,
    })));
  }
  if (ok) { box.append(paragraph(fill(texts.trust, { how: verifiedWith() }))); }
  out.append(box);
}

form.addEventListener("submit", async (event) => {
  if (!window.crypto || !crypto.subtle) { return; } // no WebCrypto here: the server checks
  event.preventDefault();
  out.replaceChildren(paragraph(texts.working));
  const text = form.elements.statement.value.trim();
  let result;
  try {
    result = await checkDocument(text, form.elements["statement-key"].value.trim(), form.elements["statement-log-key"].value.trim());
  } catch (error) {
    if (!(error instanceof Refusal)) { throw error; }
    result = { document: null, entries: [], problems: [error] };
  }
  show(result);
});

// A PDF or JSON file chosen: its document goes into the box and is checked at once.
document.getElementById("statement-file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) { return; }
  try {
    form.elements.statement.value = await documentText(new Uint8Array(await file.arrayBuffer()));
  } catch (error) {
    if (!(error instanceof Refusal)) { throw error; }
    show({ document: null, entries: [], problems: [error] });
    return;
  }
  form.requestSubmit();
});

form.dataset.ready = "1";
