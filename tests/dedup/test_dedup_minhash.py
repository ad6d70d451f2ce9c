import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtrim.dedup.minhash import (
    _NON_WORD,
    MERSENNE_61,
    WordTable,
    estimate_jaccard,
    exact_jaccard,
    normalise_words,
    permutation_parameters,
    shingle_sets,
    signatures,
    similar_pairs,
    similar_texts,
    universal_hash,
    word_shingles,
)

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
]


def test_shingles_ignore_case_punctuation_and_spacing():
    assert np.array_equal(
        word_shingles("Hello, World! Foo-bar baz."), word_shingles("hello world   FOO bar\nbaz")
    )


def test_shingle_counts():
    assert len(word_shingles("a b c d e")) == 3  # abc, bcd, cde
    assert len(word_shingles("a b c a b c")) == 3  # abc, bca, cab (abc repeats)
    assert len(word_shingles("a b", size=3)) == 1  # short text: one shingle of all words
    assert len(word_shingles("a b c d e", size=1)) == 5
    assert len(word_shingles("")) == 0
    assert len(word_shingles(" ... !!! ")) == 0


def test_short_text_shingle_differs_from_word_order():
    assert not np.array_equal(word_shingles("a b"), word_shingles("b a"))
    assert not np.array_equal(word_shingles("a"), word_shingles("a a"))


def test_shingles_are_sorted_distinct_uint64():
    shingles = word_shingles("the cat sat on the mat and the cat sat on the hat")
    assert shingles.dtype == np.uint64
    assert np.all(shingles[1:] > shingles[:-1])


def test_unicode_normalisation():
    assert np.array_equal(word_shingles("Straße ﬁne ＡＢＣ"), word_shingles("strasse fine abc"))
    assert np.array_equal(word_shingles("naïve café"), word_shingles("NAÏVE CAFÉ"))


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=80))
def test_ascii_fast_path_matches_regex_rule(text):
    assert normalise_words(text).split() == _NON_WORD.sub(" ", text.casefold()).split()


def test_shingle_sets_match_single_text_shingles():
    texts = ["a b c d", "", "x y", "one two three four five", "a b c d"]
    sets = shingle_sets(texts)
    assert len(sets) == len(texts)
    for text, shingles in zip(texts, sets, strict=True):
        assert np.array_equal(shingles, word_shingles(text))


def test_hashes_are_stable_across_processes():
    code = (
        "from ragtrim.dedup.minhash import word_shingles, signatures;"
        "s = word_shingles('The quick brown fox jumps over the lazy dog');"
        "print(s.tolist(), signatures([s], 4).tolist())"
    )
    outputs = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(result.stdout)
    shingles = word_shingles("The quick brown fox jumps over the lazy dog")
    assert outputs == {f"{shingles.tolist()} {signatures([shingles], 4).tolist()}\n"}


def test_exact_jaccard_by_hand():
    a = np.array([1, 2, 3, 4], dtype=np.uint64)
    b = np.array([3, 4, 5], dtype=np.uint64)
    assert exact_jaccard(a, b) == pytest.approx(2 / 5)
    assert exact_jaccard(a, a) == 1.0
    assert exact_jaccard(a, np.array([9], dtype=np.uint64)) == 0.0
    assert exact_jaccard(np.array([], dtype=np.uint64), np.array([], dtype=np.uint64)) == 1.0


def test_word_shingle_jaccard_by_hand():
    # 10 distinct words -> 8 shingles; changing the last word changes only the last shingle
    a = " ".join(WORDS[:10])
    b = " ".join(WORDS[:9] + ["omega"])
    assert exact_jaccard(word_shingles(a), word_shingles(b)) == pytest.approx(7 / 9)


@settings(max_examples=60, deadline=None)
@given(
    x=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=20),
    num_perm=st.integers(1, 9),
    seed=st.integers(0, 2**64 - 1),
)
def test_universal_hash_is_exact_modular_arithmetic(x, num_perm, seed):
    a, b = permutation_parameters(num_perm, seed)
    assert np.all((a >= 1) & (a < MERSENNE_61)) and np.all(b < MERSENNE_61)
    hashed = universal_hash(np.array(x, dtype=np.uint64)[:, None], a[None, :], b[None, :])
    expected = [
        [
            (int(ai) * (xi % MERSENNE_61) + int(bi)) % MERSENNE_61
            for ai, bi in zip(a, b, strict=True)
        ]
        for xi in x
    ]
    assert hashed.tolist() == expected


