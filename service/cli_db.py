"""`clustermatch db status | upgrade`: the store's schema revision, and migrating it on purpose."""

from __future__ import annotations

import argparse

from service.runtime import Runtime
from service.store.migrate import UPGRADE_HINT


def cmd_db_status(runtime: Runtime, args: argparse.Namespace) -> dict[str, object]:
    state = runtime.sql_store.schema_state()
    return {
        "database": _redacted(runtime.sql_store.url),
        "revision": state.current,
        "head": state.head,
        "up_to_date": state.up_to_date,
        "action": None
        if state.up_to_date
        else ("created on first use" if state.empty else UPGRADE_HINT),
    }


def cmd_db_upgrade(runtime: Runtime, args: argparse.Namespace) -> dict[str, object]:
    before, after = runtime.sql_store.upgrade_schema()
    return {"database": _redacted(runtime.sql_store.url), "before": before, "after": after}


def _redacted(url: str) -> str:
    """The URL without its password, for printing."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
