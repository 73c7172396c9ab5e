"""Members, organisations, roles, credentials and personal-data protection (see DESIGN.md)."""
