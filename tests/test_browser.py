"""The workspace end to end: headless Debian chromium driven by Playwright against a real server.

The server runs in a thread on a free loopback port, on the fake embedder, with API keys for two
agencies: `agency-a` owns every actor (one with a private self-assessment), `agency-b` only
reads. No browser is ever downloaded: Playwright drives /usr/bin/chromium (`make install-dev`
installs Debian's package).
"""

from __future__ import annotations

import csv
import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import expect, sync_playwright

from service.api.app import create_app
from service.config import Settings
from service.domain import Actor, Owner
from service.embedding.fake import FakeEmbedder
from service.keys import KeyFile
from service.runtime import Runtime
from service.web import chromium
from tests.factories import actor_data

pytestmark = pytest.mark.browser

SECRET = "confidential electrolyser membrane roadmap for the hydrogen valley"
WIND = "offshore wind turbine blade composite materials"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Served:
    def __init__(self, runtime: Runtime) -> None:
        port = free_port()
        config = uvicorn.Config(
            create_app(runtime), host="127.0.0.1", port=port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}"
        self.runtime = runtime

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.runtime.close()


def actors() -> list[Actor]:
    countries = ["AT", "DE", "DE", "IT", "SE", "RO", "AT", "IT"]
    kinds = [
        "company",
        "research",
        "university",
        "company",
        "research",
        "company",
        "public",
        "company",
    ]
    made = [
        Actor.parse(
            actor_data(
                f"wind-{i}",
                [f"{WIND} part {i}", f"fatigue testing of rotor blades {i}"],
                country=country,
                kind=kind,
                name=f"Wind Actor {i}",
            )
            | ({"partners": ["wind-1"]} if i == 0 else {})
        )
        for i, (country, kind) in enumerate(zip(countries, kinds, strict=True))
    ]
    hydrogen = actor_data("h2", ["public hydrogen electrolyser research"], name="Hydrogen Lab")
    hydrogen["documents"].append(
        {"id": "plan", "kind": "self_assessment", "text": SECRET, "visibility": "private"}
    )
    hydrogen["documents"].append(
        {
            "id": "needs",
            "kind": "workshop_note",
            "text": "we need offshore wind turbine blade recycling partners",
            "intent": "need",
        }
    )
    other = actor_data("bakery", ["sourdough bakery"], country="FR", kind="other")
    return [*made, Actor.parse(hydrogen), Actor.parse(other)]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    keyfile = KeyFile(path)
    return path, {
        "a": keyfile.create(("read", "write"), "agency-a"),
        "b": keyfile.create(("read",), "agency-b"),
    }


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, keys: tuple[Path, dict[str, str]]
) -> Iterator[Served]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), keys_file=keys[0])
    runtime = Runtime(settings, embedder=FakeEmbedder())
    runtime.ingestor.upsert(actors(), Owner("agency-a"))
    runtime.reindexer.run()
    with Served(runtime) as served:
        yield served


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(chromium.CHROMIUM, os.X_OK):
        message = f"{chromium.CHROMIUM} is missing; `make install-dev` installs Debian's chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = chromium.launch(playwright)
        yield launched
        launched.close()


def signed_in(browser: Any, key: str | None, **options: Any) -> Any:
    """A page whose browser session already holds `key` (as after the sign-in dialog)."""
    context = browser.new_context(accept_downloads=True, **options)
    if key:
        context.add_init_script(f"sessionStorage.setItem('clustermatch.key', {key!r})")
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


