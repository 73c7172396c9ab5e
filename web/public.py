"""The public transparency page (no login): the latest signed checkpoint, the witnesses that
cosigned it, the log's verifier key, and a "check a receipt" box.

The box is checked **in the browser** by ``static/receipt.js`` (leaf hash, inclusion proof,
Ed25519 signature of the checkpoint with the key the reader trusts), so the reader need not
trust this server to say that an entry is in the log. Without JavaScript the form posts here
and the server runs the auditor's own check (``audit.auditor.verify_receipt``, as
``timebank audit receipt`` does); the page then says plainly that the server checked it."""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import State

from audit.auditor import AuditError, Policy, read_key, verify_receipt
from audit.statement import verify_document
from ledger.errors import LedgerError
from ledger.log import Log
from ledger.note import Checkpoint, Note, Verifier, check_cosignature
from partners.statements import SignedDocuments
from reports.charts import amount_bars
from reports.halfyear import HalfYearReports
from reports.public import AGE_BUCKETS
from web.i18n import N_, gettext_for
from web.pages import Form, language_of, render
from web.session import viewer

MAX_RECEIPT = 256 * 1024
MAX_DOCUMENT = 8 * 1024 * 1024  # a statement of 2,000 entries with their proofs
KINDS = (
    N_("deposit"),
    N_("correction"),
    N_("gift"),
    N_("donation"),
    N_("grant"),
    N_("redemption"),
    N_("reserve"),
    N_("release"),
    N_("refund"),
    N_("exchange"),
    N_("reversal"),
    N_("transfer_out"),
    N_("transfer_in"),
    N_("transfer_settled"),
    N_("transfer_void"),
    N_("transfer_refused"),
    N_("settlement"),
    N_("policy"),
    N_("seal"),
    N_("approval"),
    N_("report"),
)
# The reasons the browser gives for refusing a receipt; receipt.js picks them by name.
REASONS = {
    "format": N_("This is not a c2sp.org/tlog-proof@v1 receipt: %(detail)s"),
    "extra": N_("The receipt does not carry the entry (no extra line), so it proves nothing."),
    "entry": N_("The entry in the receipt is malformed: %(detail)s"),
    "seq": N_("The entry says it is number %(seq)s, but the receipt says %(index)s."),
    "key": N_("The key is not a verifier key (name+id+key): %(detail)s"),
    "unsigned": N_("The checkpoint is not signed with this key (signed by: %(detail)s)."),
    "signature": N_(
        "The checkpoint's signature does not verify with this key: it was forged or changed."
    ),
    "origin": N_("The checkpoint is for the log %(detail)s, not for this key's log."),
    "inclusion": N_("The entry is not in the signed tree: %(detail)s"),
    "postings": N_("The entry breaks the ledger's rules: %(detail)s"),
}

# Why the page's browser check refused a statement or certificate (web/static/statement.js).
STATEMENT_REASONS = {
    "document": N_("This is not a signed statement or certificate: %(detail)s"),
    "format": N_("A field is not valid base64: %(detail)s"),
    "key": N_("A key is not a verifier key (name+id+key): %(detail)s"),
    "signature-missing": N_("The document carries no signature."),
    "signature-key": N_("The document names the key %(detail)s, not the statement key above."),
    "signature-bad": N_(
        "The bank's signature does not verify with the statement key: the document was "
        "changed or forged."
    ),
    "checkpoint": N_("The document's checkpoint is refused: %(detail)s"),
    "inclusion": N_("An entry is not in the signed tree: %(detail)s"),
    "entry": N_("%(detail)s"),
    "totals": N_("The totals do not add up: %(detail)s"),
    "pdf": N_("This PDF carries no signed statement or certificate: %(detail)s"),
}


@dataclass(frozen=True)
class Cosigner:
    name: str
    key_id: str
    time: str | None  # when the witness cosigned, if it verified with a configured key
    known: bool  # the witness is one of the log's configured witnesses


def log_of(request: Request[Any, Any, State]) -> Log:
    log: Log = request.app.state.log
    return log


def _witness_keys(log: Log) -> list[Verifier]:
    if log.witnessing is None:
        return []
    return [worker.witness.verifier for worker in log.witnessing.workers]


