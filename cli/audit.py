"""``timebank audit …`` and ``timebank witness …``: the auditor's and the witness's commands."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from audit import last_run
from audit.auditor import (
    AuditError,
    AuditReport,
    Policy,
    export_bundle,
    read_key,
    verify_bundle,
    verify_online,
    verify_receipt,
)
from audit.pdf_attachment import PDF_MAGIC, verify_pdf
from audit.statement import verify_document
from audit.witness import (
    Witness,
    WitnessState,
    generate_witness_key,
    load_witness_key,
    parse_log_keys,
)
from cli.base import count, given, host, new_file, port, processes, seconds
from ledger.config import Settings
from ledger.errors import LedgerError
from ledger.note import Verifier

# ---------------------------------------------------------------- audit


def _policy(args: argparse.Namespace) -> Policy:
    witnesses = tuple(read_key(w) for w in args.witness or ())
    quorum = len(witnesses) if args.quorum is None else args.quorum
    return Policy(read_key(args.key), witnesses, quorum, args.member_overdraft)


def _print(report: AuditReport) -> int:
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1


TOKEN_ENV = "TIMEBANK_AUDIT_TOKEN"  # noqa: S105 - the variable's name, not a secret


def _token(args: argparse.Namespace) -> str | None:
    """An auditor's bearer token: ``--token``, else ``$TIMEBANK_AUDIT_TOKEN`` (kept out of the
    process list and shell history), else none."""
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
    if token is not None and not token.strip():
        raise AuditError(f"--token (or {TOKEN_ENV}) is empty")
    return token.strip() if token is not None else None


def cmd_audit_export(args: argparse.Namespace) -> int:
    try:
        done = export_bundle(args.url, Path(args.out), timeout=args.timeout, token=_token(args))
    except (AuditError, OSError) as exc:
        print(f"timebank audit export: {exc}", file=sys.stderr)
        return 2
    events = (
        "no audit events (no auditor's --token)"
        if done.events is None
        else f"{done.events} audit {'event' if done.events == 1 else 'events'}"
    )
    print(
        f"exported {done.size} entries and {events} from {args.url} to {Path(args.out)} "
        f"(manifest {done.manifest})"
    )
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    if (args.bundle is None) == (args.url is None):
        print("timebank audit verify: give a bundle DIR or --url URL (not both)", file=sys.stderr)
        return 2
    try:
        policy = _policy(args)
        if args.bundle is not None:
            if args.state or args.full or args.witness_url or args.token:
                raise AuditError("--state, --full, --witness-url and --token are for --url audits")
            report = verify_bundle(
                Path(args.bundle),
                policy,
                shared_trail=args.shared_trail,
                require_audit=args.require_audit,
            )
        else:
            report = verify_online(
                args.url,
                policy,
                state_path=Path(args.state) if args.state else None,
                full=args.full,
                witness_urls=args.witness_url or (),
                evidence_dir=Path(args.evidence) if args.evidence else None,
                timeout=args.timeout,
                token=_token(args),
                shared_trail=args.shared_trail,
                require_audit=args.require_audit,
            )
    except (AuditError, OSError) as exc:
        print(f"timebank audit verify: {exc}", file=sys.stderr)
        return 2
    if args.record:
        data_dir = Settings.from_env().data_dir
        recorded = last_run.record(
            data_dir, report.ok, args.url or str(Path(args.bundle).resolve()), list(report.lines())
        )
        print(f"recorded for the auditors' page: {recorded}", file=sys.stderr)
    return _print(report)


def cmd_audit_receipt(args: argparse.Namespace) -> int:
    try:
        policy = _policy(args)
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
    except (AuditError, OSError, UnicodeDecodeError) as exc:
        print(f"timebank audit receipt: {exc}", file=sys.stderr)
        return 2
    return _print(verify_receipt(text, policy))


def cmd_audit_report(args: argparse.Namespace) -> int:
    from audit.client import LogClient
    from reports.recompute import verify_report
    from reports.runs import BundleLog

    if (args.bundle is None) == (args.url is None):
        print("timebank audit report: give --url URL or --bundle DIR (not both)", file=sys.stderr)
        return 2
    try:
        policy = _policy(args)
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
        log = (
            BundleLog(Path(args.bundle))
            if args.bundle is not None
            else LogClient(args.url, args.timeout)
        )
        return _print(verify_report(data, log, policy, args.workers))
    except (AuditError, OSError) as exc:
        print(f"timebank audit report: {exc}", file=sys.stderr)
        return 2


def cmd_audit_statement(args: argparse.Namespace) -> int:
    try:
        policy = _policy(args)
        statement_key = read_key(args.statement_key)
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
        if data.startswith(PDF_MAGIC):  # the PDF of one: check the signed JSON it carries
            return _print(verify_pdf(data, statement_key, policy))
        text = data.decode("utf-8")
    except (AuditError, OSError, UnicodeDecodeError) as exc:
        print(f"timebank audit statement: {exc}", file=sys.stderr)
        return 2
    return _print(verify_document(text, statement_key, policy))


def _request_key(given: str | None, url: str, origin: str, timeout: float) -> Verifier:
    """A bank's request key: given (text or file), else the one its server publishes."""
    from audit.client import LogClient

    if given is not None:
        key = read_key(given)
    else:
        text = LogClient(url, timeout).get("/v1/federation/key").decode("utf-8", "replace")
        key = read_key(text.strip())
    if key.name != f"{origin}/peers":
        raise AuditError(f"the request key of {origin} is named {key.name!r}, not {origin}/peers")
    return key


