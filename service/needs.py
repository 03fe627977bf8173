"""A procurement need, in any language the model reads, to suppliers and to consortia.

Public procurement of innovation buys a solution, so a need is matched the way an actor's needs
are (complement matching: the need's passages against other actors' offers and competences,
never against their own needs):

1. **Aspects.** The need's text is split into sentences (the spaCy pipeline of its language);
   sentences of fewer than `MIN_ASPECT_WORDS` words join their neighbour, so "See annex 2." or a
   heading is no aspect of its own. At most `MAX_ASPECTS` remain (the shortest neighbours merge).
2. **Suppliers** are found by the service's own `Matcher.match_profile` in complement mode (the
   configured aggregate over the aspects: by default how well an actor covers the need as a
   whole) and listed by how many aspects they cover, then by that score. Every aspect is scored
   against every passage of the best `POOL` actors and of each aspect's own best `PER_ASPECT`
   (specialists rank low on the whole need): an actor *covers* an aspect when its best passage
   for it reaches the model's calibrated `cover_above`, and for a model with a `cover_margin`
   also lies that close to the aspect's best actor (models/*.json: e5's cosines sit in a
   compressed band where a German aspect's English answer scores what an unrelated English
   passage does; MiniLM's do not; figures by scripts/calibrate_needs.py).
3. **Consortia**: a greedy set cover over that aspect x actor matrix. Each team starts from one
   of the actors covering the most aspects; the next member is the one adding the most
   uncovered aspects (ties: the largest gain in best similarity), until `team_size` or until
   nobody adds an aspect; a member whose aspects the others cover anyway leaves the team. Teams
   of one are not consortia (that supplier alone answers what can be answered).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.domain import OPERATOR, Actor, ActorSummary, Evidence, Viewer
from service.errors import FieldProblem, InvalidInput
from service.ingest import content_hash
from service.matching import Matcher, MatchResult
from service.store import ActorFilter, ProfileStore, StoredChunk
from service.text import detect_language, get_pipeline

MIN_ASPECT_WORDS = 6
MAX_ASPECTS = 24
POOL = 40
"""How many of the best-ranked actors the aspect matrix (and so every consortium) draws on."""
PER_ASPECT = 5
"""And how many of each aspect's own best actors join them."""
ALTERNATIVES = 3
"""How many consortia are proposed at most (each from a different first member)."""
NEED_ID = "procurement-need"


@dataclass(frozen=True)
class Need:
    text: str
    title: str = ""
    language: str | None = None
    cpv_codes: tuple[str, ...] = ()
    country: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class AspectEvidence:
    aspect: int
    evidence: Evidence


@dataclass(frozen=True)
class Supplier:
    actor: ActorSummary
    score: float
    covers: tuple[int, ...]
    evidence: tuple[AspectEvidence, ...]
    also: tuple[ActorSummary, ...] = ()
    """Further actors whose best passage is this one's (the partners of one project)."""


@dataclass(frozen=True)
class Member:
    actor: ActorSummary
    covers: tuple[int, ...]
    evidence: tuple[AspectEvidence, ...]


@dataclass(frozen=True)
class Consortium:
    members: tuple[Member, ...]
    covered: tuple[int, ...]
    uncovered: tuple[int, ...]
    score: float


@dataclass(frozen=True)
class NeedResult:
    aspects: list[str]
    suppliers: list[Supplier]
    consortia: list[Consortium]
    coverage: Coverage
    generation: str
    model: str


def split_aspects(text: str, language: str) -> list[str]:
    """The need's sentences, very short ones merged into their neighbour."""
    nlp = get_pipeline(language)
    disable = [name for name in nlp.pipe_names if name != "sentencizer"]
    paragraphs = [" ".join(p.split()) for p in text.split("\n\n")]
    sentences = [
        s.text.strip()
        for doc in nlp.pipe([p for p in paragraphs if p], disable=disable)
        for s in doc.sents
        if s.text.strip()
    ]
    aspects: list[str] = []
    for sentence in sentences:
        # A heading or a fragment joins the sentence it leads to; a short remark the one before.
        if aspects and min(_words(aspects[-1]), _words(sentence)) < MIN_ASPECT_WORDS:
            aspects[-1] = f"{aspects[-1]} {sentence}"
        else:
            aspects.append(sentence)
    while len(aspects) > MAX_ASPECTS:
        sizes = [_words(a) + _words(b) for a, b in itertools.pairwise(aspects)]
        at = int(np.argmin(sizes))
        aspects[at : at + 2] = [f"{aspects[at]} {aspects[at + 1]}"]
    return aspects


def _words(text: str) -> int:
    return len(text.split())


