"""The competence map: every actor of a generation as a point in 2-D.

An actor's profile vector is the mean of its passage vectors (L2-normalised again), taken from the
store's embedding cache for the generation's model, so the map depends on the generation's
manifest and the store only, not on how the index is served. The vectors are projected with
scikit-learn: t-SNE (after PCA to 50 dimensions, the usual way to keep it fast and stable), which
keeps neighbours together, so actors doing similar things sit close; or PCA alone, which is
instant but shows only the two broadest directions. A projection is computed once per generation
and method, and cached next to the generations (`maps/<generation>-<method>.json`), because t-SNE
of 6,000 actors takes tens of seconds on two cores.

Only actors in the generation are on its map; actors written since appear with the next rebuild,
and deleted ones are dropped when the points are shown (`MapPoint`s are joined with the store).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from service.errors import CorruptArtifact, MapUnavailable
from service.index.generations import GenerationStore, Manifest
from service.store import ProfileStore

log = logging.getLogger("clustermatch.projection")

Method = Literal["tsne", "pca"]
MAP_FORMAT = 1
PCA_DIMENSIONS = 50
SEED = 0
"""Fixed, so a generation's map is the same wherever and however often it is computed."""


@dataclass(frozen=True)
class Projection:
    generation: str
    model_id: str
    method: Method
    ids: tuple[str, ...]
    xy: tuple[tuple[float, float], ...]
    """Coordinates scaled into [0, 1] on both axes."""
    format: int = MAP_FORMAT


def profile_vectors(
    store: ProfileStore, manifest: Manifest
) -> tuple[list[str], npt.NDArray[np.float32]]:
    """Actor ids and their mean passage vectors, over the chunks the generation holds."""
    hashes: dict[str, list[str]] = defaultdict(list)
    for batch in store.iter_chunks():
        for chunk in batch:
            if chunk.id > manifest.watermark:
                break
            hashes[chunk.actor_id].append(chunk.content_hash)
    cached = store.cached_vectors([h for hs in hashes.values() for h in hs], manifest.model_id)
    ids: list[str] = []
    rows: list[npt.NDArray[np.float32]] = []
    for actor_id in sorted(hashes):
        vectors = [cached[h] for h in hashes[actor_id] if h in cached]
        if vectors:
            mean = np.mean(vectors, axis=0)
            rows.append(mean / (np.linalg.norm(mean) or 1.0))
            ids.append(actor_id)
    matrix = np.vstack(rows).astype(np.float32) if rows else np.zeros((0, manifest.dim), np.float32)
    return ids, matrix


def project(vectors: npt.NDArray[np.float32], method: Method) -> npt.NDArray[np.float64]:
    """2-D coordinates in [0, 1] for each row of `vectors`."""
    n = len(vectors)
    if n < 3:  # nothing to learn a projection from: a line is honest enough
        xy = np.column_stack([np.linspace(0, 1, n), np.full(n, 0.5)]) if n else np.zeros((0, 2))
        return np.asarray(xy, dtype=np.float64)
    from sklearn.decomposition import PCA  # type: ignore[import-untyped]

    if method == "pca" or n < 6:
        xy = PCA(n_components=2, random_state=SEED).fit_transform(vectors)
    else:
        from sklearn.manifold import TSNE  # type: ignore[import-untyped]

        reduced = PCA(
            n_components=min(PCA_DIMENSIONS, n - 1, vectors.shape[1]), random_state=SEED
        ).fit_transform(vectors)
        xy = TSNE(
            n_components=2,
            perplexity=min(30.0, (n - 1) / 3),
            init="pca",
            random_state=SEED,
        ).fit_transform(reduced)
    low, high = xy.min(axis=0), xy.max(axis=0)
    return np.asarray((xy - low) / np.where(high > low, high - low, 1.0), dtype=np.float64)


class MapCache:
    """Projections per generation: read from disk, or computed (once, in the background when
    asked by a request). Cheap to construct."""

    def __init__(
        self,
        store: ProfileStore,
        root: Path,
        generations: GenerationStore,
        method: Method = "tsne",
    ) -> None:
        self._store = store
        self._generations = generations
        self.root = root
        self.method = method
        self._running: dict[str, threading.Thread] = {}
        self._failed: dict[str, str] = {}
        self._lock = threading.Lock()

    def _path(self, generation: str) -> Path:
        return self.root / f"{generation}-{self.method}.json"

    def cached(self, generation: str) -> Projection | None:
        path = self._path(generation)
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return Projection(
                generation=raw["generation"],
                model_id=raw["model_id"],
                method=raw["method"],
                ids=tuple(raw["ids"]),
                xy=tuple((float(x), float(y)) for x, y in raw["xy"]),
                format=raw["format"],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptArtifact(f"map cache {path} cannot be read ({exc}); delete it") from None

    def compute(self, manifest: Manifest) -> Projection:
        """Project the generation now (and cache it); the CLI's path."""
        found = self.cached(manifest.generation)
        if found is not None:
            return found
        ids, vectors = profile_vectors(self._store, manifest)
        xy = project(vectors, self.method)
        projection = Projection(
            generation=manifest.generation,
            model_id=manifest.model_id,
            method=self.method,
            ids=tuple(ids),
            xy=tuple((round(float(x), 5), round(float(y), 5)) for x, y in xy),
        )
        self._write(projection)
        return projection

    def get_or_start(self, manifest: Manifest) -> Projection | None:
        """The cached projection, or None while a background thread computes it."""
        found = self.cached(manifest.generation)
        if found is not None:
            return found
        generation = manifest.generation
        with self._lock:
            if generation in self._failed:
                raise MapUnavailable(self._failed[generation])
            if generation not in self._running:
                thread = threading.Thread(
                    target=self._compute_in_background,
                    args=(manifest,),
                    name=f"map-{generation}",
                    daemon=True,
                )
                self._running[generation] = thread
                thread.start()
        return None

    def wait(self, generation: str, timeout: float = 60) -> None:
        thread = self._running.get(generation)
        if thread is not None:
            thread.join(timeout)

    def _compute_in_background(self, manifest: Manifest) -> None:
        try:
            projection = self.compute(manifest)
            log.info("map of generation %s: %d actors", manifest.generation, len(projection.ids))
        except Exception as exc:  # reported to the next request instead of lost in a thread
            log.exception("map of generation %s failed", manifest.generation)
            with self._lock:
                self._failed[manifest.generation] = f"the map could not be computed: {exc}"
        finally:
            with self._lock:
                self._running.pop(manifest.generation, None)

    def _write(self, projection: Projection) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._path(projection.generation)
        tmp = path.with_suffix(f".tmp-{os.getpid()}-{threading.get_ident()}")
        tmp.write_text(json.dumps(asdict(projection)), encoding="utf-8")
        os.replace(tmp, path)  # readers never see half a file
        self._generations.prune_derived()  # a generation pruned meanwhile takes its map along
