"""Alembic environment and revisions; ``migrations.runner`` applies them under a lock."""
