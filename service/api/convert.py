"""Small translations between HTTP shapes and domain values, shared by the routers."""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import get_args

from service.api.schemas import Filters, MatchOut, SameAttribute
from service.errors import FieldProblem, InvalidInput
from service.store import ActorFilter

SAME_VALUES: tuple[str, ...] = get_args(SameAttribute)


def split_values(values: Iterable[str] | None) -> list[str]:
    """Query parameters may repeat (`?country=AT&country=DE`) or use commas (`?country=AT,DE`)."""
    return [v.strip() for value in values or () for v in value.split(",") if v.strip()]


def actor_filter(
    filters: Filters,
    exclude_same: Sequence[str] = (),
    exclude_actors: Sequence[str] = (),
) -> ActorFilter:
    bad = [s for s in exclude_same if s not in SAME_VALUES]
    if bad:
        raise InvalidInput(
            [FieldProblem("exclude_same", f"{bad[0]!r} is not one of {', '.join(SAME_VALUES)}")]
        )
    return ActorFilter(
        countries=tuple(c.upper() for c in filters.countries),
        regions=tuple(r.upper() for r in filters.regions),
        kinds=tuple(filters.kinds),
        sectors=tuple(s.upper() for s in filters.sectors),
        clusters=tuple(filters.clusters),
        exclude_actor_ids=frozenset(exclude_actors),
        exclude_same=frozenset(exclude_same),  # type: ignore[arg-type]
    )


def encode_cursor(last_id: str | None) -> str | None:
    return None if last_id is None else base64.urlsafe_b64encode(last_id.encode()).decode()


def decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        return base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidInput([FieldProblem("cursor", "not a cursor returned by this API")]) from None


def facets(results: Sequence[MatchOut]) -> dict[str, dict[str, int]]:
    return {
        "country": dict(Counter(r.actor.country for r in results).most_common()),
        "kind": dict(Counter(r.actor.kind for r in results).most_common()),
        "sector": dict(Counter(s for r in results for s in r.actor.sectors).most_common()),
    }
