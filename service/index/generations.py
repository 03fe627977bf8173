"""Immutable, versioned index generations on disk, published by an atomic pointer swap.

Layout under the index directory:

    generations/<generation-id>/index.faiss    the FAISS index (ids are store chunk ids)
    generations/<generation-id>/index.vectors.npy  its float vectors, when the index holds
                                               8-bit codes (`hnsw-sq8`, large generations)
    generations/<generation-id>/manifest.json  model, dim, counts, watermark, checksums, versions
    generations/<generation-id>/readmodel/     the read model (service.index.readmodel)
    generations/<generation-id>/lexical/       BM25 postings (service.lexical.GenerationLexical)
    CURRENT                                    the id of the generation being served
    maps/<generation-id>-<method>.json         derived from a generation (service.projection);
                                               removed with it

A generation holds vectors, actor ids and, in its BM25 postings, the words of its passages
(never whole texts: those stay in the store). After an actor is erased, every older generation
still holds its vectors and words: the next publish removes them all (`prune(erased_at=...)`),
keeping only generations snapshotted after the latest erasure.

A generation is built in `generations/.tmp-<id>/`, fsynced, renamed into place, and only then named
in CURRENT (written to a temporary file and `os.replace`d). A crash at any step leaves CURRENT
naming the previous, complete generation; leftovers are removed by the next build.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from service.errors import CorruptArtifact, IndexMismatch, NotFound
from service.failpoints import failpoint
from service.fsutil import fsync_path, sha256_file
from service.index.base import VectorIndex
from service.index.faiss_index import FaissIndex, HnswParams, vectors_path
from service.index.readmodel import FOLDER as READMODEL_FOLDER
from service.index.readmodel import ReadModel
from service.lexical import FOLDER as LEXICAL_FOLDER
from service.lexical import GenerationLexical

if TYPE_CHECKING:
    from service.store import ProfileStore

MANIFEST_FORMAT = 1
INDEX_FILE = "index.faiss"
MANIFEST_FILE = "manifest.json"
TMP_PREFIX = ".tmp-"
MAPS_FOLDER = "maps"
"""Files derived from a generation, named `<generation>-<anything>.json`, pruned with it."""


@dataclass(frozen=True)
class Manifest:
    generation: str
    model_id: str
    dim: int
    index_kind: str
    chunks: int
    actors: int
    watermark: int
    """The highest store chunk id known when the build started; newer chunks are not in it."""
    built_at: str
    build_seconds: float
    checksum: str
    """sha256 of the index file."""
    libraries: dict[str, str] = field(default_factory=dict)
    changes: int = 0
    """The store's change count at the snapshot (see `ProfileStore.changes`)."""
    recall_at_10: float = 1.0
    """Agreement with exact search on a sample, checked before publishing."""
    index_params: dict[str, int] = field(default_factory=dict)
    """Parameters of an approximate index (HNSW: M, efConstruction, efSearch)."""
    readmodel_checksum: str = ""
    """sha256 over the read model's files (empty for generations published before it)."""
    lexical_checksum: str = ""
    """sha256 over the BM25 postings' files (empty for generations published before them)."""
    vectors_checksum: str = ""
    """sha256 of `index.vectors.npy` (empty when the index holds its float vectors itself)."""
    format: int = MANIFEST_FORMAT

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Manifest:
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**known)


EMPTY_GENERATION = "empty"
"""The name served before the first build: no vectors, watermark 0, so every chunk is delta."""


@dataclass(frozen=True)
class LoadedGeneration:
    manifest: Manifest
    index: VectorIndex
    readmodel: ReadModel
    lexical: GenerationLexical | None = None
    """BM25 postings over the read model's positions; None for a generation published before
    them (the serving process builds them from the store) and for the empty stand-in."""

    @classmethod
    def empty(cls, model_id: str, dim: int) -> LoadedGeneration:
        """What a fresh deployment serves until a generation is published: nothing indexed, so
        every stored chunk lies above the watermark and is searched in the live delta."""
        from service.index.exact import ExactIndex

        readmodel = ReadModel.build([], np.zeros((0, dim), np.float32), {}, dim)
        manifest = Manifest(
            generation=EMPTY_GENERATION,
            model_id=model_id,
            dim=dim,
            index_kind="none",
            chunks=0,
            actors=0,
            watermark=0,
            built_at="",
            build_seconds=0.0,
            checksum="",
        )
        return cls(manifest, ExactIndex(dim), readmodel)

    @property
    def is_empty(self) -> bool:
        """True for the stand-in served before the first build."""
        return self.manifest.generation == EMPTY_GENERATION


