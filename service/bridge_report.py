"""A bridge report as one self-contained HTML page (the plot embedded as a PNG), for a browser
and for printing to PDF: `clustermatch report bridges --from AT --to IT --out report.html`.

matplotlib is imported when the plot is drawn, never at import time, and draws headless. Every
text from the store is escaped; the page loads nothing from anywhere.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from service.bridges import BridgePair, BridgeReport, Passage, Theme
from service.domain import ActorSummary

if TYPE_CHECKING:
    from matplotlib.axes import Axes

EXCERPT_CHARS = 320
PLOT_THEMES = 10
SIDE_COLOURS = ("#1f5fa8", "#c2571a")


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit].rstrip(" ,;:") + " …"


def _short(name: str, limit: int = 34) -> str:
    return name if len(name) <= limit else name[: limit - 1].rstrip() + "…"


def plot_png(report: BridgeReport) -> bytes:
    """Left: the strongest pairs as a two-sided graph (line width by score). Right: the
    connecting themes, share of each side's actors using them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (graph, bars) = plt.subplots(
        1, 2, figsize=(12, 6.2), dpi=130, gridspec_kw={"width_ratios": [1.25, 1]}
    )
    _draw_pairs(graph, report)
    _draw_themes(bars, report)
    figure.suptitle(
        f"Bridges between {report.a.label} ({report.a_actors:,} actors) and "
        f"{report.b.label} ({report.b_actors:,} actors)",
        fontsize=11,
    )
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    plt.close(figure)
    return out.getvalue()


def _draw_pairs(ax: Axes, report: BridgeReport) -> None:
    left = list(dict.fromkeys(p.a.id for p in report.pairs))
    right = list(dict.fromkeys(p.b.id for p in report.pairs))
    names = {p.a.id: p.a.name for p in report.pairs} | {p.b.id: p.b.name for p in report.pairs}

    def y(ids: list[str], actor: str) -> float:
        return 1.0 - (ids.index(actor) + 0.5) / max(len(ids), 1)

    scores = [p.score for p in report.pairs] or [1.0]
    low, high = min(scores), max(scores)
    for pair in report.pairs:
        strength = (pair.score - low) / (high - low) if high > low else 1.0
        ax.plot(
            [0.0, 1.0],
            [y(left, pair.a.id), y(right, pair.b.id)],
            color="#555555",
            linewidth=0.6 + 3.4 * strength,
            alpha=0.35 + 0.5 * strength,
        )
    for ids, x, align, colour in (
        (left, 0.0, "right", SIDE_COLOURS[0]),
        (right, 1.0, "left", SIDE_COLOURS[1]),
    ):
        for actor in ids:
            ax.scatter([x], [y(ids, actor)], s=36, color=colour, zorder=3)
            offset = -0.03 if align == "right" else 0.03
            ax.text(
                x + offset, y(ids, actor), _short(names[actor]), ha=align, va="center", fontsize=7
            )
    ax.set_xlim(-0.9, 1.9)
    ax.set_ylim(0, 1)
    ax.axis("off")
    ax.set_title(
        f"Strongest cross pairs ({report.a.label} left, {report.b.label} right)", fontsize=9
    )


