"""A need's suppliers and consortia as text for people (`clustermatch need`) and as JSON."""

from __future__ import annotations

from typing import Any

from service.needs import AspectEvidence, NeedResult

EXCERPT = 140


def _clip(text: str) -> str:
    return text if len(text) <= EXCERPT else text[: EXCERPT - 1].rstrip() + "…"


def _evidence(items: tuple[AspectEvidence, ...]) -> list[str]:
    return [f"      [{e.aspect}] {e.evidence.score:.3f} “{_clip(e.evidence.text)}”" for e in items]


def as_text(result: NeedResult) -> str:
    lines = ["aspects:"]
    lines += [f"  [{i}] {_clip(a)}" for i, a in enumerate(result.aspects)]
    lines.append(f"suppliers (an aspect counts covered from {result.coverage.above:.2f}):")
    for n, s in enumerate(result.suppliers, start=1):
        covers = ", ".join(map(str, s.covers)) or "none"
        lines.append(f"  {n:>2}. {s.score:.3f}  {s.actor.name} ({s.actor.id}) covers {covers}")
        if s.also:
            lines.append(f"      with the same text: {', '.join(a.name for a in s.also)}")
        lines += _evidence(s.evidence)
    if not result.consortia:
        lines.append("consortia: none (no second actor adds a covered aspect)")
    for n, c in enumerate(result.consortia, start=1):
        missing = ", ".join(map(str, c.uncovered)) or "none"
        lines.append(
            f"consortium {n}: covers {len(c.covered)}/{len(result.aspects)}, "
            f"uncovered {missing}, score {c.score:.3f}"
        )
        for m in c.members:
            lines.append(
                f"    {m.actor.name} ({m.actor.id}) covers {', '.join(map(str, m.covers))}"
            )
    return "\n".join(lines)


def as_json(result: NeedResult) -> dict[str, Any]:
    """The same names as `POST /v1/needs/match` answers."""
    from service.api.schemas_workflows import need_out

    payload: dict[str, Any] = need_out(result).model_dump(mode="json")
    return payload
