"""`clustermatch backup DIR` and `clustermatch restore DIR`: a copy that serves the same results.

What a restore needs to answer at once exactly as before is the store (actors, documents, chunks
and the embedding cache) and the generation being served (its FAISS index and read model); with
both, the restored service loads the generation and re-reads newer chunks into its live delta from
the cached vectors, without embedding anything. Older generations (rollback targets) and maps
(recomputed on demand) are left out. The keys file is included when one is configured, so the same
callers keep their tenants and scopes.

- **Backup** copies the served generation first and the store second, with SQLite's online backup
  API (`sqlite3.Connection.backup`: a consistent snapshot while the service keeps writing). In that
  order the store is never older than the generation, so every chunk id the generation knows is in
  the store or was deleted (and a deleted chunk's id is never reused). Everything is written into
  `DIR.tmp-*` with a manifest of sha256 checksums, fsynced, and renamed to DIR at the end: a killed
  backup leaves no DIR that looks complete.
- **Restore** verifies every checksum, builds the data folder in a temporary folder beside the
  target, and renames it into place; an existing, non-empty data folder is refused unless `force`,
  and is then moved aside (`<data dir>.replaced-<time>`), never deleted. The service must be
  stopped meanwhile.
- **PostgreSQL** stores are backed up with `pg_dump` (the database holds the embedding cache too;
  a `clustermatch reindex` after `pg_restore` rebuilds the generation without embedding):
  `PostgresStore` errors print the commands.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy.engine import URL, make_url

from service import __version__
from service.config import Settings
from service.errors import ClusterMatchError, Conflict, CorruptArtifact, FieldProblem, InvalidInput
from service.fsutil import fsync_path, sha256_file
from service.index.generations import GenerationStore

BACKUP_FORMAT = 1
MANIFEST = "backup-manifest.json"
STORE_FILE = "store.sqlite3"
KEYS_FILE = "keys.json"
GENERATIONS = "generations"
POINTER = "CURRENT"


class PostgresStore(ClusterMatchError):
    """The store is PostgreSQL: its backup tool is pg_dump, not this command."""


@dataclass(frozen=True)
class BackupReport:
    path: str
    generation: str | None
    files: int
    bytes: int
    keys: bool


@dataclass(frozen=True)
class RestoreReport:
    data_dir: str
    generation: str | None
    files: int
    replaced: str | None
    """Where the data folder that was there before now lies (`force`), else None."""
    keys_file: str | None


def sqlite_path(settings: Settings) -> Path:
    """The store's file, or `PostgresStore` (with the commands to use) for another engine."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        return Path(url.database)
    # libpq's spelling (no "+driver"), without the password (pg_dump reads ~/.pgpass or
    # PGPASSWORD): a command that is safe to print and to paste.
    safe = URL.create(
        url.get_backend_name(), url.username, None, url.host, url.port, url.database, url.query
    ).render_as_string()
    raise PostgresStore(
        f"the store is {url.get_backend_name()} ({safe}); back it up with its own tool: "
        f"`pg_dump --format=custom --file=store.pgdump '{safe}'` and restore it with "
        f"`pg_restore --clean --if-exists --dbname='{safe}' store.pgdump`, then run "
        f"`clustermatch reindex` (the dump holds the embedding cache: nothing is re-embedded); "
        f"see docs/operations.md"
    )


def _stamp() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        fsync_path(path)
    fsync_path(root)


