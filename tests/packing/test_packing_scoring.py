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


def test_heading_terms_count_for_the_sentences_under_them():
    """Hand-computed: query terms {port, admin}; idf over the three sentences alone."""
    texts = ["The default is 8470.", "Admin users log in here.", "Logs rotate daily."]
    headings = ["Default ports", "Admin API"]
    under = [0, 1, 1]  # heading of each text
    plain = lexical_coverage("Admin port?", texts)
    mixed = lexical_coverage("Admin port?", texts, headings=(headings, under, 0.5))

    def idf(df, n=3):
        return np.log(1 + (n - df + 0.5) / (df + 0.5))

    # sentences only: "admin" in text 1, "port" nowhere
    assert plain.tolist() == pytest.approx([0.0, idf(1) / (idf(1) + idf(0)), 0.0])
    # with headings: "port" under text 0, "admin" under texts 1 and 2
    with_headings = np.array([idf(1), idf(2), idf(2)]) / (idf(1) + idf(2))
    assert mixed.tolist() == pytest.approx((0.5 * plain + 0.5 * with_headings).tolist())
    assert mixed[0] > 0  # the answer sentence no longer scores zero


def test_zero_heading_weight_is_plain_coverage():
    texts = ["relay retention", "queue"]
    plain = lexical_coverage("relay retention", texts)
    off = lexical_coverage("relay retention", texts, headings=(["Relay"], [0, 0], 0.0))
    assert off.tolist() == plain.tolist()