def new_generation_id() -> str:
    """Sortable by build time, unique across concurrent builders."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S.%f}-{secrets.token_hex(3)}"


def readmodel_checksum(generation_dir: Path, folder: str = READMODEL_FOLDER) -> str:
    """sha256 over the files of one of the generation's folders (the read model by default)."""
    digest = hashlib.sha256()
    for path in sorted((generation_dir / folder).iterdir()):
        digest.update(path.name.encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


class GenerationPointer(Protocol):
    """Which generation is served: a CURRENT file beside the generations (one host), or a row in
    the PostgreSQL store that every replica reads (`service.store.pg.RowPointer`)."""

    def read(self) -> str | None: ...

    def write(self, generation: str) -> None:
        """Atomically name `generation` (which exists) as the current one."""
        ...


class FilePointer:
    """CURRENT, written to a temporary file and `os.replace`d: readers see the old or the new
    name, never half of one."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def path(self) -> Path:
        return self.root / "CURRENT"

    def read(self) -> str | None:
        try:
            name = self.path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return name or None

    def write(self, generation: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".CURRENT.{secrets.token_hex(4)}"
        tmp.write_text(generation + "\n", encoding="utf-8")
        fsync_path(tmp)
        os.replace(tmp, self.path)
        fsync_path(self.root)


class GenerationStore:
    """Publishes, finds and loads generations under one directory. Cheap to construct."""

    def __init__(self, root: Path, keep: int = 3, pointer: GenerationPointer | None = None) -> None:
        self.root = root
        self.keep = keep
        self.pointer: GenerationPointer = pointer or FilePointer(root)

    @property
    def generations_dir(self) -> Path:
        return self.root / "generations"

    def current_id(self) -> str | None:
        return self.pointer.read()

    def list_ids(self) -> list[str]:
        if not self.generations_dir.is_dir():
            return []
        return sorted(
            p.name
            for p in self.generations_dir.iterdir()
            if p.is_dir() and not p.name.startswith(TMP_PREFIX) and (p / MANIFEST_FILE).is_file()
        )

    def read_manifest(self, generation: str) -> Manifest:
        path = self.generations_dir / generation / MANIFEST_FILE
        try:
            return Manifest.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError as exc:
            raise NotFound(f"index generation {generation!r} does not exist") from exc
        except (ValueError, TypeError, KeyError) as exc:
            raise CorruptArtifact(f"manifest of generation {generation!r} is unreadable") from exc

    # --- writing ---------------------------------------------------------------------------

    def publish(
        self,
        index: VectorIndex,
        readmodel: ReadModel,
        lexical: GenerationLexical | None = None,
        **fields: Any,
    ) -> Manifest:
        """Write `index` (and its read model and BM25 postings) as a new generation and make it
        current. `fields` fill the manifest."""
        self.clean_debris()
        generation = new_generation_id()
        self.generations_dir.mkdir(parents=True, exist_ok=True)
        staging = self.generations_dir / f"{TMP_PREFIX}{generation}"
        staging.mkdir()
        index_path = staging / INDEX_FILE
        index.save(index_path)
        readmodel.save(staging)
        if lexical is not None:
            lexical.save(staging)
        failpoint("publish-index-written")
        fsync_path(index_path)
        vectors = vectors_path(index_path)
        if vectors.is_file():
            fsync_path(vectors)
        manifest = Manifest(
            generation=generation,
            dim=index.dim,
            index_kind=index.kind,
            index_params=dict(getattr(index, "params", {})),
            chunks=len(index),
            checksum=sha256_file(index_path),
            vectors_checksum=sha256_file(vectors) if vectors.is_file() else "",
            readmodel_checksum=readmodel_checksum(staging),
            lexical_checksum=(
                readmodel_checksum(staging, LEXICAL_FOLDER) if lexical is not None else ""
            ),
            **fields,
        )
        manifest_path = staging / MANIFEST_FILE
        manifest_path.write_text(json.dumps(asdict(manifest), indent=2), encoding="utf-8")
        fsync_path(manifest_path)
        final = self.generations_dir / generation
        os.replace(staging, final)
        fsync_path(self.generations_dir)
        failpoint("publish-before-swap")
        self.point_to(generation)
        self.prune()
        return manifest

    def point_to(self, generation: str) -> None:
        """Atomically make `generation` current (it must exist)."""
        if not (self.generations_dir / generation / MANIFEST_FILE).is_file():
            raise NotFound(f"index generation {generation!r} does not exist")
        self.pointer.write(generation)

    def rollback(self) -> str:
        """Point CURRENT at the newest generation older than the current one."""
        current = self.current_id()
        older = [g for g in self.list_ids() if current is None or g < current]
        if not older:
            raise NotFound("there is no older generation to roll back to")
        self.point_to(older[-1])
        return older[-1]

    def clean_debris(self) -> list[str]:
        """Remove half-written generations and pointer files a killed build left behind."""
        removed = []
        if self.generations_dir.is_dir():
            for path in self.generations_dir.iterdir():
                if path.name.startswith(TMP_PREFIX):
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path.name)
        for path in self.root.glob(".CURRENT.*"):
            path.unlink(missing_ok=True)
            removed.append(path.name)
        return removed

    def prune(self, erased_at: int = 0) -> list[str]:
        """Keep the newest `keep` generations and always the current one; and drop every other
        generation snapshotted before the store's latest erasure (`manifest.changes <
        erased_at`), because it still holds the erased actor's vectors. Files derived from a
        removed generation (its maps) go with it."""
        current = self.current_id()
        ids = self.list_ids()
        doomed = [g for g in ids[: max(0, len(ids) - self.keep)] if g != current]
        if erased_at:
            doomed += [
                g
                for g in ids
                if g != current and g not in doomed and self._changes_of(g) < erased_at
            ]
        for generation in doomed:
            shutil.rmtree(self.generations_dir / generation, ignore_errors=True)
        self.prune_derived()
        return sorted(doomed)

    def _changes_of(self, generation: str) -> int:
        try:
            return self.read_manifest(generation).changes
        except (NotFound, CorruptArtifact):
            return 0  # unreadable: treat as old

    def prune_derived(self) -> None:
        """Remove files derived from generations that are no longer kept (half-written ones
        included: they start with the generation id too)."""
        folder = self.root / MAPS_FOLDER
        if not folder.is_dir():
            return
        kept = tuple(f"{g}-" for g in self.list_ids())
        for path in folder.iterdir():
            if not path.name.startswith(kept):
                path.unlink(missing_ok=True)

    # --- loading ---------------------------------------------------------------------------

    def load(
        self,
        generation: str | None = None,
        *,
        model_id: str,
        dim: int,
        store: ProfileStore | None = None,
    ) -> LoadedGeneration | None:
        """Load `generation` (default: CURRENT), refusing one built for another model or dim.
        A generation published before read models existed gets one built from `store`.

        Returns None when nothing has been published yet.
        """
        generation = generation or self.current_id()
        if generation is None:
            return None
        manifest = self.read_manifest(generation)
        if manifest.model_id != model_id or manifest.dim != dim:
            raise IndexMismatch(
                f"index generation {generation} was built with model {manifest.model_id!r} "
                f"(dim {manifest.dim}), but the configured model is {model_id!r} (dim {dim}); "
                f"run `clustermatch reindex` to rebuild it for the configured model"
            )
        index_path = self.generations_dir / generation / INDEX_FILE
        if sha256_file(index_path) != manifest.checksum:
            raise CorruptArtifact(f"index file of generation {generation} fails its checksum")
        if manifest.vectors_checksum and (
            sha256_file(vectors_path(index_path)) != manifest.vectors_checksum
        ):
            raise CorruptArtifact(f"index vectors of generation {generation} fail their checksum")
        params = manifest.index_params
        hnsw = (
            HnswParams(params["M"], params["efConstruction"], params["efSearch"])
            if params
            else None
        )
        index = FaissIndex.load(index_path, hnsw)
        if index.dim != manifest.dim or len(index) != manifest.chunks:
            raise CorruptArtifact(
                f"index of generation {generation} holds {len(index)} vectors of dim {index.dim}, "
                f"manifest says {manifest.chunks} of dim {manifest.dim}"
            )
        folder = self.generations_dir / generation
        if ReadModel.exists(folder):
            if readmodel_checksum(folder) != manifest.readmodel_checksum:
                raise CorruptArtifact(f"read model of generation {generation} fails its checksum")
            readmodel = ReadModel.load(folder)
        elif store is not None:
            readmodel = ReadModel.from_store(store, index, manifest.watermark)
        else:
            raise CorruptArtifact(f"generation {generation} has no read model; rebuild it")
        lexical = None
        if GenerationLexical.exists(folder):
            if readmodel_checksum(folder, LEXICAL_FOLDER) != manifest.lexical_checksum:
                raise CorruptArtifact(f"BM25 files of generation {generation} fail their checksum")
            lexical = GenerationLexical.load(folder)
        return LoadedGeneration(manifest, index, readmodel, lexical)
