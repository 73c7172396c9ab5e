"""The log's signing key on disk: created once, never logged, readable only by its owner."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ledger.errors import KeyFormatError
from ledger.note import Signer


def load_or_create_signing_key(path: Path, name: str) -> Signer:
    """Load the key at ``path``; create it (mode 0600, atomically) if it does not exist.

    A key that exists is never replaced: a new key would orphan every checkpoint signed so far.
    """
    if path.exists():
        return load_signing_key(path, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    signer = Signer.generate(name)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(8).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (signer.to_text() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process created the key meanwhile
    except FileExistsError:
        return load_signing_key(path, name)
    finally:
        tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return signer


def load_signing_key(path: Path, name: str) -> Signer:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyFormatError(
            f"signing key {path} is readable by others (mode {mode:o}); run chmod 600 on it"
        )
    try:
        signer = Signer.from_text(path.read_text(encoding="ascii"))
    except (UnicodeDecodeError, KeyFormatError) as exc:
        raise KeyFormatError(f"signing key {path} is not a PRIVATE+KEY note key") from exc
    if signer.name != name:
        raise KeyFormatError(
            f"signing key {path} is named {signer.name!r} but the log origin is {name!r}"
        )
    return signer
