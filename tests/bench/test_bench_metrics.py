import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtrim.bench.metrics import (
    aggregate,
    answer_recall,
    bootstrap_ci,
    doc_recall,
    evidence_recall,
    exact_match,
    f1_score,
    mrr,
    ndcg_at_k,
    normalize_answer,
    percentiles,
    recall_at_k,
    span_answers,
    word_form,
)
from ragtrim.errors import InputError

LOG2_3 = math.log2(3)  # discount of rank 2; rank 1 -> log2(2) = 1, rank 3 -> log2(4) = 2

# --- SQuAD normalisation, EM, F1 -----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("The Denver Broncos!", "denver broncos"),
        ("  A  cat,  an apple & the  dog. ", "cat apple dog"),
        ("Theater anthem", "theater anthem"),  # articles only as whole words
        ("U.S.A.", "usa"),  # punctuation is deleted, not replaced by a space
        ("1,000", "1000"),
        ("the-the", "thethe"),  # deleting '-' first glues the articles into one word
        ("São Paulo", "são paulo"),  # only ASCII punctuation is removed, like SQuAD
        ("Levi’s", "levi’s"),  # the curly apostrophe is not in string.punctuation
        ("a", ""),
        ("", ""),
    ],
)
def test_normalize_answer_matches_squad(raw, normalized):
    assert normalize_answer(raw) == normalized


def test_exact_match_max_over_golds():
    assert exact_match("the Denver Broncos.", ["Carolina Panthers", "Denver Broncos"]) == 1.0
    assert exact_match("Denver", ["Denver Broncos"]) == 0.0


def test_exact_match_and_f1_for_unanswerable_follow_squad_v2():
    # no gold (or only golds that normalise to "") means the expected answer is ""
    assert exact_match("", []) == 1.0
    assert exact_match("Broncos", []) == 0.0
    assert f1_score("", []) == 1.0
    assert f1_score("Broncos", []) == 0.0
    assert exact_match("", ["the"]) == 1.0


def test_f1_hand_computed():
    # pred [denver, broncos, won] vs gold [denver, broncos]: 2 common
    # P = 2/3, R = 2/2 = 1, F1 = 2 * (2/3 * 1) / (2/3 + 1) = (4/3) / (5/3) = 0.8
    assert f1_score("the Denver Broncos won", ["Denver Broncos"]) == pytest.approx(0.8)
    # bag of tokens: pred [x, x, y] vs gold [x, y, y]: common min(2,1) + min(1,2) = 2
    # P = R = 2/3 -> F1 = 2/3
    assert f1_score("x x y", ["x y y"]) == pytest.approx(2 / 3)
    # max over golds: 0.0 for the first, 1.0 for the second
    assert f1_score("Broncos", ["Panthers", "broncos"]) == 1.0


# --- span answers and answer recall --------------------------------------------------------


def test_span_answers_rule():
    assert span_answers(["yes"]) == ()
    assert span_answers(["NOT_ENOUGH_INFO"]) == ()
    assert span_answers(["SUPPORT", "contradict"]) == ()
    assert span_answers(["Yes."]) == ()
    assert span_answers([]) == ()
    assert span_answers(["the"]) == ()  # nothing left after normalisation
    # one non-label answer makes every answer a span, "yes" included
    assert span_answers(["yes", "in 1990"]) == ("yes", "in 1990")
    assert span_answers(["Denver Broncos", "the"]) == ("Denver Broncos",)


def test_word_form():
    assert word_form("NOT_ENOUGH_INFO") == "not enough info"
    assert word_form("(1115–1234)") == "1115 1234"  # Unicode dash splits words
    assert word_form("The  U.S.-based firm") == "the u s based firm"