def test_universal_hash_extremes():
    a = np.array([MERSENNE_61 - 1], dtype=np.uint64)
    b = np.array([MERSENNE_61 - 1], dtype=np.uint64)
    x = np.array([MERSENNE_61 - 1, 2**64 - 1, 0], dtype=np.uint64)
    expected = [
        ((MERSENNE_61 - 1) * (int(v) % MERSENNE_61) + MERSENNE_61 - 1) % MERSENNE_61 for v in x
    ]
    assert universal_hash(x[:, None], a, b)[:, 0].tolist() == expected


def test_signatures_shape_determinism_and_empty_sets():
    sets = [word_shingles("a b c d e f"), np.array([], dtype=np.uint64), word_shingles("x y z")]
    sig = signatures(sets, num_perm=32, seed=7)
    assert sig.shape == (3, 32) and sig.dtype == np.uint64
    assert np.array_equal(sig, signatures(sets, num_perm=32, seed=7))
    assert not np.array_equal(sig, signatures(sets, num_perm=32, seed=8))
    assert np.all(sig[1] == np.iinfo(np.uint64).max)
    assert np.all(sig[[0, 2]] < MERSENNE_61)
    # the signature of a set is the row-wise minimum over its members' hashes
    a, b = permutation_parameters(32, 7)
    members = universal_hash(sets[2][:, None], a[None, :], b[None, :])
    assert np.array_equal(sig[2], members.min(axis=0))


