"""API keys: created once, printed once, kept only as hashes in a JSON file.

A key reads `cm_<key id>_<secret>`. The file stores, per key id, the SHA-256 of the secret (keys
carry 256 bits of randomness, so a fast hash is enough; nothing weak is ever stored), its scopes,
its tenant, its networks and, once revoked, when it stops working. Every request stats the file
and re-reads it when it changed (inode, modification time or size), in every worker process, so
a key created, revoked or rotated with `clustermatch keys ...` takes effect with the next request,
without a restart. A file that other users may read or write is refused, with the `chmod` that
fixes it.

Per tenant, the file may also hold settings (`"tenants": {"agency-a": {...}}`):
`private_in_matching` is `own` (default: the tenant's private passages count in its own actor
matches only), `all` (they also count, by vector similarity only, in other tenants' matches; the
texts are still never shown) or `none` (not even in its own). Free-text search never counts a
passage the caller may not see, whatever this says (see `service.domain.Viewer`).

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
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from service.domain import OPERATOR, PRIVATE_IN_MATCHING, Owner, PrivateInMatching, Viewer
from service.errors import FieldProblem, InsecureConfiguration, InvalidInput, NotFound, Unauthorized
from service.locks import waiting

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
    revoked_at: str = ""
    """When the key stops (or stopped) working; "" while it is valid. A rotation sets it in the
    future to give clients a grace period."""
    rotated_to: str = ""
    """The key id that replaced this one (`keys rotate`)."""

    def active(self, now: datetime) -> bool:
        return not self.revoked_at or now < datetime.fromisoformat(self.revoked_at)


@dataclass(frozen=True)
class TenantSettings:
    private_in_matching: PrivateInMatching = "own"


@dataclass(frozen=True)
class Principal:
    """The caller of a request: a key, or the operator of an open loopback service."""

    key_id: str | None
    scopes: frozenset[str]
    tenant: str
    networks: tuple[str, ...] = ()
    is_operator: bool = False
    own_private_in_matching: bool = True
    shared_by: frozenset[str] = frozenset()
    """Other tenants whose hidden passages count in this caller's actor matching."""

    def has(self, scope: Scope) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    @property
    def viewer(self) -> Viewer:
        if self.is_operator:
            return OPERATOR
        return Viewer(
            self.tenant, frozenset(self.networks), self.own_private_in_matching, self.shared_by
        )

    @property
    def owner(self) -> Owner:
        return Owner(self.tenant, self.networks)


OPEN_PRINCIPAL = Principal(None, frozenset(SCOPES), "local", (), is_operator=True)


