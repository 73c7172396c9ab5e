"""Signed audit trail, auditor verification and witness cosigning."""