@pytest.mark.parametrize(
    ("context", "answers", "expected"),
    [
        ("Founded in 1990 in Oslo.", ["10"], 0.0),  # no match inside a longer number
        ("About 10 birds.", ["10"], 1.0),
        ("Denmark-Norway was a union.", ["Denmark"], 1.0),  # hyphen splits words
        ("Jin dynasty (1115–1234) in the north", ["1115"], 1.0),
        ("the severe acute respiratory syndrome", ["he severe acute"], 1.0),  # cut mid-word
        ("THE DENVER BRONCOS won.", ["Denver Broncos."], 1.0),
        ("Panthers lost.", ["Denver Broncos", "Broncos"], 0.0),
        ("anything", ["yes"], None),  # labels are not spans
        ("anything", [], None),  # unanswerable
        ("anything", ["the"], None),
    ],
)
def test_answer_recall(context, answers, expected):
    assert answer_recall(context, answers) == expected


# --- evidence and document recall ----------------------------------------------------------


def test_evidence_recall_whitespace_insensitive_and_elision_breaks_containment():
    gold = ["Owls hunt at night.", "Their feathers are soft."]
    assert evidence_recall("x Owls  hunt\nat night. y", gold) == (0.5, False)
    assert evidence_recall("Owls hunt at night. Their feathers are soft.", gold) == (1.0, True)
    assert evidence_recall("Owls hunt … at night. Their feathers are soft.", gold) == (0.5, False)
    assert evidence_recall("anything", []) is None
    assert evidence_recall("anything", ["  "]) is None


@pytest.mark.parametrize(
    ("context", "gold", "expected"),
    [
        # HotpotQA gold sentences keep their leading space; the packer's header precedes them
        (
            "[1] David Huntsinger\nDavid Huntsinger is a pianist. He has worked with Carman.",
            [" He has worked with Carman.", "Larnelle Harris is a singer."],
            (0.5, False),  # 1 of 2
        ),
        # three gold sentences, two in two passages: 2/3
        (
            "[1] A\nOwls hunt at night.\n\n[2] B\nTheir feathers are soft.",
            ["Owls hunt at night.", "Their feathers are soft.", "Mice hide."],
            (2 / 3, False),
        ),
        # a sentence cut by the budget ("…" appended) is not present
        ("[1] A\nOwls hunt at…", ["Owls hunt at night."], (0.0, False)),
        # nor is one cut in two by a passage header
        ("[1] A\nOwls hunt\n\n[2] B\nat night.", ["Owls hunt at night."], (0.0, False)),
        # verbatim up to whitespace only: case and punctuation must match
        ("owls hunt at night.", ["Owls hunt at night."], (0.0, False)),
        ("Owls hunt at night!", ["Owls hunt at night."], (0.0, False)),
        # a gold sentence inside a longer one is contained, so it counts
        ("Barn owls hunt at night.", ["owls hunt at night."], (1.0, True)),
        # blank gold sentences are not counted: 1 of the 1 real one
        ("Owls hunt at night.", ["Owls hunt at night.", " \n"], (1.0, True)),
    ],
)
def test_evidence_recall_hand_computed(context, gold, expected):
    share, complete = evidence_recall(context, gold)
    assert (share, complete) == (pytest.approx(expected[0]), expected[1])


def test_doc_recall():
    assert doc_recall(["d1", "d2", "d1"], ["d1", "d3"]) == 0.5
    assert doc_recall([], ["d1"]) == 0.0
    assert doc_recall(["d1"], []) is None


# --- ranking -------------------------------------------------------------------------------


def test_ndcg_hand_computed():
    relevance = {"d1": 1, "d2": 2}
    # ranks [d3, d1, d2]: DCG = 0/1 + 1/log2(3) + 2/log2(4) = 0.63093 + 1 = 1.63093
    # ideal [d2, d1]:    IDCG = 2/1 + 1/log2(3) = 2.63093 -> nDCG = 0.61991
    expected = (1 / LOG2_3 + 2 / 2) / (2 + 1 / LOG2_3)
    assert ndcg_at_k(["d3", "d1", "d2"], relevance, k=10) == pytest.approx(expected)
    assert ndcg_at_k(["d3", "d1", "d2"], relevance, k=10) == pytest.approx(0.6199062)
    # k=2 cuts d2: DCG@2 = 1/log2(3) = 0.63093; IDCG@2 = 2.63093 -> 0.23981
    assert ndcg_at_k(["d3", "d1", "d2"], relevance, k=2) == pytest.approx(0.2398124)


