"""What every operator command needs first: the settings from the environment, a migrated
database, and the types of its arguments. Its own module so that the command groups
(``cli.admin``, ``cli.audit``) import it without importing ``cli.main``, which registers
them."""

from __future__ import annotations

import argparse
from pathlib import Path

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


# Argument types: a value argparse refuses (exit 2, naming the option) instead of one a server
# or a loop would take in a surprising way (port 99999 bound as 34463, an empty host as every
# interface, an idle of 0 as a busy loop).


def port(text: str) -> int:
    """A TCP port, 1 to 65535."""
    value = _whole(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return value


def host(text: str) -> str:
    """An address to listen on, given explicitly (an empty one would mean every interface)."""
    if not text.strip() or text != text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not an address (0.0.0.0 for all of them)")
    return text


def seconds(text: str) -> float:
    """A time in seconds above 0 and at most a day."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 86_400:
        raise argparse.ArgumentTypeError(f"{text!r} is not above 0 and at most 86400 seconds")
    return value


def processes(text: str) -> int:
    """A number of worker processes, 1 to 64."""
    value = _whole(text)
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not 1-64 processes")
    return value


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def operator(text: str) -> str:
    """Who runs an operator command, named for the audit trail: 1 to 48 printable characters
    (an empty ``--as`` fell back to the OS user without a word)."""
    if not 1 <= len(text.strip()) <= 48 or text != text.strip() or not text.isprintable():
        raise argparse.ArgumentTypeError(f"{text!r} is not a name (1-48 printable characters)")
    return text


def count(text: str) -> int:
    """A whole number from 0 (minutes of an overdraft, a quorum of witnesses) to 10^9: a
    negative overdraft was read as its size, a floor above zero."""
    value = _whole(text)
    if not 0 <= value <= 10**9:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 0")
    return value


def given(text: str) -> str:
    """A file, directory or month named explicitly: an empty one meant the working directory,
    no state at all, or this month, without a word."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty value; leave the option out instead")
    return text


def new_file(text: str) -> str:
    """A file to create in a directory that exists: a mistyped directory became a new tree of
    directories without a word."""
    parent = Path(given(text)).parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: there is no directory {str(parent)!r}")
    return text
