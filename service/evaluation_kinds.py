"""Kind diagnostics of the stage analysis (service.evaluation_stages): a score with its
preference between candidate kinds taken out, and the industry<->academia slice cut by the
query's side. See docs/evaluation.md, "Stage analysis", item 10."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.evaluation import Corpus, Scores
from service.evaluation_temporal import Records, Scorer, TemporalSplit


class WithinKind:
    """A score standardised within each candidate kind (over the catalogue without the query):
    what is left of it once its preference between kinds is taken out."""

    def __init__(self, scorer: Scorer, corpus: Corpus, split: TemporalSplit) -> None:
        self.name, self.scorer, self.corpus = f"{scorer.name} within kind", scorer, corpus
        kinds = np.array([split.actors[a].kind for a in corpus.ids])
        self._groups = [kinds == k for k in sorted(set(kinds.tolist()))]

    def scores(self, query: str) -> Scores:
        values = self.scorer.scores(query)
        others = np.ones(len(values), dtype=bool)
        others[self.corpus.position[query]] = False
        out = np.zeros(len(values), dtype=np.float64)
        for group in self._groups:
            reference = values[group & others]
            if not len(reference):
                continue
            spread = float(reference.std()) or 1.0
            out[group] = (values[group] - float(reference.mean())) / spread
        return out


def industry_academia_sides(
    records: dict[str, Records], split: TemporalSplit, names: Sequence[str]
) -> dict[str, dict[str, dict[str, float]]]:
    """The industry<->academia slice cut by the query's side: company queries (their university
    and research partners) and university or research queries (their company partners)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in names:
        if name not in records:
            continue
        r = records[name]
        ids = r.query_ids["industry_academia"]
        company = np.array([split.actors[q].kind == "company" for q in ids], dtype=bool)
        sides = {"company queries": company, "academic queries": ~company}
        out[name] = {
            side: {
                "queries": int(mask.sum()),
                **{
                    metric: float(np.mean(np.array(r.per_query["industry_academia"][metric])[mask]))
                    if mask.any()
                    else 0.0
                    for metric in ("ndcg@10", "recall@50")
                },
            }
            for side, mask in sides.items()
        }
    return out
