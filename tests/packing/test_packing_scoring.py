import numpy as np
import pytest

from ragtrim.scoring import cosine_to_query, lexical_coverage, minmax, query_terms


def test_question_words_are_not_query_terms():
    assert query_terms("How many days does Relay keep data?") == ["data", "day", "keep", "relay"]
    # a question made only of question words keeps them rather than matching nothing
    assert query_terms("Who did what?") == ["did", "what", "who"]


def test_question_words_do_not_dilute_coverage():
    texts = ["Relay keeps data for seven days.", "The cafeteria opens at noon."]
    scores = lexical_coverage("What does Relay keep?", texts)
    assert scores[0] == pytest.approx(1.0)
    assert scores[1] == 0.0


def test_coverage_weights_rare_terms_more():
    texts = ["relay broker", "relay queue", "relay retention", "retention policy"]
    scores = lexical_coverage("relay retention", texts)
    assert scores[2] == pytest.approx(1.0)
    # "retention" occurs in 2 texts, "relay" in 3: covering the rarer term is worth more
    assert scores[3] > scores[0]
    assert lexical_coverage("", texts).tolist() == [0.0] * 4


def test_minmax_and_cosine_edge_cases():
    assert minmax(np.array([2.0, 2.0])).tolist() == [1.0, 1.0]
    assert minmax(np.array([np.nan, 1.0, 3.0])).tolist() == [0.0, 1 / 3, 1.0]
    query = np.array([1.0, 0.0])
    assert cosine_to_query(query, np.array([[-1.0, 0.0], [0.6, 0.8]])).tolist() == [0.0, 0.6]
    assert cosine_to_query(query, np.zeros((0, 2))).size == 0