def test_sign_in_once_and_another_tenants_private_passage_is_absent(
    browser: Any, server: Served, keys: tuple[Path, dict[str, str]]
) -> None:
    page = signed_in(browser, None)
    page.goto(f"{server.url}/?q=confidential+electrolyser+membrane+roadmap")
    dialog = page.get_by_role("dialog", name="Sign in")
    dialog.wait_for()
    page.get_by_label("API key").fill("cm_wrong_key")
    page.keyboard.press("Enter")
    page.get_by_text("That key was not accepted").wait_for()
    page.get_by_label("API key").fill(keys[1]["b"])
    page.get_by_role("button", name="Sign in").click()
    first = page.locator(".cards .card").first
    first.wait_for()
    assert "Hydrogen Lab" in first.inner_text(), "found by its public passage (electrolyser)"
    assert SECRET not in page.content()
    page.goto(f"{server.url}/actors/h2")
    page.get_by_role("heading", name="Hydrogen Lab").wait_for()
    assert not dialog.is_visible(), "asked once per browser session"
    assert SECRET not in page.content()
    page.get_by_text("1 more document is not visible to you").wait_for()

    owner = signed_in(browser, keys[1]["a"])
    owner.goto(f"{server.url}/actors/h2")
    owner.get_by_text(SECRET).wait_for()
    owner.get_by_role("heading", name="Self-assessments (1)").wait_for()
    owner.locator(".document .badge.vis-private").wait_for()
    page.context.close()
    owner.context.close()


def test_search_with_a_facet_by_keyboard(
    browser: Any, server: Served, keys: tuple[Path, dict[str, str]]
) -> None:
    page = signed_in(browser, keys[1]["b"])
    page.goto(server.url)
    search = page.get_by_label("Search actors by competence or by name")
    search.focus()
    page.keyboard.type("wind turbine blade")
    page.keyboard.press("Enter")
    page.locator(".cards .card").first.wait_for()
    assert page.locator(".cards .card").count() == 10
    assert page.locator(".card mark").count() > 0, "shared key terms are highlighted"
    germany = page.locator(".facet").filter(has_text="Country").get_by_label("DE")
    assert "2" in germany.locator("xpath=..").inner_text()
    germany.check()
    page.wait_for_url("**country=DE**")
    expect(page.locator(".cards .card")).to_have_count(2)
    assert {c.inner_text() for c in page.locator(".card .facts .badge").all()} >= {"DE"}
    assert page.url.endswith("/?q=wind+turbine+blade&country=DE")
    # A shared link renders the same search.
    shared = signed_in(browser, keys[1]["b"])
    shared.goto(page.url)
    shared.locator(".cards .card").first.wait_for()
    assert shared.locator(".cards .card").count() == 2
    page.context.close()
    shared.context.close()


def test_name_lookup_is_part_of_search(
    browser: Any, server: Served, keys: tuple[Path, dict[str, str]]
) -> None:
    page = signed_in(browser, keys[1]["b"])
    page.goto(f"{server.url}/?q=Hydrogen+Lab")
    named = page.locator(".named")
    named.get_by_role("link", name="Hydrogen Lab").click()
    page.wait_for_url("**/actors/h2")
    page.get_by_role("heading", name="Hydrogen Lab").wait_for()
    page.context.close()


def test_actor_page_shortlist_and_csv_export(
    browser: Any, server: Served, keys: tuple[Path, dict[str, str]]
) -> None:
    page = signed_in(browser, keys[1]["b"])
    page.goto(f"{server.url}/?q=wind+turbine+blade")
    page.locator(".cards .card h3 a").first.click()
    page.wait_for_url("**/actors/**")
    page.locator(".mode-similar .card").first.wait_for()
    name = page.locator("h1").inner_text()
    assert page.locator(".mode-similar .card .reason").first.inner_text().startswith("Shares")
    cards = page.locator(".mode-similar .card")
    chosen = [cards.nth(i).locator("h3").inner_text() for i in (0, 1)]
    for i in (0, 1):
        cards.nth(i).get_by_role("button", name="Add to shortlist").click()
    assert page.locator("#shortlist-count").inner_text() == "2"
    page.get_by_role("link", name="Shortlist").click()
    page.wait_for_url("**/shortlist")
    page.get_by_label(f"Note on {chosen[0]}").fill("meet at the wind workshop")
    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["name"] for r in rows] == chosen
    assert rows[0]["note"] == "meet at the wind workshop" and rows[1]["note"] == ""
    assert all(r["suggested_for"] == f"similar to {name}" for r in rows)
    assert all(r["link"].startswith(f"{server.url}/actors/") and r["reason"] for r in rows)
    page.reload()
    assert page.get_by_label(f"Note on {chosen[0]}").input_value() == "meet at the wind workshop"
    page.context.close()


