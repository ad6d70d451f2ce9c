import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtrim.errors import IndexStoreError, InputError
from ragtrim.index.dense import DenseIndex


def _unit(rows, dim=16, seed=0):
    vectors = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_exact_search_matches_numpy():
    vectors = _unit(300)
    index = DenseIndex(16)
    index.add(vectors)
    query = vectors[7]
    rows, scores = index.search(query, 5)
    expected = np.argsort(-(vectors @ query))[:5]
    assert list(rows) == list(expected)
    assert np.allclose(scores, (vectors @ query)[expected], atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 400),
    st.integers(1, 30),
    st.integers(0, 10_000),
    st.sampled_from(["flat", "hnsw"]),
)
def test_filter_is_applied_before_top_k(n_allowed_hint, k, seed, kind):
    vectors = _unit(400, seed=seed % 7)
    index = DenseIndex(16, kind=kind, ef_search=16)
    index.add(vectors)
    rng = np.random.default_rng(seed)
    mask = np.zeros(400, dtype=bool)
    mask[rng.choice(400, size=n_allowed_hint, replace=False)] = True
    rows, _ = index.search(vectors[0], k, mask)
    assert mask[rows].all()
    assert len(rows) == min(k, n_allowed_hint)
    assert len(set(rows.tolist())) == len(rows)


def test_hnsw_with_large_allowed_set_returns_k_and_exact_top1():
    vectors = _unit(6000, dim=32, seed=3)
    index = DenseIndex(32, kind="hnsw")
    index.add(vectors)
    mask = np.ones(6000, dtype=bool)
    mask[::2] = False
    rows, _ = index.search(vectors[1], 10, mask)
    assert len(rows) == 10 and mask[rows].all() and rows[0] == 1


def test_removed_rows_never_returned_and_compact_renumbers():
    vectors = _unit(50)
    index = DenseIndex(16)
    index.add(vectors)
    index.remove(np.arange(0, 50, 2))
    rows, _ = index.search(vectors[0], 50)
    assert len(rows) == 25 and all(r % 2 == 1 for r in rows)
    kept = index.compact()
    assert list(kept) == list(range(1, 50, 2)) and len(index) == 25


def test_bad_vectors_are_rejected():
    index = DenseIndex(4)
    with pytest.raises(InputError, match="shape"):
        index.add(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(InputError, match="NaN"):
        index.add(np.full((1, 4), np.nan, dtype=np.float32))


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_save_and_load_round_trip(tmp_path, kind):
    vectors = _unit(100)
    index = DenseIndex(16, kind=kind)
    index.add(vectors)
    index.remove([3])
    index.save(tmp_path)
    loaded = DenseIndex.load(tmp_path, 16, kind=kind)
    assert np.array_equal(loaded.vectors, index.vectors) and not loaded.alive[3]
    assert list(loaded.search(vectors[5], 3)[0]) == list(index.search(vectors[5], 3)[0])
    with pytest.raises(IndexStoreError, match="dimension 8"):
        DenseIndex.load(tmp_path, 8)