def _draw_themes(ax: Axes, report: BridgeReport) -> None:
    themes = report.connecting[:PLOT_THEMES][::-1]
    rows = range(len(themes))
    ax.barh(
        list(rows), [-100 * t.a_share for t in themes], color=SIDE_COLOURS[0], label=report.a.label
    )
    ax.barh(
        list(rows), [100 * t.b_share for t in themes], color=SIDE_COLOURS[1], label=report.b.label
    )
    ax.set_yticks(list(rows), [t.term for t in themes], fontsize=8)
    ax.axvline(0, color="#333333", linewidth=0.8)
    ticks = ax.get_xticks()
    ax.set_xticks(ticks, [f"{abs(t):.0f}%" for t in ticks], fontsize=7)
    ax.set_xlabel("share of the side's actors using the theme", fontsize=8)
    ax.set_title("Themes on both sides", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")


CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1b1b;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.meta { color: #555; font-size: .9em; }
.summary { background: #f3f6fa; border-left: 4px solid #1f5fa8; padding: .6em 1em; }
.summary li { margin: .2em 0; }
table { border-collapse: collapse; width: 100%; font-size: .92em; }
th, td { border-bottom: 1px solid #ddd; padding: .35em .5em; text-align: left;
         vertical-align: top; }
th { background: #fafafa; }
td.num { text-align: right; white-space: nowrap; }
.a { color: #1f5fa8; } .b { color: #c2571a; }
.passage { color: #333; font-size: .92em; margin: .2em 0; }
.terms { color: #555; font-size: .88em; }
.columns { display: flex; gap: 2em; } .columns > div { flex: 1; }
figure { margin: 1em 0; } figure img { width: 100%; height: auto; }
.note { color: #555; font-size: .88em; }
@media print {
  body { margin: 0; max-width: none; font-size: 10.5pt; }
  @page { size: A4; margin: 14mm; }
  h2 { break-after: avoid; } tr, figure, .summary { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _actor(actor: ActorSummary, css: str, also: Sequence[ActorSummary] = ()) -> str:
    where = " · ".join(v for v in (actor.kind, actor.region or actor.country) if v)
    names = ", ".join(a.name for a in also)
    joined = f"<br><span class='terms'>with the same text: {_e(names)}</span>" if also else ""
    return (
        f'<strong class="{css}">{_e(actor.name)}</strong><br>'
        f'<span class="terms">{_e(where)}</span>{joined}'
    )


def _passage(passage: Passage) -> str:
    if passage.text is None:
        return '<div class="passage"><em>(a passage you may not see)</em></div>'
    kind = passage.document_kind and f" <span class='terms'>({_e(passage.document_kind)})</span>"
    return f'<div class="passage">“{_e(excerpt(passage.text))}”{kind}</div>'


def _pair_rows(pairs: Sequence[BridgePair]) -> Iterable[str]:
    for n, p in enumerate(pairs, start=1):
        terms = ", ".join(p.key_terms)
        yield (
            f"<tr><td class='num'>{n}</td>"
            f"<td>{_actor(p.a, 'a', p.a_also)}{_passage(p.a_passage)}</td>"
            f"<td>{_actor(p.b, 'b', p.b_also)}{_passage(p.b_passage)}</td>"
            f"<td class='num'>{p.score:.3f}</td>"
            f"<td class='terms'>{_e(terms) or '—'}</td></tr>"
        )


def _kinds(kinds: dict[str, int]) -> str:
    return ", ".join(f"{_e(k)} {n}" for k, n in kinds.items()) or "—"


def _theme_rows(themes: Sequence[Theme]) -> Iterable[str]:
    for t in themes:
        yield (
            f"<tr><td><strong>{_e(t.term)}</strong></td><td class='num'>{t.pairs or '—'}</td>"
            f"<td class='num a'>{t.a_actors} ({100 * t.a_share:.1f}%)</td>"
            f"<td class='num b'>{t.b_actors} ({100 * t.b_share:.1f}%)</td>"
            f"<td class='terms'>{_kinds(t.kinds)}</td></tr>"
        )


def _one_sided(themes: Sequence[Theme], a_side: bool) -> str:
    if not themes:
        return "<p class='note'>None: each frequent theme of this side occurs on the other.</p>"
    rows = "".join(
        f"<tr><td>{_e(t.term)}</td><td class='num'>"
        f"{t.a_actors if a_side else t.b_actors} "
        f"({100 * (t.a_share if a_side else t.b_share):.1f}%)</td></tr>"
        for t in themes
    )
    return f"<table><tr><th>theme</th><th>actors</th></tr>{rows}</table>"


def render_html(report: BridgeReport, png: bytes) -> str:
    a, b = report.a.label, report.b.label
    top = report.pairs[0] if report.pairs else None
    summary = [
        f"<li><span class='a'>{_e(a)}</span>: {report.a_actors:,} actors; "
        f"<span class='b'>{_e(b)}</span>: {report.b_actors:,} actors; "
        f"{report.known_partnerships:,} pairs across them already work together (left out "
        "below).</li>"
    ]
    if top is not None:
        summary.append(
            f"<li>Strongest pair: <strong>{_e(top.a.name)}</strong> and "
            f"<strong>{_e(top.b.name)}</strong> (score {top.score:.3f}"
            + (f"; shared terms: {_e(', '.join(top.key_terms[:3]))}" if top.key_terms else "")
            + ").</li>"
        )
    if report.connecting:
        summary.append(
            "<li>Themes on both sides: "
            + ", ".join(f"<strong>{_e(t.term)}</strong>" for t in report.connecting[:5])
            + ".</li>"
        )
    for label, themes, css in ((a, report.only_a, "a"), (b, report.only_b, "b")):
        if themes:
            summary.append(
                f"<li>Only in <span class='{css}'>{_e(label)}</span>: "
                + ", ".join(_e(t.term) for t in themes[:5])
                + ".</li>"
            )
    image = base64.b64encode(png).decode()
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Bridges: {_e(a)} – {_e(b)}</title>
<style>{CSS}</style>
</head>
<body>
<h1>Bridges between <span class="a">{_e(a)}</span> and <span class="b">{_e(b)}</span></h1>
<p class="meta">clustermatch bridge report · {_e(report.created_at)} · index generation
{_e(report.generation)} · model {_e(report.model)}</p>
<div class="summary"><ul>{"".join(summary)}</ul></div>

<figure><img alt="The strongest pairs between the two sides and the themes they share"
src="data:image/png;base64,{image}"></figure>

<h2>Who should meet whom: the strongest cross pairs</h2>
<p class="note">Each pair comes from the service's matching of one side's actor against the
other side; the passages are each actor's text that answers the other best, and the terms are
the key terms both passages use. Scores are cosine-based and comparable within this report.</p>
<table>
<tr><th>#</th><th class="a">{_e(a)}</th><th class="b">{_e(b)}</th><th>score</th>
<th>shared terms</th></tr>
{"".join(_pair_rows(report.pairs))}
</table>

<h2>Competence themes that connect the two sides</h2>
<p class="note">Key terms (lemmatised) that the passages of matched cross pairs share
("pairs": how many of the {report.candidate_pairs} pairs found), then terms both sides use
often. Actor counts: how many of each side's actors use the term; document kinds: where it
occurs.</p>
<table>
<tr><th>theme</th><th>pairs</th><th class="a">{_e(a)}</th><th class="b">{_e(b)}</th>
<th>document kinds</th></tr>
{"".join(_theme_rows(report.connecting))}
</table>

<h2>Present on one side, absent on the other</h2>
<div class="columns">
<div><h3 class="a">only in {_e(a)}</h3>{_one_sided(report.only_a, True)}</div>
<div><h3 class="b">only in {_e(b)}</h3>{_one_sided(report.only_b, False)}</div>
</div>

<h2>How to read this</h2>
<p class="note">Document kinds on each side: {_e(a)}: {_kinds(report.a_kinds)};
{_e(b)}: {_kinds(report.b_kinds)}. A theme "only" on one side is used by at least 1% of its
actors (at least two) and by none of the other side's. Only text the reader may see is counted
and quoted. Built from the served index generation; actors written since appear after the next
rebuild.</p>
</body>
</html>
"""


def write_files(report: BridgeReport, out: Path, plot: Path | None = None) -> tuple[Path, Path]:
    """The HTML page at `out` and its plot as a PNG beside it (`<out>.png` unless `plot`);
    each written whole (to a temporary name, then renamed)."""
    from service.errors import FieldProblem, InvalidInput

    if out.suffix.lower() not in (".html", ".htm"):
        raise InvalidInput([FieldProblem("--out", "end the file name in .html")])
    plot = plot or out.with_suffix(".png")
    png = plot_png(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot.parent.mkdir(parents=True, exist_ok=True)
    for path, data in ((plot, png), (out, render_html(report, png).encode("utf-8"))):
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(data)
        partial.replace(path)
    return out, plot
