"""The operator's command line, ``timebank``: serving, migrations, the demo, verification, the
auditor's checks, administration, reports, webhooks and peers. ``cli.main`` registers the
command groups (``cli.admin``, ``cli.audit``, ``cli.reports``, ``cli.webhooks``,
``cli.peers``), which all start from ``cli.base`` (settings and a migrated database)."""