def _digest(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


@dataclass
class KeyFile:
    """The keys file, re-read whenever it changes (checked on every use: one `stat`)."""

    path: Path
    clock: Callable[[], datetime] = _now
    _keys: dict[str, ApiKey] = field(default_factory=dict)
    _tenants: dict[str, TenantSettings] = field(default_factory=dict)
    _version: tuple[int, int, int] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- reading ---------------------------------------------------------------------------

    def _current(self) -> tuple[dict[str, ApiKey], dict[str, TenantSettings]]:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return {}, {}
        check_private(self.path, info.st_mode)
        version = (info.st_ino, info.st_mtime_ns, info.st_size)
        with self._lock:
            if version != self._version:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
                self._keys = {k["id"]: _api_key(k) for k in raw.get("keys", [])}
                self._tenants = {
                    name: _tenant_settings(value) for name, value in raw.get("tenants", {}).items()
                }
                self._version = version
            return self._keys, self._tenants

    def keys(self) -> dict[str, ApiKey]:
        return self._current()[0]

    def tenants(self) -> dict[str, TenantSettings]:
        return self._current()[1]

    def authenticate(self, token: str) -> Principal:
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != PREFIX:
            raise Unauthorized("malformed API key (expected cm_<id>_<secret>)")
        keys, tenants = self._current()
        key = keys.get(parts[1])
        if key is None or not hmac.compare_digest(key.hash, _digest(parts[2])):
            raise Unauthorized("unknown or revoked API key")
        if not key.active(self.clock()):
            raise Unauthorized("unknown or revoked API key")
        own = tenants.get(key.tenant, TenantSettings())
        return Principal(
            key.id,
            frozenset(key.scopes),
            key.tenant,
            key.networks,
            own_private_in_matching=own.private_in_matching != "none",
            shared_by=frozenset(
                t for t, s in tenants.items() if s.private_in_matching == "all" and t != key.tenant
            ),
        )

    # --- changing (the CLI) ----------------------------------------------------------------

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
        if not tenant.strip():
            raise InvalidInput([FieldProblem("tenant", "must not be empty")])
        with self._editing() as (keys, _):
            key, token = _new_key(scopes, tenant, networks, name, self.clock())
            keys[key.id] = key
        return token

    def revoke(self, key_id: str, at: datetime | None = None) -> ApiKey:
        """Make a key stop working at `at` (default: now)."""
        with self._editing() as (keys, _):
            key = self._known(keys, key_id)
            moment = at or self.clock()
            if key.revoked_at and datetime.fromisoformat(key.revoked_at) <= moment:
                return key  # already revoked: keep the first date
            keys[key_id] = replace(key, revoked_at=_stamp(moment))
            return keys[key_id]

    def rotate(self, key_id: str, grace_seconds: int = 0) -> tuple[ApiKey, str]:
        """A new key with the same scopes, tenant and networks; the old one stops working after
        `grace_seconds` (0: at once). Returns the new key and its clear text."""
        with self._editing() as (keys, _):
            old = self._known(keys, key_id)
            if not old.active(self.clock()):
                raise InvalidInput([FieldProblem("key_id", f"key {key_id} is already revoked")])
            new, token = _new_key(old.scopes, old.tenant, old.networks, old.name, self.clock())
            until = self.clock() + timedelta(seconds=grace_seconds)
            keys[key_id] = replace(old, revoked_at=_stamp(until), rotated_to=new.id)
            keys[new.id] = new
        return new, token

    def set_tenant(self, tenant: str, private_in_matching: str) -> TenantSettings:
        if private_in_matching not in PRIVATE_IN_MATCHING:
            choices = ", ".join(PRIVATE_IN_MATCHING)
            message = f"choose from {choices}; got {private_in_matching!r}"
            raise InvalidInput([FieldProblem("private_in_matching", message)])
        with self._editing() as (_, tenants):
            tenants[tenant] = TenantSettings(private_in_matching)
            return tenants[tenant]

    @staticmethod
    def _known(keys: dict[str, ApiKey], key_id: str) -> ApiKey:
        if key_id not in keys:
            raise NotFound(f"no key {key_id!r} in the keys file (see `clustermatch keys list`)")
        return keys[key_id]

    @contextmanager
    def _editing(
        self,
    ) -> Iterator[tuple[dict[str, ApiKey], dict[str, TenantSettings]]]:
        """Read, change and replace the file under a lock (two CLI calls at once lose nothing);
        the new file is written beside it and renamed over it, never half-written, mode 600."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with waiting(self.path.with_name(self.path.name + ".lock")):
            current_keys, current_tenants = self._current()
            keys, tenants = dict(current_keys), dict(current_tenants)
            yield keys, tenants
            body: dict[str, Any] = {"keys": [asdict(k) for k in keys.values()]}
            if tenants:
                body["tenants"] = {t: asdict(v) for t, v in sorted(tenants.items())}
            tmp = self.path.with_name(f".{self.path.name}.tmp-{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(body, indent=2))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)


def check_private(path: Path, mode: int | None = None) -> None:
    """Refuse a keys file that users other than its owner may read or write."""
    if mode is None:
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InsecureConfiguration(
            f"keys file {path} is open to other users (mode {stat.filemode(mode)}); "
            f"run `chmod 600 {path}` and keep it owned by the user the service runs as"
        )


def _tenant_settings(raw: dict[str, Any]) -> TenantSettings:
    """A hand-edited value that is not one of the choices reads as the default, `own`: it
    shares nothing with other tenants."""
    value = raw.get("private_in_matching", "own")
    for choice in PRIVATE_IN_MATCHING:
        if value == choice:
            return TenantSettings(choice)
    return TenantSettings()


def _api_key(raw: dict[str, Any]) -> ApiKey:
    return ApiKey(
        id=raw["id"],
        hash=raw["hash"],
        scopes=tuple(raw["scopes"]),
        tenant=raw["tenant"],
        networks=tuple(raw.get("networks", ())),
        name=raw.get("name", ""),
        created_at=raw.get("created_at", ""),
        revoked_at=raw.get("revoked_at", ""),
        rotated_to=raw.get("rotated_to", ""),
    )


def _new_key(
    scopes: tuple[str, ...], tenant: str, networks: tuple[str, ...], name: str, now: datetime
) -> tuple[ApiKey, str]:
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ApiKey(
        id=key_id,
        hash=_digest(secret),
        scopes=tuple(scopes),
        tenant=tenant,
        networks=tuple(networks),
        name=name,
        created_at=_stamp(now),
    )
    return key, f"{PREFIX}_{key_id}_{secret}"
