"""How reranked candidates and the unreranked tail form one ordering."""

from __future__ import annotations

from ragtrim.types import Candidate


def rank_tail_below(reranked: list[Candidate], tail: list[Candidate]) -> list[str]:
    """Give the candidates below the rerank depth scores just under the lowest reranked score,
    in their incoming order, so that ``score`` stays one consistent ordering for the packer
    (retriever-scale and reranker-scale scores are not comparable). Returns the report note."""
    if not tail:
        return []
    floor = min((c.score for c in reranked), default=0.0)
    for rank, candidate in enumerate(tail, start=1):
        candidate.score = floor - rank * 1e-6
    return [
        f"{len(tail)} candidates below the rerank depth kept their order, after the reranked ones"
    ]
