"""Relevance features shared by the embedding reranker and the packer (pure functions).

Sentences are scored by a weighted sum of dense similarity to the query and IDF-weighted
lexical coverage of the query terms. The IDF comes from the units being scored (the
candidates of this one query), so scoring needs no corpus statistics and works the same on
candidates that came from a framework retriever.

Question words ("what", "how many", "which kind of") are dropped from the query's terms:
the sentence that answers a question rarely repeats them, so their IDF mass only dilutes the
coverage of the concepts asked about. Measured with the packer at equal answer recall: 6%
fewer context tokens on COVID-QA (400 questions), 10% on SQuAD (600 answerable questions).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from ragtrim.index.tokenization import Tokenizer


@functools.lru_cache(maxsize=1)
def default_tokenizer() -> Tokenizer:
    return Tokenizer()


#: interrogatives and auxiliaries of English questions (matched after stemming)
_QUESTION_WORDS = """what which who whom whose when where why how do does did were can could
would should has have had much many"""
QUESTION_WORDS = frozenset(_QUESTION_WORDS.split())


@functools.lru_cache(maxsize=1)
def _stemmed_question_words() -> frozenset[str]:
    tokenizer = default_tokenizer()
    return frozenset(term for word in QUESTION_WORDS for term in tokenizer.tokenize(word))


def query_terms(query: str, tokenizer: Tokenizer | None = None) -> list[str]:
    """The query's distinct content terms, sorted; question words are dropped unless nothing
    else is left ("What is it?" still has terms)."""
    tokenizer = tokenizer or default_tokenizer()
    terms = set(tokenizer.tokenize(query))
    content = terms - _stemmed_question_words()
    return sorted(content or terms)


@functools.lru_cache(maxsize=200_000)
def _cached_terms(text: str) -> frozenset[str]:
    """Sentences recur across queries (the same corpus answers them all): tokenise each once."""
    return frozenset(default_tokenizer().tokenize(text))


def minmax(values: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if values.size == 0:
        return values
    low, high = values.min(), values.max()
    return (values - low) / (high - low) if high > low else np.ones_like(values)


def lexical_coverage(
    query: str, texts: Sequence[str], tokenizer: Tokenizer | None = None
) -> np.ndarray:
    """Share of the query's IDF mass that each text contains (0..1), IDF over ``texts``.

    Coverage rather than BM25: a sentence either mentions a query concept or not, and long
    sentences must not win by repeating a term.
    """
    tokenizer = tokenizer or default_tokenizer()
    terms = query_terms(query, tokenizer)
    if not terms or not texts:
        return np.zeros(len(texts))
    term_index = {t: i for i, t in enumerate(terms)}
    wanted = frozenset(terms)
    present = np.zeros((len(texts), len(terms)), dtype=bool)
    tokenize = _cached_terms if tokenizer is default_tokenizer() else tokenizer.tokenize
    for row, tokens in enumerate(map(tokenize, texts)):
        for token in wanted.intersection(tokens):
            present[row, term_index[token]] = True
    df = present.sum(axis=0)
    idf = np.log(1.0 + (len(texts) - df + 0.5) / (df + 0.5))
    total = idf.sum()
    return (present @ idf) / total if total > 0 else np.zeros(len(texts))


def cosine_to_query(query_vector: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Inner product of L2-normalised vectors, clipped to [0, 1] (negatives carry no signal)."""
    if vectors.size == 0:
        return np.zeros(len(vectors))
    return np.clip(vectors @ query_vector, 0.0, 1.0)
