"""Use cases for banks, organisations, members and credentials, each checked against the caller.

Every method that acts for someone takes the calling ``Principal`` first and checks role **and**
scope before touching anything: own records, own organisation, own bank. Objects the caller
may not know about are reported as ``NotFound``, so existence does not leak across scopes.

Each use case has its own module, built on the ones before it: ``base`` (users, grants, shared
checks) → ``sessions`` → ``second_factor`` → ``orgs`` → ``members`` → ``relations`` →
``devices`` → ``partners``; ``rows`` maps table rows to the model. ``AccountsService`` is all of
them, the one object the API, the pages and the care workflow hold.
"""

from __future__ import annotations

from accounts.base import SecurityPolicy
from accounts.member_views import MemberView
from accounts.members import PersonalInput
from accounts.partners import Partners
from accounts.sessions import LoginResult

__all__ = ["AccountsService", "LoginResult", "MemberView", "PersonalInput", "SecurityPolicy"]


class AccountsService(Partners):
    """The accounts use cases, one module each (see the module docstring)."""
