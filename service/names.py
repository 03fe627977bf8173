"""Finding actors by name: `GET /v1/actors?q=`, and the workspace's "actors named like this".

Free-text search ranks by what actors do, so a name (`IBK-INNOVATION`) finds actors working on
similar things rather than the actor itself. This looks names up directly:

1. an exact id (`pic:991776016`) comes first;
2. then names that start with the query, then names with a word that starts with it (`innsbruck`
   finds "Universitaet Innsbruck"), both after normalising case and punctuation;
3. then fuzzy matches (RapidFuzz), which forgive typos and word order (`fraunhoffer`).

The names are held in memory and re-read only when the store's change count moves, so a lookup
costs one small query plus an in-memory scan (milliseconds for 100,000 names).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from service.store import ActorPage, ProfileStore
from service.text.normalise import normalise

FUZZY_CUTOFF = 85.0
"""Below this, fuzzy scores are noise for names (unrelated names score 20 to 70)."""
ID_SCORE, PREFIX_SCORE, WORD_PREFIX_SCORE = 300.0, 200.0, 150.0


@dataclass(frozen=True)
class NameHit:
    actor_id: str
    name: str
    score: float


@dataclass(frozen=True)
class _Names:
    changes: int
    ids: tuple[str, ...]
    names: tuple[str, ...]
    normalised: tuple[str, ...]


class NameIndex:
    """Actor names of one store, re-read when the store has changed. Cheap to construct."""

    def __init__(self, store: ProfileStore) -> None:
        self._store = store
        self._names: _Names | None = None
        self._lock = threading.Lock()

    def _current(self) -> _Names:
        changes = self._store.changes()
        names = self._names
        if names is not None and names.changes == changes:
            return names
        with self._lock:
            if self._names is None or self._names.changes != changes:
                rows = self._store.actor_names()
                self._names = _Names(
                    changes,
                    tuple(r[0] for r in rows),
                    tuple(r[1] for r in rows),
                    tuple(normalise(r[1]) for r in rows),
                )
            return self._names

    @staticmethod
    def _fuzzy(wanted: str, names: Sequence[str]) -> list[tuple[float, int]]:
        """Typos in a whole name (`token_sort_ratio`: any word order), or in a part of a longer
        name (`partial_ratio`, only where the query is the shorter: a long competence query
        would otherwise "match" every short name sharing one word)."""
        hits: list[tuple[float, int]] = []
        for scorer in (fuzz.token_sort_ratio, fuzz.partial_ratio):
            for _, score, i in process.extract(
                wanted, names, scorer=scorer, processor=None, limit=None, score_cutoff=FUZZY_CUTOFF
            ):
                if scorer is fuzz.token_sort_ratio or len(wanted) <= len(names[i]):
                    hits.append((float(score), i))
        return hits

    def find(self, query: str) -> list[NameHit]:
        """Every actor whose id or name fits `query`, best first."""
        names = self._current()
        wanted = normalise(query)
        scores: dict[int, float] = {}
        if wanted:
            for i, name in enumerate(names.normalised):
                if name.startswith(wanted):
                    scores[i] = PREFIX_SCORE
                elif f" {wanted}" in f" {name}":
                    scores[i] = WORD_PREFIX_SCORE
            for score, i in self._fuzzy(wanted, names.normalised):
                scores[i] = max(scores.get(i, 0.0), score)
        stripped = query.strip()
        for i, actor_id in enumerate(names.ids):
            if actor_id == stripped:
                scores[i] = ID_SCORE
        # Shorter names first among equals: "Siemens AG" before "Siemens Healthcare Diagnostics".
        order = sorted(scores, key=lambda i: (-scores[i], len(names.names[i]), names.ids[i]))
        return [NameHit(names.ids[i], names.names[i], round(scores[i], 1)) for i in order]


def lookup(
    index: NameIndex,
    store: ProfileStore,
    query: str,
    limit: int,
    countries: Sequence[str] = (),
    kinds: Sequence[str] = (),
    clusters: Sequence[str] = (),
) -> ActorPage:
    """The best `limit` actors for a name query that pass the filters (`total` counts them all)."""
    hits = [h.actor_id for h in index.find(query)]
    summaries = store.actor_summaries(hits)
    kept = [
        summaries[a]
        for a in hits
        if a in summaries
        and (not countries or summaries[a].country in countries)
        and (not kinds or summaries[a].kind in kinds)
        and (not clusters or not set(clusters).isdisjoint(summaries[a].clusters))
    ]
    return ActorPage(actors=kept[:limit], next_cursor=None, total=len(kept))
