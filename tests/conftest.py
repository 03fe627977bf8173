"""Shared fixtures: a runtime on a temporary data directory with the fake embedder.

Most tests need no model: `FakeEmbedder` hashes words into vectors, so texts sharing words are
similar. Tests marked `slow` load the real packaged model (and still run in `make test`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from service.config import Settings
from service.embedding.fake import FakeEmbedder
from service.runtime import Runtime


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # A port nothing listens on: the CLI's `--server auto` must not find a developer's server.
    return Settings(data_dir=tmp_path / "data", port=unused_port())


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime(settings, embedder=FakeEmbedder())
    yield rt
    rt.close()
