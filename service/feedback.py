"""Feedback on suggestions, owned by a tenant, and what it changes about that tenant's results.

A suggestion is an actor shown in a *context*: the actor it was suggested for (an actor page, or a
search on behalf of an actor), or else a free-text search. A tenant's feedback is one label per
(context, suggested actor); a new label replaces the old one, so the store holds the current view
of each suggestion and the counts say how many suggestions led to contacts.

What it changes (only for the tenant that gave it):
- `not_relevant`: the actor is never suggested again in that context;
- `contacted` / `met`: the actor is a known contact, left out when "new contacts only" is asked
  for, together with the profile's own `partners`. In a plain search (no actor to search for) the
  manager is the one who made contact, so every actor the tenant contacted or met counts as known.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from service.errors import FieldProblem, InvalidInput
from service.text.normalise import normalise


class Label(StrEnum):
    RELEVANT = "relevant"
    CONTACTED = "contacted"
    MET = "met"
    NOT_RELEVANT = "not_relevant"


CONTACT_LABELS = frozenset({Label.CONTACTED, Label.MET})


def context_of(for_actor: str | None, query: str | None) -> str:
    """`actor:<id>` when the suggestion was made for an actor, else `search:<normalised text>`."""
    if for_actor:
        return f"actor:{for_actor}"
    # A query of punctuation only (`***`) is still a search; keep it as typed then.
    text = normalise(query or "") or (query or "").strip().casefold()
    if not text:
        raise InvalidInput(
            [FieldProblem("for_actor", "give the actor it was suggested for, or the `query`")]
        )
    return f"search:{text}"


@dataclass(frozen=True)
class Feedback:
    tenant: str
    actor_id: str
    """The suggested actor."""
    label: Label
    for_actor: str | None = None
    query: str | None = None
    note: str = ""
    updated_at: str = ""

    @property
    def context(self) -> str:
        return context_of(self.for_actor, self.query)


@dataclass(frozen=True)
class FeedbackCounts:
    """One tenant's current labels, counted; `contact_rate` is the evaluation's headline: the
    share of suggestions with feedback that led to a contact or a meeting."""

    tenant: str
    labels: dict[str, int]

    @property
    def suggestions(self) -> int:
        return sum(self.labels.values())

    @property
    def contacts(self) -> int:
        return sum(self.labels.get(label, 0) for label in CONTACT_LABELS)

    @property
    def contact_rate(self) -> float:
        return round(self.contacts / self.suggestions, 4) if self.suggestions else 0.0
