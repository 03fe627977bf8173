"""The read model of a generation: everything ranking needs, as arrays, built once at publish.

A search used to resolve every candidate against SQLite and group hits in Python loops; the
arrays here make those steps vectorised mask and segment operations:

- chunks, ordered by actor (CSR): `chunk_ids`, `chunk_actor`, `chunk_visibility`, `chunk_need`,
  `chunk_passage` (which text: partners of one project share their passage), and `actor_start`
  (the chunks of actor row `a` are positions `actor_start[a]:actor_start[a+1]`);
  `by_id` orders positions by chunk id, so FAISS hits (chunk ids) map to positions by bisection;
- actors: one row each, columns for every filter (`kind`, `country`, `region`, `sectors`,
  `clusters` as CSR lists of vocabulary codes), the owner (`tenant`, `networks`), the number of
  documents, and profile vectors (the mean of the actor's chunk vectors, normalised) over every
  chunk; for the rows that have network or private chunks also one over their public chunks, and
  for the rows that have private chunks one over their public and network chunks, so actor
  matching can compare profiles over only the passages that may count for the caller. Those two
  are side tables (sorted rows + vectors), not full columns: for every other row they equal
  `profile`, and three full copies were 3 GiB at 663k actors;
- the partner graph: each row's known partners among the rows, undirected, as CSR
  (`partner_start`, `partner_rows`; see service.network).

Files: `readmodel/*.npy` and `readmodel/strings.json` (actor ids and the vocabularies). On load
the arrays are memory-mapped, so every worker process shares the pages, except the two big ones
a request reads a few scattered rows of (`profile`, `partner_rows`): those are read row by row
with `pread` (service.index.filerows), because mapping them made a worker resident in most of
both files within a few matches. A generation is immutable, and so is
its read model; what changed since is the live delta's business (service.serving).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from service.domain import ActorSummary, Owner, Viewer, Visibility
from service.fsutil import fsync_path
from service.index import profiles
from service.index.base import VectorIndex
from service.index.filerows import FileRows
from service.network import partner_graph

if TYPE_CHECKING:
    from service.index.profiles import ProfileGraph
from service.store import ActorFilter, ProfileStore, StoredChunk

FOLDER = "readmodel"
VISIBILITY_CODES = {Visibility.PUBLIC.value: 0, Visibility.NETWORK.value: 1, "private": 2}
UNKNOWN = -1
"""Code of an unknown country: equal to nothing, itself included."""

Bools = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]


class Vocabulary:
    """Strings <-> dense codes, in first-seen order."""

    def __init__(self, words: Iterable[str] = ()) -> None:
        self.words: list[str] = []
        self.code: dict[str, int] = {}
        for word in words:
            self.add(word)

    def add(self, word: str) -> int:
        if word not in self.code:
            self.code[word] = len(self.words)
            self.words.append(word)
        return self.code[word]

    def codes(self, words: Iterable[str]) -> Ints:
        """Codes of the known words among `words` (unknown ones match no row)."""
        return np.array([self.code[w] for w in words if w in self.code], dtype=np.int64)


def _csr(lists: Sequence[Sequence[int]]) -> tuple[Ints, Ints]:
    start = np.zeros(len(lists) + 1, dtype=np.int64)
    start[1:] = np.cumsum([len(x) for x in lists])
    flat = np.array([v for x in lists for v in x], dtype=np.int64)
    return start, flat


def _rows_having(start: Ints, flat: Ints, codes: Ints) -> Bools:
    """Rows whose CSR list holds any of `codes`."""
    rows = len(start) - 1
    if len(codes) == 0 or len(flat) == 0:
        return np.zeros(rows, dtype=np.bool_)
    hit = np.isin(flat, codes)
    owner = np.repeat(np.arange(rows), np.diff(start))
    out = np.zeros(rows, dtype=np.bool_)
    out[owner[hit]] = True
    return out


@dataclass(frozen=True)
class ReadModel:
    # chunks, ordered by actor row then chunk id
    chunk_ids: Ints
    chunk_actor: Ints
    chunk_visibility: npt.NDArray[np.int8]
    chunk_need: Bools
    chunk_document: Ints
    """Which of its actor's documents a chunk belongs to (0, 1, ... in order of first chunk)."""
    chunk_passage: Ints
    """Each chunk's text as a number (`passage_keys`): equal for equal texts, so the result page
    can collapse actors that share their best passage before it reads any text."""
    by_id: Ints
    """Positions sorted by chunk id: `chunk_ids[by_id]` is ascending."""
    sorted_ids: Ints
    """`chunk_ids[by_id]`, kept so a lookup is one bisection, not a gather of every id."""
    # actors
    actor_ids: tuple[str, ...]
    actor_start: Ints
    kind: Ints
    country: Ints
    region: npt.NDArray[np.str_]
    """NUTS code per actor ("" where none), as a numpy string array for vectorised prefixes."""
    sector_start: Ints
    sector_codes: Ints
    cluster_start: Ints
    cluster_codes: Ints
    tenant: Ints
    network_start: Ints
    network_codes: Ints
    documents: Ints
    profile: npt.NDArray[np.float32] | FileRows
    """Read by rows only (`profile[rows]`): a `FileRows` when loaded from a generation."""
    public_rows: Ints
    """Rows (ascending) with network or private chunks: their profile over public chunks differs."""
    public_profile: npt.NDArray[np.float32]
    """Per `public_rows` row the profile vector over its public chunks (zeros where none)."""
    shared_rows: Ints
    """Rows (ascending) with private chunks."""
    shared_profile: npt.NDArray[np.float32]
    """Per `shared_rows` row the profile over its public and network chunks."""
    partner_start: Ints
    partner_rows: Ints | FileRows
    """The partner graph (service.network): row `a`'s partners are
    `partner_rows[partner_start[a]:partner_start[a+1]]`."""
    vocabularies: Mapping[str, Vocabulary]
    profile_index: ProfileGraph | None = None
    """An HNSW graph over `profile` for generations of many actors (service.index.profiles)."""

    # --- building --------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        chunks: Sequence[StoredChunk],
        vectors: npt.NDArray[np.float32],
        summaries: Mapping[str, ActorSummary],
        dim: int,
        partners: Mapping[str, Iterable[str]] | None = None,
    ) -> ReadModel:
        """From the generation's chunks (any order), their vectors (same order), the
        summaries of their actors and their known partners; chunks of actors missing from
        `summaries` are left out."""
        actor_ids = sorted({c.actor_id for c in chunks if c.actor_id in summaries})
        row_of = {a: i for i, a in enumerate(actor_ids)}
        keep = [i for i, c in enumerate(chunks) if c.actor_id in row_of]
        rows = np.array([row_of[chunks[i].actor_id] for i in keep], dtype=np.int64)
        ids = np.array([chunks[i].id for i in keep], dtype=np.int64)
        order = np.lexsort((ids, rows))
        picked = [chunks[keep[i]] for i in order]
        vecs = vectors[np.array(keep, dtype=np.int64)[order]] if keep else vectors[:0]
        rows = rows[order]
        ids = ids[order]
        start = np.zeros(len(actor_ids) + 1, dtype=np.int64)
        np.add.at(start, rows + 1, 1)
        start = np.cumsum(start)

        vocab = {name: Vocabulary() for name in ("kind", "country", "sector", "cluster")}
        vocab |= {"tenant": Vocabulary(), "network": Vocabulary()}
        ordered = [summaries[a] for a in actor_ids]
        sector_start, sector_codes = _csr(
            [[vocab["sector"].add(s) for s in a.sectors] for a in ordered]
        )
        cluster_start, cluster_codes = _csr(
            [[vocab["cluster"].add(c) for c in a.clusters] for a in ordered]
        )
        network_start, network_codes = _csr(
            [[vocab["network"].add(n) for n in a.owner.networks] for a in ordered]
        )
        documents = np.array(
            [
                len({c.document_id for c in picked[start[r] : start[r + 1]]})
                for r in range(len(ordered))
            ],
            dtype=np.int64,
        )
        visibility = np.array(
            [VISIBILITY_CODES.get(c.visibility, 2) for c in picked], dtype=np.int8
        )
        profile = profile_vectors(vecs, start, dim)
        reach = _reach(rows, visibility, len(actor_ids))
        public_rows = np.flatnonzero(reach > 0).astype(np.int64)
        shared_rows = np.flatnonzero(reach > 1).astype(np.int64)
        return cls(
            chunk_ids=ids,
            chunk_actor=rows,
            chunk_visibility=visibility,
            chunk_need=np.array([c.intent == "need" for c in picked], dtype=np.bool_),
            chunk_document=_document_ordinals(picked),
            chunk_passage=passage_keys([c.content_hash for c in picked]),
            by_id=(by_id := np.argsort(ids, kind="stable")),
            sorted_ids=ids[by_id],
            actor_ids=tuple(actor_ids),
            actor_start=start,
            kind=np.array([vocab["kind"].add(a.kind) for a in ordered], dtype=np.int64),
            country=np.array(
                [vocab["country"].add(a.country) if a.country else UNKNOWN for a in ordered],
                dtype=np.int64,
            ),
            region=np.array([a.region or "" for a in ordered], dtype="<U5"),
            sector_start=sector_start,
            sector_codes=sector_codes,
            cluster_start=cluster_start,
            cluster_codes=cluster_codes,
            tenant=np.array([vocab["tenant"].add(a.owner.tenant) for a in ordered], dtype=np.int64),
            network_start=network_start,
            network_codes=network_codes,
            documents=documents,
            profile=profile,
            public_rows=public_rows,
            public_profile=_row_profiles(vecs, start, dim, public_rows, visibility <= 0),
            shared_rows=shared_rows,
            shared_profile=_row_profiles(vecs, start, dim, shared_rows, visibility <= 1),
            partner_start=(graph := partner_graph(actor_ids, partners or {}))[0],
            partner_rows=graph[1],
            vocabularies=vocab,
            profile_index=profiles.build(profile),
        )

    @classmethod
    def from_store(cls, store: ProfileStore, index: VectorIndex, watermark: int) -> ReadModel:
        """For a generation published without a read model: its chunks still in the store."""
        present = set(index.ids().tolist())
        chunks = [
            c
            for batch in store.iter_chunks()
            for c in batch
            if c.id <= watermark and c.id in present
        ]
        vectors = index.reconstruct(np.array([c.id for c in chunks], dtype=np.int64))
        summaries = store.actor_summaries(sorted({c.actor_id for c in chunks}))
        partners = store.partners_of_actors(sorted(summaries))
        return cls.build(chunks, vectors, summaries, index.dim, partners)

    # --- persistence -----------------------------------------------------------------------

    _ARRAYS = (
        "chunk_ids",
        "chunk_actor",
        "chunk_visibility",
        "chunk_need",
        "chunk_document",
        "chunk_passage",
        "by_id",
        "sorted_ids",
        "actor_start",
        "kind",
        "country",
        "sector_start",
        "sector_codes",
        "cluster_start",
        "cluster_codes",
        "tenant",
        "network_start",
        "network_codes",
        "documents",
        "profile",
        "public_rows",
        "public_profile",
        "shared_rows",
        "shared_profile",
        "partner_start",
        "partner_rows",
    )

    _READ_BY_ROWS = frozenset({"profile", "partner_rows"})
    """Big arrays a request reads a few scattered rows of: read, not mapped, on load."""

    def save(self, generation_dir: Path) -> None:
        folder = generation_dir / FOLDER
        folder.mkdir()
        for name in self._ARRAYS:
            path = folder / f"{name}.npy"
            np.save(path, getattr(self, name))
            fsync_path(path)
        strings = {
            "actor_ids": list(self.actor_ids),
            "region": self.region.tolist(),
            "vocabularies": {k: v.words for k, v in self.vocabularies.items()},
        }
        path = folder / "strings.json"
        path.write_text(json.dumps(strings), encoding="utf-8")
        fsync_path(path)
        if self.profile_index is not None:
            path = folder / profiles.FILE
            self.profile_index.save(path)
            fsync_path(path)
        fsync_path(folder)

    @classmethod
    def exists(cls, generation_dir: Path) -> bool:
        """A complete read model of this version (an older one, without the per-visibility
        profiles, is rebuilt from the store on load)."""
        folder = generation_dir / FOLDER
        return (folder / "strings.json").is_file() and all(
            (folder / f"{name}.npy").is_file() for name in cls._ARRAYS
        )

    @classmethod
    def load(cls, generation_dir: Path) -> ReadModel:
        folder = generation_dir / FOLDER
        # Plain ndarray views of the mapped files: the pages stay shared, and reading one row
        # no longer builds a `np.memmap` object per access (8% of a match's CPU, py-spy).
        arrays: dict[str, Any] = {
            name: FileRows(folder / f"{name}.npy")
            if name in cls._READ_BY_ROWS
            else np.load(folder / f"{name}.npy", mmap_mode="r").view(np.ndarray)
            for name in cls._ARRAYS
        }
        strings = json.loads((folder / "strings.json").read_text(encoding="utf-8"))
        graph = profiles.load(folder)
        if graph is None:  # published before the graph existed (or small: then this is None)
            graph = profiles.build(np.asarray(arrays["profile"]))
        return cls(
            profile_index=graph,
            actor_ids=tuple(strings["actor_ids"]),
            region=np.array(strings["region"], dtype="<U5"),
            vocabularies={k: Vocabulary(v) for k, v in strings["vocabularies"].items()},
            **arrays,
        )

    # --- queries ---------------------------------------------------------------------------

    def __len__(self) -> int:
        """Actors."""
        return len(self.actor_ids)

    @cached_property
    def rows(self) -> dict[str, int]:
        """Actor id -> row (built once per loaded generation)."""
        return {a: i for i, a in enumerate(self.actor_ids)}

    def positions_of_ids(self, ids: Ints) -> Ints:
        """Chunk positions of chunk ids (-1 where the id is not in this generation)."""
        sorted_ids = self.sorted_ids
        where = np.searchsorted(sorted_ids, ids)
        where = np.clip(where, 0, max(len(sorted_ids) - 1, 0))
        found = (len(sorted_ids) > 0) & (sorted_ids[where] == ids) if len(sorted_ids) else None
        if found is None:
            return np.full(len(ids), -1, dtype=np.int64)
        return np.where(found, self.by_id[where], -1)

    def positions_of_rows(self, rows: Ints) -> Ints:
        """Chunk positions of actor rows, row after row."""
        if len(rows) == 0:
            return np.zeros(0, dtype=np.int64)
        starts, ends = self.actor_start[rows], self.actor_start[rows + 1]
        lengths = ends - starts
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        return offsets + np.arange(int(lengths.sum()))

    def mask(self, f: ActorFilter) -> Bools:
        """Actor rows the filter admits: the array twin of `ProfileStore.select_chunks`."""
        keep = np.ones(len(self), dtype=np.bool_)
        v = self.vocabularies
        if f.countries:
            keep &= np.isin(self.country, v["country"].codes(f.countries))
        if f.kinds:
            keep &= np.isin(self.kind, v["kind"].codes(f.kinds))
        if f.regions:
            in_region = np.zeros(len(self), dtype=np.bool_)
            for prefix in f.regions:
                in_region |= np.char.startswith(self.region, prefix)
            keep &= in_region
        if f.sectors:
            keep &= _rows_having(self.sector_start, self.sector_codes, v["sector"].codes(f.sectors))
        if f.clusters:
            keep &= _rows_having(
                self.cluster_start, self.cluster_codes, v["cluster"].codes(f.clusters)
            )
        if f.exclude_actor_ids:
            out = [self.rows[a] for a in f.exclude_actor_ids if a in self.rows]
            keep[np.array(out, dtype=np.int64)] = False
        ref = f.reference
        if ref is not None and f.exclude_same:
            keep &= ~self._same_as(ref, f)
        return keep

    def _same_as(self, ref: ActorSummary, f: ActorFilter) -> Bools:
        same = np.zeros(len(self), dtype=np.bool_)
        v = self.vocabularies
        if "country" in f.exclude_same and ref.country:
            same |= np.isin(self.country, v["country"].codes([ref.country]))
        if "kind" in f.exclude_same:
            same |= np.isin(self.kind, v["kind"].codes([ref.kind]))
        if "region" in f.exclude_same and ref.region:
            # Same region at the coarser of the two NUTS levels: AT3 and AT31 share a region.
            mine = ref.region
            # theirs starts with mine, or mine starts with theirs (theirs is one of its prefixes)
            same |= np.char.startswith(self.region, mine)
            same |= np.isin(self.region, [mine[:n] for n in range(2, len(mine))])
        if "sector" in f.exclude_same and ref.sectors:
            same |= _rows_having(
                self.sector_start, self.sector_codes, v["sector"].codes(ref.sectors)
            )
        if "cluster" in f.exclude_same and ref.clusters:
            same |= _rows_having(
                self.cluster_start, self.cluster_codes, v["cluster"].codes(ref.clusters)
            )
        return same

    def chunk_mask(self, rows: Bools, exclude_needs: bool, levels: Ints | None = None) -> Bools:
        """Chunk positions of admitted rows (and, in complement mode, no need passages; with
        `levels`, only the passages within each row's level)."""
        keep = rows[self.chunk_actor]
        if exclude_needs:
            keep &= ~self.chunk_need
        if levels is not None:
            keep &= self.chunk_visibility <= levels[self.chunk_actor]
        return keep

    @cached_property
    def row_reach(self) -> Ints:
        """Per row the highest visibility code among its chunks (-1 for a row without any): a
        viewer whose level reaches it everywhere needs no chunk mask."""
        return _reach(self.chunk_actor, self.chunk_visibility, len(self))

    def levels(self, viewer: Viewer, matching: bool = False) -> Ints | None:
        """`Viewer.level` for every row (0 public, 1 also network, 2 also private), or None when
        every passage of every actor is within reach (the operator; a corpus of public texts)."""
        if viewer.tenant is None or not len(self):
            return None
        v = self.vocabularies
        own = self.tenant == v["tenant"].code.get(viewer.tenant, -2)
        shared = _rows_having(
            self.network_start, self.network_codes, v["network"].codes(viewer.networks)
        )
        levels = np.where(shared, 1, 0).astype(np.int64)
        if matching:
            opted = np.isin(self.tenant, v["tenant"].codes(viewer.shared_by))
            levels[opted] = 2
            levels[own] = 2 if viewer.own_private_in_matching else 1
        else:
            levels[own] = 2
        if bool((levels >= self.row_reach).all()):
            return None
        return levels

    def profiles(self, rows: Ints, levels: Ints | None) -> npt.NDArray[np.float32]:
        """The profile vectors of `rows`, each over the passages within its level."""
        chosen: npt.NDArray[np.float32] = np.asarray(self.profile[rows], dtype=np.float32)
        if levels is None:
            return chosen
        level = levels[rows]
        short = level < self.row_reach[rows]
        """Rows with passages beyond the viewer's level: the side tables hold exactly those."""
        for at, table_rows, table in (
            (0, self.public_rows, self.public_profile),
            (1, self.shared_rows, self.shared_profile),
        ):
            pick = np.flatnonzero(short & (level == at))
            if len(pick):
                chosen[pick] = table[np.searchsorted(table_rows, rows[pick])]
        return chosen

    def visible(self, positions: Ints, viewer: Viewer) -> Bools:
        """Which chunk positions the viewer may see as evidence."""
        levels = self.levels(viewer)
        if levels is None:
            return np.ones(len(positions), dtype=np.bool_)
        visible: Bools = self.chunk_visibility[positions] <= levels[self.chunk_actor[positions]]
        return visible

    def summary(self, row: int, name: str = "") -> ActorSummary:
        """An actor's attributes as of this generation (the name is the store's: ranking
        needs none, the page reads it)."""
        v = self._words
        country = int(self.country[row])
        sectors = self.sector_codes[self.sector_start[row] : self.sector_start[row + 1]]
        clusters = self.cluster_codes[self.cluster_start[row] : self.cluster_start[row + 1]]
        return ActorSummary(
            id=self.actor_ids[row],
            name=name,
            kind=v["kind"][int(self.kind[row])],
            country=v["country"][country] if country >= 0 else None,
            region=self.region[row] or None,
            sectors=tuple(v["sector"][int(s)] for s in sectors),
            clusters=tuple(v["cluster"][int(c)] for c in clusters),
            owner=self.owner(row),
        )

    @cached_property
    def _words(self) -> dict[str, list[str]]:
        return {k: voc.words for k, voc in self.vocabularies.items()}

    def owner(self, row: int) -> Owner:
        words = self._words
        start, end = self.network_start[row], self.network_start[row + 1]
        return Owner(
            words["tenant"][int(self.tenant[row])],
            tuple(words["network"][n] for n in self.network_codes[start:end].tolist()),
        )


