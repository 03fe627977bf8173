"""Profile validation: every bad field is named, good profiles round-trip."""

from __future__ import annotations

from typing import Any

import pytest

from service.domain import MAX_TEXT_CHARS, Actor
from service.errors import InvalidInput
from tests.factories import actor_data


def problems(data: Any) -> dict[str, str]:
    with pytest.raises(InvalidInput) as info:
        Actor.parse(data)
    return {p.field: p.message for p in info.value.problems}


def test_valid_profile_is_normalised() -> None:
    data = actor_data("acme", ["We build wind turbine blades."], country="uk", region="at31")
    data["sectors"] = ["c28", "28.11", "C28"]
    actor = Actor.parse(data)
    assert actor.country == "GB"  # EU convention mapped to ISO
    assert actor.region == "AT31"
    assert actor.sectors == ("C28", "28.11")  # upper-cased, de-duplicated, order kept
    assert actor.documents[0].visibility == "public"


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"kind": "startup"}, "kind", "startup"),
        ({"country": "XX"}, "country", "ISO 3166"),
        ({"country": 7}, "country", "ISO 3166"),
        ({"region": "Vienna"}, "region", "NUTS"),
        ({"sectors": ["wind"]}, "sectors", "NACE"),
        ({"url": "ftp://x"}, "url", "pattern"),
        ({"documents": []}, "documents", "at least 1"),
        ({"colour": "red"}, "colour", "unknown field"),
        ({"id": "has space"}, "id", "pattern"),
    ],
)
def test_bad_actor_fields_are_named(change: dict[str, Any], field: str, fragment: str) -> None:
    data = actor_data("acme", ["text"]) | change
    found = problems(data)
    assert field in found, found
    assert fragment in found[field]


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"text": ""}, "documents[0].text", "at least 1"),
        ({"text": "   "}, "documents[0].text", "at least 1"),
        ({"text": "x" * (MAX_TEXT_CHARS + 1)}, "documents[0].text", "at most"),
        ({"kind": "tweet"}, "documents[0].kind", "tweet"),
        ({"visibility": "secret"}, "documents[0].visibility", "secret"),
        ({"language": "english"}, "documents[0].language", "pattern"),
        ({"codes": ["F03D 1/06"]}, "documents[0]", "only documents of kind 'patent'"),
    ],
)
def test_bad_document_fields_are_named(change: dict[str, Any], field: str, fragment: str) -> None:
    data = actor_data("acme", ["text"])
    data["documents"][0] |= change
    found = problems(data)
    assert field in found, found
    assert fragment in found[field]


def test_patent_codes_are_checked() -> None:
    data = actor_data("acme", ["text"])
    data["documents"][0] |= {"kind": "patent", "codes": ["f03d 1/06", "H01L"]}
    assert Actor.parse(data).documents[0].codes == ("F03D 1/06", "H01L")
    data["documents"][0]["codes"] = ["not-a-class"]
    assert "not-a-class" in problems(data)["documents[0].codes"]


def test_duplicate_document_ids_rejected() -> None:
    data = actor_data("acme", ["one", "two"])
    data["documents"][1]["id"] = "d0"
    assert "duplicate document id" in " ".join(problems(data).values())


def test_non_object_rejected() -> None:
    assert "JSON object" in problems(["not", "an", "object"])[""]