def test_feedback_persists_after_a_reload(
    browser: Any, server: Served, keys: tuple[Path, dict[str, str]]
) -> None:
    page = signed_in(browser, keys[1]["b"])
    page.goto(f"{server.url}/actors/wind-0")
    cards = page.locator(".mode-similar .card")
    cards.first.wait_for()
    contacted = cards.nth(0).get_attribute("data-actor")
    dismissed = cards.nth(1).get_attribute("data-actor")
    cards.nth(0).get_by_role("button", name="Contacted").click()
    button = f".mode-similar .card[data-actor='{contacted}'] button[data-label=contacted]"
    page.wait_for_selector(f"{button}[aria-pressed=true]")
    cards.nth(1).get_by_role("button", name="Not relevant").click()
    page.get_by_text("will not be suggested here again").wait_for()
    page.reload()
    page.locator(".mode-similar .card").first.wait_for()
    pressed = page.locator(button).get_attribute("aria-pressed")
    assert pressed == "true", "the label came back from the API"
    shown = [c.get_attribute("data-actor") for c in page.locator(".mode-similar .card").all()]
    assert dismissed not in shown
    page.get_by_label("New contacts only").check()
    page.wait_for_url("**new=1**")
    expect(page.locator(f".mode-similar .card[data-actor='{contacted}']")).to_have_count(0)
    shown = [c.get_attribute("data-actor") for c in page.locator(".mode-similar .card").all()]
    assert "wind-1" not in shown, "known partners are left out"
    complement = page.locator(".mode-complement")
    complement.get_by_text("states no needs").wait_for()
    page.context.close()


def test_complementary_suggestions(
    browser: Any, server: Served, keys: tuple[Path, dict[str, str]]
) -> None:
    page = signed_in(browser, keys[1]["b"])
    page.goto(f"{server.url}/actors/h2")
    page.locator(".mode-complement .card").first.wait_for()
    assert page.locator(".mode-complement .card .reason").first.inner_text()
    page.context.close()


def test_map_renders_and_is_clickable(
    browser: Any, server: Served, keys: tuple[Path, dict[str, str]]
) -> None:
    page = signed_in(browser, keys[1]["b"])
    page.goto(f"{server.url}/map")
    page.wait_for_selector("svg.map circle", timeout=60_000)
    assert page.locator("svg.map circle").count() == 10
    page.get_by_label("Colour by").select_option("country")
    assert "AT (3)" in page.locator(".legend").inner_text()
    page.get_by_label("Find actors on the map").fill("hydrogen")
    page.locator(".found").get_by_role("link", name="Hydrogen Lab").wait_for()
    page.locator("svg.map circle[data-id='h2']").click()
    page.wait_for_url("**/actors/h2")
    page.get_by_role("heading", name="Hydrogen Lab").wait_for()
    page.context.close()


@pytest.mark.parametrize("path", ["/?q=wind+turbine+blade", "/actors/h2", "/map", "/shortlist"])
def test_phone_width_has_no_sideways_scrolling(
    browser: Any, server: Served, keys: tuple[Path, dict[str, str]], path: str
) -> None:
    page = signed_in(browser, keys[1]["b"], viewport={"width": 390, "height": 844})
    page.goto(f"{server.url}{path}")
    page.wait_for_load_state("networkidle")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.context.close()


def test_an_empty_store_says_how_to_load_data(browser: Any, tmp_path: Path) -> None:
    runtime = Runtime(Settings(data_dir=tmp_path / "data"), embedder=FakeEmbedder())
    with Served(runtime) as empty:
        page = signed_in(browser, None)
        page.goto(f"{empty.url}/?q=wind")
        page.get_by_role("heading", name="No actors yet").wait_for()
        assert "clustermatch demo" in page.inner_text("main")
        page.goto(f"{empty.url}/actors/nobody")
        page.locator(".problem").get_by_text("does not exist").wait_for()
        page.context.close()
