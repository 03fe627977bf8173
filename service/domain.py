"""The values clustermatch works with: actor profiles, their documents, chunks and matches.

Profiles are validated here, once, for every entry point (CLI file, HTTP body, bulk import): a
profile that constructs is a profile the store accepts. Validation problems come out as one
`InvalidInput` naming each bad field (`documents[1].text: must not be empty`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from service.countries import EU_TO_ISO, ISO_3166_ALPHA2, normalise_country
from service.errors import FieldProblem, InvalidInput

# Limits that keep one profile from starving the service. They are deliberately generous for real
# profiles (the largest CORDIS 2014 organisation has 130 projects) and enforced on every path.
MAX_TEXT_CHARS = 100_000
MAX_DOCUMENTS_PER_ACTOR = 1_000
MAX_NAME_CHARS = 500
MAX_PARTNERS = 5_000
"""Known partners per profile; the same bound as a match's `exclude_actors`, which they feed."""

IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$"
NUTS_CODE = re.compile(r"^[A-Z]{2}[0-9A-Z]{0,3}$")
NACE_CODE = re.compile(r"^(?:[A-U](?:\d{2}(?:\.\d{1,2})?)?|\d{2}(?:\.\d{1,2})?)$")
# The same codes as the JSON schema states them: before trimming and upper-casing.
NUTS_SCHEMA_PATTERN = r"^\s*[A-Za-z]{2}[0-9A-Za-z]{0,3}\s*$"
OPTIONAL_NUTS_SCHEMA_PATTERN = r"^\s*(?:[A-Za-z]{2}[0-9A-Za-z]{0,3})?\s*$"
"""A profile's region may be "" (read as unknown)."""
NACE_SCHEMA_PATTERN = r"^\s*(?:[A-Ua-u](?:\d{2}(?:\.\d{1,2})?)?|\d{2}(?:\.\d{1,2})?)\s*$"
PATENT_CLASS = re.compile(r"^[A-HY]\d{2}[A-Z](?:\s?\d{1,4}/\d{1,6})?$")

Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER)]
NOT_BLANK: dict[str, Any] = {"pattern": r"\S"}
"""Texts are trimmed before `min_length` applies: one non-space character is what it takes."""
# What the validators below check, said in the JSON schema as far as JSON Schema can say it, so
# that a request valid by the published schema is one the service accepts.
CountrySchema = WithJsonSchema(
    {
        "anyOf": [
            {"type": "string", "enum": ["", *sorted(ISO_3166_ALPHA2 | set(EU_TO_ISO))]},
            {"type": "null"},
        ],
        "description": "ISO 3166 alpha-2 (UK and EL are read as GB and GR); null or "
        "empty if unknown",
    }
)
RegionSchema = WithJsonSchema(
    {"anyOf": [{"type": "string", "pattern": OPTIONAL_NUTS_SCHEMA_PATTERN}, {"type": "null"}]}
)
SectorSchema = WithJsonSchema(
    {"type": "array", "items": {"type": "string", "pattern": NACE_SCHEMA_PATTERN}}
)
PatentClass = Annotated[
    str,
    # The check itself is `Document._patent_classes` (after trimming and upper-casing); the
    # schema states the same, case-insensitively, so generated clients send valid codes.
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\s*[A-HYa-hy]\d{2}[A-Za-z](?:\s?\d{1,4}/\d{1,6})?\s*$",
            "examples": ["F03D 1/06"],
        }
    ),
]


class ActorKind(StrEnum):
    COMPANY = "company"
    RESEARCH = "research"
    UNIVERSITY = "university"
    CLUSTER = "cluster"
    PUBLIC = "public"
    OTHER = "other"


class DocumentKind(StrEnum):
    DESCRIPTION = "description"
    WORKSHOP_NOTE = "workshop_note"
    PATENT = "patent"
    SELF_ASSESSMENT = "self_assessment"


class Visibility(StrEnum):
    PUBLIC = "public"
    NETWORK = "network"
    PRIVATE = "private"


