"""How the project starts Debian's chromium for the browser tests and the screenshots.

Playwright drives the system browser (`/usr/bin/chromium`, Debian's package, which `make
install-dev` installs); nothing ever downloads a browser build. Playwright is a development
dependency, so it is imported by the callers, not here.
"""

from __future__ import annotations

from typing import Any

CHROMIUM = "/usr/bin/chromium"
ARGS = (
    "--no-sandbox",  # runs as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these, chromium keeps trying to reach Google's hosts, which this network refuses.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def launch(playwright: Any) -> Any:
    """A headless chromium from a started `sync_playwright()`."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=list(ARGS))