def passage_keys(content_hashes: Sequence[str]) -> Ints:
    """Each passage's content hash (`ingest.content_hash`, one per text) as a 64-bit number:
    equal texts get equal keys; two different texts share one with probability 2^-64."""
    return np.array(
        [
            int.from_bytes(
                hashlib.blake2b(h.encode(), digest_size=8).digest(), "little", signed=True
            )
            for h in content_hashes
        ],
        dtype=np.int64,
    )


def _document_ordinals(chunks: Sequence[StoredChunk]) -> Ints:
    out = np.zeros(len(chunks), dtype=np.int64)
    seen: dict[tuple[str, str], int] = {}
    per_actor: dict[str, int] = {}
    for i, c in enumerate(chunks):
        key = (c.actor_id, c.document_id)
        if key not in seen:
            seen[key] = per_actor.get(c.actor_id, 0)
            per_actor[c.actor_id] = seen[key] + 1
        out[i] = seen[key]
    return out


def _reach(chunk_actor: Ints, visibility: npt.NDArray[np.int8], rows: int) -> Ints:
    """Per row the highest visibility code among its chunks (-1 where it has none)."""
    reach = np.full(rows, -1, dtype=np.int64)
    if len(chunk_actor):
        np.maximum.at(reach, chunk_actor, visibility.astype(np.int64))
    return reach


