"""The collaboration network the profiles carry: partners of partners as a matching signal.

Every profile may list its known `partners` (actors it has already worked with). A generation
keeps them as an undirected graph over its read-model rows (CSR arrays `partner_start`,
`partner_rows`: an edge where either side lists the other; partners that are not in the
generation are left out). For actor matching the graph gives a second, switchable signal beside
the text score:

- **network score**: a personalised PageRank from the query actor, truncated to `PPR_STEPS`
  steps with restart `PPR_RESTART` (the random walk's mass after 1..4 hops through known
  partnerships), on a log scale. It is the classic link-prediction signal: organisations that
  share partners, or partners of partners, are likely to work together next. It is computed by
  pushing mass along the edges of the frontier only, so its cost is the number of edges within
  four hops of the query, never a pass over the whole catalogue.
- **evidence**: the partners the query and a suggestion share ("you both work with X and Y: ask
  them for an introduction"), returned with the match.

Only what the profiles say is used (the generation's partner lists), never anything else. Actors
written since the generation (the live delta) are not in the graph: their network score is the
floor until the next rebuild. See docs/evaluation.md for what the signal adds, and what part of
the gain is text and what is network.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from service.index.filerows import FileRows

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Edges = Ints | FileRows
"""`rows` of the CSR graph: in memory, or a generation's file read by ranges."""

PPR_RESTART = 0.15
PPR_STEPS = 4
"""Chosen on half A of the temporal evaluation (4 steps ranked as well as 30 there)."""
WALK_EDGES = 20_000
"""Edges the walk follows per step, at most: beyond, it follows the heaviest part of its
frontier (by mass) until the budget is spent and drops the rest of the mass, so a query's cost
is bounded by 4 x WALK_EDGES however dense the catalogue's hubs are (uncapped, one walk cost a
median 26 ms and a p90 of 131 ms on a 100,000-actor graph, BENCHMARKS.md). What is dropped is
the lightest mass, which ranks last anyway; the temporal evaluation's graph (613 actors) never
reaches the cap, so its figures are the uncapped walk's."""
PPR_FLOOR = 1e-6
"""The network score of an actor the walk never reaches is log(PPR_FLOOR)."""
SHARED_SHOWN = 5
"""Shared partners returned as evidence, at most."""


