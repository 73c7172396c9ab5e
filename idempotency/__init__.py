"""Idempotency keys for state-changing requests: stored once, replayed on retry."""
