"""Named failpoints for the crash tests of transfers (docs/federation.md#crash-tests), a testing
aid like etcd's gofail: ``TIMEBANK_FAILPOINT=<name>`` makes the process SIGKILL itself when a
transfer reaches that step, so a test can stop a real server exactly between two steps. Unset
(always, in production), each is one dictionary look-up."""

from __future__ import annotations

import os
import signal

FAILPOINTS = {
    "after-transfer-out": "H: transfer_out appended, nothing sent to R yet",
    "after-transfer-in": "R: transfer_in appended, H not answered yet",
    "after-transfer-refused": "R: transfer_refused appended, H not answered yet",
    "after-peer-proof": "H: R's proof received and checked, transfer_settled not appended",
    "after-peer-refusal": "H: R's final refusal received, transfer_void not appended",
}


def failpoint(name: str) -> None:
    """SIGKILL this process if ``TIMEBANK_FAILPOINT`` names this step."""
    assert name in FAILPOINTS, name
    if os.environ.get("TIMEBANK_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
