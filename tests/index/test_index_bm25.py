import json
import math

import numpy as np
import pytest

from ragtrim.errors import ConfigError, IndexStoreError, InputError
from ragtrim.index import bm25
from ragtrim.index.bm25 import BM25Index, idf, term_frequencies, top_k, weights

# The 3-document example used by the hand-computed tests.
DOCS = [["cat", "sat", "mat"], ["cat", "cat", "dog"], ["dog", "bird"]]


def build(docs=DOCS, **params) -> BM25Index:
    index = BM25Index(**params)
    index.add(docs)
    return index


def test_term_frequencies_counts_per_row_and_grows_vocab_in_first_seen_order():
    vocab = {"dog": 0}
    matrix = term_frequencies(DOCS, vocab)
    assert vocab == {"dog": 0, "cat": 1, "sat": 2, "mat": 3, "bird": 4}
    assert matrix.shape == (3, 5)
    assert matrix.toarray().tolist() == [[0, 1, 1, 1, 0], [1, 2, 0, 0, 0], [1, 0, 0, 0, 1]]
    assert matrix.has_canonical_format


def test_term_frequencies_rejects_non_string_tokens_without_touching_vocab():
    vocab = {"a": 0}
    with pytest.raises(InputError, match="tokens must be strings"):
        term_frequencies([["a", "b"], ["c", 3]], vocab)
    with pytest.raises(InputError, match="tokens must be strings"):
        term_frequencies([["b", ["unhashable"]]], vocab)
    assert vocab == {"a": 0}
    with pytest.raises(InputError, match="token list #1 is a string"):
        term_frequencies([["a"], "a b"], vocab)


def test_idf_per_variant_by_hand():
    df = np.array([2, 1, 0])
    # lucene: ln(1 + (3 - 2 + 0.5) / 2.5) = ln(1.6); ln(1 + 2.5 / 1.5) = ln(8/3)
    assert idf(df, 3, "lucene") == pytest.approx([math.log(1.6), math.log(8 / 3), 0.0])
    # bm25+: ln(4 / 2), ln(4 / 1)
    assert idf(df, 3, "bm25+") == pytest.approx([math.log(2), math.log(4), 0.0])
    # okapi: raw ln(1.5/2.5) = -0.5108 and ln(2.5/1.5) = +0.5108, mean over present terms 0,
    # so the negative one becomes 0.25 * 0 = 0
    assert idf(df, 3, "okapi") == pytest.approx([0.0, math.log(2.5 / 1.5), 0.0])
    with pytest.raises(ConfigError, match="unknown 'bm99'"):
        idf(df, 3, "bm99")


def test_lucene_scores_by_hand():
    # N = 3, avgdl = (3 + 3 + 2) / 3 = 8/3, k1 = 1.2, b = 0.75.
    # "cat" and "dog" both have df = 2: idf = ln(1 + (3 - 2 + 0.5) / (2 + 0.5)) = ln(1.6)
    #   = 0.4700036292.
    # norm(dl=3) = 1.2 * (0.25 + 0.75 * 3 / (8/3)) = 1.2 * 1.09375 = 1.3125
    # norm(dl=2) = 1.2 * (0.25 + 0.75 * 2 / (8/3)) = 1.2 * 0.8125  = 0.975
    # query "cat": d0 tf=1 -> ln1.6 * 1 / (1 + 1.3125) = 0.2032448126
    #              d1 tf=2 -> ln1.6 * 2 / (2 + 1.3125) = 0.2837757761
    #              d2 no "cat" -> 0
    # query "cat dog": d1 adds dog tf=1: 0.2837757761 + ln1.6 / 2.3125 = 0.4870205888
    #                  d2 dog tf=1, dl=2: ln1.6 / (1 + 0.975) = 0.2379765211
    index = build(k1=1.2, b=0.75, variant="lucene")
    assert index.scores(["cat"]) == pytest.approx([0.2032448126, 0.2837757761, 0.0], rel=1e-9)
    assert index.scores(["cat", "dog"]) == pytest.approx(
        [0.2032448126, 0.4870205888, 0.2379765211], rel=1e-9
    )
    rows, scores = index.search(["cat", "dog"], 2)
    assert rows.tolist() == [1, 2]
    assert scores == pytest.approx([0.4870205888, 0.2379765211], rel=1e-9)