def partner_graph(
    actor_ids: Sequence[str], partners: Mapping[str, Iterable[str]]
) -> tuple[Ints, Ints]:
    """CSR (start, rows) of the undirected partner graph over `actor_ids` (the rows, in order):
    an edge where either actor lists the other; no self-loops, no duplicates, neighbours sorted."""
    row_of = {a: i for i, a in enumerate(actor_ids)}
    sources: list[int] = []
    targets: list[int] = []
    for actor, listed in partners.items():
        a = row_of.get(actor)
        if a is None:
            continue
        rows = [b for b in (row_of.get(p) for p in listed) if b is not None and b != a]
        sources += [a] * len(rows)
        targets += rows
    n = len(actor_ids)
    one_way = np.array(sources, dtype=np.int64), np.array(targets, dtype=np.int64)
    # Both directions, each edge once, ordered by (source, target): one key per edge.
    keys = np.unique(np.concatenate([one_way[0] * n + one_way[1], one_way[1] * n + one_way[0]]))
    if not len(keys):
        return np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    start = np.zeros(n + 1, dtype=np.int64)
    start[1:] = np.cumsum(np.bincount(keys // n, minlength=n))
    out_rows: Ints = keys % n
    return start, out_rows


def neighbours(start: Ints, rows: Edges, row: int) -> Ints:
    out: Ints = np.asarray(rows[start[row] : start[row + 1]], dtype=np.int64)
    return out


def personalised_pagerank(
    start: Ints,
    rows: Edges,
    source: int,
    restart: float = PPR_RESTART,
    steps: int = PPR_STEPS,
    max_edges: int | None = None,
    followed: list[int] | None = None,
) -> Floats:
    """The truncated personalised PageRank of every row from `source`: restart x the sum over
    t = 0..steps of the walk's distribution after t steps, each step moving (1 - restart) of
    the mass evenly to the neighbours (an actor without partners keeps none). Each step follows
    at most `max_edges` edges (default `WALK_EDGES`), from the heaviest frontier nodes first;
    `followed`, if given, receives the number of edges followed per step (tests count them)."""
    budget = WALK_EDGES if max_edges is None else max_edges
    n = len(start) - 1
    out = np.zeros(n, dtype=np.float64)
    if not 0 <= source < n:
        return out
    frontier: npt.NDArray[np.intp] = np.array([source], dtype=np.intp)
    mass: Floats = np.ones(1, dtype=np.float64)
    out[source] = restart
    for _ in range(steps):
        counts = start[frontier + 1] - start[frontier]  # the frontier's degrees only
        keep = counts > 0
        frontier, mass, counts = frontier[keep], mass[keep], counts[keep]
        if not len(frontier):
            break
        if int(counts.sum()) > budget:  # the heaviest nodes first, until the budget is spent
            take = _heaviest_within(mass, counts, budget)
            frontier, mass, counts = frontier[take], mass[take], counts[take]
        if followed is not None:
            followed.append(int(counts.sum()))
        targets = _edges(start, rows, frontier, counts)
        shares = np.repeat((1 - restart) * mass / counts, counts)
        frontier, mass = _spread(targets, shares, n)
        out[frontier] += restart * mass
    return out


def _heaviest_within(mass: Floats, counts: Ints, budget: int) -> Ints:
    """Positions of the heaviest nodes (by mass, ties by position) whose edges fit `budget`
    (at least one), heaviest first: the stable order of `-mass` cut where the edges run out.
    Only the nodes that can make the cut are sorted: a frontier of tens of thousands of nodes
    rarely needs more than a few hundred of them (20,000 edges), and sorting all of them was
    a sixth of the walk's time."""
    wanted = max(1, 2 * budget * len(counts) // int(counts.sum()))  # twice the mean node's share
    while True:
        if wanted >= len(mass):
            order: Ints = np.argsort(-mass, kind="stable")
        else:
            # Every node at least as heavy as the wanted-th heaviest, ties included, so the
            # stable sort below orders them exactly as a sort of the whole frontier would.
            threshold = -np.partition(-mass, wanted - 1)[wanted - 1]
            heavy = np.flatnonzero(mass >= threshold)
            order = heavy[np.argsort(-mass[heavy], kind="stable")]
        spent = np.cumsum(counts[order])
        if spent[-1] > budget or len(order) == len(mass):
            return order[: max(1, int(np.searchsorted(spent, budget, side="right")))]
        wanted *= 2


def _spread(targets: Ints, shares: Floats, n: int) -> tuple[Ints, Floats]:
    """The rows `targets` reach (ascending) and the sum of their `shares` (added in array order
    either way, so the sums are the same to the bit): by sorting the targets when they are few
    against the rows, else by one pass over every row."""
    if len(targets) * 8 < n:
        reached, inverse = np.unique(targets, return_inverse=True)
        summed = np.bincount(inverse.ravel(), weights=shares, minlength=len(reached))
        return reached, np.asarray(summed, dtype=np.float64)
    spread = np.asarray(np.bincount(targets, weights=shares, minlength=n), dtype=np.float64)
    frontier = np.flatnonzero(spread)
    return frontier, spread[frontier]


def _edges(start: Ints, rows: Edges, frontier: npt.NDArray[np.intp], counts: Ints) -> Ints:
    """The frontier's neighbours, node after node: its CSR ranges, flattened (read by ranges
    from a generation's file: only those edges, never the rest of the graph)."""
    if isinstance(rows, FileRows):
        spans: Ints = rows.spans(start[frontier], start[frontier + 1])
        return spans
    firsts = np.repeat(start[frontier] - np.cumsum(counts) + counts, counts)
    out: Ints = rows[firsts + np.arange(int(counts.sum()))]
    return out


def network_scores(start: Ints, rows: Edges, source: int) -> Floats:
    """log(PPR_FLOOR + personalised PageRank from `source`) for every row."""
    scores: Floats = np.log(PPR_FLOOR + personalised_pagerank(start, rows, source))
    return scores


def partner_mask(start: Ints, rows: Edges, a: int) -> npt.NDArray[np.bool_]:
    """Which rows are partners of `a` (none for a < 0): built once per request, so that the
    partners it shares with each suggestion are one gather, not a set intersection."""
    mask = np.zeros(len(start) - 1, dtype=np.bool_)
    if a >= 0:
        mask[neighbours(start, rows, a)] = True
    return mask


def shared_partners(
    start: Ints,
    rows: Edges,
    partners_of_a: npt.NDArray[np.bool_],
    b: int,
    limit: int = SHARED_SHOWN,
) -> Ints:
    """Rows that are partners of both `a` (given as its `partner_mask`) and `b`, at most `limit`,
    by row."""
    if b < 0:
        return np.zeros(0, dtype=np.int64)
    theirs = neighbours(start, rows, b)
    both: Ints = theirs[partners_of_a[theirs]][:limit]
    return both


def standardised(values: Floats) -> Floats:
    """(values - mean) / std over the values given (0 where they do not vary)."""
    spread = float(values.std())
    if not spread:
        return np.zeros_like(values)
    out: Floats = (values - float(values.mean())) / spread
    return out


def rank_scores(text: Floats, signals: Sequence[tuple[float, Floats]]) -> Floats:
    """The text score adjusted by weighted non-text signals, **in the text score's units**:
    text + std(text) x sum(w x z(signal)), all over the scored candidates.

    It orders the candidates exactly as z(text) + sum(w x z(signal)) does (the same sum,
    scaled by std(text) and shifted by mean(text)), while a match's `score` stays readable: the
    cosine, moved up or down by a few of the text score's standard deviations. The unadjusted
    text score travels beside it as `similarity`."""
    adjustment = np.zeros_like(text)
    for weight, values in signals:
        if weight:
            adjustment += weight * standardised(values)
    spread = float(text.std())
    adjusted: Floats = text + (spread if spread else 1.0) * adjustment
    return adjusted
