#!/usr/bin/env python3
"""Language detections of the project's texts with the 24 languages detected until issue 10's heap
change against the five product languages (service.text.SUPPORTED_LANGUAGES): counts per corpus,
and which labels changed. The figures are quoted in service/text/language.py.

    nice -n 10 .venv/bin/python scripts/compare_languages.py > languages.json
"""

from __future__ import annotations

import collections
import gzip
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EARLIER = [
    "en",
    "de",
    "it",
    "sv",
    "ro",
    "fr",
    "es",
    "nl",
    "pt",
    "pl",
    "da",
    "fi",
    "el",
    "cs",
    "hu",
    "sk",
    "sl",
    "hr",
    "bg",
    "et",
    "lv",
    "lt",
    "ga",
    "nb",
]


def corpora() -> dict[str, list[str]]:
    """Texts by corpus: cross-lingual statements per language, demo and temporal documents
    (their text and their title sentence, the shape of a search query)."""
    texts: dict[str, list[str]] = collections.defaultdict(list)
    for name in ("statements.jsonl", "hard.jsonl"):
        for line in (ROOT / "data" / "crosslingual" / name).open(encoding="utf-8"):
            row = json.loads(line)
            for code in ("en", "de", "it", "sv", "ro"):
                if code in row:
                    texts[f"crosslingual:{code}"].append(row[code])
    for path in ("demo/actors.jsonl.gz", "temporal/actors-2007.jsonl.gz"):
        with gzip.open(ROOT / "data" / path, "rt", encoding="utf-8") as handle:
            for line in handle:
                for doc in json.loads(line)["documents"]:
                    corpus = path.split("/")[0]
                    texts[corpus].append(doc["text"])
                    texts[f"{corpus}:titles"].append(doc["text"].split(". ")[0])
    return texts


def detector(codes: Sequence[str]) -> Any:
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    from service.text.language import MIN_RELATIVE_DISTANCE

    return (
        LanguageDetectorBuilder.from_iso_codes_639_1(*[IsoCode639_1.from_str(c) for c in codes])
        .with_minimum_relative_distance(MIN_RELATIVE_DISTANCE)
        .with_preloaded_language_models()
        .build()
    )


def labels(found: Any, texts: Sequence[str]) -> list[str]:
    from service.text.language import _sample

    samples = [_sample(t) for t in texts]
    return [
        language.iso_code_639_1.name.lower() if language is not None and sample else "en"
        for sample, language in zip(
            samples, found.detect_languages_in_parallel_of(samples), strict=True
        )
    ]


def main() -> int:
    from service.text import SUPPORTED_LANGUAGES

    earlier, now = detector(EARLIER), detector(SUPPORTED_LANGUAGES)
    report: dict[str, Any] = {}
    for name, texts in corpora().items():
        before, after = labels(earlier, texts), labels(now, texts)
        changed = collections.Counter(
            f"{b}->{a}" for b, a in zip(before, after, strict=True) if a != b
        )
        report[name] = {
            "texts": len(texts),
            "labels_24": dict(collections.Counter(before)),
            "labels_5": dict(collections.Counter(after)),
            "changed": dict(changed),
        }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