def _pair(universe: int, overlap: float, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    items = rng.choice(2**62, size=universe, replace=False).astype(np.uint64)
    shared = int(universe * overlap)
    rest = items[shared:]
    half = len(rest) // 2
    return np.concatenate([items[:shared], rest[:half]]), np.concatenate(
        [items[:shared], rest[half:]]
    )


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    universe=st.integers(20, 400),
    overlap=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_estimate_within_a_tenth_of_exact(universe, overlap, seed):
    """At 512 permutations the estimate's standard deviation is <= 0.022: 0.1 is 4.5 sigma."""
    a, b = _pair(universe, overlap, np.random.default_rng(seed))
    sig = signatures([a, b], num_perm=512, seed=seed % 1000)
    assert abs(estimate_jaccard(sig[0], sig[1]) - exact_jaccard(a, b)) <= 0.1


def test_estimate_error_at_128_permutations_is_unbiased_and_binomial():
    """MinHash agreement is Binomial(k, J): error mean ~0 and std ~ sqrt(J(1-J)/k)."""
    rng = np.random.default_rng(12345)
    errors, expected_var = [], []
    for _ in range(300):
        a, b = _pair(int(rng.integers(50, 300)), float(rng.uniform(0, 1)), rng)
        sig = signatures([a, b], num_perm=128, seed=int(rng.integers(0, 1000)))
        exact = exact_jaccard(a, b)
        errors.append(estimate_jaccard(sig[0], sig[1]) - exact)
        expected_var.append(exact * (1 - exact) / 128)
    errors = np.array(errors)
    assert abs(errors.mean()) < 0.01
    assert np.mean(np.abs(errors) <= 0.1) >= 0.95
    assert 0.75 < errors.std() / np.sqrt(np.mean(expected_var)) < 1.25


def test_estimate_jaccard_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        estimate_jaccard(np.zeros(4, dtype=np.uint64), np.zeros(5, dtype=np.uint64))


def test_similar_pairs_exact_values_by_hand():
    sets = [
        np.array([1, 2, 3, 4], dtype=np.uint64),
        np.array([1, 2, 3, 4], dtype=np.uint64),
        np.array([3, 4, 5], dtype=np.uint64),
        np.array([], dtype=np.uint64),
        np.array([], dtype=np.uint64),
    ]
    pairs = similar_pairs(sets, 0.4, method="exact")
    assert pairs.method == "exact"
    got = {
        (int(f), int(s)): float(j)
        for f, s, j in zip(pairs.first, pairs.second, pairs.similarity, strict=True)
    }
    assert got == {(0, 1): 1.0, (0, 2): pytest.approx(0.4), (1, 2): pytest.approx(0.4)}
    assert list(zip(pairs.first.tolist(), pairs.second.tolist(), strict=True)) == [
        (0, 1),
        (0, 2),
        (1, 2),
    ]


def test_similar_pairs_minhash_agrees_on_clear_cases():
    base = list(range(1, 201))
    sets = [
        np.array(base, dtype=np.uint64),
        np.array(base[:195] + [900, 901, 902, 903, 904], dtype=np.uint64),  # J = 195/205
        np.array(range(1000, 1200), dtype=np.uint64),  # J = 0
        np.array([], dtype=np.uint64),
        np.array([], dtype=np.uint64),  # empty sets never pair
    ]
    exact = similar_pairs(sets, 0.8, method="exact")
    estimated = similar_pairs(sets, 0.8, method="minhash")
    assert estimated.method == "minhash"
    assert exact.first.tolist() == estimated.first.tolist() == [0]
    assert exact.second.tolist() == estimated.second.tolist() == [1]
    assert estimated.similarity[0] == pytest.approx(195 / 205, abs=0.1)


def test_exact_and_minhash_agree_on_many_near_identical_sets():
    """Forty sets of 200 sharing 199: J = 199/201 for every pair, far above 0.8."""
    many = [np.append(np.arange(199, dtype=np.uint64), 10_000 + i) for i in range(40)]
    exact = similar_pairs(many, 0.8)
    estimated = similar_pairs(many, 0.8, method="minhash", num_perm=64)
    assert exact.method == "exact" and estimated.method == "minhash"
    assert len(exact.first) == 40 * 39 // 2
    assert np.allclose(exact.similarity, 199 / 201)
    assert exact.first.tolist() == estimated.first.tolist()
    assert exact.second.tolist() == estimated.second.tolist()


def test_exact_pair_counting_paths_agree(monkeypatch):
    """Listing pairs, the dense product and the sparse product give the same exact pairs."""
    from ragtrim.dedup import minhash

    rng = np.random.default_rng(3)
    sets = [
        rng.choice(60, size=int(rng.integers(5, 30)), replace=False).astype(np.uint64)
        for _ in range(25)
    ]
    listed = similar_pairs(sets, 0.2)
    monkeypatch.setattr(minhash, "_ENUMERATE_PAIRS", 0)
    dense = similar_pairs(sets, 0.2)
    monkeypatch.setattr(minhash, "_BLOCK_ELEMENTS", 1)
    sparse = similar_pairs(sets, 0.2)
    assert len(listed.first) > 10
    for other in (dense, sparse):
        assert listed.first.tolist() == other.first.tolist()
        assert listed.second.tolist() == other.second.tolist()
        assert np.allclose(listed.similarity, other.similarity)
    for f, s, j in zip(listed.first, listed.second, listed.similarity, strict=True):
        assert j == pytest.approx(exact_jaccard(sets[f], sets[s]))
    every = {(f, s) for f in range(25) for s in range(f + 1, 25)}
    below = every - set(zip(listed.first.tolist(), listed.second.tolist(), strict=True))
    assert all(exact_jaccard(sets[f], sets[s]) < 0.2 for f, s in below)


def test_similar_texts_matches_sets_and_word_table():
    texts = [" ".join(WORDS[:10]), " ".join(WORDS[:9] + ["omega"]), " ".join(WORDS[4:])]
    direct = similar_texts(texts, 0.7)
    via_sets = similar_pairs(shingle_sets(texts), 0.7)
    via_table = similar_texts(WordTable.of(texts), 0.7)
    for other in (via_sets, via_table):
        assert direct.first.tolist() == other.first.tolist() == [0]
        assert direct.second.tolist() == other.second.tolist() == [1]
    assert direct.similarity[0] == pytest.approx(7 / 9)


def test_word_table_subset_and_fingerprints():
    texts = ["A b, c!", "x y", "a B c", "c b a", ""]
    table = WordTable.of(texts)
    fp = table.fingerprints()
    assert fp[0] == fp[2] and fp[0] != fp[3] and fp[0] != fp[1]
    sub = table.subset([1, 3])
    assert sub.n == 2 and sub.counts().tolist() == [2, 3]
    assert sub.fingerprints().tolist() == fp[[1, 3]].tolist()


def test_invalid_arguments():
    with pytest.raises(ValueError, match="shingle size"):
        word_shingles("a b", size=0)
    with pytest.raises(ValueError, match="threshold"):
        similar_pairs([], 0.0)
    with pytest.raises(ValueError, match="method"):
        similar_pairs([np.array([1], dtype=np.uint64)], 0.5, method="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_perm"):
        signatures([np.array([1], dtype=np.uint64)], num_perm=0)
