"""Small builders shared by the ledger tests."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from ledger.entry import EntryRequest, Posting
from ledger.postings import system_account
from ledger.storage import APPEND_ONLY_TABLES
from tests.conftest import owner_url

BANK = "t"
ISSUANCE = system_account(BANK, "issuance")
POOL = system_account(BANK, "pool")
REDEMPTION = system_account(BANK, "redemption")


def member(n: int) -> str:
    return f"{BANK}:member:m{n}"


def deposit(entry_id: str, account: str, minutes: int) -> EntryRequest:
    return EntryRequest(
        "deposit",
        entry_id,
        (Posting(ISSUANCE, -minutes), Posting(account, minutes)),
        {"record": entry_id, "minutes": minutes, "weight": 1000},
    )


def gift(entry_id: str, giver: str, receiver: str, minutes: int) -> EntryRequest:
    return EntryRequest("gift", entry_id, (Posting(giver, -minutes), Posting(receiver, minutes)))


def donation(entry_id: str, donor: str, minutes: int) -> EntryRequest:
    return EntryRequest("donation", entry_id, (Posting(donor, -minutes), Posting(POOL, minutes)))


def grant(entry_id: str, elder: str, minutes: int) -> EntryRequest:
    return EntryRequest(
        "grant",
        entry_id,
        (Posting(POOL, -minutes), Posting(elder, minutes)),
        {"reason": "priority"},
    )


def redemption(entry_id: str, account: str, minutes: int) -> EntryRequest:
    return EntryRequest(
        "redemption", entry_id, (Posting(account, -minutes), Posting(REDEMPTION, minutes))
    )


def raw_sql(url: str, *statements: str) -> None:
    """Run SQL behind the application's back (as an insider with database access would: the
    tables' owner)."""
    engine = create_engine(owner_url(url))
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def drop_append_only_triggers(url: str) -> None:
    if url.startswith("sqlite"):
        raw_sql(
            url,
            *(
                f"DROP TRIGGER IF EXISTS {t}_no_{a}"
                for t in APPEND_ONLY_TABLES
                for a in ("update", "delete")
            ),
        )
    else:
        raw_sql(
            url, *(f"DROP TRIGGER IF EXISTS {t}_append_only ON {t}" for t in APPEND_ONLY_TABLES)
        )