def test_okapi_negative_idf_floor_by_hand():
    # raw idf: df=1 terms (sat, mat, bird): ln(2.5 / 1.5) = 0.5108256238;
    #          df=2 terms (cat, dog): ln(1.5 / 2.5) = -0.5108256238.
    # mean over the 5 terms = (3 - 2) * 0.5108256238 / 5 = 0.1021651248;
    # cat's idf -> 0.25 * 0.1021651248 = 0.0255412812.
    # d1: tf=2, norm = 1.5 * (0.25 + 0.75 * 3 / (8/3)) = 1.640625:
    #     0.0255412812 * 2 * 2.5 / (2 + 1.640625) = 0.0255412812 * 1.3733905579 = 0.0350781544
    index = build(k1=1.5, b=0.75, variant="okapi", epsilon=0.25)
    assert index.scores(["cat"])[1] == pytest.approx(0.0350781544, rel=1e-9)
    # d2 "bird": tf=1, dl=2, norm = 1.5 * 0.8125 = 1.21875: 0.5108256238 * 2.5 / 2.21875
    assert index.scores(["bird"])[2] == pytest.approx(0.5755781677, rel=1e-9)


def test_bm25_plus_adds_delta_only_where_the_term_occurs():
    # "bird": df=1, idf = ln(4 / 1); d2: tf=1, norm(dl=2) = 0.975 (k1=1.2):
    # ln4 * (1 * 2.2 / 1.975 + 1.0) = 1.3862943611 * 2.1139240506 = 2.9305209912
    index = build(k1=1.2, b=0.75, variant="bm25+", delta=1.0)
    assert index.scores(["bird"]).tolist() == pytest.approx([0.0, 0.0, 2.9305209912], rel=1e-9)


def test_weights_function_excludes_dead_rows_from_statistics():
    vocab: dict[str, int] = {}
    tf = term_frequencies(DOCS, vocab)
    lengths = np.array([3, 3, 2])
    alive = np.array([True, True, False])
    matrix = weights(tf, lengths, 1.2, 0.75, "lucene", alive=alive).toarray()
    fresh = weights(term_frequencies(DOCS[:2], {}), lengths[:2], 1.2, 0.75, "lucene").toarray()
    assert not matrix[2].any()
    # same terms in the same column order, since vocab order is first-seen
    assert np.allclose(matrix[:2, : fresh.shape[1]], fresh)


def test_repeated_query_terms_count_each_time():
    index = build()
    assert index.scores(["cat", "cat", "dog"]) == pytest.approx(
        2 * index.scores(["cat"]) + index.scores(["dog"])
    )


def test_unknown_query_terms_contribute_nothing():
    index = build()
    assert index.scores(["zebra"]).tolist() == [0.0, 0.0, 0.0]
    assert index.scores(["zebra", "cat"]) == pytest.approx(index.scores(["cat"]))


def test_query_must_be_a_token_list():
    with pytest.raises(InputError, match="got a string"):
        build().scores("cat dog")


def test_mask_excludes_rows_and_marks_them_minus_infinity():
    index = build()
    mask = np.array([True, False, True])
    scores = index.scores(["cat"], mask)
    assert scores[1] == -np.inf and np.isfinite(scores[[0, 2]]).all()
    rows, _ = index.search(["cat"], 3, mask)
    assert rows.tolist() == [0, 2]


def test_k_larger_than_allowed_returns_every_allowed_row_including_zero_scores():
    index = build()
    rows, scores = index.search(["bird"], 10)
    # only d2 matches; d0 and d1 score 0 and follow in row order
    assert rows.tolist() == [2, 0, 1]
    assert scores[1:].tolist() == [0.0, 0.0]
    rows, _ = index.search(["bird"], 10, np.array([True, True, False]))
    assert rows.tolist() == [0, 1]


