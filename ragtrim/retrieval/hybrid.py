"""Hybrid retrieval: BM25 and dense search with separate depths, fused per chunk.

Both retrievers search only the rows the filter stage allowed (``ctx.allowed``), so filtering
happens before top-k. Every candidate in the union is then scored by *both* retrievers exactly
(a BM25 score or a dot product costs nothing once the query is encoded), so score-based fusion
never has to impute a missing score.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ragtrim.errors import ConfigError
from ragtrim.query import QueryContext, StageOutput
from ragtrim.retrieval.fusion import FusionMethod, fuse
from ragtrim.stage import Stage, StageConfig
from ragtrim.types import Candidate


class HybridRetriever(Stage):
    """``mode`` picks BM25, dense or both; ``top_k`` caps the fused list handed to reranking."""

    kind = "retriever"

    class Config(StageConfig):
        mode: Literal["hybrid", "bm25", "dense"] = "hybrid"
        bm25_top_k: int = Field(50, ge=1)
        dense_top_k: int = Field(50, ge=1)
        top_k: int = Field(50, ge=1)
        fusion: FusionMethod = FusionMethod.CONVEX_MINMAX
        bm25_weight: float = Field(0.5, ge=0)
        dense_weight: float = Field(0.5, ge=0)
        rrf_k: float = Field(60.0, gt=0)

        @model_validator(mode="after")
        def _some_weight(self) -> HybridRetriever.Config:
            """Two zero weights fuse every score to 0/0 = NaN: an empty context, silently."""
            if self.mode == "hybrid" and self.bm25_weight + self.dense_weight <= 0:
                raise ValueError(
                    "bm25_weight and dense_weight are both 0 in hybrid mode; give one a positive "
                    "weight, or use mode 'bm25' or 'dense'"
                )
            return self

    def run(self, ctx: QueryContext, candidates: list[Candidate]) -> StageOutput:
        index = ctx.index
        if index is None:
            raise ConfigError(
                "retriever: no index to search; ingest documents first, or trim candidates "
                "you already retrieved with Pipeline.trim()"
            )
        cfg = self.config
        stats: dict[str, float | int] = {}
        lists: list[tuple[str, np.ndarray, np.ndarray]] = []
        if cfg.mode in ("hybrid", "bm25"):
            started = time.perf_counter()
            rows, scores = index.bm25_search(ctx.query, cfg.bm25_top_k, ctx.allowed)
            stats["bm25_ms"] = (time.perf_counter() - started) * 1000
            lists.append(("bm25", rows, scores))
        if cfg.mode in ("hybrid", "dense"):
            started = time.perf_counter()
            vector = ctx.query_vector()
            stats["embed_ms"] = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            rows, scores = index.dense_search(vector, cfg.dense_top_k, ctx.allowed)
            stats["dense_ms"] = (time.perf_counter() - started) * 1000
            lists.append(("dense", rows, scores))
        for name, rows, _ in lists:
            stats[f"{name}_hits"] = len(rows)
        union = np.unique(np.concatenate([rows for _, rows, _ in lists]))
        notes = [] if len(union) else ["retriever found no candidates"]
        if not len(union):
            return StageOutput([], notes=notes, stats=stats)

        position = {int(row): j for j, row in enumerate(union)}
        names = [name for name, _, _ in lists]
        ranks = np.zeros((len(lists), len(union)))
        exact = np.zeros((len(lists), len(union)))
        for i, (name, rows, _) in enumerate(lists):
            ranks[i, [position[int(r)] for r in rows]] = np.arange(1, len(rows) + 1)
            exact[i] = (
                index.bm25_scores_for(ctx.query, union)
                if name == "bm25"
                else index.dense_scores_for(ctx.query_vector(), union)
            )
        weights = np.array([cfg.bm25_weight if n == "bm25" else cfg.dense_weight for n in names])
        single = len(lists) == 1
        fused = exact[0] if single else fuse(cfg.fusion, exact, ranks, weights, cfg.rrf_k)
        order = np.lexsort((union, -fused))[: cfg.top_k]
        out = []
        for j in order:
            per_list = {name: float(exact[i, j]) for i, name in enumerate(names)}
            per_list["fused"] = float(fused[j])
            out.append(Candidate(index.chunk_at(int(union[j])), float(fused[j]), per_list))
        stats["union"] = len(union)
        return StageOutput(out, notes=notes, stats=stats)
