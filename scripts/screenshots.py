#!/usr/bin/env python3
"""Screenshots of the workspace for docs/ and the README, at desktop and phone width.

Drives Debian's chromium (/usr/bin/chromium) through Playwright against a running service, e.g.
one serving the demo data:

    CLUSTERMATCH_DATA_DIR=/tmp/demo .venv/bin/clustermatch demo
    CLUSTERMATCH_DATA_DIR=/tmp/demo .venv/bin/clustermatch serve --port 8765 &
    .venv/bin/python scripts/screenshots.py --base-url http://127.0.0.1:8765

Writes docs/screenshots/<view>-<desktop|phone>.png. The shortlist is filled through the pages
(as a manager would), so the service needs no preparation beyond its data.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from service.web import chromium

REPO_ROOT = Path(__file__).resolve().parents[1]
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}
QUERY = "offshore wind turbine blade materials"
ACTOR = "pic:991776016"  # IBK-INNOVATION, the actor the issue could not find by name


def shoot(page: Page, out: Path, name: str, full: bool = True) -> None:
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=full)
    print(f"wrote {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}")


def views(page: Page, base: str, out: Path, width: str) -> None:
    page.goto(f"{base}/?q={QUERY.replace(' ', '+')}")
    page.wait_for_selector(".cards .card")
    shoot(page, out, f"search-{width}", full=False)
    for button in page.locator(".card .add").all()[:2]:
        button.click()
    page.goto(f"{base}/actors/{ACTOR}?new=1")  # beyond the partners it already has
    page.wait_for_selector(".mode-similar .card")
    shoot(page, out, f"actor-{width}", full=False)
    page.goto(f"{base}/shortlist")
    page.wait_for_selector("table.shortlist")
    page.locator("table.shortlist textarea").first.fill("Tower monitoring: ask about TOWERPOWER")
    shoot(page, out, f"shortlist-{width}")
    page.goto(f"{base}/map" + ("?find=fraunhofer" if width == "phone" else ""))
    page.wait_for_selector("svg.map circle", timeout=180_000)
    shoot(page, out, f"map-{width}", full=width == "phone")  # the map is below its controls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "screenshots")
    parser.add_argument("--only", choices=sorted(WIDTHS), help="one width only")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = chromium.launch(playwright)
        for width, (w, h) in WIDTHS.items():
            if args.only and width != args.only:
                continue
            context = browser.new_context(viewport={"width": w, "height": h})
            views(context.new_page(), args.base_url.rstrip("/"), args.out, width)
            context.close()
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
