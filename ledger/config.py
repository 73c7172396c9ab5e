"""Settings from environment variables, with safe defaults for a laptop demo."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ledger.witnessing import WitnessConfigError, WitnessEndpoint, parse_witnesses

ORIGIN = re.compile(r"^[\x21-\x7e]+\Z")


class ConfigError(ValueError):
    """A setting is present but unusable; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    log_origin: str
    signing_key_file: Path
    member_overdraft_minutes: int = 0
    witnesses: tuple[WitnessEndpoint, ...] = ()  # TIMEBANK_WITNESSES (ledger.witnessing)
    witness_quorum: int = 0  # TIMEBANK_WITNESS_QUORUM
    # The bank's key for signed statements and certificates (partners.statements); kept like
    # the log's key, next to it by default. TIMEBANK_STATEMENT_KEY_FILE.
    statement_key: Path | None = None
    # The bank's key for signing requests to its peers (federation.signing); kept like the
    # other keys. TIMEBANK_PEER_KEY_FILE.
    peer_key: Path | None = None
    # The key this bank cosigns its peers' checkpoints with (federation.witnessing), type
    # 0x04. TIMEBANK_WITNESS_KEY_FILE.
    witness_key: Path | None = None

    @property
    def witness_key_file(self) -> Path:
        return self.witness_key or self.data_dir / "witness.key"

    @property
    def witness_key_name(self) -> str:
        """The witness key's name: the log's origin, then ``/witness``."""
        return f"{self.log_origin}/witness"

    @property
    def statement_key_file(self) -> Path:
        return self.statement_key or self.data_dir / "statement.key"

    @property
    def statement_key_name(self) -> str:
        """The statement key's name: the log's origin, then ``/statements``."""
        return f"{self.log_origin}/statements"

    @property
    def peer_key_file(self) -> Path:
        return self.peer_key or self.data_dir / "peer.key"

    @property
    def peer_key_name(self) -> str:
        """The peer-request key's name: the log's origin, then ``/peers``."""
        return f"{self.log_origin}/peers"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        data_dir = Path(env.get("TIMEBANK_DATA_DIR", "./var")).expanduser().resolve()
        database_url = env.get("TIMEBANK_DATABASE_URL") or f"sqlite:///{data_dir / 'timebank.db'}"
        if not database_url.startswith(("sqlite:///", "postgresql+psycopg://")):
            raise ConfigError(
                "TIMEBANK_DATABASE_URL must be sqlite:///PATH or postgresql+psycopg://…"
            )
        origin = env.get("TIMEBANK_LOG_ORIGIN", "timebank.local/demo")
        if not ORIGIN.match(origin) or "+" in origin:
            raise ConfigError("TIMEBANK_LOG_ORIGIN must be printable ASCII without spaces or '+'")
        key_file = env.get("TIMEBANK_SIGNING_KEY_FILE")
        signing_key_file = Path(key_file).expanduser() if key_file else data_dir / "signing.key"
        statement_key = env.get("TIMEBANK_STATEMENT_KEY_FILE")
        peer_key = env.get("TIMEBANK_PEER_KEY_FILE")
        witness_key = env.get("TIMEBANK_WITNESS_KEY_FILE")
        try:
            witnesses = parse_witnesses(env.get("TIMEBANK_WITNESSES", ""))
        except WitnessConfigError as exc:
            raise ConfigError(f"TIMEBANK_WITNESSES: {exc}") from exc
        quorum_text = env.get("TIMEBANK_WITNESS_QUORUM", "0").strip()
        if not quorum_text.isdigit() or int(quorum_text) > len(witnesses):
            raise ConfigError(
                "TIMEBANK_WITNESS_QUORUM must be a whole number no larger than the number of "
                f"witnesses in TIMEBANK_WITNESSES ({len(witnesses)})"
            )
        return cls(
            data_dir,
            database_url,
            origin,
            signing_key_file,
            witnesses=witnesses,
            witness_quorum=int(quorum_text),
            statement_key=Path(statement_key).expanduser() if statement_key else None,
            peer_key=Path(peer_key).expanduser() if peer_key else None,
            witness_key=Path(witness_key).expanduser() if witness_key else None,
        )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