def backup(
    settings: Settings, target: Path, progress: Callable[[str], None] | None = None
) -> BackupReport:
    """Write a complete, checksummed backup into `target` (which must not exist or be empty)."""
    say = progress or (lambda _: None)
    store_file = sqlite_path(settings)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InvalidInput([FieldProblem("DIR", f"{target} is not empty; name a new folder")])
    if not store_file.is_file():
        raise InvalidInput([FieldProblem("store", f"no store at {store_file}: nothing to back up")])
    staging = target.with_name(f"{target.name}.tmp-{_stamp()}")
    staging.mkdir(parents=True)
    try:
        generation = _copy_generation(GenerationStore(settings.resolved_index_dir), staging, say)
        say(f"store: online backup of {store_file}")
        _backup_sqlite(store_file, staging / STORE_FILE)
        keys = settings.keys_file
        with_keys = keys is not None and keys.is_file()
        if keys is not None and with_keys:
            shutil.copyfile(keys, staging / KEYS_FILE)
            os.chmod(staging / KEYS_FILE, 0o600)  # hashes only, still nobody else's business
        files = _write_manifest(staging, generation)
        _fsync_tree(staging)
        if target.exists():
            target.rmdir()  # empty, checked above
        os.replace(staging, target)
        fsync_path(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    total = sum(f["bytes"] for f in files)
    say(f"backup: {len(files)} files, {total:,} bytes in {target}")
    return BackupReport(str(target), generation, len(files), total, with_keys)


def _copy_generation(
    generations: GenerationStore, staging: Path, say: Callable[[str], None]
) -> str | None:
    """Copy the served generation; a rebuild publishing meanwhile may prune it, then the new
    one is copied instead."""
    for _ in range(5):
        current = generations.current_id()
        if current is None:
            say("generation: none published yet (the restored service serves from the store)")
            return None
        source = generations.generations_dir / current
        destination = staging / GENERATIONS / current
        try:
            shutil.copytree(source, destination)
        except (FileNotFoundError, shutil.Error):
            shutil.rmtree(destination, ignore_errors=True)
            continue
        say(f"generation: copied {current}")
        return current
    raise Conflict("the served generation kept changing while it was copied; try again")


def _backup_sqlite(source: Path, destination: Path) -> None:
    # Read-only (`mode=ro`): the backup never writes to, nor creates, the live store.
    src = sqlite3.connect(f"file:{quote(str(source))}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(destination)
    try:
        src.backup(dst)
        # The copy is one self-contained file: no write-ahead log beside it.
        dst.execute("PRAGMA journal_mode=DELETE")
        (verdict,) = dst.execute("PRAGMA quick_check").fetchone()
        if verdict != "ok":
            raise CorruptArtifact(f"the copy of the store fails SQLite's check: {verdict}")
    finally:
        dst.close()
        src.close()


def _write_manifest(staging: Path, generation: str | None) -> list[dict[str, Any]]:
    files = [
        {
            "path": str(path.relative_to(staging)),
            "bytes": path.stat().st_size,
            "sha256": sha256_file(path),
        }
        for path in sorted(staging.rglob("*"))
        if path.is_file()
    ]
    manifest = {
        "format": BACKUP_FORMAT,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "clustermatch": __version__,
        "generation": generation,
        "files": files,
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return files


def read_manifest(source: Path) -> dict[str, Any]:
    """The backup's manifest, after checking every file it lists against its checksum."""
    path = source / MANIFEST
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput([FieldProblem("DIR", f"{source} holds no {MANIFEST}")]) from None
    except ValueError as exc:
        raise CorruptArtifact(f"{path} is unreadable: {exc}") from None
    if manifest.get("format") != BACKUP_FORMAT:
        raise CorruptArtifact(f"{path}: backup format {manifest.get('format')!r} is unknown")
    for entry in manifest["files"]:
        file = source / entry["path"]
        if not file.is_file() or sha256_file(file) != entry["sha256"]:
            raise CorruptArtifact(f"backup file {entry['path']} is missing or fails its checksum")
    return manifest


def restore(
    settings: Settings,
    source: Path,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> RestoreReport:
    """Make `settings`' data folder hold the backup in `source`, all or nothing."""
    say = progress or (lambda _: None)
    store_file = sqlite_path(settings)
    data_dir = settings.data_dir
    if settings.resolved_index_dir != data_dir or store_file.parent != data_dir:
        raise InvalidInput(
            [
                FieldProblem(
                    "settings",
                    "restore writes one data folder: unset CLUSTERMATCH_INDEX_DIR and "
                    "CLUSTERMATCH_DATABASE_URL (or point them into CLUSTERMATCH_DATA_DIR)",
                )
            ]
        )
    manifest = read_manifest(source)
    say(f"backup: {len(manifest['files'])} files verified (made {manifest['created_at']})")
    if data_dir.exists() and any(data_dir.iterdir()) and not force:
        raise InvalidInput(
            [FieldProblem("--force", f"{data_dir} is not empty; restore with --force to replace")]
        )
    keys_target = settings.keys_file
    keys_in_backup = source / KEYS_FILE
    if (
        keys_in_backup.is_file()
        and keys_target is not None
        and keys_target.is_file()
        and sha256_file(keys_target) != sha256_file(keys_in_backup)
        and not force
    ):
        raise InvalidInput(
            [FieldProblem("--force", f"{keys_target} differs from the backup's keys file")]
        )
    staging = data_dir.with_name(f"{data_dir.name}.restore-{_stamp()}")
    staging.mkdir(parents=True)
    replaced: Path | None = None
    try:
        shutil.copyfile(source / STORE_FILE, staging / store_file.name)
        generation = manifest.get("generation")
        if generation:
            shutil.copytree(source / GENERATIONS / generation, staging / GENERATIONS / generation)
            (staging / POINTER).write_text(generation + "\n", encoding="utf-8")
        _fsync_tree(staging)
        if data_dir.exists():
            replaced = data_dir.with_name(f"{data_dir.name}.replaced-{_stamp()}")
            os.replace(data_dir, replaced)
        os.replace(staging, data_dir)
        fsync_path(data_dir.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    restored_keys = None
    if keys_in_backup.is_file() and keys_target is not None:
        _install_keys(keys_in_backup, keys_target)
        restored_keys = str(keys_target)
    aside = f"; the folder it replaced is now {replaced}" if replaced else ""
    say(f"restore: {data_dir} now holds the backup{aside}")
    return RestoreReport(
        str(data_dir),
        manifest.get("generation"),
        len(manifest["files"]),
        str(replaced) if replaced else None,
        restored_keys,
    )


def _install_keys(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}")
    shutil.copyfile(source, tmp)
    os.chmod(tmp, 0o600)
    fsync_path(tmp)
    os.replace(tmp, target)
