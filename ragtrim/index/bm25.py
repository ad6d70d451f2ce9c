"""BM25 over a sparse term-frequency matrix: pure scoring functions plus one mutable index.

Rows are retrieval units (chunks), columns are terms. Term frequencies are the stored state;
per-(row, term) BM25 weights are derived from them in one vectorised O(nnz) pass whenever rows
were added or removed, so a query only sums the weight columns of its terms.

Variants (``N`` alive rows, ``df`` rows containing the term, ``dl`` row length in tokens,
``avgdl`` mean ``dl`` over alive rows, ``norm = k1 * (1 - b + b * dl / avgdl)``):

- ``"lucene"`` (bm25s ``method="lucene"``, Lucene >= 8): ``idf = ln(1 + (N - df + 0.5) /
  (df + 0.5))``, weight ``idf * tf / (tf + norm)``. Lucene dropped the constant ``(k1 + 1)``
  factor; it does not change rankings.
- ``"okapi"`` (exactly ``rank_bm25.BM25Okapi``): ``idf = ln(N - df + 0.5) - ln(df + 0.5)``;
  a negative idf is replaced by ``epsilon * mean idf``, the mean taken over every term of the
  alive rows *before* the replacement; weight ``idf * tf * (k1 + 1) / (tf + norm)``.
- ``"bm25+"`` (Lv & Zhai 2011): ``idf = ln((N + 1) / df)``, weight
  ``idf * (tf * (k1 + 1) / (tf + norm) + delta)`` for rows that contain the term, as in the
  paper (the sum runs over terms in both query and document). rank_bm25's and bm25s's BM25+
  also add ``idf * delta`` to rows *without* the term, so there every row gets the same
  ``delta`` bonus and it cannot change a ranking; here it lifts rows that contain a term over
  rows that do not, which is the point of BM25+.

A query term repeated n times contributes n times (as in rank_bm25, bm25s and a Lucene
BooleanQuery with repeated clauses). Query terms absent from the index contribute nothing.
Removed rows are tombstones: they are excluded from N, avgdl and df, and never returned.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import scipy.sparse as sp

from ragtrim.errors import ConfigError, IndexStoreError, InputError

Variant = Literal["lucene", "okapi", "bm25+"]
VARIANTS: tuple[str, ...] = get_args(Variant)

#: argmax of nDCG@10 on SciFact's 809 train claims over k1 in {0.9, 1.2, 1.5} for the default
#: tokenizer and variant; the curve is flat there (0.6936 / 0.6937 / 0.6933), see
#: benchmarks/results/bm25_scifact.md
DEFAULT_K1 = 1.2
DEFAULT_B = 0.75

FORMAT = "ragtrim-bm25"
FORMAT_VERSION = 1
_PREFIX = "bm25_"
TF_DATA_FILE = f"{_PREFIX}tf_data.npy"
TF_INDICES_FILE = f"{_PREFIX}tf_indices.npy"
TF_INDPTR_FILE = f"{_PREFIX}tf_indptr.npy"
DOC_LENGTHS_FILE = f"{_PREFIX}doc_lengths.npy"
ALIVE_FILE = f"{_PREFIX}alive.npy"
VOCAB_FILE = f"{_PREFIX}vocab.json"
PARAMS_FILE = f"{_PREFIX}params.json"


def term_frequencies(token_lists: Sequence[Sequence[str]], vocab: dict[str, int]) -> sp.csr_matrix:
    """Canonical CSR of term counts (rows = token lists); unseen terms are appended to ``vocab``.

    If a token is not a string, ``vocab`` is left as it was and ``InputError`` is raised.
    """
    for row, tokens in enumerate(token_lists):
        if isinstance(tokens, str):
            raise InputError(
                f"token list #{row} is a string; expected a list of tokens "
                "(tokenize the text first)"
            )
    lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
    known = len(vocab)
    try:
        term_ids = np.fromiter(
            (vocab.setdefault(token, len(vocab)) for tokens in token_lists for token in tokens),
            dtype=np.int64,
            count=int(lengths.sum()),
        )
        bad: object = next((t for t in islice(vocab, known, None) if not isinstance(t, str)), None)
    except TypeError as exc:
        bad = exc
    if bad is not None:
        for term in list(islice(vocab, known, None)):
            del vocab[term]
        raise InputError(f"token lists: tokens must be strings, got {bad!r}")
    rows = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    counts = sp.csr_matrix(
        (np.ones(len(term_ids), dtype=np.int32), (rows, term_ids)),
        shape=(len(lengths), len(vocab)),
    )
    counts.sum_duplicates()
    return counts


def idf(df: np.ndarray, n_docs: int, variant: Variant, epsilon: float = 0.25) -> np.ndarray:
    """Inverse document frequency per term; terms with ``df == 0`` get 0 (they match nothing)."""
    df = np.asarray(df, dtype=np.float64)
    present = df > 0
    values = np.zeros(len(df), dtype=np.float64)
    dfp = df[present]
    if variant == "lucene":
        values[present] = np.log1p((n_docs - dfp + 0.5) / (dfp + 0.5))
    elif variant == "okapi":
        raw = np.log(n_docs - dfp + 0.5) - np.log(dfp + 0.5)
        if len(raw):
            raw[raw < 0] = epsilon * raw.mean()
        values[present] = raw
    elif variant == "bm25+":
        values[present] = np.log((n_docs + 1) / dfp)
    else:
        raise ConfigError(f"BM25 variant: unknown {variant!r}; valid: {', '.join(VARIANTS)}")
    return values


def weights(
    tf_csr: sp.csr_matrix,
    doc_lengths: np.ndarray,
    k1: float,
    b: float,
    variant: Variant,
    delta: float = 1.0,
    epsilon: float = 0.25,
    alive: np.ndarray | None = None,
) -> sp.csc_matrix:
    """Per-(row, term) BM25 weights as CSC (a query sums columns).

    Rows outside ``alive`` get no weights and do not count in N, avgdl or df.
    """
    n_rows, n_terms = tf_csr.shape
    entry_rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(tf_csr.indptr))
    columns = tf_csr.indices
    tf = tf_csr.data.astype(np.float64)
    if alive is not None and not alive.all():
        keep = alive[entry_rows]
        entry_rows, columns, tf = entry_rows[keep], columns[keep], tf[keep]
    n_docs = n_rows if alive is None else int(alive.sum())
    if not len(tf):
        return sp.csc_matrix((n_rows, n_terms), dtype=np.float64)
    lengths = np.asarray(doc_lengths, dtype=np.float64)
    avgdl = lengths.mean() if alive is None else lengths[alive].mean()
    term_idf = idf(np.bincount(columns, minlength=n_terms), n_docs, variant, epsilon)
    norm = k1 * (1 - b + b * lengths[entry_rows] / avgdl)
    if variant == "lucene":
        saturation = tf / (tf + norm)
    elif variant == "okapi":
        saturation = tf * (k1 + 1) / (tf + norm)
    else:
        saturation = tf * (k1 + 1) / (tf + norm) + delta
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(entry_rows, minlength=n_rows), out=indptr[1:])
    matrix = sp.csr_matrix(
        (term_idf[columns] * saturation, columns, indptr), shape=(n_rows, n_terms)
    )
    return matrix.tocsc()


def query_term_counts(
    query_tokens: Sequence[str], vocab: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct indexed term ids of a query and how often each occurs in it."""
    if isinstance(query_tokens, str):
        raise InputError("query tokens: got a string; expected a list of tokens")
    ids = np.fromiter((i for i in map(vocab.get, query_tokens) if i is not None), dtype=np.int64)
    return np.unique(ids, return_counts=True)


