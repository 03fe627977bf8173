"""Backup and restore: a restored data folder serves the same results at once (same ids, same
scores, nothing re-embedded); restore is all-or-nothing and refuses to overwrite by accident."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.backup import MANIFEST, PostgresStore, backup, restore
from service.cli import main
from service.config import Settings
from service.embedding.fake import FakeEmbedder
from service.errors import CorruptArtifact, InvalidInput
from service.runtime import Runtime
from tests.conftest import unused_port
from tests.factories import make_actor

WIND = "offshore wind turbine blades made of glass fibre composites"


def settings_in(folder: Path, **more: object) -> Settings:
    return Settings(data_dir=folder / "data", port=unused_port(), **more)  # type: ignore[arg-type]


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Runtime]:
    # A path a careless SQLite file: URI would break ("#" and spaces).
    runtime = Runtime(settings_in(tmp_path / "site a #1"), embedder=FakeEmbedder())
    runtime.ingestor.upsert(
        [make_actor(f"w{i}", [f"{WIND}, variant {i}", f"service and repair {i}"]) for i in range(8)]
        + [make_actor("bakery", ["sourdough bread and pastry"])]
    )
    runtime.reindexer.run()
    # After the build: one write in the live delta and one delete, as a day of API use leaves it.
    runtime.ingestor.upsert([make_actor("late", [f"{WIND}, repaired in the field"])])
    runtime.delete_actor("w3")
    yield runtime
    runtime.close()


def results(runtime: Runtime) -> list[list[tuple[str, float]]]:
    found = [
        runtime.matcher.search(WIND, limit=5),
        runtime.matcher.search("bread", limit=3),
        runtime.matcher.match_actor("w1", limit=5),
        runtime.matcher.match_actor("late", limit=5),
    ]
    return [[(m.actor.id, m.score) for m in r.matches] for r in found]


def test_a_restored_folder_serves_the_same_results_at_once(source: Runtime, tmp_path: Path) -> None:
    before = results(source)
    report = backup(source.settings, tmp_path / "backup")
    assert report.generation == source.generations.current_id()
    target = settings_in(tmp_path / "b")
    restored = restore(target, tmp_path / "backup")
    assert restored.replaced is None
    embedder = FakeEmbedder()
    runtime = Runtime(target, embedder=embedder)
    try:
        assert results(runtime) == before
        assert runtime.index.get().manifest.generation == report.generation
        assert embedder.texts_embedded == 2, "only the two search queries: no passage re-embedded"
        assert runtime.store.get_actor("w3") is None
    finally:
        runtime.close()


def test_restore_refuses_a_non_empty_folder_and_force_moves_it_aside(
    source: Runtime, tmp_path: Path
) -> None:
    backup(source.settings, tmp_path / "backup")
    with pytest.raises(InvalidInput, match="not empty"):
        restore(source.settings, tmp_path / "backup")
    with pytest.raises(InvalidInput, match="not empty"):
        backup(source.settings, tmp_path / "backup")
    source.ingestor.upsert([make_actor("after-backup", ["written after the backup"])])
    source.close()
    report = restore(source.settings, tmp_path / "backup", force=True)
    assert report.replaced is not None and Path(report.replaced, "store.sqlite3").is_file()
    runtime = Runtime(source.settings, embedder=FakeEmbedder())
    try:
        assert runtime.store.get_actor("after-backup") is None
        assert runtime.store.get_actor("late") is not None
    finally:
        runtime.close()


def test_a_damaged_backup_is_refused_and_the_target_stays_untouched(
    source: Runtime, tmp_path: Path
) -> None:
    backup(source.settings, tmp_path / "backup")
    manifest = json.loads((tmp_path / "backup" / MANIFEST).read_text())
    index_file = next(f["path"] for f in manifest["files"] if f["path"].endswith("index.faiss"))
    with (tmp_path / "backup" / index_file).open("r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01")
    target = settings_in(tmp_path / "b")
    with pytest.raises(CorruptArtifact, match=r"index\.faiss"):
        restore(target, tmp_path / "backup")
    assert not target.data_dir.exists()
    assert not any(target.data_dir.parent.glob("data.restore-*")), "no staging left behind"


def test_the_keys_file_travels_with_the_backup(source: Runtime, tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text('{"keys": []}', encoding="utf-8")
    settings = source.settings.model_copy(update={"keys_file": keys})
    assert backup(settings, tmp_path / "backup").keys
    target = settings_in(tmp_path / "b", keys_file=tmp_path / "b-keys.json")
    assert restore(target, tmp_path / "backup").keys_file == str(tmp_path / "b-keys.json")
    restored = tmp_path / "b-keys.json"
    assert restored.read_text() == keys.read_text() and restored.stat().st_mode & 0o077 == 0


def test_a_postgresql_store_is_pointed_to_pg_dump(tmp_path: Path) -> None:
    settings = settings_in(
        tmp_path, database_url="postgresql+psycopg://cm:secret@db.internal/clustermatch"
    )
    with pytest.raises(PostgresStore, match="pg_dump") as caught:
        backup(settings, tmp_path / "backup")
    assert "secret" not in str(caught.value)
    assert (
        "pg_dump --format=custom --file=store.pgdump 'postgresql://cm@db.internal/clustermatch'"
        in (str(caught.value))
    )
    assert not (tmp_path / "backup").exists()


def test_the_cli_backs_up_and_restores(
    source: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source.close()
    assert main(["backup", str(tmp_path / "backup"), "--json"], source) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["files"] >= 4 and made["generation"]
    target = Runtime(settings_in(tmp_path / "b"), embedder=FakeEmbedder())
    assert main(["restore", str(tmp_path / "backup")], target) == 0
    assert "restored into" in capsys.readouterr().out
    assert main(["restore", str(tmp_path / "backup")], target) == 2, "the folder is not empty"
    assert "--force" in capsys.readouterr().err
