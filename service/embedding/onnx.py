"""ONNX Runtime backend: the packaged sentence-transformers model, exported once, int8 by default.

Why: on two shared cores, ONNX Runtime with int8 weights embeds about twice as fast as torch, and
one query costs a fraction of torch's per-call overhead (see shared design MODELS.md).

What runs is exactly the sentence-transformers pipeline of the model folder (`modules.json`):
Transformer -> mean pooling over the attention mask -> L2 normalise. Only the Transformer is in the
ONNX graph; tokenising (the `tokenizers` library on the model's `tokenizer.json`), pooling and
normalising happen here in numpy, where they are cheap and easy to check.

The ONNX files are built on first use from the installed weights and cached under
`<cache_dir>/<model-name>-<checksum12>/` (`model.onnx`, `model.int8.onnx`), where the checksum
covers the weights, the model config and `_EXPORT_FORMAT`; a changed model or a changed export
recipe gets a fresh folder instead of a stale file. Building is guarded by an exclusive `flock`
on a lock file (two processes never export at once; the kernel drops the lock if a process dies),
and every file is written to a temporary name, fsynced and `os.replace`d into place, so a reader
sees either no file or a whole one.

Thread safety: `embed` takes no lock. An `onnxruntime.InferenceSession` is safe for concurrent
`run()` calls, the tokenizer only reads its configuration after loading, and each call keeps its
own arrays. Concurrent calls share the session's intra-op thread pool, so on two cores they
queue for the CPU rather than oversubscribing it. Loading is done once, under a lock.

Many passages at once (a bulk import, a rebuild) are spread over `passage_sessions` sessions of
one intra-op thread each, running side by side (`_PassagePool`): on two shared cores, int8
MiniLM embedded 458 passages/s against 386 in one call with two intra-op threads (medians of
8 interleaved rounds, scripts/bench_embedding.py --passage-sessions 1 2). Each model batch is
the same as on one session, and a session's thread count does not change its results (checked
bitwise), so the vectors are the same either way, int8 included (whose vectors depend on their
batch mates). Queries take a session of `query_threads` (a second one when that differs from
`threads`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.config import MODELS_DIR, ModelProfile
from service.embedding.base import INT8_SUFFIX, Role, Vectors, l2_normalise
from service.embedding.sentence_transformers import model_path
from service.errors import ModelUnavailable
from service.fsutil import fsync_path
from service.locks import waiting

DEFAULT_CACHE_DIR = MODELS_DIR / "cache"

# Part of the cache key: bump it whenever the export or quantisation recipe changes, so caches
# built by an older recipe are never picked up.
_EXPORT_FORMAT = "clustermatch-onnx-v1;opset17;torchscript;eager;int8-dynamic-per-channel"
_OPSET = 17

_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
_OUTPUT_NAME = "token_embeddings"

FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
_LOCK_FILE = ".export.lock"

# Largest elementwise difference allowed between the exported fp32 graph and torch on a padded
# probe batch. Real exports differ by ~3e-6; a graph that lost the padding mask or froze a shape
# differs by whole units.
_EXPORT_TOLERANCE = 1e-3

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ModelLayout:
    """Where the parts of a sentence-transformers folder live, checked against what we implement."""

    transformer_dir: Path
    tokenizer_file: Path


def read_layout(source: Path) -> ModelLayout:
    """Check that the folder is Transformer -> mean pooling -> Normalize, as this backend assumes.

    A model with CLS pooling, a Dense layer or no normalisation would silently give different
    vectors here than under sentence-transformers, so such a folder is refused instead.
    """
    modules_file = source / "modules.json"
    if not modules_file.is_file():
        raise ModelUnavailable(f"{source} has no modules.json; not a sentence-transformers folder")
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    kinds = [str(m["type"]).rsplit(".", 1)[-1] for m in modules]
    if kinds != ["Transformer", "Pooling", "Normalize"]:
        raise ModelUnavailable(
            f"the ONNX backend supports Transformer -> Pooling -> Normalize; {source} has {kinds}"
        )
    pooling = json.loads((source / modules[1]["path"] / "config.json").read_text(encoding="utf-8"))
    modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode") and v is True)
    if modes != ["pooling_mode_mean_tokens"]:
        raise ModelUnavailable(f"the ONNX backend implements mean pooling only; {source}: {modes}")
    transformer_dir = source / modules[0]["path"]
    tokenizer_file = transformer_dir / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise ModelUnavailable(f"{transformer_dir} has no tokenizer.json")
    return ModelLayout(transformer_dir=transformer_dir, tokenizer_file=tokenizer_file)


def source_checksum(transformer_dir: Path) -> str:
    """sha256 over the export recipe, the model config and the weight files (~0.2 s for MiniLM)."""
    digest = hashlib.sha256(_EXPORT_FORMAT.encode())
    weights = sorted(transformer_dir.glob("*.safetensors")) or sorted(
        transformer_dir.glob("pytorch_model*.bin")
    )
    if not weights:
        raise ModelUnavailable(f"{transformer_dir} has no weight files")
    for path in [transformer_dir / "config.json", *weights]:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _publish(tmp: Path, final: Path) -> None:
    """fsync `tmp` and rename it over `final`: readers see no file or a whole one."""
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    # mkstemp creates 0600; the cache is shared by whoever runs the service.
    tmp.chmod(0o644)
    os.replace(tmp, final)
    fsync_path(final.parent)


def _temp_path(folder: Path, name: str) -> Path:
    fd, raw = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    return Path(raw)


def _probe_batch(tokenizer_file: Path, max_tokens: int) -> dict[str, IntArray]:
    """A padded batch of unequal lengths: the export must learn masking, not one fixed shape."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_tokens)
    texts = [
        "Laser welding of aluminium car bodies and lightweight structures for electric vehicles.",
        "Offshore wind",
        "A regional cluster for sensor systems.",
    ]
    return _pad([e.ids for e in tokenizer.encode_batch(texts)])


