"""The points link into the wider elderly-care platform.

Consent links between a member and a named partner platform, the partner's pseudonymous member
handles, points and star levels computed from the ledger, signed statements and certificates,
exchanges a partner asks for and the member confirms, and the webhook outbox with its delivery
worker. Depends on ``ledger``, ``accounts`` and ``care`` (DESIGN.md, architecture).
"""
