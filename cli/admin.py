"""``timebank admin …``: operator commands that run against the database directly.

Secrets (one-time passwords, tokens) are printed once to stdout and never logged.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from accounts.errors import AccountsError
from accounts.model import Grant, OrgKind, Principal, Role
from api.services import Services
from cli.base import operator


def operator_name(args: argparse.Namespace) -> str:
    """Who runs an operator command: ``--as NAME``, else the OS user."""
    named = getattr(args, "as_", None)
    if named:
        return str(named)[:48]
    try:
        return getpass.getuser()[:48]
    except (KeyError, OSError):
        return "unknown"


def record_operator(
    services: Services, args: argparse.Namespace, action: str, status: int, bank: str | None
) -> None:
    """Operator commands go into the audit trail like API calls (never their secrets)."""
    keys = ("id", "user", "username", "bank", "org")
    objects = [str(v) for k in keys if (v := getattr(args, k, None))]
    services.audit.record(
        actor=f"operator:{operator_name(args)}",
        role="operator",
        action=f"CLI timebank {action}",
        objects=objects,
        client="cli",
        status=status,
        bank_id=bank,
    )


def _run(args: argparse.Namespace, action: str) -> int:
    from cli.base import open_log, settings_from_env

    settings = settings_from_env()
    services = Services.open(settings, open_log(settings))
    accounts = services.accounts
    status = 1
    try:
        if action == "create-bank":
            bank = accounts.create_bank(args.id, args.name)
            print(f"created bank {bank.id} ({bank.name})")
        elif action == "create-org":
            org = accounts.create_org(_operator(args.bank), args.name, args.kind, args.phone)
            print(f"created organisation {org.id} ({org.name}, {org.kind}) in bank {org.bank_id}")
        elif action == "create-user":
            new = accounts.create_user(args.bank, args.username, Role(args.role), args.org)
            print(f"created {args.role} {new.user.username} (user id {new.user.id})")
            if new.one_time_password:
                print(
                    f"one-time password (shown once; change it after first login): "
                    f"{new.one_time_password}"
                )
        elif action in ("disable-user", "enable-user"):
            user = accounts.user_by_username(args.user)
            if user is None:
                print(f"timebank admin {action}: no user {args.user}", file=sys.stderr)
                return 1
            changed = accounts.set_disabled(
                _operator(user.bank_id), user.id, action == "disable-user"
            )
            state = "disabled (its sessions ended)" if changed.disabled else "enabled"
            print(f"user {changed.username} {state}")
        elif action == "reset-totp":
            user = accounts.user_by_username(args.user)
            if user is None:
                print(f"timebank admin {action}: no user {args.user}", file=sys.stderr)
                return 1
            code, until = accounts.issue_enrolment_code(_operator(user.bank_id), user.id)
            print(f"second factor of {user.username} reset; its sessions ended")
            print(f"enrolment code (shown once; works once until {until.isoformat()}): {code}")
        elif action == "repair":
            done = services.care.repair()
            for line in done:
                print(line)
            print(f"repair: {len(done)} interrupted step(s) finished")
        elif action == "issue-token":
            result = accounts.issue_token(args.user)
            print(result.token)
            print(f"expires {result.expires_at.isoformat()}", file=sys.stderr)
        status = 0
    except AccountsError as exc:
        where = f" ({exc.field})" if exc.field else ""
        print(f"timebank admin {action}: {exc}{where}", file=sys.stderr)
        return 1
    finally:
        bank_id = getattr(args, "bank", None) or getattr(args, "id", None)
        record_operator(services, args, f"admin {action}", status, bank_id)
        services.close()
    return 0


def _operator(bank_id: str) -> Principal:
    """A bank-admin principal for the operator acting from the command line."""
    return Principal(user_id=None, bank_id=bank_id, grants=(Grant(Role.BANK_ADMIN, bank_id),))


def register_admin_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    admin = sub.add_parser("admin", help="operator commands: banks, organisations, users, tokens")
    admin.add_argument(
        "--as",
        dest="as_",
        type=operator,
        metavar="NAME",
        help="who runs the command, for the audit trail (default: the OS user)",
    )
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)

    bank = admin_sub.add_parser("create-bank", help="create a bank (a district or city programme)")
    bank.add_argument("--id", required=True, help="short id, e.g. gulou")
    bank.add_argument("--name", required=True)
    bank.set_defaults(func=lambda a: _run(a, "create-bank"))

    org = admin_sub.add_parser("create-org", help="create an organisation in a bank")
    org.add_argument("--bank", required=True)
    org.add_argument("--name", required=True)
    org.add_argument("--kind", required=True, choices=[str(k) for k in OrgKind])
    org.add_argument("--phone", help="the centre's public number, shown on every page")
    org.set_defaults(func=lambda a: _run(a, "create-org"))

    user = admin_sub.add_parser("create-user", help="create a staff, admin or auditor login")
    user.add_argument("--bank", required=True)
    user.add_argument("--username", required=True)
    user.add_argument(
        "--role",
        required=True,
        choices=[str(r) for r in (Role.BANK_ADMIN, Role.ORG_ADMIN, Role.ORG_STAFF, Role.AUDITOR)],
    )
    user.add_argument("--org", help="the organisation, for org_admin and org_staff")
    user.set_defaults(func=lambda a: _run(a, "create-user"))

    token = admin_sub.add_parser("issue-token", help="issue a session token for a user")
    token.add_argument("--user", required=True, help="username")
    token.set_defaults(func=lambda a: _run(a, "issue-token"))

    for verb, what in (("disable", "disable a login and end its sessions"), ("enable", "enable")):
        toggle = admin_sub.add_parser(f"{verb}-user", help=f"{what} (a user of any bank)")
        toggle.add_argument("--user", required=True, help="username")
        toggle.set_defaults(func=lambda a, action=f"{verb}-user": _run(a, action))

    reset = admin_sub.add_parser(
        "reset-totp",
        help="issue a TOTP enrolment code for a login (removes its second factor, ends its "
        "sessions); the code is printed once",
    )
    reset.add_argument("--user", required=True, help="username")
    reset.set_defaults(func=lambda a: _run(a, "reset-totp"))

    repair = admin_sub.add_parser(
        "repair",
        help="finish workflow steps a killed process left half done (holds, redemptions, "
        "deposits); safe to run any time",
    )
    repair.set_defaults(func=lambda a: _run(a, "repair"))
