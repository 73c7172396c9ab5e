"""``timebank report …``: the statistics from the command line, for the operator (counts only:
the lists of people are for staff, in the web app and the API)."""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys

import msgspec
from nacl.public import PrivateKey

from accounts.errors import AccountsError
from accounts.model import Grant, Principal, Role
from api.services import Services
from cli.admin import record_operator
from cli.base import given, new_file
from reports.csvfile import opened


def _auditor(bank_id: str) -> Principal:
    """The operator reads statistics as an auditor would: figures, no personal data."""
    return Principal(user_id=None, bank_id=bank_id, grants=(Grant(Role.AUDITOR, bank_id),))


def cmd_coverage(args: argparse.Namespace) -> int:
    from cli.base import open_log, settings_from_env

    settings = settings_from_env()
    services = Services.open(settings, open_log(settings))
    status = 1
    try:
        services.accounts.operator_bank(args.bank)
        coverage = services.coverage.coverage(_auditor(args.bank), args.month, args.org)
        if args.json:  # the API's own shape (GET /v1/stats/coverage), built by its routes
            from api.stats_routes import coverage_out

            print(json.dumps(msgspec.to_builtins(coverage_out(coverage)), ensure_ascii=False))
        else:
            state = "live" if coverage.live else "final"
            print(f"visit coverage {coverage.month} ({coverage.timezone}, {state})")
            print("  visited / priority elders    rate  organisation")
            for row in (*coverage.organisations, coverage.total):
                rate = "-" if row.rate is None else f"{row.rate:.1%}"
                name = row.org_name or ("total" if row is coverage.total else "(none)")
                print(f"  {row.visited:>6} / {row.priority_elders:<6} {rate:>7}  {name}")
        status = 0
    except AccountsError as exc:
        print(f"timebank report coverage: {exc}", file=sys.stderr)
    finally:
        record_operator(services, args, "report coverage", status, args.bank)
        services.close()
    return status


def cmd_export_key(args: argparse.Namespace) -> int:
    """A recipient's key pair for sealed exports: the private half into a file only its owner
    reads, the public half printed to hand to the bank's staff."""
    private = PrivateKey.generate()
    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(f"timebank report export-key: {args.out} exists; not overwritten", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"timebank report export-key: cannot write {args.out!r}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(bytes(private)).decode("ascii") + "\n")
    print(base64.b64encode(bytes(private.public_key)).decode("ascii"))
    return 0


def cmd_open(args: argparse.Namespace) -> int:
    """Open a sealed export with the recipient's private key file."""
    try:
        with open(args.key, encoding="ascii") as handle:
            private = PrivateKey(base64.b64decode(handle.read().strip(), validate=True))
        with open(args.file, "rb") as handle:
            document = opened(private, handle.read())
    except (OSError, ValueError, TypeError) as exc:
        print(f"timebank report open: {exc}", file=sys.stderr)
        return 1
    if args.out:
        with open(args.out, "wb") as out:
            out.write(document)
    else:
        sys.stdout.buffer.write(document)
    return 0


def cmd_halfyear(args: argparse.Namespace) -> int:
    from cli.base import open_log, settings_from_env

    settings = settings_from_env()
    services = Services.open(settings, open_log(settings))
    status = 1
    try:
        services.accounts.operator_bank(args.bank)
        if args.publish:
            admin = Principal(
                user_id=None, bank_id=args.bank, grants=(Grant(Role.BANK_ADMIN, args.bank),)
            )
            published = services.reports.publish(admin, args.half)
            data, sha256, size = published.data, published.sha256, published.tree_size
            where = (
                f"published as report {published.id}, entry {published.entry_id} "
                f"(seq {published.seq})"
            )
        else:
            computed = services.reports.compute(_auditor(args.bank), args.half)
            data, sha256 = computed.data, computed.sha256
            size = computed.document["checkpoint"]["size"]
            where = "not published (--publish publishes it)"
        if args.json:
            sys.stdout.write(data.decode("utf-8") + "\n")
        else:
            document = json.loads(data)
            public = document["public"]
            print(f"half-yearly report {args.half} of {args.bank} ({document['timezone']})")
            print(f"  computed at checkpoint {size}; SHA-256 {sha256}")
            print(f"  {where}")
            print("  minutes by kind:")
            for kind, minutes in public["minutes_by_kind"].items():
                print(f"    {kind:<12} {minutes:>10}")
            liability = public["liability"]
            print(
                f"  stored at the end: {liability['minutes']} minutes "
                f"({liability['members_holding']} members); months to redeem at the half's "
                f"rate: {liability['months_to_redeem'] or '-'}"
            )
            pool = public["pool"]
            print(f"  pool: in {pool['in']}, out {pool['out']}, balance {pool['balance']}")
        status = 0
    except AccountsError as exc:
        print(f"timebank report halfyear: {exc}", file=sys.stderr)
    finally:
        record_operator(services, args, "report halfyear", status, args.bank)
        services.close()
    return status


def register_report_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser(
        "report", help="statistics: visit coverage, sealed exports, half-yearly reports"
    )
    report.add_argument(
        "--as",
        dest="as_",
        metavar="NAME",
        help="who runs the command, for the audit trail (default: the OS user)",
    )
    report_sub = report.add_subparsers(dest="report_command", required=True)
    coverage = report_sub.add_parser(
        "coverage", help="priority elders visited in a month, per organisation"
    )
    coverage.add_argument("--bank", required=True)
    coverage.add_argument(
        "--month", type=given, help="YYYY-MM in the bank's time zone (default: this month)"
    )
    coverage.add_argument("--org", help="one organisation's id")
    coverage.add_argument("--json", action="store_true", help="the API's JSON document")
    coverage.set_defaults(func=cmd_coverage)
    key = report_sub.add_parser(
        "export-key", help="make a key pair to receive sealed exports (prints the public key)"
    )
    key.add_argument(
        "--out", type=new_file, required=True, help="file for the private key (mode 600)"
    )
    key.set_defaults(func=cmd_export_key)
    opener = report_sub.add_parser("open", help="open a sealed export with your private key")
    opener.add_argument("file", help="the .csv.sealed file")
    opener.add_argument("--key", required=True, help="the private key file from export-key")
    opener.add_argument(
        "--out", type=new_file, help="write the CSV here (default: standard output)"
    )
    opener.set_defaults(func=cmd_open)
    halfyear = report_sub.add_parser(
        "halfyear", help="the half-yearly report; --publish anchors it in the log"
    )
    halfyear.add_argument("--bank", required=True)
    halfyear.add_argument("--half", required=True, help="YYYY-H1 or YYYY-H2 (ended)")
    halfyear.add_argument(
        "--publish", action="store_true", help="store it and append its report entry"
    )
    halfyear.add_argument(
        "--json", action="store_true", help="the document's canonical bytes, as hashed"
    )
    halfyear.set_defaults(func=cmd_halfyear)
