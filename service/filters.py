"""Filter values as every entry point takes them: one spelling, one validation, one normalisation.

The HTTP query string (`?country=DE&kind=company`), the JSON body of `POST /v1/match`
(`"filters": {"country": ["DE"]}`) and the CLI (`--country DE`) all go through `Filters`, so a
value that one accepts the others accept, and a value that would silently match nothing
(`country=Germany`, `kind=startup`) is refused with the accepted values named. Codes are
normalised where a standard allows it: case, and the EU's `UK`/`EL` for ISO's `GB`/`GR`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from service.countries import EU_TO_ISO, ISO_3166_ALPHA2, normalise_country
from service.domain import (
    IDENTIFIER,
    NACE_CODE,
    NACE_SCHEMA_PATTERN,
    NUTS_CODE,
    NUTS_SCHEMA_PATTERN,
    ActorKind,
    problems_from,
)
from service.errors import FieldProblem, InvalidInput
from service.store import ActorFilter, SameAttribute

ACCEPTED_COUNTRIES: tuple[str, ...] = tuple(sorted(ISO_3166_ALPHA2 | set(EU_TO_ISO)))
KINDS: tuple[str, ...] = tuple(k.value for k in ActorKind)


def _country(value: Any) -> str:
    code = normalise_country(str(value))
    if code not in ISO_3166_ALPHA2:
        raise ValueError(
            f"{value!r} is not an ISO 3166 alpha-2 country code; use e.g. AT, DE, IT, SE, RO "
            "(UK and EL are accepted for GB and GR)"
        )
    return code


def _code(value: Any, pattern: re.Pattern[str], what: str) -> str:
    code = str(value).strip().upper()
    if not pattern.match(code):
        raise ValueError(f"{value!r} is not {what}")
    return code


def _region(value: Any) -> str:
    return _code(value, NUTS_CODE, "a NUTS code or prefix (e.g. AT3, DE21, ITC4C)")


def _kind(value: Any) -> str:
    kind = str(value).strip().lower()
    if kind not in KINDS:
        raise ValueError(f"{value!r} is not an actor kind; one of {', '.join(KINDS)}")
    return kind


def _sector(value: Any) -> str:
    return _code(value, NACE_CODE, "a NACE Rev.2 code (e.g. C28, 28.11)")


def _cluster(value: Any) -> str:
    text = str(value).strip()
    if not re.match(IDENTIFIER, text):
        raise ValueError(f"{value!r} is not a cluster id (letters, digits and ._:@/-)")
    return text


def split_values(values: Any) -> Any:
    """Repeated parameters (`?country=AT&country=DE`) or commas (`?country=AT,DE`)."""
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list | tuple):
        return values
    # An empty value (`?region=`) stays, and fails validation: it would match nothing.
    return [v.strip() for value in values for v in str(value).split(",")]


Country = Annotated[
    str,
    BeforeValidator(_country),
    WithJsonSchema(
        {
            "type": "string",
            "enum": list(ACCEPTED_COUNTRIES),
            "description": "ISO 3166 alpha-2, case-insensitive; UK and EL mean GB and GR",
        }
    ),
]
Region = Annotated[
    str,
    BeforeValidator(_region),
    WithJsonSchema({"type": "string", "pattern": NUTS_SCHEMA_PATTERN, "examples": ["AT3"]}),
]
Kind = Annotated[
    str, BeforeValidator(_kind), WithJsonSchema({"type": "string", "enum": list(KINDS)})
]
Sector = Annotated[
    str,
    BeforeValidator(_sector),
    WithJsonSchema({"type": "string", "pattern": NACE_SCHEMA_PATTERN, "examples": ["C28"]}),
]
Cluster = Annotated[
    str, BeforeValidator(_cluster), WithJsonSchema({"type": "string", "pattern": IDENTIFIER})
]

Countries = Annotated[list[Country], BeforeValidator(split_values)]
Regions = Annotated[list[Region], BeforeValidator(split_values)]
Kinds = Annotated[list[Kind], BeforeValidator(split_values)]
Sectors = Annotated[list[Sector], BeforeValidator(split_values)]
ClusterIds = Annotated[list[Cluster], BeforeValidator(split_values)]


def _named(name: str) -> AliasChoices:
    """The singular name everywhere; the plural the JSON body had before v1 settled on one
    spelling is still read, so no integration breaks."""
    return AliasChoices(name, f"{name}s" if not name.endswith("y") else f"{name[:-1]}ies")


class Filters(BaseModel):
    """Which actors may be returned: each given filter keeps actors matching any of its values,
    and all given filters must hold. Regions match by NUTS prefix (AT3 keeps AT31)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    country: Countries = Field(
        default_factory=list, validation_alias=_named("country"), examples=[["DE", "IT"]]
    )
    region: Regions = Field(
        default_factory=list, validation_alias=_named("region"), description="NUTS codes/prefixes"
    )
    kind: Kinds = Field(
        default_factory=list, validation_alias=_named("kind"), examples=[["company"]]
    )
    sector: Sectors = Field(
        default_factory=list, validation_alias=_named("sector"), description="NACE Rev.2 codes"
    )
    cluster: ClusterIds = Field(default_factory=list, validation_alias=_named("cluster"))

    @classmethod
    def parse(cls, prefix: str = "", **values: Iterable[str] | None) -> Filters:
        """Validate filter values given by name (CLI, query string), or raise `InvalidInput`
        naming each bad value as `<prefix><name>[i]`."""
        try:
            return cls.model_validate({k: list(v) for k, v in values.items() if v})
        except ValidationError as exc:
            problems = [FieldProblem(prefix + p.field, p.message) for p in problems_from(exc)]
            raise InvalidInput(problems) from None

    def to_actor_filter(
        self,
        exclude_same: Sequence[SameAttribute] = (),
        exclude_actors: Sequence[str] = (),
    ) -> ActorFilter:
        return ActorFilter(
            countries=tuple(dict.fromkeys(self.country)),
            regions=tuple(dict.fromkeys(self.region)),
            kinds=tuple(dict.fromkeys(self.kind)),
            sectors=tuple(dict.fromkeys(self.sector)),
            clusters=tuple(dict.fromkeys(self.cluster)),
            exclude_actor_ids=frozenset(exclude_actors),
            exclude_same=frozenset(exclude_same),
        )


class BodyFilters(Filters):
    """`Filters` in a JSON body, where every filter is a list of strings as the schema says:
    the bare string the query string allows (`?country=AT,DE`) is refused instead of split, and
    `null` or a number is not read as its text ("None")."""

    @model_validator(mode="before")
    @classmethod
    def _lists_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            bad = [
                k
                for k, v in data.items()
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v)
            ]
            if bad:
                raise ValueError(f"{', '.join(sorted(bad))}: give a list of strings")
        return data
