"""Rerank without an extra model, from the sentence vectors stored at ingestion.

A chunk is as useful as its best sentences: one sentence that answers the question is worth
more than a chunk that is vaguely on topic throughout. The score mixes the mean similarity of
the chunk's best ``top_sentences`` sentences, the whole chunk's dense similarity, and lexical
coverage of the query terms. This keeps the offline default pipeline reranking with nothing
but MiniLM.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from ragtrim.query import QueryContext, StageOutput
from ragtrim.reranking.ordering import rank_tail_below
from ragtrim.scoring import cosine_to_query, lexical_coverage, minmax
from ragtrim.stage import Stage, StageConfig
from ragtrim.types import Candidate


class EmbeddingReranker(Stage):
    kind = "reranker"

    class Config(StageConfig):
        depth: int = Field(50, ge=1)
        top_sentences: int = Field(2, ge=1)
        sentence_weight: float = Field(0.5, ge=0)
        chunk_weight: float = Field(0.2, ge=0)
        lexical_weight: float = Field(0.3, ge=0)
        #: the incoming (fused retrieval) score, min-max normalised over the reranked head
        retrieval_weight: float = Field(1.0, ge=0)

    def run(self, ctx: QueryContext, candidates: list[Candidate]) -> StageOutput:
        if not candidates:
            return StageOutput([])
        cfg = self.config
        head, tail = candidates[: cfg.depth], candidates[cfg.depth :]
        query_vector = ctx.query_vector()
        chunk_sim = cosine_to_query(query_vector, ctx.chunk_vectors([c.chunk for c in head]))
        sentence_sim = np.empty(len(head))
        for i, candidate in enumerate(head):
            vectors = ctx.sentence_vectors(candidate.chunk)
            if vectors.size == 0:
                sentence_sim[i] = chunk_sim[i]
                continue
            best = np.sort(cosine_to_query(query_vector, vectors))[::-1][: cfg.top_sentences]
            sentence_sim[i] = best.mean()
        lexical = lexical_coverage(ctx.query, [c.chunk.text for c in head])
        retrieval = minmax(np.array([c.score for c in head]))
        weights = np.array(
            [cfg.sentence_weight, cfg.chunk_weight, cfg.lexical_weight, cfg.retrieval_weight]
        )
        features = np.vstack([sentence_sim, chunk_sim, lexical, retrieval])
        scores = weights @ features / (weights.sum() or 1.0)
        for candidate, score in zip(head, scores, strict=True):
            candidate.scores["rerank"] = float(score)
            candidate.score = float(score)
        reranked = [head[i] for i in sorted(range(len(head)), key=lambda i: (-scores[i], i))]
        notes = rank_tail_below(reranked, tail)
        return StageOutput(reranked + tail, notes=notes, stats={"reranked": len(head)})
