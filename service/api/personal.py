"""What a tenant's own feedback and an actor's known partners take out of its suggestions.

Routes call these after building their filters, so the API and the workspace agree: an actor
marked `not_relevant` in a context is not suggested there again to that tenant, and "new contacts
only" leaves out the actor's `partners` and the tenant's contacts (see `service.feedback`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from service.errors import FieldProblem, InvalidInput, NotFound
from service.feedback import CONTACT_LABELS, Label, context_of
from service.keys import Principal
from service.store import ActorFilter, ProfileStore


def tailored(
    filters: ActorFilter,
    store: ProfileStore,
    principal: Principal,
    *,
    for_actor: str | None,
    query: str | None = None,
    new_contacts_only: bool = False,
    partners: Collection[str] = (),
) -> ActorFilter:
    """`filters` without what the caller's tenant dismissed in this context and, with
    `new_contacts_only`, without known partners and contacts. A posted profile (no stored actor,
    no query text) has no context: its own `partners` and all the tenant's contacts apply."""
    tenant = principal.tenant
    context = context_of(for_actor, query) if for_actor or query else None
    left_out: set[str] = set()
    if context is not None:
        left_out.update(store.feedback_actors(tenant, context, {Label.NOT_RELEVANT}))
    if new_contacts_only:
        if for_actor:
            left_out.update(store.partners_of(for_actor))
            left_out.update(store.feedback_actors(tenant, context, CONTACT_LABELS))
        else:  # the manager made the contacts, in whatever context
            left_out.update(partners)
            left_out.update(store.feedback_actors(tenant, None, CONTACT_LABELS))
    if not left_out:
        return filters
    return replace(filters, exclude_actor_ids=filters.exclude_actor_ids | left_out)


def searching_for(filters: ActorFilter, store: ProfileStore, for_actor: str | None) -> ActorFilter:
    """A free-text search on behalf of a stored actor: never the actor itself, and
    `exclude_same` relative to it (as in a match). Without one, `exclude_same` has nothing to
    compare with, which is an error rather than a silently ignored option."""
    if for_actor is None:
        if filters.exclude_same:
            raise InvalidInput(
                [FieldProblem("exclude_same", "needs `for_actor`, the actor to compare with")]
            )
        return filters
    summary = store.actor_summaries([for_actor]).get(for_actor)
    if summary is None:
        raise NotFound(f"actor {for_actor!r} does not exist")
    return replace(
        filters, reference=summary, exclude_actor_ids=filters.exclude_actor_ids | {for_actor}
    )