def sum_columns(weights_csc: sp.csc_matrix, term_ids: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``weights[:, term_ids] @ counts`` without building the slice: one gather + bincount."""
    n_rows = weights_csc.shape[0]
    indptr = weights_csc.indptr
    starts = indptr[term_ids]
    sizes = indptr[term_ids + 1] - starts
    total = int(sizes.sum())
    if total == 0:
        return np.zeros(n_rows, dtype=np.float64)
    ends = np.cumsum(sizes)
    positions = np.arange(total, dtype=np.int64) + np.repeat(starts - (ends - sizes), sizes)
    contributions = weights_csc.data[positions]
    if (counts != 1).any():
        contributions = contributions * np.repeat(counts, sizes)
    return np.bincount(weights_csc.indices[positions], contributions, minlength=n_rows)


def top_k(
    scores: np.ndarray, k: int, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The k best allowed rows by score desc, ties by row asc, in O(n) plus O(k log k).

    A partition finds the k-th best score; every row above it is kept and rows equal to it fill
    the remaining places in row order, so ties at the cut are broken deterministically too.
    """
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=scores.dtype)
    rows = np.flatnonzero(allowed) if allowed is not None else np.arange(len(scores))
    values = scores[rows] if allowed is not None else scores
    if k < len(values):
        cut = len(values) - k
        kth = np.partition(values, cut)[cut]
        above = np.flatnonzero(values > kth)
        tied = np.flatnonzero(values == kth)[: k - len(above)]
        picked = np.concatenate([above, tied])
    else:
        picked = np.arange(len(values))
    order = picked[np.lexsort((rows[picked], -values[picked]))]
    return rows[order], values[order]


