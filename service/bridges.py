"""A bridge report between two sides (a cluster, a NUTS region or a country): who on one side
should meet whom on the other, on which competences, and what one side has that the other lacks.

- **Sides** are actors of the served generation: `country:AT`, `region:AT31`, `cluster:<id>`,
  or the bare value (a country code is a country, a longer NUTS code a region, anything else a
  cluster id).
- **Strongest cross pairs** come from the service's own matching: the actors of each side whose
  profile vectors lie nearest the other side (`QUERIES` of each) are matched against the other
  side (`Matcher.match_actor` with the other side as filter, `explain` for the shared key terms).
  A pair found from both sides keeps its better score; an actor appears in at most
  `PER_ACTOR` pairs, so one large actor does not fill the list. Actors that already work
  together (an actor's `partners`, or one text on both sides: one project's description) are
  no bridge to build: they are left out of the pairs and counted as known partnerships.
- **Themes** are key terms (1- and 2-word, lemmatised: service.text.keyterms) in the passages
  of a side the viewer may see, counted per actor and per distinct passage (partners of one
  project share its text). *Connecting* themes are the terms the passages of the cross pairs
  found share most often (weighted by IDF, generic words left out), then terms both sides use
  often; *one-sided* themes are used by at least 1% of one side's actors (two at least) and by
  none of the other, ranked by their share of the side's passages times IDF squared. Each theme
  says in which document kinds it occurs.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import numpy as np

from service.countries import ISO_3166_ALPHA2, normalise_country
from service.domain import NUTS_CODE, OPERATOR, ActorSummary, Viewer
from service.errors import FieldProblem, IndexUnavailable, InvalidInput
from service.matching import Matcher
from service.serving import Snapshot
from service.store import ActorFilter, ProfileStore
from service.text.keyterms import KeyTerms, candidate_terms, non_overlapping

QUERIES = 30
"""Actors of each side matched against the other (the nearest by profile vector)."""
PER_QUERY = 5
PER_ACTOR = 2
MAX_SIDE_ACTORS = 2_000
"""Themes are counted over at most this many actors of a side (the first by id): a country of
the whole CORDIS data stays a few seconds of spaCy."""
MAX_TERM_WORDS = 2
GENERIC_IDF = 3.0
"""Terms less telling than this (in more than about one passage in 20: "research", "project")
connect everything, so they are no connecting theme."""


@dataclass(frozen=True)
class Side:
    kind: str
    """`country`, `region` or `cluster`."""
    value: str

    @property
    def label(self) -> str:
        return f"{self.kind} {self.value}"

    @property
    def actor_filter(self) -> ActorFilter:
        if self.kind == "country":
            return ActorFilter(countries=(self.value,))
        if self.kind == "region":
            return ActorFilter(regions=(self.value,))
        return ActorFilter(clusters=(self.value,))


def parse_side(raw: str, field_name: str) -> Side:
    """`country:AT`, `region:AT31`, `cluster:x`, or a bare value (see the module doc)."""
    text = raw.strip()
    kind, _, value = text.partition(":") if ":" in text else ("", "", text)
    value = value.strip()
    if kind and kind not in ("country", "region", "cluster"):
        # Cluster ids may contain colons themselves: `a:b` is a cluster unless it names a kind.
        kind, value = "cluster", text
    if not value:
        raise InvalidInput([FieldProblem(field_name, "give a cluster id, region or country")])
    two_letters = len(value) == 2 and value.isalpha()
    if not kind and two_letters and normalise_country(value) not in ISO_3166_ALPHA2:
        return Side("cluster", value)  # "XX" is no country: a cluster id of two letters
    if kind == "country" or (not kind and two_letters):
        code = normalise_country(value)
        if code not in ISO_3166_ALPHA2:
            raise InvalidInput([FieldProblem(field_name, f"{value!r} is not a country code")])
        return Side("country", code)
    if kind == "region" or (not kind and NUTS_CODE.match(value.upper()) and value[2:].isalnum()):
        code = value.upper()
        if not NUTS_CODE.match(code):
            raise InvalidInput([FieldProblem(field_name, f"{value!r} is not a NUTS code")])
        return Side("region", code)
    return Side("cluster", value)


@dataclass(frozen=True)
class Passage:
    document_id: str
    document_kind: str
    text: str | None
    """None where the viewer may not see it."""


@dataclass(frozen=True)
class BridgePair:
    a: ActorSummary
    b: ActorSummary
    score: float
    a_passage: Passage
    b_passage: Passage
    key_terms: tuple[str, ...] = ()
    a_also: tuple[ActorSummary, ...] = ()
    """Further actors of the `a` side with this very passage (partners of one project)."""
    b_also: tuple[ActorSummary, ...] = ()


@dataclass(frozen=True)
class Theme:
    term: str
    a_actors: int
    b_actors: int
    a_share: float
    b_share: float
    kinds: dict[str, int] = field(default_factory=dict)
    """Document kinds of the passages using it, on both sides."""
    pairs: int = 0
    """How many of the cross pairs found share it in their passages (0: used on both sides,
    but by no matched pair)."""


@dataclass(frozen=True)
class BridgeReport:
    a: Side
    b: Side
    a_actors: int
    b_actors: int
    pairs: list[BridgePair]
    known_partnerships: int
    """Pairs across the sides that already work together (`partners`): left out of `pairs`."""
    candidate_pairs: int
    """Cross pairs the matching found, of which `pairs` are the strongest."""
    connecting: list[Theme]
    only_a: list[Theme]
    only_b: list[Theme]
    a_kinds: dict[str, int]
    b_kinds: dict[str, int]
    generation: str
    model: str
    created_at: str


@dataclass
class _TermCounts:
    actors: int = 0
    terms: Counter[str] = field(default_factory=Counter)
    """Actors using each term."""
    passages: int = 0
    uses: Counter[str] = field(default_factory=Counter)
    """Distinct passages using each term."""
    surface: dict[str, str] = field(default_factory=dict)
    kinds: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    documents: Counter[str] = field(default_factory=Counter)


class Bridges:
    """Builds bridge reports on the served generation. Cheap to construct."""

    def __init__(self, matcher: Matcher, store: ProfileStore, key_terms: KeyTerms) -> None:
        self._matcher = matcher
        self._store = store
        self._key_terms = key_terms

    def report(
        self,
        a: Side,
        b: Side,
        snapshot: Snapshot,
        pairs: int = 12,
        themes: int = 12,
        viewer: Viewer = OPERATOR,
    ) -> BridgeReport:
        if snapshot.generation.is_empty:
            raise IndexUnavailable("no index generation yet; run `clustermatch reindex` first")
        rm = snapshot.generation.readmodel
        alive = ~snapshot.delta.superseded[: len(rm)]
        rows_a = np.flatnonzero(rm.mask(a.actor_filter) & alive)
        rows_b = np.flatnonzero(rm.mask(b.actor_filter) & alive)
        for rows, side, name in ((rows_a, a, "from"), (rows_b, b, "to")):
            if not len(rows):
                raise InvalidInput(
                    [FieldProblem(name, f"no actor of the served generation is in {side.label}")]
                )
        near = rm.profile[rows_a] @ rm.profile[rows_b].T
        queries_a = [rm.actor_ids[r] for r in rows_a[_nearest(near.max(axis=1), QUERIES)]]
        queries_b = [rm.actor_ids[r] for r in rows_b[_nearest(near.max(axis=0), QUERIES)]]
        found = self._pairs(queries_a, b, viewer, a_is_query=True)
        found |= {
            k: v
            for k, v in self._pairs(queries_b, a, viewer, a_is_query=False).items()
            if k not in found or v.score > found[k].score
        }
        best = _spread(sorted(found.values(), key=lambda p: (-p.score, p.a.id, p.b.id)), pairs)
        best = self._named(best)
        ids_b = {rm.actor_ids[r] for r in rows_b}
        known = {
            frozenset((actor, partner))
            for actor in sorted(rm.actor_ids[r] for r in rows_a)[:MAX_SIDE_ACTORS]
            for partner in self._store.partners_of(actor)
            if partner in ids_b and partner != actor
        }
        counts_a = self._terms([rm.actor_ids[r] for r in rows_a], viewer)
        counts_b = self._terms([rm.actor_ids[r] for r in rows_b], viewer)
        # Every cross pair found (not only those shown) says which terms its passages share.
        paired = Counter(t.lower() for p in found.values() for t in dict.fromkeys(p.key_terms))
        connecting, only_a, only_b = self._themes(counts_a, counts_b, paired, themes)
        manifest = snapshot.generation.manifest
        return BridgeReport(
            a=a,
            b=b,
            a_actors=len(rows_a),
            b_actors=len(rows_b),
            pairs=best,
            known_partnerships=len(known),
            candidate_pairs=len(found),
            connecting=connecting,
            only_a=only_a,
            only_b=only_b,
            a_kinds=dict(counts_a.documents.most_common()),
            b_kinds=dict(counts_b.documents.most_common()),
            generation=manifest.generation,
            model=manifest.model_id,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    # --- pairs -----------------------------------------------------------------------------

    def _pairs(
        self, queries: Sequence[str], other: Side, viewer: Viewer, a_is_query: bool
    ) -> dict[tuple[str, str], BridgePair]:
        out: dict[tuple[str, str], BridgePair] = {}
        for query in queries:
            # Actors that already work together need no bridge (and share project texts).
            known = frozenset(self._store.partners_of(query))
            result = self._matcher.match_actor(
                query,
                limit=PER_QUERY,
                filters=replace(other.actor_filter, exclude_actor_ids=known),
                viewer=viewer,
                collapse=False,
            )
            for match in self._matcher.explain(result).matches:
                if not match.evidence:
                    continue
                e = match.evidence[0]
                mine = Passage("", "", e.query_text)  # the query's passage (kind read below)
                theirs = Passage(e.document_id, e.document_kind, e.text)
                me = ActorSummary(query, "", "", None, None, ())
                a, b = (me, match.actor) if a_is_query else (match.actor, me)
                pa, pb = (mine, theirs) if a_is_query else (theirs, mine)
                key = (a.id, b.id)
                if e.text == e.query_text:
                    continue  # one text on both sides: one project, not a bridge to build
                # A bridge is about texts: the text score, not the one the partner network moved
                # (which is per query and would not compare across queries).
                score = match.score if match.similarity is None else match.similarity
                if a.id != b.id and (key not in out or score > out[key].score):
                    out[key] = BridgePair(a, b, score, pa, pb, e.key_terms)
        return out

    def _named(self, pairs: list[BridgePair]) -> list[BridgePair]:
        """Names and attributes of every actor in the pairs, and the document of each query
        passage (evidence names only the matched side's), in one store read each."""
        everyone = [a for p in pairs for a in (p.a, p.b, *p.a_also, *p.b_also)]
        ids = list(dict.fromkeys(a.id for a in everyone))
        summaries = self._store.actor_summaries(ids)
        documents = {
            (c.actor_id, c.text): Passage(c.document_id, c.document_kind, c.text)
            for c in self._store.chunks_of_actors(ids)
        }

        def placed(actor: str, passage: Passage) -> Passage:
            if passage.document_id or passage.text is None:
                return passage
            return documents.get((actor, passage.text), passage)

        def known(actors: tuple[ActorSummary, ...]) -> tuple[ActorSummary, ...]:
            return tuple(summaries[a.id] for a in actors if a.id in summaries)

        return [
            replace(
                p,
                a=summaries[p.a.id],
                b=summaries[p.b.id],
                a_passage=placed(p.a.id, p.a_passage),
                b_passage=placed(p.b.id, p.b_passage),
                a_also=known(p.a_also),
                b_also=known(p.b_also),
            )
            for p in pairs
            if p.a.id in summaries and p.b.id in summaries  # deleted since the generation
        ]

    # --- themes ----------------------------------------------------------------------------

    def _terms(self, actor_ids: Sequence[str], viewer: Viewer) -> _TermCounts:
        """Per term how many actors of the side use it, and in how many distinct passages:
        the partners of one project share its text, which is one use, not one per partner."""
        counts = _TermCounts()
        chosen = sorted(actor_ids)[:MAX_SIDE_ACTORS]
        summaries = self._store.actor_summaries(chosen)
        per_actor: dict[str, set[str]] = defaultdict(set)
        documents: set[tuple[str, str]] = set()
        passages: dict[str, dict[str, str]] = {}
        for chunk in self._store.chunks_of_actors(chosen):
            summary = summaries.get(chunk.actor_id)
            if summary is None or not viewer.can_see(chunk.visibility, summary.owner):
                continue
            if (chunk.actor_id, chunk.document_id) not in documents:
                documents.add((chunk.actor_id, chunk.document_id))
                counts.documents[chunk.document_kind] += 1
            terms = passages.get(chunk.content_hash)
            if terms is None:
                terms = {
                    key: surface
                    for key, surface in candidate_terms(chunk.text, chunk.language).items()
                    if key.count(" ") < MAX_TERM_WORDS
                }
                passages[chunk.content_hash] = terms
                counts.passages += 1
                for key, surface in terms.items():
                    counts.surface.setdefault(key, surface.lower())
                    counts.kinds[key][chunk.document_kind] += 1
                    counts.uses[key] += 1
            per_actor[chunk.actor_id].update(terms)
        counts.actors = len(chosen)
        for keys in per_actor.values():
            counts.terms.update(keys)
        return counts

    def _themes(
        self, a: _TermCounts, b: _TermCounts, paired: Counter[str], top: int
    ) -> tuple[list[Theme], list[Theme], list[Theme]]:
        def floor(side: _TermCounts) -> int:
            return max(2, math.ceil(0.01 * side.actors))

        def theme(key: str) -> Theme:
            kinds = a.kinds.get(key, Counter()) + b.kinds.get(key, Counter())
            surface = a.surface.get(key) or b.surface.get(key, key)
            return Theme(
                term=surface,
                a_actors=a.terms[key],
                b_actors=b.terms[key],
                a_share=round(a.terms[key] / max(a.actors, 1), 4),
                b_share=round(b.terms[key] / max(b.actors, 1), 4),
                kinds=dict(kinds.most_common()),
                pairs=paired[surface],
            )

        def idf2(key: str) -> float:
            return float(self._key_terms.weight(key)) ** 2

        def share(side: _TermCounts, key: str) -> float:
            return side.uses[key] / max(side.passages, 1)

        def one_sided(side: _TermCounts, other: _TermCounts) -> list[str]:
            found = [
                k
                for k, n in side.terms.items()
                if n >= floor(side) and side.uses[k] >= 2 and not other.terms[k]
            ]
            return _distinct(found, lambda k: -share(side, k) * idf2(k), top)

        # Connecting: the terms most cross pairs' passages share (what actually brings actors of
        # the two sides together), then those most used on both sides. By use alone, the words
        # every project description has ("curie action", "research") would fill the list.
        surface_key = {v: k for side in (b, a) for k, v in side.surface.items()}
        both = [k for k in a.uses if b.uses[k]]
        pair_count = {
            k: paired[surface_key.get(t, "")] for t in paired if (k := surface_key.get(t))
        }
        weight = self._key_terms.weight
        connecting = _distinct(
            [k for k in both if pair_count.get(k, 0) >= 2 and weight(k) >= GENERIC_IDF],
            lambda k: -pair_count[k] * weight(k),
            top,
        )
        if len(connecting) < top:
            rest = [k for k in both if k not in connecting and min(a.uses[k], b.uses[k]) >= 2]
            connecting += _distinct(
                rest, lambda k: -min(share(a, k), share(b, k)) * idf2(k), top - len(connecting)
            )
        # One-sided: by share of the side's distinct passages times IDF squared (plain IDF
        # leaves the top to words every description uses).
        only_a, only_b = one_sided(a, b), one_sided(b, a)
        return (
            [theme(k) for k in connecting],
            [theme(k) for k in only_a],
            [theme(k) for k in only_b],
        )


def _nearest(values: np.ndarray, n: int) -> np.ndarray:
    """Indexes of the `n` largest values, largest first."""
    return np.argsort(-values, kind="stable")[:n]


def _spread(pairs: Sequence[BridgePair], n: int) -> list[BridgePair]:
    """The best `n` pairs, each actor in at most `PER_ACTOR` of them. Pairs joined by the same
    two texts (the partners of one project on each side share its description) are one bridge:
    the first, with the other actors in its `a_also` / `b_also`."""
    seen: Counter[str] = Counter()
    out: list[BridgePair] = []
    by_texts: dict[tuple[str | None, str | None], int] = {}
    for pair in pairs:
        texts = (pair.a_passage.text, pair.b_passage.text)
        if None not in texts and texts in by_texts:
            first = out[by_texts[texts]]
            a_also = _joined(first.a_also, pair.a, first.a)
            b_also = _joined(first.b_also, pair.b, first.b)
            out[by_texts[texts]] = replace(first, a_also=a_also, b_also=b_also)
            continue
        if len(out) == n or seen[pair.a.id] >= PER_ACTOR or seen[pair.b.id] >= PER_ACTOR:
            continue
        seen[pair.a.id] += 1
        seen[pair.b.id] += 1
        by_texts[texts] = len(out)
        out.append(pair)
    return out


def _joined(
    also: tuple[ActorSummary, ...], actor: ActorSummary, shown: ActorSummary
) -> tuple[ActorSummary, ...]:
    if actor.id == shown.id or any(a.id == actor.id for a in also):
        return also
    return (*also, actor)


def _distinct(keys: Sequence[str], order: Callable[[str], float], n: int) -> list[str]:
    """The first `n` of `keys` by `order`, none sharing a word with one picked before (so
    "fuel" adds nothing once "fuel cell" is shown)."""
    return non_overlapping(sorted(keys, key=lambda k: (order(k), k)), n)
