"""`clustermatch keys ...` and `clustermatch audit ...`: what they do, apart from the parser.

Every change to the keys file is an admin action and is appended to the audit log as the
operating-system user who ran the command (never a secret: a rotated key's new secret is
printed once and stored only as a hash).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from service.audit import Action, AuditEvent, AuditQuery, at_the_command_line, cutoff
from service.keys import ApiKey, KeyFile
from service.store import ProfileStore


def record_cli(store: ProfileStore, action: Action, target: str | None = None) -> None:
    """One admin action of the command line, as its operating-system user."""
    store.record_audit([AuditEvent(action, at_the_command_line(), target)])


def key_rows(keys: KeyFile, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every key without its hash, with whether it works now."""
    moment = now or datetime.now(UTC)
    rows = []
    for key in sorted(keys.keys().values(), key=lambda k: (k.tenant, k.created_at, k.id)):
        row = {k: v for k, v in asdict(key).items() if k != "hash"}
        row["state"] = _state(key, moment)
        rows.append(row)
    return rows


def _state(key: ApiKey, now: datetime) -> str:
    if not key.revoked_at:
        return "active"
    return "active until " + key.revoked_at if key.active(now) else "revoked"


def create(keys: KeyFile, store: ProfileStore, **fields: Any) -> str:
    token = keys.create(**fields)
    record_cli(store, "keys.create", token.split("_", 2)[1])
    return token


def revoke(keys: KeyFile, store: ProfileStore, key_id: str) -> ApiKey:
    key = keys.revoke(key_id)
    record_cli(store, "keys.revoke", key_id)
    return key


def rotate(
    keys: KeyFile, store: ProfileStore, key_id: str, grace_seconds: int
) -> tuple[ApiKey, str]:
    new, token = keys.rotate(key_id, grace_seconds)
    record_cli(store, "keys.rotate", key_id)
    return new, token


def set_tenant(keys: KeyFile, store: ProfileStore, tenant: str, private_in_matching: str) -> None:
    keys.set_tenant(tenant, private_in_matching)
    record_cli(store, "keys.tenant", tenant)


def audit_rows(store: ProfileStore, query: AuditQuery) -> list[dict[str, Any]]:
    return [
        {
            "id": e.id,
            "at": e.at,
            "action": e.action,
            "key_id": e.who.key_id,
            "tenant": e.who.tenant,
            "origin": e.who.origin,
            "target": e.target,
            "count": e.count,
        }
        for e in store.audit_events(query)
    ]


def prune(store: ProfileStore, retention_days: int) -> int:
    removed = store.prune_audit(cutoff(retention_days))
    store.record_audit([AuditEvent("audit.prune", at_the_command_line(), count=removed)])
    return removed
