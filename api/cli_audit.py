"""``timebank audit …`` and ``timebank witness …``: the auditor's and the witness's commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audit.witness import (
    Witness,
    WitnessState,
    generate_witness_key,
    load_witness_key,
    parse_log_keys,
)
from ledger.errors import LedgerError

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
    print(f"wrote the private key to {out} (mode 0600); the witness's public key is:")
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
    witness = sub.add_parser("witness", help="run a transparency-log witness (C2SP tlog-witness)")
    witness_sub = witness.add_subparsers(dest="witness_command", required=True)

    keygen = witness_sub.add_parser("keygen", help="create a witness key; print its public key")
    keygen.add_argument("--name", required=True, help="the witness's name, e.g. witness.example")
    keygen.add_argument("--out", required=True, help="file for the private key (mode 0600)")
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
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8001)
    serve.add_argument("--state", default="var/witness", help="state directory (var/witness)")
    serve.set_defaults(func=cmd_witness_serve)
