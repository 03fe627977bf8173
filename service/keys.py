"""API keys: created once, printed once, kept only as hashes in a JSON file.

A key reads `cm_<key id>_<secret>`. The file stores, per key id, the SHA-256 of the secret (keys
carry 256 bits of randomness, so a fast hash is enough; nothing weak is ever stored), its scopes,
its tenant and its networks. The service re-reads the file when it changes, so a key created with
`clustermatch keys create` works without a restart.

Tenants and networks (the visibility model):
- every key belongs to one **tenant** (e.g. one cluster agency); actors written with a key belong to
  that tenant;
- a key may belong to **networks** (e.g. a cross-regional partnership of agencies); an actor
  written with it is shared with those networks;
- `private` document text is shown only to the owning tenant, `network` text also to tenants that
  share one of the actor's networks, `public` text to everyone.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from service.domain import OPERATOR, Owner, Viewer
from service.errors import FieldProblem, InvalidInput, Unauthorized

Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
PREFIX = "cm"


@dataclass(frozen=True)
class ApiKey:
    id: str
    hash: str
    scopes: tuple[str, ...]
    tenant: str
    networks: tuple[str, ...] = ()
    name: str = ""
    created_at: str = ""


@dataclass(frozen=True)
class Principal:
    """The caller of a request: a key, or the operator of an open loopback service."""

    key_id: str | None
    scopes: frozenset[str]
    tenant: str
    networks: tuple[str, ...] = ()
    is_operator: bool = False

    def has(self, scope: Scope) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    @property
    def viewer(self) -> Viewer:
        return OPERATOR if self.is_operator else Viewer(self.tenant, frozenset(self.networks))

    @property
    def owner(self) -> Owner:
        return Owner(self.tenant, self.networks)


OPEN_PRINCIPAL = Principal(None, frozenset(SCOPES), "local", (), is_operator=True)


def _digest(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class KeyFile:
    """The keys file, re-read whenever its modification time changes."""

    path: Path
    _keys: dict[str, ApiKey] = field(default_factory=dict)
    _mtime: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def keys(self) -> dict[str, ApiKey]:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return {}
        with self._lock:
            if mtime != self._mtime:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
                self._keys = {
                    k["id"]: ApiKey(
                        id=k["id"],
                        hash=k["hash"],
                        scopes=tuple(k["scopes"]),
                        tenant=k["tenant"],
                        networks=tuple(k.get("networks", ())),
                        name=k.get("name", ""),
                        created_at=k.get("created_at", ""),
                    )
                    for k in raw.get("keys", [])
                }
                self._mtime = mtime
            return self._keys

    def authenticate(self, token: str) -> Principal:
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != PREFIX:
            raise Unauthorized("malformed API key (expected cm_<id>_<secret>)")
        key = self.keys().get(parts[1])
        if key is None or not hmac.compare_digest(key.hash, _digest(parts[2])):
            raise Unauthorized("unknown or revoked API key")
        return Principal(key.id, frozenset(key.scopes), key.tenant, key.networks)

    def create(
        self,
        scopes: tuple[str, ...],
        tenant: str,
        networks: tuple[str, ...] = (),
        name: str = "",
    ) -> str:
        """Add a key and return it in clear text; this is the only time it is ever visible."""
        bad = [s for s in scopes if s not in SCOPES]
        if bad or not scopes:
            raise InvalidInput(
                [FieldProblem("scopes", f"choose from {', '.join(SCOPES)}; got {scopes!r}")]
            )
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        key = ApiKey(
            id=key_id,
            hash=_digest(secret),
            scopes=scopes,
            tenant=tenant,
            networks=networks,
            name=name,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        existing = [asdict(k) for k in self.keys().values()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp-{key_id}")
        tmp.write_text(json.dumps({"keys": [*existing, asdict(key)]}, indent=2), encoding="utf-8")
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)  # never a half-written keys file
        return f"{PREFIX}_{key_id}_{secret}"
