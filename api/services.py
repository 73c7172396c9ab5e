"""Everything a process holds open over its one database: the log and the domain services
(accounts, care, audit, partners, reports…), opened together and closed together, and the
workers beside them (the audit sealer, webhook delivery).

``timebank serve`` holds one ``Services`` for its app (``api.app``); the operator's commands
(``cli``) open the same one without the web stack, so this module imports no Litestar (an
import-linter contract keeps it so).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

from accounts.base import SecurityPolicy
from accounts.protection import DataKeyError, Protector, data_key_path, load_or_create_data_key
from accounts.service import AccountsService
from accounts.storage import AccountsStore
from audit.trail import AuditTrail
from care.service import CareService
from federation.witnessing import with_peer_witnesses
from ledger.config import Settings
from ledger.keys import load_or_create_signing_key
from ledger.log import Log
from partners.delivery import Delivery
from partners.exchanges import Exchanges
from partners.links import PartnerLinks
from partners.statements import SignedDocuments
from partners.webhooks import HostPolicy, Outbox
from reports.coverage import VisitCoverage
from reports.exports import Exports
from reports.halfyear import HalfYearReports
from reports.signals import SupervisionSignals


@dataclass
class Services:
    """Everything the app holds open; closed together on shutdown."""

    log: Log
    accounts: AccountsService
    care: CareService
    audit: AuditTrail
    partners: PartnerLinks
    outbox: Outbox
    exchanges: Exchanges
    coverage: VisitCoverage
    signals: SupervisionSignals
    exports: Exports
    reports: HalfYearReports
    documents: SignedDocuments
    sealer: Sealer | None = None
    deliverer: Deliverer | None = None

    @classmethod
    def open(cls, settings: Settings, log: Log | None = None) -> Services:
        log = log or Log.open(with_peer_witnesses(settings))
        database = log.store.database  # one pool per process, shared by every store
        store = AccountsStore(database)
        key_path = data_key_path(settings.data_dir)
        if not key_path.exists() and store.holds_personal_data():
            raise DataKeyError(
                f"data key {key_path} is missing but the database holds encrypted personal "
                "data; restore the key from backup (a new key could not read it)"
            )
        protector = Protector(load_or_create_data_key(key_path))
        policy = SecurityPolicy.from_env(os.environ)  # TIMEBANK_MEMBER_SEARCHES…
        accounts = AccountsService(store, protector, log, policy=policy)
        audit = AuditTrail(database)
        outbox = Outbox(store, protector, HostPolicy.from_env(os.environ))
        care = CareService(store, accounts, log, events=outbox)
        partners = PartnerLinks(store, accounts, log, care.policy, outbox=outbox)
        coverage = VisitCoverage(store, accounts, care.policy)
        signals = SupervisionSignals(store, accounts, log, care.policy)
        exchanges = Exchanges(partners, log)
        exports = Exports(store, accounts, coverage, care.policy)
        reports = HalfYearReports(store, log, care.policy, coverage)
        statement_key = load_or_create_signing_key(
            settings.statement_key_file, settings.statement_key_name
        )
        documents = SignedDocuments(partners, log, statement_key)
        return cls(
            log,
            accounts,
            care,
            audit,
            partners,
            outbox,
            exchanges,
            coverage,
            signals,
            exports,
            reports,
            documents,
        )

    def start_sealing(self, every_seconds: float) -> None:
        self.sealer = Sealer(self.audit, self.log, every_seconds)
        self.sealer.start()

    def start_delivering(self) -> None:
        """The webhook delivery worker in this process (``timebank serve`` by default)."""
        self.deliverer = Deliverer(
            Delivery(self.accounts.store, self.outbox, checkpoint=self.log.size)
        )
        self.deliverer.start()

    def close(self, close_log: bool = True) -> None:
        if self.deliverer is not None:
            self.deliverer.stop()
        if self.sealer is not None:
            self.sealer.stop()  # seals once more on the way out
        self.accounts.store.dispose()
        self.audit.dispose()
        if close_log:
            self.log.close()


class Sealer:
    """Seals the audit trail into the log every ``every_seconds`` and once on shutdown."""

    def __init__(self, trail: AuditTrail, log: Log, every_seconds: float) -> None:
        self.trail, self.log, self.every = trail, log, every_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-sealer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._seal()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._seal()

    def _seal(self) -> None:
        try:
            self.trail.seal(self.log)
        except Exception as exc:  # retried at the next tick; never blocks requests
            logging.getLogger(__name__).error("audit seal failed: %s", type(exc).__name__)


class Deliverer:
    """Runs the webhook delivery worker (``partners.delivery``) until stopped."""

    IDLE_SECONDS = 1.0

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-delivery", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                attempted = self.delivery.run_once()
            except Exception as exc:  # the database away for a moment: tried again
                logging.getLogger(__name__).error("webhook delivery failed: %s", type(exc).__name__)
                attempted = 0
            if attempted == 0:
                self._stop.wait(self.IDLE_SECONDS)