def _check_params(k1: Any, b: Any, variant: Any, delta: Any, epsilon: Any) -> None:
    def number(name: str, value: Any, low: float, high: float = math.inf) -> None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not (low <= value <= high) or not math.isfinite(value):
            bound = f"in [{low}, {high}]" if math.isfinite(high) else f">= {low}"
            raise ConfigError(f"BM25Index.{name}: expected a finite number {bound}, got {value!r}")

    number("k1", k1, 0.0)
    number("b", b, 0.0, 1.0)
    number("delta", delta, 0.0)
    number("epsilon", epsilon, 0.0)
    if variant not in VARIANTS:
        raise ConfigError(
            f"BM25Index.variant: unknown variant {variant!r}; valid: {', '.join(VARIANTS)}"
        )


class BM25Index:
    """An append-only BM25 index with tombstone deletes; rows are numbered from 0 in add order.

    Reads (``scores``, ``search``) may run concurrently; writes (``add``, ``remove``,
    ``compact``) must not overlap with anything else.
    """

    def __init__(
        self,
        k1: float = DEFAULT_K1,
        b: float = DEFAULT_B,
        variant: Variant = "lucene",
        delta: float = 1.0,
        epsilon: float = 0.25,
    ) -> None:
        _check_params(k1, b, variant, delta, epsilon)
        self.k1 = float(k1)
        self.b = float(b)
        self.variant: Variant = variant
        self.delta = float(delta)
        self.epsilon = float(epsilon)
        self.vocab: dict[str, int] = {}
        self._tf = sp.csr_matrix((0, 0), dtype=np.int32)
        self._pending: list[sp.csr_matrix] = []
        self._doc_lengths = np.zeros(0, dtype=np.int64)
        self._alive = np.zeros(0, dtype=bool)
        self._weights: sp.csc_matrix | None = None
        self._lock = threading.Lock()

    @property
    def params(self) -> dict[str, Any]:
        return {
            "k1": self.k1,
            "b": self.b,
            "variant": self.variant,
            "delta": self.delta,
            "epsilon": self.epsilon,
        }

    def __len__(self) -> int:
        return len(self._alive)

    @property
    def n_alive(self) -> int:
        return int(self._alive.sum())

    @property
    def alive(self) -> np.ndarray:
        """Read-only view of the alive mask (one bool per row)."""
        view = self._alive.view()
        view.flags.writeable = False
        return view

    @property
    def nnz(self) -> int:
        """Stored (row, term) pairs, removed rows included until ``compact``."""
        return int(self._term_frequencies().nnz)

    def memory_usage(self) -> dict[str, int]:
        """Bytes of the arrays held: term frequencies, cached weights (0 until the first
        query after a change) and per-row statistics."""
        tf = self._term_frequencies()
        weights_bytes = 0
        if self._weights is not None:
            w = self._weights
            weights_bytes = w.data.nbytes + w.indices.nbytes + w.indptr.nbytes
        return {
            "term_frequencies": tf.data.nbytes + tf.indices.nbytes + tf.indptr.nbytes,
            "weights": weights_bytes,
            "rows": self._doc_lengths.nbytes + self._alive.nbytes,
        }

    @property
    def nbytes(self) -> int:
        return sum(self.memory_usage().values())

    def add(self, token_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """Append one row per token list; returns their row numbers."""
        block = term_frequencies(token_lists, self.vocab)
        first = len(self)
        self._pending.append(block)
        self._doc_lengths = np.concatenate(
            [self._doc_lengths, np.asarray(block.sum(axis=1), dtype=np.int64).ravel()]
        )
        self._alive = np.concatenate([self._alive, np.ones(block.shape[0], dtype=bool)])
        self._weights = None
        return np.arange(first, len(self), dtype=np.int64)

    def remove(self, rows: Sequence[int] | np.ndarray) -> None:
        """Tombstone rows; removing an already removed row is a no-op."""
        rows = self._check_rows(rows, "remove")
        if len(rows) and self._alive[rows].any():
            self._alive[rows] = False
            self._weights = None

    def compact(self) -> np.ndarray:
        """Drop removed rows and renumber the rest; returns the old row number of each kept row."""
        keep = np.flatnonzero(self._alive)
        self._tf = self._term_frequencies()[keep]
        self._doc_lengths = self._doc_lengths[keep]
        self._alive = np.ones(len(keep), dtype=bool)
        self._weights = None
        return keep

    def scores(self, query_tokens: Sequence[str], mask: np.ndarray | None = None) -> np.ndarray:
        """One BM25 score per row; removed rows and rows outside ``mask`` score ``-inf``."""
        scores = self._raw_scores(query_tokens)
        scores[~self._allowed(mask)] = -np.inf
        return scores

    def search(
        self, query_tokens: Sequence[str], k: int, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k alive rows allowed by ``mask``, by score desc then row asc.

        Rows that share no term with the query score 0 and are still returned when fewer than
        k rows match: whenever k rows are allowed, k rows come back.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise InputError(f"BM25 search: k must be an integer >= 0, got {k!r}")
        allowed = self._allowed(mask)
        if k == 0 or not allowed.any():
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        scores = self._raw_scores(query_tokens)
        return top_k(scores, int(k), None if allowed.all() else allowed)

    def save(self, directory: str | Path) -> None:
        """Write plain files (``.npy`` without pickles, JSON) into ``directory``.

        ``params`` is written last, so an interrupted save fails to load rather than loading
        mixed data; for atomic replacement of a previous save use the index persistence layer.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tf = self._term_frequencies()
        np.save(directory / TF_DATA_FILE, tf.data.astype(np.int32), allow_pickle=False)
        np.save(directory / TF_INDICES_FILE, tf.indices.astype(np.int32), allow_pickle=False)
        np.save(directory / TF_INDPTR_FILE, tf.indptr.astype(np.int64), allow_pickle=False)
        np.save(directory / DOC_LENGTHS_FILE, self._doc_lengths, allow_pickle=False)
        np.save(directory / ALIVE_FILE, self._alive, allow_pickle=False)
        terms = sorted(self.vocab, key=self.vocab.__getitem__)
        (directory / VOCAB_FILE).write_text(json.dumps(terms, ensure_ascii=False), "utf-8")
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **self.params,
            "n_rows": len(self),
            "n_terms": len(terms),
            "nnz": int(tf.nnz),
        }
        (directory / PARAMS_FILE).write_text(json.dumps(meta, indent=2), "utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> BM25Index:
        """Read a saved index, checking every file against the others (``IndexStoreError``)."""
        directory = Path(directory)
        meta = _read_json(directory / PARAMS_FILE)
        params_path = directory / PARAMS_FILE
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise IndexStoreError(f"{params_path}: not a ragtrim BM25 parameter file")
        if meta.get("format_version") != FORMAT_VERSION:
            raise IndexStoreError(
                f"{params_path}: format version {meta.get('format_version')!r}; this ragtrim "
                f"reads version {FORMAT_VERSION}"
            )
        try:
            index = cls(**{name: meta[name] for name in ("k1", "b", "variant", "delta", "epsilon")})
        except (KeyError, ConfigError) as exc:
            raise IndexStoreError(f"{params_path}: invalid BM25 parameters: {exc}") from None
        counts = {}
        for name in ("n_rows", "n_terms", "nnz"):
            value = meta.get(name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise IndexStoreError(
                    f"{params_path}: '{name}' must be an integer >= 0, got {value!r}"
                )
            counts[name] = value
        n_rows, n_terms, nnz = counts["n_rows"], counts["n_terms"], counts["nnz"]

        terms = _read_json(directory / VOCAB_FILE)
        vocab_path = directory / VOCAB_FILE
        if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
            raise IndexStoreError(f"{vocab_path}: expected a JSON list of strings")
        if len(terms) != n_terms:
            raise IndexStoreError(
                f"{vocab_path}: {len(terms)} terms, {params_path.name} says {n_terms}"
            )
        vocab = {term: i for i, term in enumerate(terms)}
        if len(vocab) != len(terms):
            raise IndexStoreError(f"{vocab_path}: duplicate terms")

        data = _read_array(directory / TF_DATA_FILE, "iu", nnz)
        indices = _read_array(directory / TF_INDICES_FILE, "iu", nnz)
        indptr = _read_array(directory / TF_INDPTR_FILE, "iu", n_rows + 1)
        doc_lengths = _read_array(directory / DOC_LENGTHS_FILE, "iu", n_rows)
        alive = _read_array(directory / ALIVE_FILE, "b", n_rows)
        if indptr[0] != 0 or indptr[-1] != nnz or (np.diff(indptr) < 0).any():
            raise IndexStoreError(
                f"{directory / TF_INDPTR_FILE}: row pointers must rise from 0 to {nnz}"
            )
        if nnz and (indices.min() < 0 or indices.max() >= n_terms):
            raise IndexStoreError(
                f"{directory / TF_INDICES_FILE}: term ids must lie in [0, {n_terms})"
            )
        if nnz and data.min() < 1:
            raise IndexStoreError(f"{directory / TF_DATA_FILE}: term frequencies must be >= 1")
        tf = sp.csr_matrix(
            (data.astype(np.int32), indices.astype(np.int32), indptr.astype(np.int64)),
            shape=(n_rows, n_terms),
        )
        if not tf.has_canonical_format:
            raise IndexStoreError(
                f"{directory / TF_INDICES_FILE}: term ids must be sorted and unique within a row"
            )
        if not np.array_equal(np.asarray(tf.sum(axis=1)).ravel(), doc_lengths):
            raise IndexStoreError(
                f"{directory / DOC_LENGTHS_FILE}: lengths differ from the term frequency row sums"
            )
        index.vocab = vocab
        index._tf = tf
        index._doc_lengths = doc_lengths.astype(np.int64)
        index._alive = alive.copy()
        return index

    def _check_rows(self, rows: Sequence[int] | np.ndarray, action: str) -> np.ndarray:
        array = np.asarray(rows)
        if array.size == 0:
            return np.zeros(0, dtype=np.int64)
        if array.ndim != 1 or array.dtype.kind not in "iu":
            raise InputError(
                f"BM25 {action}: rows must be a 1-d sequence of integers, got {rows!r}"
            )
        bad = array[(array < 0) | (array >= len(self))]
        if len(bad):
            raise InputError(
                f"BM25 {action}: row {int(bad[0])} out of range; the index has {len(self)} rows"
            )
        return array.astype(np.int64)

    def _allowed(self, mask: np.ndarray | None) -> np.ndarray:
        if mask is None:
            return self._alive
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != self._alive.shape:
            raise InputError(
                f"BM25 mask: expected a bool array of shape ({len(self)},), "
                f"got {mask.dtype} {mask.shape}"
            )
        return self._alive & mask

    def _term_frequencies(self) -> sp.csr_matrix:
        if self._pending:
            blocks = [self._tf, *self._pending]
            n_terms = len(self.vocab)
            for block in blocks:
                block.resize(block.shape[0], n_terms)
            self._tf = sp.vstack(blocks, format="csr", dtype=np.int32)
            self._pending = []
        return self._tf

    def _weight_matrix(self) -> sp.csc_matrix:
        matrix = self._weights
        if matrix is None:
            with self._lock:
                matrix = self._weights
                if matrix is None:
                    matrix = weights(
                        self._term_frequencies(),
                        self._doc_lengths,
                        self.k1,
                        self.b,
                        self.variant,
                        self.delta,
                        self.epsilon,
                        self._alive,
                    )
                    self._weights = matrix
        return matrix

    def _raw_scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        term_ids, counts = query_term_counts(query_tokens, self.vocab)
        return sum_columns(self._weight_matrix(), term_ids, counts)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise IndexStoreError(f"{path}: missing file of the saved BM25 index") from None
    except (OSError, ValueError) as exc:
        raise IndexStoreError(f"{path}: unreadable JSON: {exc}") from None


def _read_array(path: Path, kinds: str, length: int) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise IndexStoreError(f"{path}: missing file of the saved BM25 index") from None
    except (OSError, ValueError, EOFError) as exc:
        raise IndexStoreError(f"{path}: corrupted array: {exc}") from None
    if not isinstance(array, np.ndarray) or array.ndim != 1 or array.dtype.kind not in kinds:
        raise IndexStoreError(
            f"{path}: expected a 1-d array of kind {kinds!r}, got "
            f"{getattr(array, 'dtype', type(array))} {getattr(array, 'shape', '')}"
        )
    if len(array) != length:
        raise IndexStoreError(f"{path}: {len(array)} entries, expected {length}")
    return array