def test_ties_break_by_row_ascending_including_at_the_cut():
    docs = [["x"], ["y"], ["x"], ["x"], ["y"], ["x"]]
    index = build(docs)
    rows, scores = index.search(["x"], 3)
    assert rows.tolist() == [0, 2, 3]
    assert scores[0] == scores[1] == scores[2] > 0
    rows, _ = index.search(["x"], 5)
    assert rows.tolist() == [0, 2, 3, 5, 1]


def test_top_k_function_matches_a_full_sort():
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 4, 200).astype(float)
    allowed = rng.random(200) < 0.6
    for k in (0, 1, 5, 50, 200):
        rows, values = top_k(scores, k, allowed)
        candidates = np.flatnonzero(allowed)
        expected = candidates[np.lexsort((candidates, -scores[candidates]))][:k]
        assert rows.tolist() == expected.tolist()
        assert values.tolist() == scores[expected].tolist()


def test_empty_index_and_empty_query():
    index = BM25Index()
    rows, scores = index.search(["cat"], 5)
    assert rows.shape == (0,) and scores.shape == (0,)
    assert index.scores(["cat"]).shape == (0,)
    assert len(index) == 0 and index.n_alive == 0
    index = build()
    rows, scores = index.search([], 2)
    assert rows.tolist() == [0, 1] and scores.tolist() == [0.0, 0.0]
    assert index.search(["cat"], 0)[0].shape == (0,)


def test_empty_documents_are_rows_that_never_match():
    index = build([[], ["cat"], []])
    assert index.scores(["cat"])[[0, 2]].tolist() == [0.0, 0.0]
    assert index.search(["cat"], 1)[0].tolist() == [1]
    empty_only = build([[], []])
    assert empty_only.search(["cat"], 5)[0].tolist() == [0, 1]


def test_add_returns_new_rows_and_updates_statistics():
    index = build()
    before = index.scores(["cat"])
    rows = index.add([["cat", "fish"], ["fish"]])
    assert rows.tolist() == [3, 4]
    assert len(index) == 5 and index.n_alive == 5
    after = index.scores(["cat"])
    assert after.shape == (5,) and not np.allclose(after[:3], before)
    fresh = build(DOCS + [["cat", "fish"], ["fish"]])
    assert np.allclose(after, fresh.scores(["cat"]))


def test_remove_hides_rows_and_matches_a_fresh_index():
    index = build(DOCS + [["cat", "fish"]])
    index.remove([1])
    index.remove(np.array([1]))  # removing twice is a no-op
    assert index.n_alive == 3 and len(index) == 4
    fresh = build([DOCS[0], DOCS[2], ["cat", "fish"]])
    scores = index.scores(["cat", "dog"])
    assert scores[1] == -np.inf
    assert np.allclose(scores[[0, 2, 3]], fresh.scores(["cat", "dog"]))
    rows, _ = index.search(["cat", "dog"], 10)
    assert 1 not in rows.tolist() and len(rows) == 3


def test_remove_validates_rows():
    index = build()
    with pytest.raises(InputError, match="row 3 out of range"):
        index.remove([3])
    with pytest.raises(InputError, match="row -1 out of range"):
        index.remove([-1])
    with pytest.raises(InputError, match="integers"):
        index.remove([0.5])
    index.remove([])
    assert index.n_alive == 3


def test_removing_everything_returns_nothing():
    index = build()
    index.remove([0, 1, 2])
    assert index.search(["cat"], 5)[0].shape == (0,)
    assert (index.scores(["cat"]) == -np.inf).all()


def test_compact_renumbers_and_keeps_scores():
    index = build(DOCS + [["cat", "fish"]])
    index.remove([0, 2])
    before = index.scores(["cat", "fish"])
    kept = index.compact()
    assert kept.tolist() == [1, 3]
    assert len(index) == 2 and index.n_alive == 2
    assert np.allclose(index.scores(["cat", "fish"]), before[kept])


