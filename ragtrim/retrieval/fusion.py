"""Score fusion as pure functions over aligned arrays (one row per retriever, one column per
candidate), so every method is testable by hand and the retriever stays thin.

Inputs: ``ranks[i, j]`` is candidate j's 1-based rank in retriever i's own result list (0 when
that retriever did not return it); ``scores[i, j]`` is retriever i's exact score for candidate j
(the retriever scores every candidate with every retriever, so nothing is imputed).
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from ragtrim.errors import ConfigError


class FusionMethod(str, Enum):
    RRF = "rrf"
    CONVEX_MINMAX = "convex_minmax"
    CONVEX_ZSCORE = "convex_zscore"
    DBSF = "dbsf"

    @classmethod
    def parse(cls, value: str | FusionMethod) -> FusionMethod:
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(m.value for m in cls)
            raise ConfigError(f"fusion: unknown method {value!r}; valid: {valid}") from None


def reciprocal_rank_fusion(ranks: np.ndarray, weights: np.ndarray, k: float = 60.0) -> np.ndarray:
    """Weighted RRF (Cormack et al. 2009): sum_i w_i / (k + rank_i); absent ranks add nothing."""
    ranks = np.asarray(ranks, dtype=np.float64)
    contributions = np.where(ranks > 0, 1.0 / (k + np.where(ranks > 0, ranks, 1.0)), 0.0)
    return np.asarray(weights, dtype=np.float64) @ contributions


def _reference_stats(scores: np.ndarray, ranks: np.ndarray) -> list[np.ndarray]:
    """Per retriever, the scores of its own returned list: normalisation uses what each
    retriever returned, so a candidate found by only the other retriever can fall below 0."""
    return [row[r > 0] if (r > 0).any() else row for row, r in zip(scores, ranks, strict=True)]


def minmax_normalise(scores: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Scale each retriever's scores by the min and max of its own returned list."""
    out = np.empty_like(scores, dtype=np.float64)
    for i, own in enumerate(_reference_stats(scores, ranks)):
        low, high = float(own.min()), float(own.max())
        out[i] = (scores[i] - low) / (high - low) if high > low else 1.0
    return out


def zscore_normalise(scores: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    out = np.empty_like(scores, dtype=np.float64)
    for i, own in enumerate(_reference_stats(scores, ranks)):
        std = float(own.std())
        out[i] = (scores[i] - float(own.mean())) / std if std > 0 else 0.0
    return out


def distribution_normalise(scores: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Distribution-based score fusion (Mazzeschi 2023): map mean ± 3 std of each list to [0, 1]."""
    out = np.empty_like(scores, dtype=np.float64)
    for i, own in enumerate(_reference_stats(scores, ranks)):
        mean, std = float(own.mean()), float(own.std())
        if std > 0:
            out[i] = (scores[i] - (mean - 3 * std)) / (6 * std)
        else:
            out[i] = 0.5
    return out


def fuse(
    method: FusionMethod,
    scores: np.ndarray,
    ranks: np.ndarray,
    weights: np.ndarray,
    rrf_k: float = 60.0,
) -> np.ndarray:
    """Fused score per candidate column."""
    if scores.size == 0:
        return np.zeros(scores.shape[1] if scores.ndim == 2 else 0)
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    weights = np.asarray(weights, dtype=np.float64)
    if method is FusionMethod.RRF:
        return reciprocal_rank_fusion(ranks, weights, rrf_k)
    normalise = {
        FusionMethod.CONVEX_MINMAX: minmax_normalise,
        FusionMethod.CONVEX_ZSCORE: zscore_normalise,
        FusionMethod.DBSF: distribution_normalise,
    }[method]
    return (weights / weights.sum()) @ normalise(scores, ranks)
