"""`make bench` renders BENCHMARKS.md without dropping the hand-written sections above its
marker line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bench_report


def test_the_hand_written_part_above_the_marker_is_kept(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    out.write_text(
        "# Benchmarks\n\n## Writes (by hand)\n\n| a | b |\n\n"
        + bench_report.MARKER
        + "\n\n## Machine\n\nold rendered figures\n"
    )
    kept = bench_report._hand_written(out)
    assert "## Writes (by hand)" in kept and "| a | b |" in kept
    assert "old rendered figures" not in "\n".join(kept), "the rendered part is replaced"


def test_a_file_without_the_marker_is_refused_not_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## Hand-written only\n")
    with pytest.raises(SystemExit, match="marker"):
        bench_report._hand_written(out)
    assert bench_report._hand_written(tmp_path / "new.md") == bench_report.HEADER


def test_the_repository_benchmarks_file_has_its_marker() -> None:
    path = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
    assert bench_report.MARKER in path.read_text(encoding="utf-8")
