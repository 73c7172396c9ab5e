"""The life of an hour: catalogue and policy, requests and dispatch, service records, their
confirmation and verification, deposits, redemption (two-phase), gifts, donations, pool grants
and reversals. Every rule lives in the ``care`` package; the web layer only translates.

Every ledger entry this module appends has an id derived from the workflow object it belongs
to (``deposit:<record>``, ``reserve:<request>``…), so a retried or repeated action can never
post twice: the log returns the first result for a repeated id.

Each use case has its own module, built on the ones before it: ``base`` (stores, lookups,
access checks) → ``catalogue`` → ``requests`` → ``codes`` → ``records`` → ``confirmation`` →
``verification`` → ``transfers`` → ``reversals`` → ``statements``; the shared compare-and-set
statements are in ``repo``. ``CareService`` is all of them, the one object the API and the
pages hold.
"""

from __future__ import annotations

from care.statements import Statements


class CareService(Statements):
    """The care workflow's use cases, one module each (see the module docstring)."""