def _row_profiles(
    vectors: npt.NDArray[np.float32], start: Ints, dim: int, rows: Ints, counted: Bools
) -> npt.NDArray[np.float32]:
    """`profile_vectors` of the actor rows `rows` only (their chunks gathered first)."""
    if len(rows) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    lengths = start[rows + 1] - start[rows]
    sub_start = np.zeros(len(rows) + 1, dtype=np.int64)
    sub_start[1:] = np.cumsum(lengths)
    positions = np.repeat(start[rows] - sub_start[:-1], lengths) + np.arange(int(sub_start[-1]))
    return profile_vectors(vectors[positions], sub_start, dim, counted[positions])


def profile_vectors(
    vectors: npt.NDArray[np.float32], start: Ints, dim: int, counted: Bools | None = None
) -> npt.NDArray[np.float32]:
    """Per actor the mean of its chunk vectors (of the `counted` ones only, if given),
    L2-normalised (rows of zeros where none)."""
    rows = len(start) - 1
    if rows == 0 or len(vectors) == 0:
        return np.zeros((rows, dim), dtype=np.float32)
    values = vectors.astype(np.float32)
    if counted is not None:
        values = np.where(counted[:, None], values, np.float32(0.0))
    sums = np.add.reduceat(values, start[:-1].clip(max=len(vectors) - 1), axis=0)
    empty = np.diff(start) == 0
    sums[empty] = 0.0
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.where(norms > 0, norms, 1.0)).astype(np.float32)