def test_ndcg_duplicates_count_once_and_zero_without_relevant():
    relevance = {"d1": 1, "d2": 2}
    # [d1, d1, d2] -> [d1, d2]: DCG = 1/1 + 2/log2(3) = 2.26186; IDCG = 2.63093 -> 0.85972
    expected = (1 + 2 / LOG2_3) / (2 + 1 / LOG2_3)
    assert ndcg_at_k(["d1", "d1", "d2"], relevance, k=2) == pytest.approx(expected)
    assert ndcg_at_k(["d1", "d2"], {"d1": 0, "d3": -1}) == 0.0
    assert ndcg_at_k([], relevance) == 0.0


def test_ndcg_ideal_uses_judged_documents_not_retrieved():
    # a relevant document that was never retrieved still counts in the ideal ranking
    # DCG = 1/1; IDCG = 1/1 + 1/log2(3) -> 1 / 1.63093 = 0.61315
    assert ndcg_at_k(["d1"], {"d1": 1, "d9": 1}) == pytest.approx(1 / (1 + 1 / LOG2_3))


def test_recall_at_k_and_mrr():
    ranked = ["d3", "d1", "d2"]
    relevance = {"d1": 1, "d2": 2, "d4": 0}
    assert recall_at_k(ranked, relevance, k=2) == 0.5  # {d1} of {d1, d2}
    assert recall_at_k(ranked, relevance, k=3) == 1.0
    assert recall_at_k(ranked, {"d3": 0}, k=3) == 0.0
    assert mrr(ranked, relevance) == 0.5  # first relevant (d1) at rank 2
    assert mrr(ranked, relevance, k=1) == 0.0
    assert mrr(["d1", "d1", "d2"], {"d2": 1}) == 0.5  # the duplicate does not push d2 down
    with pytest.raises(InputError, match="k must be a positive integer"):
        ndcg_at_k(ranked, relevance, k=0)


# Reference values computed once with pytrec_eval (pytrec-eval-terrier 0.5.11, scores
# descending by rank) -- ndcg_cut_3, ndcg_cut_10, recall_3, recall_10, recip_rank. A check over
# 2,000 random cases (grades -1..3, unjudged and missing documents) agreed to 2.3e-16.
PYTREC_EVAL_REFERENCE = [
    ({"d1": 1, "d2": 2}, ["d3", "d1", "d2"], (0.6199062332840657, 0.6199062332840657, 1, 1, 0.5)),
    (
        {"a": 3, "b": 2, "c": 1, "d": 0, "e": -1},
        ["e", "c", "x", "b", "d", "a"],
        (0.13249650743056282, 0.537795041454055, 1 / 3, 1.0, 0.5),
    ),
    ({"a": 1, "b": 1, "c": 1}, ["x", "y", "c"], (0.23463936301137822,) * 2 + (1 / 3, 1 / 3, 1 / 3)),
    (
        {"a": 2, "b": -1, "c": 1, "z": 3},
        ["b", "a", "c", "q", "r", "s", "t", "u", "v", "w", "z"],
        (0.36999401273810767, 0.36999401273810767, 2 / 3, 2 / 3, 0.5),
    ),
]