def _pad(sequences: Sequence[Sequence[int]]) -> dict[str, IntArray]:
    length = max(len(ids) for ids in sequences)
    input_ids = np.zeros((len(sequences), length), dtype=np.int64)
    attention_mask = np.zeros_like(input_ids)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    # BERT-style models see one segment: token type 0 everywhere, as sentence-transformers sends.
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": np.zeros_like(input_ids),
    }


def _export_fp32(layout: ModelLayout, target: Path, max_tokens: int) -> None:
    """torch -> ONNX with the TorchScript exporter, then a numeric check against torch.

    `dynamo=False`: with torch 2.13 the default (dynamo) exporter needs the extra `onnxscript`
    package and writes the weights to a second `.onnx.data` file; the TorchScript exporter needs
    neither, writes one self-contained file in ~1 s and matched torch to 3e-6. Eager attention,
    because the SDPA path has shape-dependent branches that tracing would freeze.
    """
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    model = transformers.AutoModel.from_pretrained(
        str(layout.transformer_dir), attn_implementation="eager"
    ).eval()

    class _TokenEmbeddings(torch.nn.Module):
        """Positional inputs and a single tensor output: what the exporter traces cleanly."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
            out = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            hidden: torch.Tensor = out.last_hidden_state
            return hidden

    wrapper = _TokenEmbeddings(model).eval()
    probe = _probe_batch(layout.tokenizer_file, max_tokens)
    args = tuple(torch.from_numpy(probe[name]) for name in _INPUT_NAMES)
    axes = {name: {0: "batch", 1: "sequence"} for name in (*_INPUT_NAMES, _OUTPUT_NAME)}
    with warnings.catch_warnings(), torch.no_grad():
        # The legacy exporter's deprecation notice and tracer warnings about Python booleans in
        # transformers' mask helpers; the probe check below is what proves the graph right.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            args,
            str(target),
            input_names=list(_INPUT_NAMES),
            output_names=[_OUTPUT_NAME],
            dynamic_axes=axes,
            opset_version=_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
        expected = wrapper(*args).numpy()

    session = _session(target, threads=1)
    got = session.run([_OUTPUT_NAME], probe)[0]
    mask = probe["attention_mask"].astype(bool)
    error = float(np.abs(got - expected)[mask].max())
    if error > _EXPORT_TOLERANCE:
        raise ModelUnavailable(f"ONNX export differs from torch by {error:.2e}; refusing it")


class _DropMessage(logging.Filter):
    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


def _quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 with per-channel weight scales.

    Per channel matters: with one scale per weight tensor the cosine to torch fell to 0.91-0.95 on
    demo texts; per channel it is 0.98-0.999 (mean 0.992). Measured alternatives, not used:
    keeping the embedding tables fp32 (no better, 2.5x the file); the offline transformer-fusion
    pass (no faster); keeping the six FFN output layers fp32 (minimum 0.992, but loses about half
    of the speed-up); weight-only 8-bit `MatMulNBits` (0.999 and batch-independent, but slower
    than fp32 on this CPU).

    Activations are quantised per tensor at run time (`DynamicQuantizeLinear`), so one scale
    covers a whole batch: an int8 vector depends slightly on its batch mates (cosine >= 0.98 between
    a text embedded alone and in a batch). fp32 has no such effect.
    """
    from onnxruntime.quantization import (  # type: ignore[import-untyped]
        QuantType,
        quantize_dynamic,
    )

    # quantize_dynamic logs a hint about pre-processing on the root logger at every call.
    quiet = _DropMessage("pre-processing before quantization")
    logging.getLogger().addFilter(quiet)
    try:
        quantize_dynamic(source, target, per_channel=True, weight_type=QuantType.QInt8)
    finally:
        logging.getLogger().removeFilter(quiet)