class Intent(StrEnum):
    OFFER = "offer"
    NEED = "need"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Document(_Strict):
    """One text about an actor: a description, workshop note, patent abstract or self-assessment."""

    id: Identifier
    kind: DocumentKind
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, json_schema_extra=NOT_BLANK)
    title: str | None = Field(default=None, max_length=1_000)
    language: str | None = Field(default=None, pattern=r"^[a-z]{2}$")
    visibility: Visibility = Visibility.PUBLIC
    intent: Intent | None = None
    codes: tuple[PatentClass, ...] = ()

    @field_validator("codes")
    @classmethod
    def _patent_classes(cls, codes: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(c.strip().upper() for c in codes)
        bad = [raw for raw, c in zip(codes, cleaned, strict=True) if not PATENT_CLASS.match(c)]
        if bad:
            raise ValueError(f"not CPC/IPC classes: {', '.join(bad)} (expected e.g. F03D 1/06)")
        return cleaned

    @model_validator(mode="after")
    def _codes_only_on_patents(self) -> Document:
        if self.codes and self.kind is not DocumentKind.PATENT:
            raise ValueError("codes: only documents of kind 'patent' carry CPC/IPC codes")
        return self


class ProfileFields(_Strict):
    """Everything of an actor profile except its id (the HTTP API takes the id from the path)."""

    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS, json_schema_extra=NOT_BLANK)
    kind: ActorKind
    country: Annotated[str | None, CountrySchema] = None
    """ISO 3166 alpha-2; None where unknown (71 of 5,752 CORDIS organisations give none). An
    unknown country matches no country filter and is never "the same" as another unknown."""
    region: Annotated[str | None, RegionSchema] = None
    sectors: Annotated[tuple[str, ...], SectorSchema] = ()
    clusters: tuple[Identifier, ...] = ()
    url: str | None = Field(default=None, max_length=2_000, pattern=r"^https?://\S+$")
    documents: tuple[Document, ...] = Field(min_length=1, max_length=MAX_DOCUMENTS_PER_ACTOR)
    partners: tuple[Identifier, ...] = Field(default=(), max_length=MAX_PARTNERS)
    """Ids of actors this one has already worked with (they need not be stored); the workspace
    leaves them out of "new contacts only" suggestions."""

    @field_validator("country", mode="before")
    @classmethod
    def _iso_country(cls, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("must be an ISO 3166 alpha-2 code such as AT")
        if not value.strip():
            return None
        code = normalise_country(value)
        if code not in ISO_3166_ALPHA2:
            raise ValueError(f"{value!r} is not an ISO 3166 alpha-2 country code (e.g. AT, DE, IT)")
        return code

    @field_validator("region", mode="before")
    @classmethod
    def _nuts_region(cls, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("must be a NUTS code such as AT31")
        code = value.strip().upper()
        if not code:
            return None
        if not NUTS_CODE.match(code):
            raise ValueError(f"{value!r} is not a NUTS code (e.g. AT3, DE21, ITC4C)")
        return code

    @field_validator("sectors", mode="before")
    @classmethod
    def _nace_sectors(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple):
            return value
        if not all(isinstance(v, str) for v in value):
            raise ValueError("must be a list of NACE Rev.2 codes such as C28")
        codes = [v.strip().upper() for v in value]
        bad = [c for c in codes if not NACE_CODE.match(c)]
        if bad:
            raise ValueError(f"not NACE Rev.2 codes: {', '.join(bad)} (expected e.g. C28, 28.11)")
        return tuple(dict.fromkeys(codes))

    @field_validator("partners")
    @classmethod
    def _unique_partners(cls, partners: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(partners))

    @field_validator("documents")
    @classmethod
    def _unique_document_ids(cls, documents: tuple[Document, ...]) -> tuple[Document, ...]:
        seen: set[str] = set()
        for doc in documents:
            if doc.id in seen:
                raise ValueError(f"duplicate document id {doc.id!r}")
            seen.add(doc.id)
        return documents


class Actor(ProfileFields):
    """A company, research institute, university, cluster or public body, with its documents."""

    id: Identifier

    @model_validator(mode="after")
    def _not_its_own_partner(self) -> Actor:
        if self.id in self.partners:
            raise ValueError("partners: an actor cannot be its own partner")
        return self

    @classmethod
    def parse(cls, data: Any) -> Actor:
        """Validate `data` (a decoded JSON object) into an Actor or raise `InvalidInput`."""
        if not isinstance(data, dict):
            raise InvalidInput([FieldProblem("", "a profile must be a JSON object")])
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidInput(problems_from(exc)) from None


def problems_from(exc: ValidationError) -> list[FieldProblem]:
    """Turn pydantic's errors into `FieldProblem`s with JSON-path-like field names."""
    problems = []
    for error in exc.errors():
        path = ""
        for part in error["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "enum":
            message = f"{error['input']!r} is not allowed; {error['msg'].lower()}"
        problems.append(FieldProblem(path, message))
    return problems


# --- derived values -------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """A passage of one document, small enough for the model's token window.

    `id` is the store's stable int64 id; it doubles as the FAISS id of the chunk's vector.
    """

    id: int
    actor_id: str
    document_id: str
    ordinal: int
    text: str
    content_hash: str
    language: str


@dataclass(frozen=True)
class Owner:
    """Who wrote an actor: the tenant of the writing API key and that key's networks.

    Profiles written by the CLI or an open (keyless) service belong to the tenant `local`.
    """

    tenant: str = "local"
    networks: tuple[str, ...] = ()


VISIBILITY_LEVEL: dict[str, int] = {"public": 0, "network": 1, "private": 2}
"""How far a reader must reach into an actor's passages to see one of this visibility (an unknown
value counts as private)."""
PrivateInMatching = Literal["none", "own", "all"]
PRIVATE_IN_MATCHING: tuple[PrivateInMatching, ...] = ("none", "own", "all")


@dataclass(frozen=True)
class Viewer:
    """Who is asking, which decides whose passages may be shown and which may count.

    Shown (evidence, `GET /v1/actors/{id}`):
    - `public` text to everyone;
    - `network` text to the owner's tenant and to tenants sharing one of the owner's networks;
    - `private` text only to the owner's tenant.
    `tenant=None` is the operator (CLI, open loopback service), who sees everything.

    Counted: free-text search ranks an actor only by the passages the viewer may see (lexical and
    vector alike), so a score is no oracle for hidden text. Actor-to-actor matching may also use
    passages the viewer cannot see, by vector similarity only, where their owner's tenant says so
    (`private_in_matching`, see `service.keys`): `own` (the default) counts a tenant's private
    passages in its own matches only, `all` in everyone's, `none` in no one's.
    """

    tenant: str | None = None
    networks: frozenset[str] = frozenset()
    own_private_in_matching: bool = True
    """False when this viewer's own tenant set `private_in_matching: none`."""
    shared_by: frozenset[str] = frozenset()
    """Tenants that set `private_in_matching: all`: every passage of theirs counts in this
    viewer's actor matching (their hidden texts are still never shown)."""

    def level(self, owner: Owner, matching: bool = False) -> int:
        """How far into `owner`'s passages this viewer reaches (see `VISIBILITY_LEVEL`): to see
        them (`matching=False`, also what counts in free-text search), or to let them count in
        actor-to-actor matching. `ReadModel.levels` is the array twin of this rule."""
        if self.tenant is None:
            return 2
        if self.tenant == owner.tenant:
            return 2 if not matching or self.own_private_in_matching else 1
        if matching and owner.tenant in self.shared_by:
            return 2
        return 0 if self.networks.isdisjoint(owner.networks) else 1

    def can_see(self, visibility: str, owner: Owner) -> bool:
        return VISIBILITY_LEVEL.get(visibility, 2) <= self.level(owner)

    def counts_in_matching(self, visibility: str, owner: Owner) -> bool:
        return VISIBILITY_LEVEL.get(visibility, 2) <= self.level(owner, matching=True)


OPERATOR = Viewer()


@dataclass(frozen=True)
class ActorSummary:
    """The part of an actor that a match result shows (and whose evidence it may show)."""

    id: str
    name: str
    kind: str
    country: str | None
    region: str | None
    sectors: tuple[str, ...]
    clusters: tuple[str, ...] = ()
    owner: Owner = field(default_factory=Owner)


@dataclass(frozen=True)
class Evidence:
    """A passage of the matched actor that supports the match, with its similarity."""

    document_id: str
    document_kind: str
    text: str
    score: float
    query_text: str | None = None
    """The query passage this evidence answers best (None where the viewer may not see it)."""
    language: str = "en"
    query_language: str | None = "en"
    """None for a free-text query: its language is detected only when it is needed (explain)."""
    key_terms: tuple[str, ...] = ()
    """Shared lemmatised terms, most telling first (filled by `Matcher.explain`)."""


@dataclass(frozen=True)
class Match:
    actor: ActorSummary
    score: float
    evidence: tuple[Evidence, ...] = field(default_factory=tuple)
    also: tuple[ActorSummary, ...] = ()
    """Further actors whose best evidence is this very passage (the partners of one project
    share its text): one suggestion, not N near-copies."""
    similarity: float | None = None
    """The text score alone where `score` also holds non-text signals (None: `score` is it)."""
    shared_partners: tuple[str, ...] = ()
    """Ids of known partners of both the query actor and this one (the network signal)."""
    shared_partner_names: tuple[str, ...] = ()
    """Their names, in the same order (what a cluster manager asks for an introduction)."""
