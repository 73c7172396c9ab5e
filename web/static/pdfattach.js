// The signed JSON attached to a statement's or certificate's PDF (as partners/pdf.py writes
// it: one /EmbeddedFile stream, Flate-compressed), read in the browser for the statement
// checker. Like `timebank audit statement FILE.pdf`, it parses only what Timebank writes.
"use strict";

import { Refusal } from "/static/tlog.js";

const decoder = new TextDecoder("utf-8", { fatal: true });

export async function documentText(bytes) {
  const text = new TextDecoder("latin1").decode(bytes); // one character per byte
  if (!text.startsWith("%PDF-")) { return decoder.decode(bytes); }
  const at = text.indexOf("/Type /EmbeddedFile ");
  if (at < 0) { throw new Refusal("pdf", "there is no signed document attached to this PDF"); }
  const length = /\/Length (\d+) >>\nstream\n/.exec(text.slice(at, at + 600));
  if (!length) { throw new Refusal("pdf", "the attached file has no /Length"); }
  const start = text.indexOf(">>\nstream\n", at) + ">>\nstream\n".length;
  const raw = bytes.subarray(start, start + Number(length[1]));
  try {
    const stream = new Blob([raw]).stream().pipeThrough(new DecompressionStream("deflate"));
    return decoder.decode(await new Response(stream).arrayBuffer());
  } catch (error) {
    throw new Refusal("pdf", `the attached file is damaged: ${error.message}`);
  }
}
