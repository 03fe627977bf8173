"""Builders for test profiles (texts written by the project for tests)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.domain import Actor


def actor_data(
    actor_id: str,
    texts: Sequence[str],
    *,
    country: str = "AT",
    kind: str = "company",
    region: str | None = None,
    sectors: Sequence[str] = (),
    clusters: Sequence[str] = (),
    name: str | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": actor_id,
        "name": name or f"Actor {actor_id}",
        "kind": kind,
        "country": country,
        "documents": [
            {"id": f"d{i}", "kind": "description", "text": text, "language": "en"}
            for i, text in enumerate(texts)
        ],
    }
    if region:
        data["region"] = region
    if sectors:
        data["sectors"] = list(sectors)
    if clusters:
        data["clusters"] = list(clusters)
    return data


def make_actor(actor_id: str, texts: Sequence[str], **kwargs: Any) -> Actor:
    return Actor.parse(actor_data(actor_id, texts, **kwargs))
