"""What the server's own PostgreSQL role may do, table by table (docs/operations.md).

The owner role migrates; the app role that ``timebank serve`` and the operator's commands use
must not own the tables (an owner can drop the append-only triggers) and gets only what the
code does to each table. Every table of the newest revision is named here, so a migration
that adds one cannot ship without deciding its privileges (``tests/test_app_role.py`` fails),
and ``timebank migrate --grant-to ROLE`` applies them after each upgrade: revoking whatever
else the role held on those tables, then granting these.
"""

from __future__ import annotations

import re

from sqlalchemy import Connection, text

READ_APPEND = ("SELECT", "INSERT")
MAINTAIN = ("SELECT", "INSERT", "UPDATE")

APP_PRIVILEGES: dict[str, tuple[str, ...]] = {
    # the log and the audit trail: append-only (the triggers refuse even the owner)
    "log_entries": READ_APPEND,
    "log_postings": READ_APPEND,
    "log_nodes": READ_APPEND,
    "log_checkpoints": READ_APPEND,
    "log_reversals": READ_APPEND,
    "log_cosignatures": READ_APPEND,
    "log_facts": READ_APPEND,
    "pii_access": READ_APPEND,
    "audit_events": READ_APPEND,
    # written once, never changed
    "banks": READ_APPEND,
    "organisations": READ_APPEND,
    "bank_policies": READ_APPEND,
    "entry_notes": READ_APPEND,
    "coverage_months": READ_APPEND,
    "coverage_elders": READ_APPEND,
    "federation_split_views": READ_APPEND,
    # states that move on: accounts, the workflow, partners, reports, federation
    "ledger_balances": MAINTAIN,
    "users": MAINTAIN,
    "role_grants": MAINTAIN,
    "members": MAINTAIN,
    "member_personal": MAINTAIN,
    "member_flags": MAINTAIN,
    "relatives": MAINTAIN,
    "sessions": MAINTAIN,
    "device_keys": MAINTAIN,
    "partner_keys": MAINTAIN,
    "login_throttle": MAINTAIN,
    "service_types": MAINTAIN,
    "service_requests": MAINTAIN,
    "service_records": MAINTAIN,
    "confirmation_codes": MAINTAIN,
    "reversal_requests": MAINTAIN,
    "partner_links": MAINTAIN,
    "partner_exchanges": MAINTAIN,
    "webhook_endpoints": MAINTAIN,
    "webhook_outbox": MAINTAIN,
    "published_reports": MAINTAIN,
    "federation_witnessed": MAINTAIN,
    "federation_transfers": MAINTAIN,
    # rows that go away: keys released after a failure and purged after a day; peers removed
    "idempotency_keys": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "federation_peers": ("SELECT", "INSERT", "DELETE"),
    # the commands check the schema's revision
    "alembic_version": ("SELECT",),
}
# Sequences behind generated keys: the app role draws numbers from them.
APP_SEQUENCES = ("federation_split_views_id_seq",)

_ROLE = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class GrantError(Exception):
    """The grants could not be applied: a bad role name, a role that could undo them (the
    owner, a superuser, a member of the owner), a database that is not PostgreSQL, or tables or
    sequences whose privileges this version does not know."""


def grant_to_app_role(conn: Connection, role: str) -> list[str]:
    """Give ``role`` exactly ``APP_PRIVILEGES`` on this database's tables, in ``conn``'s open
    transaction; the statements run, in order."""
    if conn.dialect.name != "postgresql":
        raise GrantError("--grant-to is for PostgreSQL (SQLite has no roles)")
    if not _ROLE.fullmatch(role):
        raise GrantError(f"role {role!r} is not a plain lower-case PostgreSQL name")
    owners: dict[str, str] = {
        str(table): str(owner)
        for table, owner in conn.execute(
            text("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = current_schema()")
        )
    }
    if role in owners.values():
        raise GrantError(f"role {role} owns tables here: the app role must not own them")
    found = conn.execute(
        text("SELECT rolsuper FROM pg_roles WHERE rolname = :r"), {"r": role}
    ).first()
    if found is None:
        raise GrantError(f"role {role} does not exist: create it first (docs/operations.md)")
    if found[0]:
        raise GrantError(f"role {role} is a superuser: the triggers could not hold it")
    for owner in set(owners.values()):
        member = conn.execute(
            text("SELECT pg_has_role(:r, :o, 'MEMBER')"), {"r": role, "o": owner}
        ).scalar_one()
        if member:
            raise GrantError(f"role {role} is a member of the owner {owner}: it must not be")
    sequences = {
        str(name)
        for (name,) in conn.execute(
            text("SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()")
        )
    }
    undecided = sorted(sequences - set(APP_SEQUENCES))
    if undecided:
        raise GrantError(f"no privileges decided for sequence(s) {', '.join(undecided)}")
    tables = set(owners)
    unknown = sorted(tables - APP_PRIVILEGES.keys())
    if unknown:
        raise GrantError(f"no privileges decided for table(s) {', '.join(unknown)}")
    missing = sorted(APP_PRIVILEGES.keys() - tables)
    if missing:
        raise GrantError(f"table(s) {', '.join(missing)} missing: migrate to the newest revision")
    statements = [f'GRANT USAGE ON SCHEMA {_schema(conn)} TO "{role}"']
    for table, privileges in APP_PRIVILEGES.items():
        statements.append(f'REVOKE ALL ON TABLE "{table}" FROM "{role}"')
        statements.append(f'GRANT {", ".join(privileges)} ON TABLE "{table}" TO "{role}"')
    for sequence in APP_SEQUENCES:
        statements.append(f'REVOKE ALL ON SEQUENCE "{sequence}" FROM "{role}"')
        statements.append(f'GRANT USAGE ON SEQUENCE "{sequence}" TO "{role}"')
    for statement in statements:
        conn.execute(text(statement))
    return statements


def _schema(conn: Connection) -> str:
    name = str(conn.execute(text("SELECT current_schema()")).scalar_one())
    return str(conn.dialect.identifier_preparer.quote_identifier(name))
