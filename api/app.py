"""Build the Litestar application around one open ``Log`` and the accounts service."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, get
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from api.accounts_routes import ACCOUNT_CONTROLLERS
from api.audit_log import MAX_BODY, AuditMiddleware
from api.audit_routes import AuditController
from api.auth import PrincipalCache
from api.care_routes import CARE_CONTROLLERS
from api.document_pdf_routes import DocumentPdfController
from api.federation_routes import FEDERATION_CONTROLLERS
from api.front_app import TimebankApp
from api.idempotency import (
    OPENAPI_KEY_PARAMETER,
    OPENAPI_REPLAYED_HEADER,
    IdempotencyMiddleware,
    applies_to,
)
from api.ledger_routes import LEDGER_CONTROLLERS
from api.log_routes import LogController
from api.members_routes import MEMBER_CONTROLLERS
from api.partner_routes import PARTNER_CONTROLLERS
from api.problems import EXCEPTION_HANDLERS
from api.schemas import DocumentedJsonRenderPlugin, DocumentedYamlRenderPlugin, StrictJSONRequest
from api.services import Services
from api.settlement_routes import SETTLEMENT_CONTROLLERS
from api.stats_routes import STATS_CONTROLLERS
from api.threads import widen_handler_pool
from api.transfer_routes import TRANSFER_CONTROLLERS
from api.webhook_routes import WEBHOOK_CONTROLLERS
from audit.witness_history import record_witnesses
from federation.consistency import SeenCheckpoints
from federation.peers import Peers
from federation.settlement import Settling
from federation.storage import PeerStore
from federation.transfer_http import signed_poster
from federation.transfer_storage import TransferStore
from federation.transfer_worker import TransferWorker, retry_interval
from federation.transfers import Receiving, Sending, utc_clock
from federation.witness_storage import WitnessedStore
from federation.witnessing import load_or_create_witness_key, peer_witness
from ledger.config import ConfigError, Settings
from ledger.keys import load_or_create_signing_key
from ledger.log import Log
from migrations.runner import upgrade
from web.app import LocalSwaggerUI, web_routes
from web.pages import TEMPLATES
from web.security import BrowserCSRFMiddleware, SecurityHeadersMiddleware, csrf_config


def delivers_webhooks(env: Mapping[str, str]) -> bool:
    """``TIMEBANK_WEBHOOK_WORKER=1`` (set by ``timebank serve`` unless given): the app delivers
    webhooks itself; ``0`` leaves it to ``timebank webhooks run``."""
    return env.get("TIMEBANK_WEBHOOK_WORKER", "0") == "1"


@get("/healthz", sync_to_thread=True, tags=["ops"])
def healthz(state: State) -> dict[str, Any]:
    """Liveness and the size of the signed tree."""
    log: Log = state.log
    return {"status": "ok", "tree_size": log.size()}


def seal_interval(env: Mapping[str, str]) -> float:
    """``TIMEBANK_AUDIT_SEAL_SECONDS``: how often the audit trail is sealed (1 s to 1 day)."""
    raw = env.get("TIMEBANK_AUDIT_SEAL_SECONDS", "60")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 1 <= seconds <= 86400:
        raise ConfigError("TIMEBANK_AUDIT_SEAL_SECONDS must be a number of seconds from 1 to 86400")
    return seconds


def create_app(settings: Settings | None = None, log: Log | None = None) -> Litestar:
    """The app for ``settings`` (from the environment by default).

    SQLite databases are migrated on start; PostgreSQL ones with ``timebank migrate``.
    A ``log`` passed in (tests) is used as is and left open on shutdown.
    """
    settings = settings or Settings.from_env()
    csrf = csrf_config(settings.data_dir)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        widen_handler_pool()
        if log is None and settings.is_sqlite:
            settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            upgrade(settings.database_url)
        services = Services.open(settings, log)
        # The witnesses this server submits to, in the audit trail when they changed: verify
        # names a removed witness's cosignatures by it (audit.witness_history).
        record_witnesses(services.audit, services.log.witness_keys)
        app.state.log = services.log
        app.state.accounts = services.accounts
        app.state.care = services.care
        app.state.audit = services.audit
        app.state.partners = services.partners
        app.state.exchanges = services.exchanges
        app.state.outbox = services.outbox
        app.state.coverage = services.coverage
        app.state.signals = services.signals
        app.state.exports = services.exports
        app.state.reports = services.reports
        app.state.documents = services.documents
        app.state.data_dir = settings.data_dir
        peer_signer = load_or_create_signing_key(settings.peer_key_file, settings.peer_key_name)
        app.state.peer_key = peer_signer.verifier.to_text()
        peers = Peers(PeerStore(services.log.store.database), settings.log_origin)
        app.state.peers = peers
        app.state.transfers_sending = Sending(
            services.log,
            services.accounts,
            peers,
            signed_poster(peer_signer),
            TransferStore(services.log.store.database),
            utc_clock,
        )
        app.state.settling = Settling(
            services.log,
            peers,
            peer_signer,
            signed_poster(peer_signer),
            utc_clock,
            witnessed=WitnessedStore(services.log.store.database).note,
        )
        app.state.peer_witness = peer_witness(
            load_or_create_witness_key(settings.witness_key_file, settings.witness_key_name),
            services.log.store.database,
            services.audit,
            settings.log_origin,
        )
        app.state.transfers_receiving = Receiving(
            services.log,
            services.accounts,
            settings.log_origin,
            utc_clock,
            SeenCheckpoints(app.state.peer_witness),
        )
        app.state.principals = PrincipalCache()
        services.start_sealing(seal_interval(os.environ))
        if delivers_webhooks(os.environ):
            services.start_delivering()
        retrying = None
        if every := retry_interval(os.environ):  # held transfers finished in the background
            retrying = TransferWorker(app.state.transfers_sending, every)
            retrying.start()
        app.state.transfer_worker = retrying
        try:
            yield
        finally:
            if retrying is not None:
                retrying.stop()
            services.close(close_log=log is None)

    return TimebankApp(
        route_handlers=[
            healthz,
            LogController,
            *ACCOUNT_CONTROLLERS,
            *MEMBER_CONTROLLERS,
            *CARE_CONTROLLERS,
            *LEDGER_CONTROLLERS,
            *PARTNER_CONTROLLERS,
            DocumentPdfController,
            *STATS_CONTROLLERS,
            *WEBHOOK_CONTROLLERS,
            *FEDERATION_CONTROLLERS,
            *TRANSFER_CONTROLLERS,
            *SETTLEMENT_CONTROLLERS,
            AuditController,
            *web_routes(),
        ],
        lifespan=[lifespan],
        middleware=[
            SecurityHeadersMiddleware,
            AuditMiddleware(),  # buffers the body, so the CSRF check can read forms after it
            DefineMiddleware(BrowserCSRFMiddleware, config=csrf),
            IdempotencyMiddleware(),
        ],
        request_max_body_size=MAX_BODY,  # JSON bodies here are a few hundred bytes
        template_config=TEMPLATES,
        exception_handlers=EXCEPTION_HANDLERS,
        request_class=StrictJSONRequest,
        openapi_config=OpenAPIConfig(
            title="Timebank",
            version="0.1.0",
            description=(
                "Elderly-care time bank: a signed, append-only ledger of volunteer hours. "
                "Errors are RFC 9457 application/problem+json. "
                "POSTs under /v1 (except login and logout) accept an Idempotency-Key "
                "header: a retry with the same key and body replays the stored response "
                "(Idempotent-Replayed: true); another body gets 422, a retry while the first "
                "is running 409. Gifts, donations and grants require it (428 without)."
            ),
            path="/schema",
            render_plugins=[
                LocalSwaggerUI(path=["/", "/swagger"]),
                DocumentedJsonRenderPlugin(applies_to),
                DocumentedYamlRenderPlugin(applies_to),
            ],
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="A session token from /v1/auth/login, or a partner key (tbk_…)",
                    ),
                    "peerSignature": SecurityScheme(
                        type="apiKey",
                        name="Signature",
                        security_scheme_in="header",
                        description=(
                            "A peer bank's request: an HTTP Message Signature (RFC 9421, "
                            "Ed25519) in the Signature and Signature-Input headers over the "
                            "method, the path, Date and Content-Digest, by the request key "
                            "registered for that peer (timebank peers add; docs/federation.md)"
                        ),
                    ),
                },
                parameters={"IdempotencyKey": OPENAPI_KEY_PARAMETER},
                headers={"IdempotentReplayed": OPENAPI_REPLAYED_HEADER},
            ),
        ),
        debug=False,
    )