def test_mask_must_be_bool_of_the_right_shape():
    index = build()
    with pytest.raises(InputError, match=r"shape \(3,\)"):
        index.search(["cat"], 2, np.array([True, False]))
    with pytest.raises(InputError, match="bool array"):
        index.search(["cat"], 2, np.array([0, 1, 2]))


def test_search_k_must_be_a_non_negative_integer():
    index = build()
    for bad in (-1, 2.5, True):
        with pytest.raises(InputError, match="k must be an integer"):
            index.search(["cat"], bad)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"k1": -0.1}, "k1"),
        ({"b": 1.5}, "b"),
        ({"variant": "bm25l"}, "variant"),
        ({"delta": float("nan")}, "delta"),
        ({"epsilon": "0.25"}, "epsilon"),
    ],
)
def test_invalid_params_name_the_field(params, field):
    with pytest.raises(ConfigError, match=f"BM25Index.{field}"):
        BM25Index(**params)


def test_ten_thousand_word_query_sums_every_occurrence():
    rng = np.random.default_rng(0)
    index = build(DOCS + [["fish", "cat", "owl"]])
    vocabulary = ["cat", "sat", "mat", "dog", "bird", "fish", "owl", "unknown1", "unknown2"]
    query = [vocabulary[i] for i in rng.integers(0, len(vocabulary), 10_000)]
    expected = sum(query.count(term) * index.scores([term]) for term in set(query))
    assert np.allclose(index.scores(query), expected)
    assert len(index.search(query, 3)[0]) == 3


def test_memory_usage_counts_weights_only_after_a_query():
    index = build()
    assert index.memory_usage()["weights"] == 0
    index.scores(["cat"])
    usage = index.memory_usage()
    assert usage["weights"] > 0 and index.nbytes == sum(usage.values())
    assert index.nnz == 7


# --- save / load ---------------------------------------------------------------------------


def saved(tmp_path, **params) -> BM25Index:
    index = build(DOCS + [["cat", "fish", "fish"]], **params)
    index.remove([2])
    index.save(tmp_path)
    return index


@pytest.mark.parametrize("variant", ["lucene", "okapi", "bm25+"])
def test_save_load_round_trip_gives_equal_scores(tmp_path, variant):
    index = saved(tmp_path, variant=variant, k1=0.9, b=0.5)
    loaded = BM25Index.load(tmp_path)
    assert loaded.params == index.params
    assert loaded.vocab == index.vocab
    assert len(loaded) == 4 and loaded.n_alive == 3
    for query in (["cat"], ["fish", "dog"], ["cat", "cat", "bird"]):
        assert np.array_equal(loaded.scores(query), index.scores(query))
    loaded.add([["fish"]])
    index.add([["fish"]])
    assert np.array_equal(loaded.scores(["fish"]), index.scores(["fish"]))


def test_saved_files_are_plain_and_pickle_free(tmp_path):
    saved(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        [
            bm25.TF_DATA_FILE,
            bm25.TF_INDICES_FILE,
            bm25.TF_INDPTR_FILE,
            bm25.DOC_LENGTHS_FILE,
            bm25.ALIVE_FILE,
            bm25.VOCAB_FILE,
            bm25.PARAMS_FILE,
        ]
    )
    for name in names:
        if name.endswith(".npy"):
            np.load(tmp_path / name, allow_pickle=False)
    assert json.loads((tmp_path / bm25.VOCAB_FILE).read_text())[:2] == ["cat", "sat"]


ALL_FILES = [
    bm25.TF_DATA_FILE,
    bm25.TF_INDICES_FILE,
    bm25.TF_INDPTR_FILE,
    bm25.DOC_LENGTHS_FILE,
    bm25.ALIVE_FILE,
    bm25.VOCAB_FILE,
    bm25.PARAMS_FILE,
]


