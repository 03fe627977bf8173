"""The competence map as an image for reports: `clustermatch map --out map.png` (or .svg, .pdf).

matplotlib is imported when a map is drawn, never at import time, and draws without a display.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from service.domain import ActorSummary
from service.projection import Projection

ColourBy = Literal["kind", "country", "sector", "cluster"]
FORMATS = (".png", ".svg", ".pdf")
MAX_COLOURS = 10
"""Categories beyond the ten largest share one grey: more hues cannot be told apart."""
REST = "(all others)"
METHOD_NAMES = {"tsne": "t-SNE", "pca": "PCA"}
NONE = "(none)"


def category(actor: ActorSummary, colour_by: ColourBy) -> str:
    """The value an actor is coloured by; the first sector or cluster when it has several."""
    if colour_by == "kind":
        return actor.kind
    if colour_by == "country":
        return actor.country or NONE
    values = actor.sectors if colour_by == "sector" else actor.clusters
    return values[0] if values else NONE


def legend_order(values: Sequence[str]) -> list[str]:
    """The largest categories (at most `MAX_COLOURS`), biggest first."""
    return [value for value, _ in Counter(values).most_common(MAX_COLOURS)]


def render(
    projection: Projection,
    actors: dict[str, ActorSummary],
    out: Path,
    colour_by: ColourBy = "kind",
    title: str | None = None,
) -> int:
    """Draw the map into `out` (format from its suffix); returns how many actors it shows."""
    if out.suffix.lower() not in FORMATS:
        from service.errors import FieldProblem, InvalidInput

        raise InvalidInput([FieldProblem("--out", f"end the file name in {', '.join(FORMATS)}")])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [(a, xy) for a, xy in zip(projection.ids, projection.xy, strict=True) if a in actors]
    values = [category(actors[a], colour_by) for a, _ in shown]
    named = legend_order(values)
    palette = plt.get_cmap("tab10")
    figure, axes = plt.subplots(figsize=(10, 8), dpi=150)
    groups: list[tuple[str, Any, list[str]]] = [
        (value, palette(n % 10), [value]) for n, value in enumerate(named)
    ]
    rest = sorted(set(values) - set(named))
    if rest:
        groups.append((REST, "#b0b0b0", rest))
    for label, colour, members in groups:
        points = [xy for (_, xy), value in zip(shown, values, strict=True) if value in members]
        axes.scatter(
            [p[0] for p in points],
            [p[1] for p in points],
            s=6,
            color=colour,
            alpha=0.75,
            linewidths=0,
            label=f"{label} ({len(points):,})",
        )
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(
        title
        or f"Competence map: {len(shown):,} actors, generation {projection.generation} "
        f"({METHOD_NAMES.get(projection.method, projection.method)} of profile vectors)",
        fontsize=10,
    )
    axes.legend(
        title=colour_by, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, markerscale=2
    )
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)
    return len(shown)
