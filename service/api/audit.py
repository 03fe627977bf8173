"""The serving side of the audit log: key-use counts flushed once a minute, old events pruned.

Writes and deletes of actors are audited by the store in their own transaction; this thread
appends the aggregated key use (`service.audit.KeyUse`) and prunes events past the retention
period, at most hourly, so neither costs a request anything.
"""

from __future__ import annotations

import logging
import threading
import time

from service.audit import AuditEvent, KeyUse, Who, cutoff
from service.store import ProfileStore

log = logging.getLogger("clustermatch.audit")

AUDIT_FLUSH_SECONDS = 30.0
PRUNE_EVERY_SECONDS = 3600.0


class AuditWriter:
    def __init__(
        self, store: ProfileStore, key_use: KeyUse, retention_days: int, seconds: float
    ) -> None:
        self._store = store
        self._key_use = key_use
        self._retention_days = retention_days
        self._seconds = seconds
        self._pruned_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="audit-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.flush(everything=True)

    def flush(self, everything: bool = False) -> int:
        """Append the finished minutes of key use (with `everything`, the current one too)."""
        events = self._key_use.drain(everything)
        try:
            self._store.record_audit(events)
        except Exception:  # never take a request down for the log; say so loudly
            log.exception("could not append %d key-use events to the audit log", len(events))
            return 0
        return len(events)

    def prune(self) -> int:
        removed = self._store.prune_audit(cutoff(self._retention_days))
        if removed:
            self._store.record_audit(
                [AuditEvent("audit.prune", Who(None, "local", "server"), count=removed)]
            )
        return removed

    def _loop(self) -> None:
        while not self._stop.wait(self._seconds):
            self.flush()
            now = time.monotonic()
            if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY_SECONDS:
                self._pruned_at = now
                try:
                    self.prune()
                except Exception:
                    log.exception("could not prune the audit log")
