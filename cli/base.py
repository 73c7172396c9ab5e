"""What every operator command needs first: the settings from the environment and a migrated
database. Its own module so that the command groups (``cli.admin``, ``cli.audit``)
import it without importing ``cli.main``, which registers them."""

from __future__ import annotations

from ledger import Clock, utc_now
from ledger.config import ConfigError, Settings
from ledger.log import Log


def settings_from_env() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise SystemExit(f"timebank: configuration error: {exc}") from exc


def require_migrated(url: str) -> None:
    from migrations.runner import current_revision, head_revision

    current, head = current_revision(url), head_revision()
    if current != head:
        raise SystemExit(
            f"timebank: the database is at revision {current or 'none'}, not {head}; "
            "run `timebank migrate` first"
        )


def open_log(settings: Settings, clock: Clock = utc_now) -> Log:
    """The log, migrating a SQLite database on the way (PostgreSQL must be migrated); ``clock``
    stamps the entries it appends (the demo seed's is set in the past)."""
    from migrations.runner import upgrade

    if settings.is_sqlite:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        upgrade(settings.database_url)
    require_migrated(settings.database_url)
    return Log.open(settings, clock)