def ensure_exported(
    layout: ModelLayout, folder: Path, max_tokens: int, quantize: bool
) -> tuple[Path, tuple[Path, ...]]:
    """The ONNX file to serve, building what is missing; returns it and the files built now."""
    fp32, int8 = folder / FP32_FILE, folder / INT8_FILE
    wanted = int8 if quantize else fp32
    if wanted.is_file():  # the common case: no lock, no torch import
        return wanted, ()
    folder.mkdir(parents=True, exist_ok=True)
    built: list[Path] = []
    with waiting(folder / _LOCK_FILE):
        # Re-check under the lock: another process may have finished while we waited.
        if wanted.is_file():
            return wanted, ()
        # Only the lock holder writes temporaries, so any left now are from a crashed build.
        for stale in folder.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        if not fp32.is_file():
            tmp = _temp_path(folder, FP32_FILE)
            try:
                _export_fp32(layout, tmp, max_tokens)
                _publish(tmp, fp32)
            finally:
                tmp.unlink(missing_ok=True)
            built.append(fp32)
        if quantize and not int8.is_file():
            tmp = _temp_path(folder, INT8_FILE)
            try:
                _quantize_int8(fp32, tmp)
                _publish(tmp, int8)
            finally:
                tmp.unlink(missing_ok=True)
            built.append(int8)
    return wanted, tuple(built)


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort  # type: ignore[import-untyped]

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # One graph branch at a time: BERT is a chain, and a second pool would only compete for cores.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle ORT threads spin by default and steal the cores from FAISS in the same process
    # (a query's p50 went from 17.6 to 9.5 ms with spinning off).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def passage_sessions_for(requested: int, threads: int) -> int:
    """`requested` sessions, or with 0 one per usable core, never more than `threads`: the
    passages get the CPU budget `threads` gives one call, as single-threaded calls side by side."""
    return requested if requested > 0 else max(1, min(threads, usable_cores()))


