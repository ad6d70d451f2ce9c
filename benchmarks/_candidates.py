"""The default pipeline's candidates for every question of a data set, for benchmarks that
replay the packer (or parts of it) on fixed candidates."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def candidates_per_query(
    dataset_path: Path,
    answerable_only: bool = False,
    limit: int | None = None,
    config: Any = None,
    with_retrieved: bool = False,
) -> list[tuple]:
    """``(query, context, candidates)`` per question: the data set ingested as ``bench`` does
    it, then the query stages (filter, retriever, reranker, dedup) run once, packer excluded.
    ``config`` is a pipeline config (default: ``Pipeline.default()``'s). ``with_retrieved``
    appends the retriever's own ranking (before rerank and dedup: what naive top-k sends)."""
    from ragtrim.bench.engine import prepared
    from ragtrim.config import QUERY_SLOTS
    from ragtrim.query import QueryContext

    dataset, pipe, _ = prepared(dataset_path, config, answerable_only, limit, 0)
    out: list[tuple] = []
    for query in dataset.queries:
        ctx = QueryContext(
            query.question, pipe.counter, query.task_type, query.filters, pipe.index, pipe.embedder
        )
        candidates: list = []
        retrieved: list = []
        for slot in QUERY_SLOTS:
            if pipe.stages[slot] is not None:
                candidates = pipe.stages[slot].run(ctx, candidates).candidates
                if slot == "retriever":
                    retrieved = list(candidates)
        out.append(
            (query, ctx, candidates, retrieved) if with_retrieved else (query, ctx, candidates)
        )
    return out


def dataset_halves(dataset_path: Path, answerable_only: bool, limit: int | None, seed: int = 0):
    """``(dataset, tune half, test half)`` as ``bench``, ``tune`` and the unit-scorer fit take
    them: answerable questions only if asked, a seeded subset, ``ragtrim tune``'s split."""
    from ragtrim.bench.datasets import load_dataset
    from ragtrim.bench.tune import split_halves

    dataset = load_dataset(dataset_path)
    if answerable_only:
        dataset = dataset.answerable()
    if limit is not None:
        dataset = dataset.subset(limit, seed)
    tune, test = split_halves(dataset, seed)
    return dataset, tune, test