@dataclass(frozen=True)
class Coverage:
    """When a passage covers an aspect, for one model (models/*.json, see the module doc)."""

    above: float
    """The similarity from which a passage answers an aspect."""
    margin: float | None = None
    """If set, it must also lie within this of the aspect's best actor: for models whose
    cosines sit in a narrow band (e5), where an absolute threshold alone cannot tell the
    answer from its neighbours across languages."""

    def matrix(self, scores: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
        covers: npt.NDArray[np.bool_] = scores >= self.above
        if self.margin is not None and scores.size:
            covers &= scores >= scores.max(axis=1, keepdims=True) - self.margin
        return covers


def propose_teams(
    scores: npt.NDArray[np.float32], covers: npt.NDArray[np.bool_], team_size: int
) -> list[list[int]]:
    """Greedy set cover over (aspects x actors) `scores`, where `covers` says which actor
    covers which aspect: up to `ALTERNATIVES` teams of 2 to `team_size` actor columns, best
    first."""
    credit = np.where(covers, scores, 0.0)
    counts = covers.sum(axis=0)
    order = sorted(range(scores.shape[1]), key=lambda a: (-counts[a], -credit[:, a].sum(), a))
    teams: list[list[int]] = []
    seen: set[frozenset[int]] = set()
    for seed in [a for a in order if counts[a] > 0][:ALTERNATIVES]:
        team = [seed]
        have = covers[:, seed].copy()
        best = credit[:, seed].copy()
        while len(team) < team_size:
            added = (covers & ~have[:, None]).sum(axis=0)
            gained = (np.maximum(credit, best[:, None]) - best[:, None]).sum(axis=0)
            added[team] = 0
            pick = max(range(len(added)), key=lambda a: (added[a], gained[a], -a))
            if added[pick] == 0:
                break
            team.append(pick)
            have |= covers[:, pick]
            best = np.maximum(best, credit[:, pick])
        team = _without_redundant(team, covers)
        key = frozenset(team)
        if len(team) >= 2 and key not in seen:
            seen.add(key)
            teams.append(team)

    def rank(team: list[int]) -> tuple[int, int, float]:
        """Most aspects covered first; for as many, the smaller team; then the better evidence."""
        covered = int(covers[:, team].any(axis=1).sum())
        return -covered, len(team), -float(scores[:, team].max(axis=1).mean())

    return sorted(teams, key=rank)


def _without_redundant(team: list[int], covers: npt.NDArray[np.bool_]) -> list[int]:
    """The team without members whose aspects the others cover anyway (a first member that a
    later, broader one makes redundant), last-added kept longest."""
    kept = list(team)
    for member in team:
        others = [m for m in kept if m != member]
        if others and not (covers[:, member] & ~covers[:, others].any(axis=1)).any():
            kept = others
    return kept


class NeedMatcher:
    """Suppliers and consortia for a need, on the service's own matching. Cheap to construct."""

    def __init__(self, matcher: Matcher, store: ProfileStore, coverage: Coverage) -> None:
        self._matcher = matcher
        self._store = store
        self.coverage = coverage

    def match(
        self,
        need: Need,
        limit: int = 10,
        filters: ActorFilter | None = None,
        team_size: int = 3,
        viewer: Viewer = OPERATOR,
    ) -> NeedResult:
        language = need.language or detect_language(need.text)
        aspects = split_aspects(need.text, language)
        if not aspects:
            raise InvalidInput([FieldProblem("need.text", "must not be empty")])
        ranked = self._rank(need, aspects, language, max(limit, POOL), filters, viewer)
        pool = [m.actor for m in ranked.matches]
        # Specialists: an actor answering one aspect alone ranks low on the need as a whole,
        # yet is what a consortium needs. Each aspect's best actors join the pool.
        for i, aspect in enumerate(aspects if len(aspects) > 1 else ()):
            single = self._rank(need, [aspect], language, PER_ASPECT, filters, viewer, i)
            known = {a.id for a in pool}
            pool += [m.actor for m in single.matches if m.actor.id not in known]
        scores, evidence = self._aspect_matrix(aspects, pool, viewer)
        covers = self.coverage.matrix(scores)
        # Suppliers: the ranked actors, those covering more aspects first (a high score on the
        # whole need from passages that each answer nothing well says less), then by score.
        ranked_columns = sorted(
            range(len(ranked.matches)),
            key=lambda a: (-int(covers[:, a].sum()), -ranked.matches[a].score, a),
        )
        suppliers = [
            self._supplier(m.actor, m.score, scores[:, a], covers[:, a], evidence[a], m.also)
            for a in ranked_columns[:limit]
            if (m := ranked.matches[a])
        ]
        consortia = [
            self._consortium(
                [pool[a] for a in team],
                scores[:, team],
                covers[:, team],
                [evidence[a] for a in team],
            )
            for team in propose_teams(scores, covers, team_size)
        ]
        return NeedResult(
            aspects, suppliers, consortia, self.coverage, ranked.generation, ranked.model
        )

    def _rank(
        self,
        need: Need,
        aspects: Sequence[str],
        language: str,
        limit: int,
        filters: ActorFilter | None,
        viewer: Viewer,
        first: int = 0,
    ) -> MatchResult:
        """The service's complement matching of `aspects` (the need's passages) against
        others' offers and competences."""
        query = Actor.parse(
            {
                "id": NEED_ID,
                "name": need.title or "procurement need",
                "kind": "public",
                "country": need.country,
                "region": need.region,
                "documents": [
                    {
                        "id": f"aspect-{first + i}",
                        "kind": "description",
                        "text": aspect,
                        "language": language,
                        "intent": "need",
                    }
                    for i, aspect in enumerate(aspects)
                ],
            }
        )
        return self._matcher.match_profile(
            query,
            limit=limit,
            filters=filters,
            viewer=viewer,
            mode="complement",
            collapse=True,  # the partners of one project share its text: one supplier, not N
        )

    def _aspect_matrix(
        self, aspects: Sequence[str], pool: Sequence[ActorSummary], viewer: Viewer
    ) -> tuple[npt.NDArray[np.float32], list[list[Evidence | None]]]:
        """(aspects x actors) best similarities over each actor's offers and competences (its
        own needs left out), and per actor per aspect its best passage the viewer may see."""
        scores = np.full((len(aspects), len(pool)), -1.0, dtype=np.float32)
        evidence: list[list[Evidence | None]] = [[None] * len(aspects) for _ in pool]
        if not pool:
            return scores, evidence
        chunks = [
            c for c in self._store.chunks_of_actors([a.id for a in pool]) if c.intent != "need"
        ]
        queries = self._matcher.passage_vectors([(a, content_hash(a)) for a in aspects])
        vectors = self._matcher.passage_vectors([(c.text, c.content_hash) for c in chunks])
        similarity = queries @ vectors.T if len(chunks) else np.zeros((len(aspects), 0))
        by_actor: dict[str, list[int]] = {}
        for column, chunk in enumerate(chunks):
            by_actor.setdefault(chunk.actor_id, []).append(column)
        for a, actor in enumerate(pool):
            columns = by_actor.get(actor.id, [])
            if not columns:
                continue  # deleted since it was ranked
            block = similarity[:, columns]
            scores[:, a] = block.max(axis=1)
            visible = [viewer.can_see(chunks[c].visibility, actor.owner) for c in columns]
            if not any(visible):
                continue
            shown = np.where(np.array(visible)[None, :], block, -np.inf)
            for aspect, column in enumerate(np.argmax(shown, axis=1).tolist()):
                evidence[a][aspect] = _evidence(
                    chunks[columns[column]], float(block[aspect, column]), aspects[aspect]
                )
        return scores, evidence

    @staticmethod
    def _covered(column: npt.NDArray[np.bool_]) -> tuple[int, ...]:
        return tuple(int(i) for i in np.flatnonzero(column))

    @staticmethod
    def _shown(
        aspects: Sequence[int], evidence: Sequence[Evidence | None]
    ) -> tuple[AspectEvidence, ...]:
        return tuple(
            AspectEvidence(i, found) for i in aspects if (found := evidence[i]) is not None
        )

    def _supplier(
        self,
        actor: ActorSummary,
        score: float,
        column: npt.NDArray[np.float32],
        covered: npt.NDArray[np.bool_],
        evidence: Sequence[Evidence | None],
        also: tuple[ActorSummary, ...],
    ) -> Supplier:
        covers = self._covered(covered)
        # An actor covering nothing still shows where it comes closest.
        shown = covers or (int(np.argmax(column)),)
        return Supplier(actor, score, covers, self._shown(shown, evidence), also)

    def _consortium(
        self,
        members: Sequence[ActorSummary],
        block: npt.NDArray[np.float32],
        covered: npt.NDArray[np.bool_],
        evidence: Sequence[Sequence[Evidence | None]],
    ) -> Consortium:
        team = []
        for m, actor in enumerate(members):
            covers = self._covered(covered[:, m])
            team.append(Member(actor, covers, self._shown(covers, evidence[m])))
        union = sorted({i for member in team for i in member.covers})
        uncovered = [i for i in range(block.shape[0]) if i not in set(union)]
        score = round(float(block.max(axis=1).mean()), 6)
        return Consortium(tuple(team), tuple(union), tuple(uncovered), score)


def _evidence(chunk: StoredChunk, score: float, aspect: str) -> Evidence:
    return Evidence(
        document_id=chunk.document_id,
        document_kind=chunk.document_kind,
        text=chunk.text,
        score=round(score, 6),
        query_text=aspect,
        language=chunk.language,
    )