class _PassagePool:
    """`sessions` single-threaded ORT sessions, each with a thread that runs model batches on it."""

    def __init__(self, sessions: list[Any]) -> None:
        self.sessions = sessions
        self.batches = [0] * len(sessions)
        """Model batches each session has run (for tests and metrics)."""
        self._count_lock = threading.Lock()
        self._threads = ThreadPoolExecutor(len(sessions), thread_name_prefix="onnx-passages")

    def run(
        self, ids: list[list[int]], batches: list[IntArray], out: npt.NDArray[np.float32]
    ) -> None:
        """Pool the token vectors of each batch (rows of `ids`) into its rows of `out`. Session i
        takes batches i, i + n, i + 2n, ...: the batches are sorted by length, so every session
        gets a like share of short and long ones."""
        n = len(self.sessions)
        parts = [(i, batches[i::n]) for i in range(n) if batches[i::n]]
        futures = [self._threads.submit(self._run_part, i, ids, part, out) for i, part in parts]
        for future in futures:
            future.result()  # re-raises a failed part's error here, in the caller

    def _run_part(
        self,
        index: int,
        ids: list[list[int]],
        part: list[IntArray],
        out: npt.NDArray[np.float32],
    ) -> None:
        for rows in part:
            out[rows] = _embed_batch(self.sessions[index], ids, rows)
        with self._count_lock:
            self.batches[index] += len(part)


def _embed_batch(session: Any, ids: list[list[int]], rows: IntArray) -> npt.NDArray[np.float32]:
    feed = _pad([ids[i] for i in rows])
    hidden = session.run([_OUTPUT_NAME], feed)[0]
    return _mean_pool(hidden, feed["attention_mask"])


