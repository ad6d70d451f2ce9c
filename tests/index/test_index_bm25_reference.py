"""Differential tests: the okapi variant against rank_bm25.BM25Okapi, bm25+ against BM25Plus."""

import json
from pathlib import Path

import numpy as np
import pytest
from rank_bm25 import BM25Okapi, BM25Plus

from ragtrim.index.bm25 import BM25Index
from ragtrim.index.tokenization import Tokenizer

SCIFACT = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "scifact"

HANDWRITTEN = [
    "The quick brown fox jumps over the lazy dog.",
    "A lazy dog sleeps all day; the dog dreams of the fox.",
    "Foxes are quick and clever animals found in many habitats.",
    "Dogs and foxes both belong to the family Canidae.",
    "The brown bear is not related to the fox or the dog.",
    "Quick quick quick: repetition raises term frequency.",
    "An unrelated sentence about databases and indexes.",
    "Inverted indexes map terms to the documents that contain them.",
    "BM25 ranks documents by term frequency and inverse document frequency.",
    "the the the the the",
    "",
    "Fox.",
]
QUERIES = [
    "quick fox",
    "the lazy dog",
    "the the dog",
    "inverse document frequency",
    "bear",
    "nothing matches here",
    "fox fox fox dog",
    "",
]


def reference_top10(scores: np.ndarray) -> list[int]:
    """rank_bm25's scores ordered with ragtrim's tie rule (row ascending)."""
    return np.lexsort((np.arange(len(scores)), -scores))[:10].tolist()


def assert_matches_okapi(token_lists, queries, k1=1.5, b=0.75, epsilon=0.25):
    reference = BM25Okapi(token_lists, k1=k1, b=b, epsilon=epsilon)
    index = BM25Index(k1=k1, b=b, variant="okapi", epsilon=epsilon)
    index.add(token_lists)
    for query in queries:
        expected = reference.get_scores(query)
        assert np.allclose(index.scores(query), expected, rtol=1e-12, atol=1e-12), query
        rows, scores = index.search(query, 10)
        assert rows.tolist() == reference_top10(expected), query
        assert np.allclose(scores, expected[rows], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stopwords", ["english", None])
@pytest.mark.parametrize(("k1", "b"), [(1.5, 0.75), (0.9, 0.4), (2.0, 0.95)])
def test_okapi_matches_rank_bm25_on_handwritten_corpus(stopwords, k1, b):
    # without stop words "the" occurs in more than half of the documents: negative idf, floored
    tokenizer = Tokenizer(stopwords=stopwords)
    assert_matches_okapi(
        tokenizer.tokenize_many(HANDWRITTEN), tokenizer.tokenize_many(QUERIES), k1=k1, b=b
    )


def test_empty_rows_score_zero_where_rank_bm25_gives_nan_at_b_1():
    # b = 1 and dl = 0 make rank_bm25 compute 0 / 0 for the empty documents
    token_lists = Tokenizer().tokenize_many(HANDWRITTEN)
    reference = BM25Okapi(token_lists, k1=1.5, b=1.0)
    index = BM25Index(k1=1.5, b=1.0, variant="okapi")
    index.add(token_lists)
    with np.errstate(invalid="ignore"):
        expected = reference.get_scores(["quick", "fox"])
    empty = np.array([not tokens for tokens in token_lists])
    assert np.isnan(expected[empty]).all()
    scores = index.scores(["quick", "fox"])
    assert (scores[empty] == 0).all()
    assert np.allclose(scores[~empty], expected[~empty], rtol=1e-12, atol=1e-12)


def test_okapi_matches_rank_bm25_with_raw_whitespace_tokens():
    token_lists = [text.lower().split() for text in HANDWRITTEN]
    assert_matches_okapi(token_lists, [q.split() for q in QUERIES], epsilon=0.5)


def test_bm25_plus_matches_rank_bm25_except_the_delta_of_absent_terms():
    """rank_bm25 also gives idf * delta to rows *without* a query term; Lv & Zhai do not."""
    tokenizer = Tokenizer()
    token_lists = tokenizer.tokenize_many(HANDWRITTEN)
    delta = 0.7
    reference = BM25Plus(token_lists, k1=1.2, b=0.75, delta=delta)
    index = BM25Index(k1=1.2, b=0.75, variant="bm25+", delta=delta)
    index.add(token_lists)
    for query in tokenizer.tokenize_many(QUERIES):
        absent_bonus = np.array(
            [
                sum(delta * reference.idf.get(term, 0.0) for term in query if term not in tokens)
                for tokens in token_lists
            ]
        )
        assert np.allclose(index.scores(query), reference.get_scores(query) - absent_bonus)


def load_scifact_texts(limit: int) -> list[str]:
    texts = []
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            texts.append(f"{record['title']} {record['text']}")
            if len(texts) == limit:
                break
    return texts


@pytest.mark.skipif(
    not (SCIFACT / "corpus.jsonl").is_file(),
    reason=f"SciFact not found at {SCIFACT}: the real-text differential test needs it",
)
@pytest.mark.parametrize("stopwords", ["english", None])
def test_okapi_matches_rank_bm25_on_500_scifact_abstracts(stopwords):
    tokenizer = Tokenizer(stopwords=stopwords)
    token_lists = tokenizer.tokenize_many(load_scifact_texts(500))
    with (SCIFACT / "queries.jsonl").open(encoding="utf-8") as handle:
        claims = [json.loads(line)["question"] for line in handle][:150]
    # also query with whole abstracts: long queries with many repeated terms
    queries = tokenizer.tokenize_many(claims) + token_lists[:5]
    assert_matches_okapi(token_lists, queries)
