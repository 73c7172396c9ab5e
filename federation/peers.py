"""The district banks this deployment knows as peers, checked before they are stored.

A peer is named by the operator and known by its URL, its log's origin, the key that signs its
checkpoints and the key that signs its requests to us (``federation.signing``). Keys are in the
signed-note verifier format the log already uses (``ledger.note``): an Ed25519 key under a
name, so a key for one purpose cannot be passed off as the key for another.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from federation.signing import key_id
from federation.storage import Duplicate, PeerRow, PeerStore
from ledger.errors import KeyFormatError, NoteError
from ledger.note import COSIGNATURE_V1, ED25519, Verifier

NAME = re.compile(r"^[a-z][a-z0-9-]{1,31}\Z")
ORIGIN = re.compile(r"^[\x21-\x7e]{1,200}\Z")
REQUEST_KEY_SUFFIX = "/peers"
WITNESS_KEY_SUFFIX = "/witness"
WITNESS_PATH = "/v1/federation/witness"  # + /add-checkpoint, /key, /checkpoint


class PeerError(ValueError):
    """Input the operator must fix; ``field`` names the option."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Peer:
    name: str
    url: str
    log_origin: str
    log_key: Verifier
    request_key: Verifier
    added_by: str
    added_at: datetime
    witness_key: Verifier | None = None  # None: not asked to witness our log

    @property
    def witness_url(self) -> str:
        """Where the peer's witness takes our checkpoints (tlog-witness submission prefix)."""
        return self.url + WITNESS_PATH

    @property
    def request_key_id(self) -> str:
        """How a signed request names the key (``<name>+<hex key id>``, federation.signing)."""
        return key_id(self.request_key)


def request_key_name(origin: str) -> str:
    """The name a bank's request key carries: its log's origin, then ``/peers``."""
    return origin + REQUEST_KEY_SUFFIX


def witness_key_name(origin: str) -> str:
    """The name a bank's witness key carries: its log's origin, then ``/witness``."""
    return origin + WITNESS_KEY_SUFFIX


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise PeerError(
            "name must be 2 to 32 lowercase letters, digits or '-', starting with a letter",
            "name",
        )
    return name


def check_url(url: str) -> str:
    """An absolute https URL (http only to this machine, for tests and demos), without
    credentials, query or fragment; returned without a trailing slash."""
    try:
        parts = urlsplit(url.strip())
        _ = parts.port  # raises on a port that is not a number or out of range
    except ValueError as exc:
        raise PeerError(f"url is not a valid URL ({exc})", "url") from exc
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise PeerError("url must be an absolute https:// URL with a host", "url")
    if parts.scheme == "http" and not _loopback(host):
        raise PeerError("url must use https (http only for 127.0.0.1, ::1 or localhost)", "url")
    if parts.username is not None or parts.password is not None:
        raise PeerError("url must not carry a user name or password", "url")
    if parts.query or parts.fragment:
        raise PeerError("url must not have a query or a fragment", "url")
    return url.strip().rstrip("/")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_origin(origin: str, own_origin: str) -> str:
    if not ORIGIN.match(origin) or "+" in origin:
        raise PeerError("origin must be printable ASCII without spaces or '+'", "origin")
    if origin == own_origin:
        raise PeerError(f"origin {origin} is this bank's own log", "origin")
    return origin


def parse_key(text: str, field: str, name: str, key_type: int = ED25519) -> Verifier:
    """A note verifier key named ``name``: Ed25519, or a cosignature key (``COSIGNATURE_V1``)."""
    try:
        verifier = Verifier.from_text(text)
    except (KeyFormatError, NoteError) as exc:
        raise PeerError(f"{field.replace('_', '-')} is not a verifier key: {exc}", field) from exc
    if verifier.key_type != key_type:
        wanted = "an Ed25519 (0x01)" if key_type == ED25519 else "a cosignature/v1 (0x04)"
        raise PeerError(f"{field.replace('_', '-')} must be {wanted} key", field)
    if verifier.name != name:
        raise PeerError(
            f"{field.replace('_', '-')} is named {verifier.name!r}, not {name!r}", field
        )
    return verifier


class Peers:
    """Add, list and remove peers; ``own_origin`` is this bank's log (never its own peer)."""

    def __init__(self, store: PeerStore, own_origin: str) -> None:
        self.store = store
        self.own_origin = own_origin

    def add(
        self,
        name: str,
        url: str,
        origin: str,
        log_key: str,
        request_key: str,
        added_by: str,
        now: datetime | None = None,
        witness_key: str | None = None,
    ) -> Peer:
        peer = Peer(
            name=check_name(name),
            url=check_url(url),
            log_origin=check_origin(origin, self.own_origin),
            log_key=parse_key(log_key, "log_key", origin),
            request_key=parse_key(request_key, "request_key", request_key_name(origin)),
            added_by=added_by[:64],
            added_at=now or datetime.now(UTC),
            witness_key=None
            if witness_key is None
            else parse_key(witness_key, "witness_key", witness_key_name(origin), COSIGNATURE_V1),
        )
        self._refuse_duplicate(peer)
        try:
            self.store.add(_to_row(peer))
        except Duplicate as exc:  # another operator added the same one meanwhile
            raise PeerError(f"a peer with this name, origin or key exists ({exc})", "name") from exc
        return peer

    def _refuse_duplicate(self, peer: Peer) -> None:
        for known in self.list():
            if known.name == peer.name:
                raise PeerError(f"a peer named {peer.name} exists", "name")
            if known.log_origin == peer.log_origin:
                raise PeerError(f"peer {known.name} has origin {peer.log_origin}", "origin")
            if known.request_key_id == peer.request_key_id:
                raise PeerError(f"peer {known.name} has this request key", "request_key")

    def list(self) -> list[Peer]:
        return [_from_row(r) for r in self.store.all()]

    def by_request_key_id(self, key_id: str) -> Peer | None:
        """The peer whose request key a signed request names (federation.signing)."""
        return next((p for p in self.list() if p.request_key_id == key_id), None)

    def remove(self, name: str) -> None:
        if not self.store.remove(name):
            raise PeerError(f"no peer named {name}", "name")


def _to_row(peer: Peer) -> PeerRow:
    return PeerRow(
        name=peer.name,
        url=peer.url,
        log_origin=peer.log_origin,
        log_key=peer.log_key.to_text(),
        request_key=peer.request_key.to_text(),
        request_key_id=peer.request_key_id,
        added_by=peer.added_by,
        added_at=peer.added_at,
        witness_key=peer.witness_key.to_text() if peer.witness_key else None,
    )


def _from_row(row: PeerRow) -> Peer:
    return Peer(
        name=row.name,
        url=row.url,
        log_origin=row.log_origin,
        log_key=Verifier.from_text(row.log_key),
        request_key=Verifier.from_text(row.request_key),
        added_by=row.added_by,
        added_at=row.added_at,
        witness_key=Verifier.from_text(row.witness_key) if row.witness_key else None,
    )
