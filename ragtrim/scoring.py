"""Relevance features shared by the embedding reranker and the packer (pure functions).

Sentences are scored by a weighted sum of dense similarity to the query and IDF-weighted
lexical coverage of the query terms. The IDF comes from the units being scored (the
candidates of this one query), so scoring needs no corpus statistics and works the same on
candidates that came from a framework retriever.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from ragtrim.index.tokenization import Tokenizer


@functools.lru_cache(maxsize=1)
def default_tokenizer() -> Tokenizer:
    return Tokenizer()


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
    terms = sorted(set(tokenizer.tokenize(query)))
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
