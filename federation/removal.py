"""What still ties this bank to a peer: transfers to it still held, and due_to/due_from
balances not yet settled. ``timebank peers remove`` refuses while any is open
(docs/federation.md#peers): a removed peer's held transfers could be neither delivered nor
voided, and its balances would be owed to a bank the deployment no longer knows."""

from __future__ import annotations

from dataclasses import dataclass

from federation.storage import PeerStore
from federation.transfer_storage import TransferStore
from ledger.kinds import TransferOut
from ledger.log import Log
from ledger.postings import due_from_account, due_to_account

CHUNK = 500  # entry ids looked up at once


@dataclass(frozen=True)
class OpenBusiness:
    held: list[str]  # transfers to the peer neither settled nor voided
    balances: dict[str, int]  # non-zero due_to/due_from accounts for the peer

    @property
    def open(self) -> bool:
        return bool(self.held or self.balances)

    def objects(self) -> list[str]:
        """For the audit trail (short objects): how many held, each balance."""
        held = [f"held {len(self.held)}"] if self.held else []
        return held + [f"{a} {m:+d}"[:64] for a, m in sorted(self.balances.items())]

    def describe(self, peer: str) -> str:
        parts = []
        if self.held:
            parts.append(f"{len(self.held)} transfer(s) to {peer} still held")
        if self.balances:
            shown = ", ".join(f"{a} {m:+d} min" for a, m in sorted(self.balances.items()))
            parts.append(f"{len(self.balances)} balance(s) with {peer} not zero ({shown})")
        return "; ".join(parts)

    def advice(self) -> str:
        """What the operator can do about it. A settlement moves no minutes (the banks' agreed
        statement, docs/federation.md#settlement), so it never zeroes these balances: once a
        transfer to the peer has settled, only ``--force`` removes it."""
        steps = []
        if self.held:
            steps.append("deliver held transfers with timebank peers transfers retry")
        if self.balances:
            steps.append("settling does not zero the balances")
        return "; ".join([*steps, "remove anyway with --force (recorded)"])


def open_business(log: Log, peers: PeerStore, transfers: TransferStore, peer: str) -> OpenBusiness:
    accounts = [
        account
        for bank in peers.bank_ids()
        for account in (due_to_account(bank, peer), due_from_account(bank, peer))
    ]
    balances = {a: m for a, m in log.balances(accounts).items() if m != 0} if accounts else {}
    # the rows still open (a closing the worker has not marked yet is found in the log below)
    names = [row.transfer for row in transfers.open() if row.peer == peer]
    held = []
    for at in range(0, len(names), CHUNK):
        chunk = names[at : at + CHUNK]
        outs = log.entries_by_id([f"transfer-out:{t}" for t in chunk])
        closing = log.entries_by_id(
            [f"transfer-{kind}:{t}" for t in chunk for kind in ("settled", "void")]
        )
        for transfer in chunk:
            out = outs.get(f"transfer-out:{transfer}")
            if out is None or TransferOut.from_entry(out.request).peer != peer:
                continue
            if not {f"transfer-settled:{transfer}", f"transfer-void:{transfer}"} & set(closing):
                held.append(transfer)
    return OpenBusiness(held, balances)