@pytest.mark.parametrize("name", ALL_FILES)
def test_missing_file_is_named(tmp_path, name):
    saved(tmp_path)
    (tmp_path / name).unlink()
    with pytest.raises(IndexStoreError, match=f"{name}: missing file"):
        BM25Index.load(tmp_path)


@pytest.mark.parametrize("name", ALL_FILES)
def test_garbage_file_is_named(tmp_path, name):
    saved(tmp_path)
    (tmp_path / name).write_bytes(b"\x93NUMPY garbage \x00\x01")
    with pytest.raises(IndexStoreError, match=name):
        BM25Index.load(tmp_path)


@pytest.mark.parametrize("name", [n for n in ALL_FILES if n.endswith(".npy")])
def test_truncated_array_is_named(tmp_path, name):
    saved(tmp_path)
    path = tmp_path / name
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(IndexStoreError, match=name):
        BM25Index.load(tmp_path)


@pytest.mark.parametrize(
    ("name", "replacement", "message"),
    [
        (bm25.DOC_LENGTHS_FILE, np.array([3, 3, 2, 9]), "row sums"),
        (bm25.ALIVE_FILE, np.array([1, 1, 0, 1]), "1-d array of kind 'b'"),
        (bm25.ALIVE_FILE, np.array([True, True]), "2 entries, expected 4"),
        (bm25.TF_INDICES_FILE, np.array([0, 1, 2, 0, 0, 3, 4, 0, 5], dtype=np.int32), "sorted"),
        (bm25.TF_INDICES_FILE, np.array([0, 1, 2, 0, 3, 3, 4, 0, 99], dtype=np.int32), "term ids"),
        (bm25.TF_INDPTR_FILE, np.array([0, 3, 2, 7, 9]), "row pointers"),
        (bm25.TF_DATA_FILE, np.zeros(9, dtype=np.int32), ">= 1"),
        (bm25.TF_DATA_FILE, np.array(["a"] * 9), "kind 'iu'"),
    ],
)
def test_inconsistent_array_is_named(tmp_path, name, replacement, message):
    saved(tmp_path)
    np.save(tmp_path / name, replacement, allow_pickle=False)
    with pytest.raises(IndexStoreError, match=message) as error:
        BM25Index.load(tmp_path)
    assert name in str(error.value)


def test_pickled_object_array_is_refused(tmp_path):
    saved(tmp_path)
    np.save(tmp_path / bm25.ALIVE_FILE, np.array([object()] * 4), allow_pickle=True)
    with pytest.raises(IndexStoreError, match=bm25.ALIVE_FILE):
        BM25Index.load(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"variant": "bm99"}, "invalid BM25 parameters"),
        ({"format_version": 2}, "format version 2"),
        ({"format": "other"}, "not a ragtrim BM25"),
        ({"n_terms": 3}, "terms"),
        ({"nnz": -1}, "'nnz' must be"),
    ],
)
def test_bad_params_file_is_named(tmp_path, change, message):
    saved(tmp_path)
    path = tmp_path / bm25.PARAMS_FILE
    meta = json.loads(path.read_text())
    meta.update(change)
    path.write_text(json.dumps(meta))
    with pytest.raises(IndexStoreError, match=message) as error:
        BM25Index.load(tmp_path)
    assert str(error.value).split(":")[0].endswith(".json")


def test_bad_vocab_file_is_named(tmp_path):
    saved(tmp_path)
    path = tmp_path / bm25.VOCAB_FILE
    terms = json.loads(path.read_text())
    path.write_text(json.dumps([terms[0]] * len(terms)))
    with pytest.raises(IndexStoreError, match=f"{bm25.VOCAB_FILE}: duplicate terms"):
        BM25Index.load(tmp_path)
    path.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(IndexStoreError, match=f"{bm25.VOCAB_FILE}: expected a JSON list"):
        BM25Index.load(tmp_path)


def test_empty_index_round_trip(tmp_path):
    BM25Index().save(tmp_path)
    loaded = BM25Index.load(tmp_path)
    assert len(loaded) == 0 and loaded.search(["x"], 3)[0].shape == (0,)
