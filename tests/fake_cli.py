"""`python -m tests.fake_cli ...`: the real CLI on the fake embedder, for subprocess tests."""

from __future__ import annotations

import sys

from service.cli import main
from service.config import Settings
from service.embedding.fake import FakeEmbedder
from service.runtime import Runtime

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], Runtime(Settings(), embedder=FakeEmbedder())))