@pytest.mark.parametrize(("relevance", "ranked", "reference"), PYTREC_EVAL_REFERENCE)
def test_ranking_metrics_match_pytrec_eval(relevance, ranked, reference):
    ours = (
        ndcg_at_k(ranked, relevance, k=3),
        ndcg_at_k(ranked, relevance, k=10),
        recall_at_k(ranked, relevance, k=3),
        recall_at_k(ranked, relevance, k=10),
        mrr(ranked, relevance),
    )
    assert ours == pytest.approx(reference, abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(st.sampled_from([f"d{i}" for i in range(12)]), st.integers(-1, 3)),
    st.lists(st.sampled_from([f"d{i}" for i in range(15)]), max_size=20),
    st.integers(1, 15),
)
def test_ndcg_bounded_and_one_for_ideal_ranking(relevance, ranked, k):
    assert 0.0 <= ndcg_at_k(ranked, relevance, k) <= 1.0 + 1e-12
    ideal = sorted(relevance, key=lambda d: -relevance[d])
    if any(g > 0 for g in relevance.values()):
        assert ndcg_at_k(ideal, relevance, k) == pytest.approx(1.0)
        assert recall_at_k(ideal, relevance, len(relevance)) == 1.0


# --- statistics ----------------------------------------------------------------------------


def test_bootstrap_is_deterministic_per_seed_and_ignores_none():
    values = [0.1, 0.5, 0.9, None, 0.3, 0.7, 0.2, 0.4]
    first = bootstrap_ci(values, n_resamples=500, seed=7)
    assert first == bootstrap_ci(values, n_resamples=500, seed=7)
    assert first[1:] != bootstrap_ci(values, n_resamples=500, seed=8)[1:]
    assert first == bootstrap_ci([v for v in values if v is not None], n_resamples=500, seed=7)
    assert first[0] == pytest.approx(3.1 / 7)


def test_bootstrap_matches_normal_approximation():
    # 100 Bernoulli values with p = 0.5: standard error sqrt(0.25 / 100) = 0.05,
    # so the 95% interval is about 0.5 +- 1.96 * 0.05 = [0.402, 0.598]
    mean, low, high = bootstrap_ci([0, 1] * 50, n_resamples=4000, seed=0)
    assert mean == 0.5
    assert low == pytest.approx(0.402, abs=0.02)
    assert high == pytest.approx(0.598, abs=0.02)


def test_bootstrap_edge_cases():
    assert bootstrap_ci([0.3, 0.3, 0.3]) == pytest.approx((0.3, 0.3, 0.3))
    assert bootstrap_ci([True, False])[0] == 0.5
    with pytest.raises(InputError, match="no values"):
        bootstrap_ci([None, None])
    with pytest.raises(InputError, match="NaN"):
        bootstrap_ci([0.1, float("nan")])
    with pytest.raises(InputError, match="confidence"):
        bootstrap_ci([1.0], confidence=1.0)


def test_bootstrap_blocks_larger_than_memory_bound_are_consistent():
    rng = np.random.default_rng(3)
    values = rng.random(30_000)  # 1000 x 30000 indices exceed one block
    mean, low, high = bootstrap_ci(values, n_resamples=1000, seed=1)
    assert low < mean < high
    assert high - low == pytest.approx(2 * 1.96 * values.std() / math.sqrt(values.size), rel=0.15)


def test_percentiles():
    assert percentiles([1, 2, 3, 4, None]) == {"p50": 2.5, "p95": pytest.approx(3.85)}
    assert percentiles([5.0], (90,)) == {"p90": 5.0}


def test_aggregate_counts_only_defined_values():
    records = [
        {"answer_recall": 1.0, "evidence_all": True, "ndcg": 0.5},
        {"answer_recall": None, "evidence_all": False},
        {"answer_recall": 0.0},
    ]
    summary = aggregate(records, ["answer_recall", "evidence_all", "ndcg", "absent"])
    assert summary["answer_recall"]["n"] == 2
    assert summary["answer_recall"]["mean"] == 0.5
    assert summary["evidence_all"] == {"mean": 0.5, "ci": (0.0, 1.0), "n": 2}
    assert summary["ndcg"] == {"mean": 0.5, "ci": (0.5, 0.5), "n": 1}
    assert summary["absent"] == {"mean": None, "ci": None, "n": 0}
    with pytest.raises(InputError, match="metric 'x'"):
        aggregate([{"x": "high"}], ["x"])
