"""One hierarchy of domain errors.

Every error a user can cause or meet derives from `ClusterMatchError`. The HTTP layer maps these
classes to status codes in exactly one place (`service.api.errors`); the CLI prints `str(error)`.
Nothing here knows about HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with one field of an input, e.g. `documents[2].text: must not be empty`."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class ClusterMatchError(Exception):
    """Base of every error clustermatch raises on purpose."""


class InvalidInput(ClusterMatchError):
    """The caller sent something that fails validation; `problems` names each bad field."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems) or "invalid input")


class NotFound(ClusterMatchError):
    """A named thing (actor, generation, job) does not exist."""


class Conflict(ClusterMatchError):
    """The request is valid but clashes with the current state (e.g. a rebuild already running)."""


class TooLarge(ClusterMatchError):
    """An input exceeds a configured size limit."""


class IndexUnavailable(ClusterMatchError):
    """No index generation is loaded yet, so matching cannot answer."""


class IndexMismatch(ClusterMatchError):
    """A saved index was built with a different model or dimension than the one configured."""


class CorruptArtifact(ClusterMatchError):
    """A saved file fails its checksum or cannot be parsed."""


class StoreSchemaError(ClusterMatchError):
    """The store's schema is older (or newer) than this release; the message names the fix."""


class ModelUnavailable(ClusterMatchError):
    """The configured embedding model cannot be loaded (package missing, files damaged)."""


class ComputeUnavailable(ClusterMatchError):
    """The compute cluster a job was sent to (Ray) is not installed, not reachable or failed."""


class MapUnavailable(ClusterMatchError):
    """The competence map of the served generation could not be computed."""


class Unauthorized(ClusterMatchError):
    """No credentials, or credentials that match no key."""


class Forbidden(ClusterMatchError):
    """Valid credentials without the right to do this (scope, or another tenant's actor)."""


class InsecureConfiguration(ClusterMatchError):
    """A file the service trusts (the keys file) is open to other users; `public_detail` is what
    a client is told (the message itself names the file and the fix, for the operator)."""

    public_detail = "the server's keys file is open to other users; its operator must fix that"


class RateLimited(ClusterMatchError):
    """A key sent more requests than its rate allows; `retry_after` seconds until the next one."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TimedOut(ClusterMatchError):
    """A request ran past its time budget and was abandoned between two steps."""
