"""``timebank webhooks …``: the delivery worker and the replay of dead letters."""

from __future__ import annotations

import argparse
import getpass
import signal
import sys
import threading
from types import FrameType

from accounts.errors import AccountsError
from api.services import Services
from cli.base import seconds
from partners.delivery import Delivery


def _services() -> Services:
    from cli.base import open_log, settings_from_env

    settings = settings_from_env()
    return Services.open(settings, open_log(settings))


def cmd_run(args: argparse.Namespace) -> int:
    services = _services()
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    delivery = Delivery(services.accounts.store, services.outbox, checkpoint=services.log.size)
    try:
        if args.once:
            print(f"attempted {delivery.run_once()} message(s)")
        else:
            print("timebank webhooks: delivering (stop with Ctrl-C)", flush=True)
            delivery.run(stop, args.idle)
    finally:
        services.close()
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    services = _services()
    status = 1
    try:
        services.outbox.replay(None, args.id)
        status = 0
    except AccountsError as exc:
        print(f"timebank webhooks replay: {exc}", file=sys.stderr)
        return 1
    finally:
        services.audit.record(  # like every operator command (cli.admin)
            actor=f"operator:{_operator()}",
            role="operator",
            action="CLI timebank webhooks replay",
            objects=[args.id],
            client="cli",
            status=status,
            bank_id=None,
        )
        services.close()
    print(f"message {args.id} queued again")
    return 0


def _operator() -> str:
    try:
        return getpass.getuser()[:48]
    except (KeyError, OSError):
        return "unknown"


def register_webhook_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    webhooks = sub.add_parser("webhooks", help="deliver signed webhooks to partner platforms")
    webhooks_sub = webhooks.add_subparsers(dest="webhooks_command", required=True)
    run = webhooks_sub.add_parser("run", help="the delivery worker")
    run.add_argument("--once", action="store_true", help="attempt what is due now, then exit")
    run.add_argument(
        "--idle", type=seconds, default=1.0, help="seconds to wait when nothing is due (1)"
    )
    run.set_defaults(func=cmd_run)
    replay = webhooks_sub.add_parser("replay", help="queue a dead letter again")
    replay.add_argument("id", help="the message id (msg_…)")
    replay.set_defaults(func=cmd_replay)