def _utc(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cosigners(note: Note, log: Log) -> list[Cosigner]:
    known = {(v.name, v.key_id): v for v in _witness_keys(log)}
    found = []
    for sig in note.signatures[1:]:
        witness = known.get((sig.name, sig.key_id))
        when = None
        if witness is not None:
            stamp = check_cosignature(note, witness)
            when = _utc(stamp) if stamp is not None else None
        elif len(sig.signature) == 72:
            (stamp,) = struct.unpack(">Q", sig.signature[:8])
            when = _utc(int(stamp))
        found.append(Cosigner(sig.name, sig.key_id.hex(), when, witness is not None))
    return found


def _context(request: Request[Any, Any, State]) -> dict[str, Any]:
    _ = gettext_for(language_of(request))
    log = log_of(request)
    text = log.checkpoint(max_age=1.0)
    note = Note.parse(text)
    checkpoint = Checkpoint.parse_body(note.text)
    last = log.entry(checkpoint.size - 1) if checkpoint.size else None
    return {
        "checkpoint": checkpoint,
        "checkpoint_text": text,
        "root_b64": base64.b64encode(checkpoint.root).decode(),
        "root_hex": checkpoint.root.hex(),
        "last_time": last.time.replace("T", " ")[:19] + " UTC" if last else None,
        "key": log.verifier_key,
        "cosigners": _cosigners(note, log),
        "witnesses": [v.to_text() for v in _witness_keys(log)],
        "reasons_json": json.dumps({k: _(v) for k, v in REASONS.items()}, ensure_ascii=False),
        "kinds_json": json.dumps({k: _(k) for k in KINDS}, ensure_ascii=False),
        "statement_key": documents_of(request).key,
        "statement_reasons_json": json.dumps(
            {k: _(v) for k, v in STATEMENT_REASONS.items()}, ensure_ascii=False
        ),
    }


@get("/transparency", sync_to_thread=True, include_in_schema=False)
def transparency(request: Request[Any, Any, State]) -> Response[Any]:
    return render(request, "public/transparency.html", viewer(request), **_context(request))


@post("/transparency", sync_to_thread=True, include_in_schema=False)
def check_on_server(request: Request[Any, Any, State], data: Form) -> Response[Any]:
    """Without JavaScript: the server runs the auditor's check and says that it did."""
    receipt = data.get("receipt", "").replace("\r\n", "\n")[:MAX_RECEIPT]
    key_text = data.get("key", "").strip() or log_of(request).verifier_key
    lines: list[str]
    try:
        if "+" not in key_text:
            raise AuditError("bad key")
        report = verify_receipt(receipt, Policy(read_key(key_text)))
        ok, lines = report.ok, list(report.lines())
    except (AuditError, LedgerError) as exc:
        ok, lines = False, [str(exc)]
    return render(
        request,
        "public/transparency.html",
        viewer(request),
        status=200 if ok else 422,
        server_check={"ok": ok, "lines": lines},
        receipt=receipt,
        chosen_key=key_text,
        **_context(request),
    )


@post("/transparency/statement", sync_to_thread=True, include_in_schema=False)
def check_statement_on_server(request: Request[Any, Any, State], data: Form) -> Response[Any]:
    """Without JavaScript: the server runs ``timebank audit statement``'s check, says so."""
    text = data.get("statement", "")[:MAX_DOCUMENT]
    statement_key = data.get("statement-key", "").strip() or documents_of(request).key
    log_key = data.get("statement-log-key", "").strip() or log_of(request).verifier_key
    lines: list[str]
    try:
        if "+" not in statement_key or "+" not in log_key:
            raise AuditError("bad key")
        report = verify_document(text, read_key(statement_key), Policy(read_key(log_key)))
        ok, lines = report.ok, list(report.lines())
    except (AuditError, LedgerError) as exc:
        ok, lines = False, [str(exc)]
    return render(
        request,
        "public/transparency.html",
        viewer(request),
        status=200 if ok else 422,
        statement_check={"ok": ok, "lines": lines},
        statement=text,
        chosen_statement_key=statement_key,
        chosen_log_key=log_key,
        **_context(request),
    )


def documents_of(request: Request[Any, Any, State]) -> SignedDocuments:
    documents: SignedDocuments = request.app.state.documents
    return documents


# The figures of a half-yearly report the statistics page charts, in this order.
CHARTED = (
    ("deposit", N_("deposited")),
    ("redemption", N_("redeemed")),
    ("exchange", N_("exchanged")),
    ("gift", N_("gifted")),
    ("donation", N_("donated")),
    ("grant", N_("granted")),
    ("reversal", N_("reversed")),
)


@dataclass(frozen=True)
class ReportView:
    id: str
    half: str
    bank: str
    sha256: str
    seq: int | None
    tree_size: int
    published: str
    document: dict[str, Any]


@get("/statistics", sync_to_thread=True, include_in_schema=False)
def statistics(request: Request[Any, Any, State]) -> Response[Any]:
    """The published half-yearly reports (no login): the minutes of each half by kind as a
    chart and the same numbers as a table, stored time and its age, the attested figures."""
    _ = gettext_for(language_of(request))
    service: HalfYearReports = request.app.state.reports
    views = [
        ReportView(
            r.id,
            r.half,
            r.bank_id,
            r.sha256,
            r.seq,
            r.tree_size,
            r.published_at.strftime("%Y-%m-%d %H:%M UTC"),
            json.loads(r.data),
        )
        for r in sorted(service.list(), key=lambda r: (r.half, r.bank_id), reverse=True)
    ]
    chart = None
    if views:
        chart = amount_bars(
            _("Minutes by kind, per half year"),
            _("Minutes of each kind in each published half year, as in the table below."),
            [
                (
                    f"{v.half} {_(label)}",
                    v.document["public"]["minutes_by_kind"].get(kind, 0),
                    str(v.document["public"]["minutes_by_kind"].get(kind, 0)),
                )
                for v in views
                for kind, label in CHARTED
            ],
        )
    return render(
        request,
        "public/statistics.html",
        viewer(request),
        reports=views,
        chart=chart,
        charted=CHARTED,
        age_buckets=[name for name, _lowest in AGE_BUCKETS],  # youngest first, as defined
    )


PUBLIC_HANDLERS = [transparency, check_on_server, check_statement_on_server, statistics]
