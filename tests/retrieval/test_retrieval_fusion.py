import numpy as np
import pytest

from ragtrim.errors import ConfigError
from ragtrim.retrieval.fusion import FusionMethod, fuse, reciprocal_rank_fusion


def test_rrf_by_hand():
    # candidate 0: rank 1 in bm25, rank 2 in dense; candidate 1: only dense rank 1
    ranks = np.array([[1, 0], [2, 1]])
    fused = reciprocal_rank_fusion(ranks, np.array([1.0, 1.0]), k=60)
    assert fused[0] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[1] == pytest.approx(1 / 61)


def test_rrf_weights_are_honoured():
    ranks = np.array([[1, 2], [2, 1]])
    fused = reciprocal_rank_fusion(ranks, np.array([3.0, 1.0]), k=60)
    assert fused[0] == pytest.approx(3 / 61 + 1 / 62)
    assert fused[1] == pytest.approx(3 / 62 + 1 / 61)
    assert fused[0] > fused[1]


def test_convex_minmax_by_hand():
    # bm25 returned candidates 0 and 1 (scores 10, 5); dense returned 1 and 2 (0.9, 0.5);
    # candidate 2's exact bm25 score 2.5 falls below bm25's own list -> normalised -0.5
    scores = np.array([[10.0, 5.0, 2.5], [0.3, 0.9, 0.5]])
    ranks = np.array([[1, 2, 0], [0, 1, 2]])
    fused = fuse(FusionMethod.CONVEX_MINMAX, scores, ranks, np.array([1.0, 1.0]))
    bm25 = np.array([1.0, 0.0, -0.5])
    dense = np.array([(0.3 - 0.5) / 0.4, 1.0, 0.0])
    assert np.allclose(fused, (bm25 + dense) / 2)


def test_zscore_and_dbsf_are_monotone_in_each_score():
    scores = np.array([[3.0, 2.0, 1.0], [0.5, 0.5, 0.5]])
    ranks = np.array([[1, 2, 3], [1, 2, 3]])
    for method in (FusionMethod.CONVEX_ZSCORE, FusionMethod.DBSF):
        fused = fuse(method, scores, ranks, np.array([1.0, 1.0]))
        assert fused[0] > fused[1] > fused[2]


def test_non_finite_scores_do_not_propagate():
    scores = np.array([[np.nan, 1.0], [0.2, np.inf]])
    fused = fuse(
        FusionMethod.CONVEX_MINMAX, scores, np.array([[1, 2], [1, 2]]), np.array([1.0, 1.0])
    )
    assert np.isfinite(fused).all()


def test_unknown_method_lists_valid_ones():
    with pytest.raises(ConfigError, match="rrf, convex_minmax, convex_zscore, dbsf"):
        FusionMethod.parse("borda")