def cmd_audit_clearing(args: argparse.Namespace) -> int:
    from audit.clearing import check_clearing
    from audit.public_log import LogProblem, fetch_log

    try:
        key, peer_key = read_key(args.key), read_key(args.peer_key)
        logs = []
        for url, log_key in ((args.url, key), (args.peer_url, peer_key)):
            try:
                logs.append(fetch_log(url, log_key, args.timeout))
            except LogProblem as exc:
                report = AuditReport(what=f"the log at {url}")
                report.add(exc.where, str(exc).removeprefix(exc.where + ": "))
                return _print(report)
        keys = {
            key.name: _request_key(args.request_key, args.url, key.name, args.timeout),
            peer_key.name: _request_key(
                args.peer_request_key, args.peer_url, peer_key.name, args.timeout
            ),
        }
    except (AuditError, OSError) as exc:
        print(f"timebank audit clearing: {exc}", file=sys.stderr)
        return 2
    return _print(check_clearing(logs[0], logs[1], keys))


def _add_policy(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key", required=True, help="the log's verifier key (text, or a file holding it)"
    )
    parser.add_argument(
        "--witness",
        action="append",
        metavar="VKEY",
        help="a witness cosignature key you trust (repeatable; text or file)",
    )
    parser.add_argument(
        "--quorum",
        type=count,
        help="how many of the --witness keys must have cosigned (default: all of them)",
    )
    parser.add_argument(
        "--member-overdraft",
        type=count,
        default=0,
        help="minutes a member account may go below zero under this bank's policy (0)",
    )


def _add_token(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token",
        help="an auditor's bearer token (POST /v1/auth/login) to read the audit trail "
        f"(default: ${TOKEN_ENV}); without one there are no audit events",
    )


# ---------------------------------------------------------------- witness


def cmd_witness_keygen(args: argparse.Namespace) -> int:
    out = Path(args.out)
    try:
        signer = generate_witness_key(args.name, out)
    except FileExistsError:
        print(f"timebank witness keygen: {out} exists; not overwriting a key", file=sys.stderr)
        return 1
    except (LedgerError, OSError) as exc:
        print(f"timebank witness keygen: {exc}", file=sys.stderr)
        return 1
    print(f"wrote the private key to {out} (mode 0600); its public key:", file=sys.stderr)
    print(signer.verifier.to_text())
    return 0


def cmd_witness_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.witness_app import create_witness_app

    try:
        signer = load_witness_key(Path(args.key))
        logs = parse_log_keys(_key_args(args.log))
        state = WitnessState(Path(args.state))
    except (LedgerError, OSError) as exc:
        print(f"timebank witness serve: {exc}", file=sys.stderr)
        return 1
    try:
        witness = Witness(signer, logs, state)
        print(f"witness {signer.verifier.to_text()}")
        print(f"  watching: {', '.join(sorted(logs))}")
        print(f"  state:    {Path(args.state).resolve()}")
        print(f"  serving:  http://{args.host}:{args.port}/add-checkpoint")
        uvicorn.run(create_witness_app(witness), host=args.host, port=args.port, log_level="info")
    except LedgerError as exc:
        print(f"timebank witness serve: {exc}", file=sys.stderr)
        return 1
    finally:
        state.close()
    return 0


def _key_args(values: list[str]) -> list[str]:
    """Keys given on the command line, or ``@FILE`` for a file of keys (one a line)."""
    keys: list[str] = []
    for value in values:
        if value.startswith("@"):
            text = Path(value[1:]).read_text(encoding="utf-8")
            keys.extend(line.strip() for line in text.splitlines() if line.strip())
        else:
            keys.append(value)
    return keys