class OnnxEmbedder:
    """The `Embedder` protocol on ONNX Runtime; int8 weights unless `quantize=False`.

    Cheap to construct: nothing is read, hashed or exported until the first `embed` or
    `warm_up`. `count_tokens` needs only the tokenizer and never triggers an export.
    `passage_sessions` > 1: passages of more than one model batch are spread over that many
    single-threaded sessions (module docstring), loaded on the first such call.
    """

    def __init__(
        self,
        profile: ModelProfile,
        threads: int = 2,
        batch_size: int = 32,
        quantize: bool = True,
        cache_dir: Path = DEFAULT_CACHE_DIR,
        query_threads: int | None = None,
        passage_sessions: int = 1,
    ) -> None:
        if threads < 1 or batch_size < 1 or passage_sessions < 1:
            raise ValueError("threads, batch_size and passage_sessions must be >= 1")
        if query_threads is not None and query_threads < 1:
            raise ValueError("query_threads must be >= 1")
        self.profile = profile
        self.quantize = quantize
        self.cache_dir = cache_dir
        self.passage_sessions = passage_sessions
        self._threads = threads
        self._query_threads = query_threads or threads
        """Queries get their own session when this differs from `threads`: a query is one short
        text, and splitting it over two threads cost more CPU and more time than one thread
        (1.9 against 1.0 ms per query, BENCHMARKS.md), while passages come in batches that two
        threads share well. Same weights, same vectors."""
        self._batch_size = batch_size
        self._session: Any = None
        self._query_session: Any = None
        self._pool: _PassagePool | None = None
        self._tokenizer: Any = None
        self._count: Any = None
        self._model_file: Path | None = None
        self.built_files: tuple[Path, ...] = ()
        """Files this instance exported or quantised (empty when the cache already had them)."""
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        # fp32 ONNX reproduces torch to ~3e-6, so it shares the model id (and the vector cache and
        # indexes). int8 vectors differ by cosine ~0.99 and depend on their batch: they get their
        # own id, so they never mix with torch vectors in one index or one cache entry.
        return f"{self.profile.id}{INT8_SUFFIX}" if self.quantize else self.profile.id

    @property
    def dim(self) -> int:
        return self.profile.dim

    @property
    def model_file(self) -> Path | None:
        """The ONNX file in use, once loaded."""
        return self._model_file

    @property
    def passage_pool(self) -> _PassagePool | None:
        """The sessions passages are spread over, once loaded (None with one session)."""
        return self._pool

    def warm_up(self) -> None:
        """Load (exporting on first use) and run a tiny batch, so ORT allocates its buffers now.
        The passage sessions are left to the first call that needs them: a serving worker that
        never takes a bulk import does not hold them (~40 MB each)."""
        self._load()
        self.embed(["warm up"], role="query")

    def _load_pool(self) -> _PassagePool | None:
        if self.passage_sessions > 1 and self._pool is None:
            self._load()
            with self._lock:
                if self._pool is None:
                    assert self._model_file is not None
                    file = self._model_file
                    sessions = [_session(file, threads=1) for _ in range(self.passage_sessions)]
                    self._pool = _PassagePool(sessions)
        return self._pool

    def _load(self) -> Any:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    from tokenizers import Tokenizer

                    layout = read_layout(model_path(self.profile))
                    checksum = source_checksum(layout.transformer_dir)
                    folder = self.cache_dir / f"{self.profile.name}-{checksum[:12]}"
                    path, self.built_files = ensure_exported(
                        layout, folder, self.profile.max_tokens, self.quantize
                    )
                    tokenizer = Tokenizer.from_file(str(layout.tokenizer_file))
                    # tokenizer.json pads and truncates to a fixed 128; we pad per batch to
                    # the longest text instead and truncate at the profile's window, as
                    # sentence-transformers does with max_seq_length.
                    tokenizer.no_padding()
                    tokenizer.enable_truncation(self.profile.max_tokens)
                    session = _session(path, self._threads)
                    dim = session.get_outputs()[0].shape[-1]
                    if dim != self.profile.dim:
                        raise ModelUnavailable(
                            f"{path} gives dimension {dim}, profile says {self.profile.dim}"
                        )
                    self._tokenizer = tokenizer
                    self._model_file = path
                    self._session = session
        return self._session

    def _session_for(self, role: Role) -> Any:
        session = self._load()
        if role != "query" or self._query_threads == self._threads:
            return session
        if self._query_session is None:
            with self._lock:
                if self._query_session is None:
                    assert self._model_file is not None
                    self._query_session = _session(self._model_file, self._query_threads)
        return self._query_session

    def count_tokens(self, text: str) -> int:
        if self._count is None:
            from service.text.chunking import tokenizer_counter

            layout = read_layout(model_path(self.profile))
            self._count = tokenizer_counter(str(layout.tokenizer_file))
        count: int = self._count(text)
        return count

    def embed(self, texts: Sequence[str], role: Role = "passage") -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        session = self._session_for(role)
        prefix = self.profile.query_prefix if role == "query" else self.profile.passage_prefix
        encodings = self._tokenizer.encode_batch([prefix + t for t in texts])
        ids: list[list[int]] = [e.ids for e in encodings]
        # Similar lengths share a batch, so little compute goes to padding; a stable sort keeps
        # the batches the same for the same input.
        order = np.argsort(np.fromiter((len(x) for x in ids), dtype=np.int64), kind="stable")
        batches = [
            order[start : start + self._batch_size]
            for start in range(0, len(order), self._batch_size)
        ]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        pool = self._load_pool() if role == "passage" and len(batches) > 1 else None
        if pool is not None:
            pool.run(ids, batches, out)
        else:
            for rows in batches:
                out[rows] = _embed_batch(session, ids, rows)
        return l2_normalise(out)


def _mean_pool(hidden: npt.NDArray[np.float32], mask: IntArray) -> npt.NDArray[np.float32]:
    """sentence-transformers' mean pooling: the average of the token vectors the mask keeps."""
    weights = mask[:, :, None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    pooled: npt.NDArray[np.float32] = summed / counts
    return pooled
