"""Named points where a test can freeze a process to kill it there (crash-safety tests).

`CLUSTERMATCH_FAILPOINT=<name>` makes `failpoint(<name>)` print `FAILPOINT <name>` to stderr and
sleep until the process is killed. Unset (always, in production) it costs one dict lookup.
"""

from __future__ import annotations

import os
import sys
import time


def failpoint(name: str) -> None:
    if os.environ.get("CLUSTERMATCH_FAILPOINT") != name:
        return
    print(f"FAILPOINT {name}", file=sys.stderr, flush=True)
    while True:  # wait for SIGKILL
        time.sleep(3600)
