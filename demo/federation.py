"""``make run-federation``: two district banks on one machine, each the other's peer and
witness, served together (docs/federation.md#two-district-demo).

``python -m demo.federation setup`` migrates and seeds 鼓楼 (the demo bank, as ``make run``)
and 秦淮 (``demo.district``) in their own data directories with their own log origins and
keys, and registers each as the other's peer with ``timebank peers add``; run again, it
reuses what is there. ``python -m demo.federation`` (no argument) does the same, then serves
both with ``timebank serve`` until Ctrl-C, which stops both.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

from accounts.protection import Protector, data_key_path, load_or_create_data_key
from accounts.service import AccountsService
from accounts.storage import AccountsStore
from audit.trail import AuditTrail
from care.service import CareService
from demo.district import DISTRICT_LOGINS, DistrictExists, district_login_help, seed_district_bank
from ledger.config import Settings
from ledger.log import Log

TIMEBANK = Path(sys.executable).with_name("timebank")


@dataclass(frozen=True)
class Deployment:
    """One district bank's deployment: its peer name, data directory, origin and port."""

    name: str  # the name its peer knows it by (timebank peers add --name)
    label: str
    root: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.root / self.name

    @property
    def origin(self) -> str:
        return f"{self.name}.timebank.local/demo"

    @property
    def url(self) -> str:
        """Where its peer reaches it (loopback: peers may use http only there)."""
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The process environment of its commands: nothing of another deployment's."""
        own = {k: v for k, v in os.environ.items() if not k.startswith("TIMEBANK_")}
        keep = (
            "TIMEBANK_AUDIT_SEAL_SECONDS",
            "TIMEBANK_WEBHOOK_WORKER",
            "TIMEBANK_TRANSFER_RETRY_SECONDS",
        )
        own.update({k: os.environ[k] for k in keep if k in os.environ})
        own["TIMEBANK_DATA_DIR"] = str(self.data_dir)
        own["TIMEBANK_LOG_ORIGIN"] = self.origin
        return own

    def settings(self) -> Settings:
        return Settings.from_env(self.env())

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``timebank ARGS`` for this deployment."""
        return subprocess.run(  # noqa: S603 - our own command, arguments as a list
            [str(TIMEBANK), *args], env=self.env(), capture_output=True, text=True, check=False
        )

    def cli(self, *args: str) -> str:
        """Run ``timebank ARGS`` for this deployment; its output, or SystemExit on failure."""
        done = self.run(*args)
        if done.returncode != 0:
            raise SystemExit(
                f"{self.label}: timebank {' '.join(args[:3])} failed:\n{done.stdout}{done.stderr}"
            )
        return done.stdout


def deployments(root: Path, first_port: int = 8000) -> tuple[Deployment, Deployment]:
    return (
        Deployment("gulou", "鼓楼", root, first_port),
        Deployment("qinhuai", "秦淮", root, first_port + 1),
    )


def _district_services(at: Deployment) -> tuple[Log, AccountsService, CareService]:
    settings = at.settings()
    log = Log.open(settings)
    store = AccountsStore(log.store.database)
    protector = Protector(load_or_create_data_key(data_key_path(settings.data_dir, at.env())))
    accounts = AccountsService(store, protector, log)
    return log, accounts, CareService(store, accounts, log)


def _seed_district(at: Deployment) -> dict[str, str]:
    """Seed 秦淮 once (recorded in its audit trail as the operator's seed); its members' ids."""
    log, accounts, care = _district_services(at)
    try:
        try:
            seed_district_bank(accounts, care)
            AuditTrail(log.store.database).record(
                actor=f"operator:{getpass.getuser()}",
                role="operator",
                action="CLI make run-federation (seed the district bank)",
                objects=[at.name],
                client="cli",
                status=0,
            )
        except DistrictExists:
            pass
        return _member_ids(accounts, [d.username for d in DISTRICT_LOGINS[1:]])
    finally:
        accounts.store.dispose()
        log.close()


def _member_ids(accounts: AccountsService, usernames: Sequence[str]) -> dict[str, str]:
    found = {}
    for username in usernames:
        user = accounts.user_by_username(username)
        if user is not None:
            member = accounts.principal_for_user(user.id).member_id
            if member is not None:
                found[username] = member
    return found


def _gulou_ids(at: Deployment) -> dict[str, str]:
    log, accounts, _ = _district_services(at)
    try:
        return _member_ids(accounts, ["volunteer", "elder", "family"])
    finally:
        accounts.store.dispose()
        log.close()


def _keys(at: Deployment) -> dict[str, str]:
    return {
        "--log-key": at.cli("key", "show").strip(),
        "--request-key": at.cli("peers", "key").strip(),
        "--witness-key": at.cli("peers", "witness-key").strip(),
    }


def _register(at: Deployment, peer: Deployment, keys: dict[str, str]) -> str:
    """Make ``peer`` a peer (and witness) of ``at``; nothing when it is, with the same URL."""
    listed = at.cli("peers", "list").splitlines()
    start = next((n for n, line in enumerate(listed) if line.startswith(f"{peer.name} ")), None)
    if start is not None:
        end = next((n for n in range(start + 1, len(listed)) if listed[n][:1] != " "), None)
        block = "\n".join(listed[start:end])
        if listed[start].split()[1] == peer.url and all(k in block for k in keys.values()):
            return f"{at.label}: {peer.label} ({peer.name}) is a peer already"
        # another port or keys than last time; with transfers held or balances with the
        # peer, where `peers remove` refuses without it, --force (the same bank, re-added)
        if at.run("peers", "remove", "--name", peer.name).returncode != 0:
            at.cli("peers", "remove", "--name", peer.name, "--force")
    args = ["--name", peer.name, "--url", peer.url, "--origin", peer.origin]
    for option, key in keys.items():
        args += [option, key]
    return f"{at.label}: " + at.cli("peers", "add", *args).strip()


@dataclass(frozen=True)
class Setup:
    """What ``setup`` did and found: the lines to print, and the member ids of the demo's
    people by login name in each district."""

    lines: list[str]
    gulou: dict[str, str]
    qinhuai: dict[str, str]


def setup(root: Path, entries: int = 2000, first_port: int = 8000) -> Setup:
    """Migrate, seed and peer both deployments under ``root``; reuses what exists."""
    gulou, qinhuai = deployments(root, first_port)
    lines = []
    for at in (gulou, qinhuai):
        at.cli("migrate")
    seeded = gulou.cli("seed", "--demo", "--if-empty", "--entries", str(entries))
    lines.append(f"鼓楼 ({gulou.name}): " + seeded.splitlines()[0])
    lines += seeded.splitlines()[1:]
    there = _seed_district(qinhuai)
    lines.append(district_login_help())
    keys = {at.name: _keys(at) for at in (gulou, qinhuai)}
    lines.append(_register(gulou, qinhuai, keys[qinhuai.name]))
    lines.append(_register(qinhuai, gulou, keys[gulou.name]))
    here = _gulou_ids(gulou)
    lines += people(gulou, qinhuai, here, there)
    return Setup(lines, here, there)


def people(
    gulou: Deployment, qinhuai: Deployment, here: dict[str, str], there: dict[str, str]
) -> list[str]:
    g, q = gulou.url, qinhuai.url
    return [
        "",
        f"Two-district demo: 鼓楼 {g} (log {gulou.origin}), 秦淮 {q} (log {qinhuai.origin});",
        "each is the other's peer and witness. People in both districts:",
        f"  李志强, volunteer in 鼓楼 (member {here.get('volunteer')}): at {g} log in as "
        "volunteer / demo-volunteer-2026",
        f"    in 秦淮 his own record (member {there.get('son')}): at {q} as son / demo-son-2026",
        f"    his mother 陈桂兰 lives in 秦淮 (member {there.get('mother')}): at {q} as "
        "mother / demo-mother-2026 (李志强 is her proxy there)",
        f"  王秀英, elder in 鼓楼 (member {here.get('elder')}): at {g} as elder / demo-elder-2026;",
        "    her son acts for her there: family / demo-family-2026",
        f"    in 秦淮 she is member {there.get('elder')}: at {q} as elder / demo-elder-2026",
        f"Send time from 鼓楼 to 秦淮: {g}/transfers (the web app, as volunteer or family), or",
        f"  POST {g}/v1/peer-transfers with an Idempotency-Key (docs/federation.md).",
    ]


# ---------------------------------------------------------------- serving both


def _relay(label: str, stream: IO[str]) -> None:
    for line in iter(stream.readline, ""):
        sys.stdout.write(f"[{label}] {line}")
        sys.stdout.flush()


def serve(root: Path, host: str, first_port: int) -> int:
    """Serve both deployments until Ctrl-C (or SIGTERM, or one of them stops): then both."""
    processes = []
    for at in deployments(root, first_port):
        process = subprocess.Popen(  # noqa: S603 - our own command, arguments as a list
            [str(TIMEBANK), "serve", "--host", host, "--port", str(at.port)],
            env=at.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(process)
        threading.Thread(target=_relay, args=(at.label, process.stdout), daemon=True).start()

    def stop(signum: int, _: FrameType | None) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):  # also when started in the background
        signal.signal(signum, stop)
    status = 0
    try:
        while all(p.poll() is None for p in processes):
            with contextlib.suppress(subprocess.TimeoutExpired):
                processes[0].wait(timeout=0.5)
        status = 1  # one stopped by itself
    except KeyboardInterrupt:
        pass
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    print("both districts stopped")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.federation", description=__doc__)
    parser.add_argument("action", nargs="?", choices=("run", "setup"), default="run")
    parser.add_argument("--root", type=Path, default=Path("var/federation"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="鼓楼's port; 秦淮 the next")
    parser.add_argument("--entries", type=int, default=2000, help="鼓楼's demo ledger entries")
    args = parser.parse_args(argv)
    print("\n".join(setup(args.root.resolve(), args.entries, args.port).lines), flush=True)
    if args.action == "setup":
        return 0
    return serve(args.root.resolve(), args.host, args.port)


if __name__ == "__main__":
    raise SystemExit(main())
