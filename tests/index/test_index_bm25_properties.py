"""Invariants over random small corpora: removal, masks, incremental adds, rank_bm25 parity."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from rank_bm25 import BM25Okapi

from ragtrim.index.bm25 import BM25Index

WORDS = ["ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen"]
documents = st.lists(st.sampled_from(WORDS), max_size=8)
corpora = st.lists(documents, min_size=1, max_size=14)
queries = st.lists(st.sampled_from(WORDS + ["yak", "zebu"]), max_size=6)
variants = st.sampled_from(["lucene", "okapi", "bm25+"])
k1s = st.sampled_from([0.0, 0.9, 1.2, 2.0])
bs = st.sampled_from([0.0, 0.5, 0.75, 1.0])


def build(docs, variant, k1=1.2, b=0.75) -> BM25Index:
    index = BM25Index(k1=k1, b=b, variant=variant)
    index.add(docs)
    return index


@settings(max_examples=120, deadline=None)
@given(corpora, st.data(), queries, variants, k1s, bs)
def test_removed_rows_never_return_and_scores_equal_a_fresh_index(
    docs, data, query, variant, k1, b
):
    removed = data.draw(st.sets(st.integers(0, len(docs) - 1)), label="removed")
    index = build(docs, variant, k1, b)
    index.scores(query)  # weights computed before the removal must be invalidated
    index.remove(sorted(removed))
    kept = [row for row in range(len(docs)) if row not in removed]
    fresh = build([docs[row] for row in kept], variant, k1, b)

    scores = index.scores(query)
    assert (scores[sorted(removed)] == -np.inf).all()
    assert np.allclose(scores[kept], fresh.scores(query), rtol=1e-12, atol=1e-12)

    k = data.draw(st.integers(0, len(docs) + 2), label="k")
    rows, values = index.search(query, k)
    assert not set(rows.tolist()) & removed
    assert len(rows) == min(k, len(kept))
    fresh_rows, fresh_values = fresh.search(query, k)
    assert rows.tolist() == [kept[r] for r in fresh_rows]
    assert np.allclose(values, fresh_values, rtol=1e-12, atol=1e-12)


@settings(max_examples=120, deadline=None)
@given(corpora, st.data(), queries, variants)
def test_search_returns_exactly_the_best_allowed_rows(docs, data, query, variant):
    index = build(docs, variant)
    removed = data.draw(st.sets(st.integers(0, len(docs) - 1)), label="removed")
    index.remove(sorted(removed))
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=len(docs), max_size=len(docs))))
    k = data.draw(st.integers(0, len(docs) + 2), label="k")
    rows, values = index.search(query, k, mask)

    allowed = mask & np.array([row not in removed for row in range(len(docs))])
    assert allowed[rows].all()
    assert len(rows) == min(k, int(allowed.sum()))
    scores = index.scores(query, mask)
    candidates = np.flatnonzero(allowed)
    expected = candidates[np.lexsort((candidates, -scores[candidates]))][:k]
    assert rows.tolist() == expected.tolist()
    assert values.tolist() == scores[rows].tolist()
    assert (scores[~allowed] == -np.inf).all()


@settings(max_examples=80, deadline=None)
@given(corpora, st.data(), queries, variants)
def test_adding_in_batches_equals_adding_at_once(docs, data, query, variant):
    cuts = sorted(data.draw(st.sets(st.integers(1, len(docs))), label="cuts") | {len(docs)})
    index = BM25Index(variant=variant)
    start = 0
    for cut in cuts:
        rows = index.add(docs[start:cut])
        assert rows.tolist() == list(range(start, cut))
        index.scores(query)
        start = cut
    whole = build(docs, variant)
    assert np.allclose(index.scores(query), whole.scores(query), rtol=1e-12, atol=1e-12)


@settings(max_examples=120, deadline=None)
@given(corpora, queries, st.sampled_from([0.5, 1.2, 1.5]), st.sampled_from([0.25, 0.75]))
def test_okapi_scores_equal_rank_bm25(docs, query, k1, b):
    if not any(docs):
        return  # rank_bm25 divides by an average length of 0
    reference = BM25Okapi(docs, k1=k1, b=b, epsilon=0.25)
    index = BM25Index(k1=k1, b=b, variant="okapi", epsilon=0.25)
    index.add(docs)
    assert np.allclose(index.scores(query), reference.get_scores(query), rtol=1e-12, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(corpora, st.data(), queries, variants)
def test_save_load_round_trip_after_removals(tmp_path_factory, docs, data, query, variant):
    index = build(docs, variant)
    index.remove(sorted(data.draw(st.sets(st.integers(0, len(docs) - 1)), label="removed")))
    directory = tmp_path_factory.mktemp("bm25")
    index.save(directory)
    loaded = BM25Index.load(directory)
    assert np.array_equal(loaded.scores(query), index.scores(query))
    assert np.array_equal(loaded.alive, index.alive)
