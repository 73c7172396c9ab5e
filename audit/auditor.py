"""The auditor: check a Timebank log holding only its public key — offline, online, receipts.

Nothing here trusts the operator. The auditor brings the log's verifier key (and, optionally,
a witness policy: which witness keys, how many cosignatures required); everything else —
leaves, checkpoints, proofs — is checked against that key and the Merkle tree.

* ``export_bundle``: fetch the key, the latest checkpoint (with cosignatures) and every leaf
  over the public HTTP API into a self-contained directory with a ``manifest.json`` of
  SHA-256 hashes.
* ``verify_bundle``: offline. Manifest hashes; the key is the one supplied; the checkpoint's
  signature and the witness quorum; every leaf through ``ledger.replay`` (canonical form, hash
  chain, seq order, time order, double-entry rules, balance floors, reversals); the Merkle
  root equals the signed root and the size matches.
* ``verify_online``: the same over HTTP, incrementally: a state file remembers the last
  verified checkpoint and the replay state; the next run checks the new checkpoint is
  consistent with it (``/v1/log/proof/consistency``) and replays only the new leaves
  (``full=True`` replays everything). It also compares the checkpoint it is shown with the
  remembered one and with the ones witnesses cosigned (``GET <witness>/checkpoint``): two
  signed checkpoints that cannot both be true — same size with different roots, or no valid
  consistency proof between them — are a **fork** (a split view), and both signed notes are
  written out as evidence.
* The **audit trail** (with an auditor's bearer token, ``GET /v1/audit/events``): export and
  online audits fetch every event the token may see; the chain is checked (``audit.trail``)
  and so is every ``seal`` entry in the leaves against it. An auditor sees its own bank's
  events (and those of no bank): with ``shared_trail`` the events of other banks are treated
  as not visible, otherwise a missing event is a problem. See ``check_trail``.
* **Deposits** (``deposit_problems``): every deposit refers to a record (a SHA-256 digest), was
  confirmed and verified by two different people, carries the verifier's signature, and issues
  exactly ``(minutes × weight + 500) // 1000`` minutes.
* ``verify_receipt``: a C2SP tlog-proof receipt, offline. Timebank receipts carry the entry's
  leaf bytes in the ``extra`` line (base64), so the receipt alone shows *what* was logged:
  the leaf must decode to an entry with that index, and its hash must be included in the
  signed (and, per policy, cosigned) checkpoint.

The work is split by job: ``audit.report`` (policy and report), ``audit.client`` (HTTP),
``audit.rules`` (deposit and seal rules), ``audit.trail_checks``, ``audit.parallel``,
``audit.bundle``, ``audit.online`` and ``audit.receipt``; this module is their public face.

Every report lists every problem found (``seq N``, ``checkpoint N``, ``manifest``, …) with a
reason; the CLI exits non-zero if there is any.
"""

from audit.bundle import (
    BUNDLE_FILES,
    BUNDLE_FORMAT,
    EVENTS_FILE,
    Export,
    export_bundle,
    verify_bundle,
)
from audit.online import AuditState, verify_online
from audit.receipt import verify_receipt
from audit.report import AuditError, AuditReport, Policy, read_key

__all__ = [
    "BUNDLE_FILES",
    "BUNDLE_FORMAT",
    "EVENTS_FILE",
    "AuditError",
    "AuditReport",
    "AuditState",
    "Export",
    "Policy",
    "export_bundle",
    "read_key",
    "verify_bundle",
    "verify_online",
    "verify_receipt",
]