def register_audit_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="verify the log as an outside auditor")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)

    export = audit_sub.add_parser("export", help="save the log into a self-contained bundle")
    export.add_argument("--url", required=True, help="the log's base URL")
    export.add_argument("--out", type=given, required=True, help="a new (or empty) directory")
    _add_token(export)
    export.add_argument("--timeout", type=seconds, default=30.0, help="seconds per request")
    export.set_defaults(func=cmd_audit_export)

    verify = audit_sub.add_parser(
        "verify", help="verify a bundle offline, or the log at --url (incrementally)"
    )
    verify.add_argument("bundle", nargs="?", metavar="DIR", help="an export bundle")
    verify.add_argument("--url", help="the log's base URL (online audit)")
    verify.add_argument(
        "--state",
        type=given,
        help="remember the last verified checkpoint here; resume from it next time",
    )
    verify.add_argument("--full", action="store_true", help="replay every leaf, not only new ones")
    verify.add_argument(
        "--witness-url",
        action="append",
        metavar="URL",
        help="compare with the checkpoint this witness cosigned (repeatable)",
    )
    verify.add_argument(
        "--evidence", type=given, help="where to write fork evidence (default: next to --state)"
    )
    verify.add_argument("--timeout", type=seconds, default=30.0, help="seconds per request")
    _add_token(verify)
    verify.add_argument(
        "--shared-trail",
        action="store_true",
        help="other banks share this log: their audit events are not visible to you; check "
        "the events you can see and note (not fail on) the missing ones",
    )
    verify.add_argument(
        "--require-audit",
        action="store_true",
        help="fail if there are no audit events to check (exported or run without --token)",
    )
    verify.add_argument(
        "--record",
        action="store_true",
        help="also keep the result in $TIMEBANK_DATA_DIR for the auditors' web page "
        "(run it on the server)",
    )
    _add_policy(verify)
    verify.set_defaults(func=cmd_audit_verify)

    receipt = audit_sub.add_parser("receipt", help="check a tlog-proof receipt offline")
    receipt.add_argument("file", metavar="FILE", help="the receipt (- for standard input)")
    _add_policy(receipt)
    receipt.set_defaults(func=cmd_audit_receipt)

    report = audit_sub.add_parser(
        "report",
        help="recompute a published half-yearly report's public figures from the log",
    )
    report.add_argument(
        "file", metavar="FILE", help="the document (GET /v1/reports/{id}/document; - for stdin)"
    )
    report.add_argument("--url", help="the log's base URL")
    report.add_argument(
        "--bundle", metavar="DIR", help="or the log downloaded by `timebank audit export`"
    )
    report.add_argument("--timeout", type=seconds, default=30.0, help="seconds per request")
    report.add_argument(
        "--workers",
        type=processes,
        help="processes reading, hashing and counting runs of leaves (default: the CPUs, "
        "up to 4, for logs over 30,000 entries)",
    )
    _add_policy(report)
    report.set_defaults(func=cmd_audit_report)

    clearing = audit_sub.add_parser(
        "clearing",
        help="check from two banks' public logs that their transfers and settlements agree",
    )
    clearing.add_argument("--url", required=True, help="one bank's base URL")
    clearing.add_argument(
        "--key", required=True, help="its log's verifier key (text, or a file holding it)"
    )
    clearing.add_argument("--peer-url", required=True, help="the other bank's base URL")
    clearing.add_argument(
        "--peer-key", required=True, help="the other bank's log verifier key (text or file)"
    )
    clearing.add_argument(
        "--request-key",
        help="the first bank's request key, which signs its settlements (default: the one "
        "its server publishes at /v1/federation/key)",
    )
    clearing.add_argument(
        "--peer-request-key", help="the other bank's request key (default: as published)"
    )
    clearing.add_argument("--timeout", type=seconds, default=30.0, help="seconds per request")
    clearing.set_defaults(func=cmd_audit_clearing)

    statement = audit_sub.add_parser(
        "statement", help="check a signed statement or certificate offline"
    )
    statement.add_argument(
        "file", metavar="FILE", help="the JSON document or its PDF (- for standard input)"
    )
    statement.add_argument(
        "--statement-key",
        required=True,
        help="the bank's statement key, GET /v1/statements/key (text, or a file holding it)",
    )
    _add_policy(statement)
    statement.set_defaults(func=cmd_audit_statement)

    witness = sub.add_parser("witness", help="run a transparency-log witness (C2SP tlog-witness)")
    witness_sub = witness.add_subparsers(dest="witness_command", required=True)

    keygen = witness_sub.add_parser("keygen", help="create a witness key; print its public key")
    keygen.add_argument("--name", required=True, help="the witness's name, e.g. witness.example")
    keygen.add_argument(
        "--out",
        type=new_file,
        required=True,
        help="file for the private key (mode 0600), in a directory that exists",
    )
    keygen.set_defaults(func=cmd_witness_keygen)

    serve = witness_sub.add_parser("serve", help="serve POST /add-checkpoint")
    serve.add_argument("--key", required=True, help="the witness's private key file")
    serve.add_argument(
        "--log",
        required=True,
        nargs="+",
        action="extend",
        metavar="VKEY",
        help="verifier key of a log to witness (repeatable; @FILE reads keys from a file)",
    )
    serve.add_argument("--host", type=host, default="127.0.0.1")
    serve.add_argument("--port", type=port, default=8001)
    serve.add_argument(
        "--state", type=given, default="witness-state", help="state directory (witness-state)"
    )
    serve.set_defaults(func=cmd_witness_serve)
