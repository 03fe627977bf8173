"""The workspace's pages: one HTML shell per view, and its static assets.

The pages hold no data: `static/app.js` reads the URL (`/?q=offshore+wind`, `/actors/{id}`),
calls the v1 API with the key the user gave once per browser session (`sessionStorage`, sent as
`Authorization: Bearer`), and renders the answer. So the API's rules, visibility included, are
the only rules, and no cookie is ever set, which leaves nothing for a cross-site request to ride
on (no CSRF surface). Every asset is in this package: no CDN, no build step.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from service import __version__

HERE = Path(__file__).resolve().parent
Page = Literal["search", "actor", "shortlist", "map"]
TITLES: dict[Page, str] = {
    "search": "Search",
    "actor": "Actor",
    "shortlist": "Shortlist",
    "map": "Competence map",
}
# Scripts, styles and requests only from this origin; no framing (clickjacking).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

router = APIRouter(include_in_schema=False)


@cache
def _shell() -> str:
    return (HERE / "templates" / "page.html").read_text(encoding="utf-8")


def page(name: Page) -> HTMLResponse:
    html = (
        _shell()
        .replace("{{page}}", name)
        .replace("{{title}}", TITLES[name])
        .replace("{{version}}", __version__)
    )
    return HTMLResponse(html, headers=SECURITY_HEADERS)


@router.get("/")
def search_page() -> HTMLResponse:
    return page("search")


@router.get("/actors/{actor_id:path}")
def actor_page(actor_id: str) -> HTMLResponse:
    return page("actor")  # the script reads the id from the path


@router.get("/shortlist")
def shortlist_page() -> HTMLResponse:
    return page("shortlist")


@router.get("/map")
def map_page() -> HTMLResponse:
    return page("map")


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
