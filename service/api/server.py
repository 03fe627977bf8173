"""The app as uvicorn's worker processes build it: `clustermatch serve --workers N` starts N of
these, each with its own `Runtime` from the environment (`CLUSTERMATCH_*`), all sharing the
store and the generation files (memory-mapped read models share their pages), each watching
CURRENT. Nothing is loaded at import."""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI

from service.config import LOG_LEVEL_ENV


def app() -> FastAPI:
    from service.api.app import create_app
    from service.config import Settings
    from service.runtime import Runtime

    level = os.environ.get(LOG_LEVEL_ENV, "info").upper()
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    return create_app(Runtime(Settings()), warm=True)
