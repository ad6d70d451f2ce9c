"""Word-shingle sets, MinHash signatures and Jaccard similarity, vectorised with numpy.

Near-duplicate detection compares sets of word n-grams ("shingles"). Every hash here is the
same in every process and on every machine (Python's ``hash()`` is salted per process): words
are hashed with a polynomial hash over their UTF-8 bytes, shingles mix word hashes with the
SplitMix64 finaliser, and MinHash permutations are universal hashes ``(a*x + b) mod 2^61-1``
whose parameters come from a SplitMix64 stream of the seed (not from numpy's RNG, whose
streams may change between numpy versions).

``similar_pairs`` finds every pair of sets at or above a Jaccard threshold, by default
exactly: intersections are the product of the (sets x shared shingles) incidence matrix, and
only shingles that two or more sets share enter it. Measured on a 2-core VM (150-word texts),
exact beat MinHash-128 at every size tried, and it has no estimation error at the threshold
(MinHash-128 has a standard deviation of ~0.035 at J = 0.8):

    candidates             exact      MinHash-128
    50 distinct            0.55 ms    18 ms
    800 distinct           12 ms      385 ms
    50 near-identical      0.58 ms    15 ms
    800 near-identical     65 ms      530 ms
    3000 near-identical    1.5 s      4.4 s

MinHash only pays with LSH banding at corpus scale, where candidate pairs cannot be
enumerated; the signatures here serve pipelines that want MinHash semantics (``minhash``).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

MERSENNE_61 = (1 << 61) - 1
_MASK64 = (1 << 64) - 1
_P61 = np.uint64(MERSENNE_61)
_LOW31 = np.uint64((1 << 31) - 1)
_LOW30 = np.uint64((1 << 30) - 1)
_EMPTY_SLOT = np.uint64(_MASK64)  # larger than any hash mod 2^61-1: the min of an empty set

# Polynomial byte hash: an odd multiplier is invertible mod 2^64, which lets one prefix sum
# hash every word at once: hash(s, e) = (G[e] - G[s]) * Q^-s.
_BYTE_BASE = 0x100000001B3  # FNV-1a 64-bit prime
_BYTE_BASE_INV = pow(_BYTE_BASE, -1, 1 << 64)
_WORD_BASE = 0x9E3779B97F4A7C15  # odd golden-ratio constant; combines words into shingles

# Anything that is not a letter or digit separates words (the ``[\W_]`` regex class). The
# ASCII table is the same rule for ASCII text, applied without the regex engine.
_NON_WORD = re.compile(r"[\W_]+")
_ASCII_NON_WORD = str.maketrans({chr(c): " " for c in range(128) if not chr(c).isalnum()})
_SPACE = 0x20

# Above this many elements, arrays are processed in blocks (or sparsely).
_BLOCK_ELEMENTS = 1 << 22
# Up to this many (set, set, shared shingle) incidences, pairs are listed instead of multiplied:
# ~20 ns each, measured, against ~0.1 ms for the smallest matrix product.
_ENUMERATE_PAIRS = 1 << 14

Method = Literal["exact", "minhash"]


def normalise_words(text: str) -> str:
    """Casefolded text whose words (runs of letters/digits) are separated by spaces only.

    Non-ASCII text is NFKC-normalised first so ligatures, full-width forms and composed
    accents compare equal to their plain spellings.
    """
    if text.isascii():
        return text.lower().translate(_ASCII_NON_WORD)
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold())


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (in place on a uint64 array): spreads every input bit everywhere."""
    values ^= values >> np.uint64(30)
    values *= np.uint64(0xBF58476D1CE4E5B9)
    values ^= values >> np.uint64(27)
    values *= np.uint64(0x94D049BB133111EB)
    values ^= values >> np.uint64(31)
    return values


@functools.lru_cache(maxsize=8)
def _powers(base: int, length: int) -> np.ndarray:
    """``base**i mod 2^64`` for i in [0, length); lengths are rounded up so the cache hits."""
    powers = np.full(length, base, dtype=np.uint64)
    powers[0] = 1
    powers = np.cumprod(powers, dtype=np.uint64)
    powers.flags.writeable = False
    return powers


def _power_table(base: int, needed: int) -> np.ndarray:
    size = 1 << max(needed, 1024).bit_length()
    return _powers(base, size)


def _word_hashes(normalised: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Hash of every word of every text, and the index of the text each word belongs to."""
    encoded = [t.encode("utf-8") for t in normalised]
    lengths = np.fromiter((len(b) + 1 for b in encoded), dtype=np.int64, count=len(encoded))
    data = np.frombuffer(b" ".join(encoded) + b" ", dtype=np.uint8)
    is_word = data != _SPACE
    edges = np.diff(is_word.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    if not len(starts):
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    powers = _power_table(_BYTE_BASE, len(data) + 1)
    inverse = _power_table(_BYTE_BASE_INV, len(data) + 1)
    prefix = np.zeros(len(data) + 1, dtype=np.uint64)
    np.cumsum(data * powers[: len(data)], out=prefix[1:])
    hashes = (prefix[ends] - prefix[starts]) * inverse[starts]
    hashes ^= (ends - starts).astype(np.uint64) * np.uint64(_WORD_BASE)
    text_starts = np.cumsum(lengths) - lengths
    owners = np.searchsorted(text_starts, starts, side="right") - 1
    return _splitmix64(hashes), owners


@dataclass(frozen=True)
class WordTable:
    """The hash of every word of ``n`` texts, grouped by text (``owners`` non-decreasing).

    Tokenising is the costly part of near-duplicate detection, so a run tokenises once and
    both the exact-copy pre-check (``fingerprints``) and the shingles reuse the table.
    """

    hashes: np.ndarray
    owners: np.ndarray
    n: int

    @classmethod
    def of(cls, texts: Sequence[str]) -> WordTable:
        hashes, owners = _word_hashes([normalise_words(t) for t in texts])
        return cls(hashes, owners, len(texts))

    def subset(self, keep: Sequence[int]) -> WordTable:
        """The table of texts ``keep`` (increasing indices), renumbered 0..len(keep)-1."""
        new_index = np.full(self.n, -1, dtype=np.int64)
        new_index[np.asarray(keep, dtype=np.int64)] = np.arange(len(keep))
        mapped = new_index[self.owners]
        rows = mapped >= 0
        return WordTable(self.hashes[rows], mapped[rows], len(keep))

    def counts(self) -> np.ndarray:
        return np.bincount(self.owners, minlength=self.n)

    def fingerprints(self) -> np.ndarray:
        """One uint64 per text; texts with the same word sequence share it (0 if no words)."""
        counts = self.counts()
        first_word = np.cumsum(counts) - counts
        position = np.arange(len(self.hashes)) - first_word[self.owners]
        weighted = self.hashes * _power_table(_WORD_BASE, int(counts.max(initial=0)))[position]
        result = np.zeros(self.n, dtype=np.uint64)
        nonempty = np.flatnonzero(counts)
        if len(nonempty):
            result[nonempty] = np.add.reduceat(weighted, first_word[nonempty])
            result[nonempty] ^= counts[nonempty].astype(np.uint64)
        return _splitmix64(result)

    def shingles(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Every ``size``-word shingle hash (with repeats) and its text, grouped by text."""
        if size < 1:
            raise ValueError(f"shingle size must be >= 1, got {size}")
        n_words = self.counts()
        first_word = np.cumsum(n_words) - n_words
        width = np.minimum(n_words, size)  # short texts: one shingle of all their words
        n_shingles = np.where(n_words > 0, np.maximum(n_words - size + 1, 1), 0)
        total = int(n_shingles.sum())
        owners = np.repeat(np.arange(self.n), n_shingles)
        block_start = np.cumsum(n_shingles) - n_shingles
        first = first_word[owners] + (np.arange(total) - block_start[owners])
        shingle_width = width[owners]
        combined = np.zeros(total, dtype=np.uint64)
        word_powers = _power_table(_WORD_BASE, size)
        for offset in range(min(size, int(width.max(initial=0)))):
            present = offset < shingle_width
            picked = self.hashes[np.where(present, first + offset, 0)]
            combined += np.where(present, picked, np.uint64(0)) * word_powers[offset]
        combined ^= shingle_width.astype(np.uint64)
        return _splitmix64(combined), owners


def _flat_shingles(texts: Sequence[str], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Every shingle hash of every text (with repeats) and the text index it belongs to."""
    return WordTable.of(texts).shingles(size)


def _distinct(values: np.ndarray) -> np.ndarray:
    values = np.sort(values)
    if len(values) > 1:
        values = values[np.append(True, values[1:] != values[:-1])]
    return values


def _distinct_by_hash(hashes: np.ndarray, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (hash, owner) rows sorted by hash, owners ascending within one hash.

    ``owners`` must be non-decreasing on input (a stable sort then keeps them ordered).
    """
    order = np.argsort(hashes.view(np.int64), kind="stable")  # signed view: faster, same groups
    hashes, owners = hashes[order], owners[order]
    if len(hashes) > 1:
        keep = np.empty(len(hashes), dtype=bool)
        keep[0] = True
        keep[1:] = (hashes[1:] != hashes[:-1]) | (owners[1:] != owners[:-1])
        hashes, owners = hashes[keep], owners[keep]
    return hashes, owners


def _owner_bounds(owners: np.ndarray, n: int) -> np.ndarray:
    """Row bounds of each owner in an owner-grouped (non-decreasing) owner array."""
    return np.searchsorted(owners, np.arange(n + 1))


def word_shingles(text: str, size: int = 3) -> np.ndarray:
    """The set of ``size``-word shingles of ``text`` as sorted distinct uint64 hashes.

    Words are casefolded runs of letters/digits; a text with fewer words than ``size`` gives
    one shingle of all its words, a text without words gives the empty set.
    """
    hashes, _ = _flat_shingles([text], size)
    return _distinct(hashes)


def shingle_sets(texts: Sequence[str], size: int = 3) -> list[np.ndarray]:
    """``word_shingles`` of many texts in one vectorised pass."""
    hashes, owners = _flat_shingles(texts, size)
    bounds = _owner_bounds(owners, len(texts))
    return [_distinct(hashes[bounds[i] : bounds[i + 1]]) for i in range(len(texts))]


def exact_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|A ∩ B| / |A ∪ B| of two hash sets; two empty sets are identical (1.0)."""
    a, b = np.unique(a), np.unique(b)
    union = len(a) + len(b)
    if union == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (union - inter)


def _splitmix_stream(seed: int, count: int) -> list[int]:
    state = seed & _MASK64
    out = []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        out.append(z ^ (z >> 31))
    return out


@functools.lru_cache(maxsize=16)
def permutation_parameters(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Universal-hash parameters: ``a`` in [1, p), ``b`` in [0, p) for p = 2^61 - 1."""
    if num_perm < 1:
        raise ValueError(f"num_perm must be >= 1, got {num_perm}")
    stream = _splitmix_stream(seed, 2 * num_perm)
    a = np.array([1 + v % (MERSENNE_61 - 1) for v in stream[:num_perm]], dtype=np.uint64)
    b = np.array([v % MERSENNE_61 for v in stream[num_perm:]], dtype=np.uint64)
    a.flags.writeable = False
    b.flags.writeable = False
    return a, b


def _mod61(values: np.ndarray) -> np.ndarray:
    """``values mod 2^61-1`` for any uint64 (in place)."""
    high = values >> np.uint64(61)
    values &= _P61
    values += high
    values -= np.where(values >= _P61, _P61, np.uint64(0))
    return values


def universal_hash(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a*x + b) mod 2^61-1`` exactly, broadcasting column ``x`` against rows ``a``, ``b``.

    The 122-bit product is split into 31/30-bit limbs so every partial sum fits in uint64;
    2^61 = 1 (mod p) folds the high parts back down.
    """
    x = _mod61(np.array(x, dtype=np.uint64))
    x_hi, x_lo = x >> np.uint64(31), x & _LOW31
    a_hi, a_lo = a >> np.uint64(31), a & _LOW31
    middle = x_hi * a_lo
    middle += x_lo * a_hi  # < 2^62
    total = (x_hi * a_hi) << np.uint64(1)  # 2^62 = 2 (mod p)
    total += middle >> np.uint64(30)  # middle * 2^31 = (middle >> 30) * 2^61 + ...
    total += (middle & _LOW30) << np.uint64(31)
    total += x_lo * a_lo
    total += b  # 2^61 + 2^32 + 2^61 + 2^62 + 2^61 < 2^64: no wrap-around
    return _mod61(total)


def _flatten(sets: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All members of all sets in one array, with the (non-decreasing) index of their set."""
    sizes = np.fromiter((len(s) for s in sets), dtype=np.int64, count=len(sets))
    owners = np.repeat(np.arange(len(sets), dtype=np.int64), sizes)
    if not len(owners):
        return np.zeros(0, dtype=np.uint64), owners
    return np.concatenate([np.asarray(s, dtype=np.uint64) for s in sets]), owners


def _signatures_flat(
    values: np.ndarray, owners: np.ndarray, n: int, num_perm: int, seed: int
) -> np.ndarray:
    """Signatures of ``n`` sets given as owner-grouped rows (repeats allowed)."""
    a, b = permutation_parameters(num_perm, seed)
    result = np.full((n, num_perm), _EMPTY_SLOT, dtype=np.uint64)
    if not len(values):
        return result
    bounds = _owner_bounds(owners, n)
    nonempty = np.flatnonzero(bounds[1:] > bounds[:-1])
    step = max(1, _BLOCK_ELEMENTS // len(values))
    column = values[:, None]
    for lo in range(0, num_perm, step):
        hashed = universal_hash(column, a[None, lo : lo + step], b[None, lo : lo + step])
        result[nonempty, lo : lo + step] = np.minimum.reduceat(hashed, bounds[nonempty], axis=0)
    return result


def signatures(
    shingle_sets: Sequence[np.ndarray], num_perm: int = 128, seed: int = 1
) -> np.ndarray:
    """MinHash signatures, one row per set: the minimum of each universal hash over the set.

    Rows of empty sets are all ``2^64-1`` (equal to each other, below no real hash).
    """
    values, owners = _flatten(shingle_sets)
    return _signatures_flat(values, owners, len(shingle_sets), num_perm, seed)


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """The fraction of permutations whose minima agree: an unbiased Jaccard estimate."""
    sig_a, sig_b = np.asarray(sig_a), np.asarray(sig_b)
    if sig_a.shape != sig_b.shape:
        raise ValueError(f"signatures differ in shape: {sig_a.shape} vs {sig_b.shape}")
    return float(np.mean(sig_a == sig_b))


@dataclass(frozen=True)
class SimilarPairs:
    """Pairs ``(first[k], second[k])`` with ``first < second`` and their Jaccard similarity."""

    first: np.ndarray
    second: np.ndarray
    similarity: np.ndarray
    method: Method


def _shared_incidence(
    hashes: np.ndarray, owners: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For hash-sorted rows whose hash other sets share: owner, column, and column sizes.

    Only shared members add to intersections, and they are few unless the sets are copies.
    """
    n = len(hashes)
    first_of_group = np.empty(n, dtype=bool)
    first_of_group[:1] = True
    first_of_group[1:] = hashes[1:] != hashes[:-1]
    group = np.cumsum(first_of_group) - 1
    group_sizes = np.bincount(group)
    shared = group_sizes[group] > 1
    columns = np.cumsum(first_of_group & shared) - 1
    return owners[shared], columns[shared], group_sizes[group_sizes > 1]


def _enumerated_counts(
    rows: np.ndarray, column_sizes: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersections by listing every pair of sets that shares each column (few pairs)."""
    later = np.repeat(column_sizes, column_sizes) - _rank_in_column(column_sizes) - 1
    total = int(later.sum())
    left = np.repeat(np.arange(len(rows)), later)
    offset = np.arange(total) - np.repeat(np.cumsum(later) - later, later)
    keys = np.sort(rows[left] * n + rows[left + 1 + offset])
    starts = np.flatnonzero(np.append(True, keys[1:] != keys[:-1]))
    counts = np.diff(np.append(starts, len(keys)))
    return keys[starts] // n, keys[starts] % n, counts


def _rank_in_column(column_sizes: np.ndarray) -> np.ndarray:
    column_starts = np.cumsum(column_sizes) - column_sizes
    return np.arange(int(column_sizes.sum())) - np.repeat(column_starts, column_sizes)


def _exact_pairs(
    hashes: np.ndarray, owners: np.ndarray, sizes: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact intersections of every pair of sets that shares a member.

    Few shared pairs (the usual case: distinct candidates, a few copies) are listed and
    counted directly, which keeps multi-threaded BLAS off the latency path; many are counted
    as the product of the (sets x shared members) incidence matrix, dense while it is small.
    """
    rows, columns, column_sizes = _shared_incidence(hashes, owners)
    n = len(sizes)
    pair_work = int((column_sizes * (column_sizes - 1) // 2).sum())
    if pair_work == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float64)
    if pair_work <= _ENUMERATE_PAIRS:
        first, second, counts = _enumerated_counts(rows, column_sizes, n)
    elif n * max(n, len(column_sizes)) <= _BLOCK_ELEMENTS:
        incidence = np.zeros((n, len(column_sizes)), dtype=np.float32)  # exact below 2^24
        incidence[rows, columns] = 1.0
        product = np.triu(incidence @ incidence.T, k=1)
        first, second = np.nonzero(product)
        counts = product[first, second].astype(np.int64)
    else:
        from scipy import sparse

        ones = np.ones(len(rows), dtype=np.int32)
        incidence = sparse.csr_matrix((ones, (rows, columns)), shape=(n, len(column_sizes)))
        product = sparse.triu(incidence @ incidence.T, k=1).tocoo()
        first, second = product.row.astype(np.int64), product.col.astype(np.int64)
        counts = product.data.astype(np.int64)
    similarity = counts / (sizes[first] + sizes[second] - counts)
    hit = similarity >= threshold
    return first[hit], second[hit], similarity[hit]


def _minhash_pairs(
    hashes: np.ndarray,
    owners: np.ndarray,
    sizes: np.ndarray,
    threshold: float,
    num_perm: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    by_owner = np.argsort(owners, kind="stable")
    n = len(sizes)
    sig = _signatures_flat(hashes[by_owner], owners[by_owner], n, num_perm, seed)
    firsts, seconds, sims = [], [], []
    rows = max(1, _BLOCK_ELEMENTS // max(1, n * num_perm))
    for lo in range(0, n, rows):
        agree = (sig[lo : lo + rows, None, :] == sig[None, :, :]).mean(axis=2)
        first, second = np.nonzero(agree >= threshold)
        keep = (first + lo < second) & (sizes[first + lo] > 0) & (sizes[second] > 0)
        firsts.append(first[keep] + lo)
        seconds.append(second[keep])
        sims.append(agree[first[keep], second[keep]])
    return np.concatenate(firsts), np.concatenate(seconds), np.concatenate(sims)


def _similar(
    hashes: np.ndarray,
    owners: np.ndarray,
    n: int,
    threshold: float,
    num_perm: int,
    seed: int,
    method: Method,
) -> SimilarPairs:
    """Pairs from distinct (hash, owner) rows sorted by hash (see ``_distinct_by_hash``)."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    sizes = np.bincount(owners, minlength=n)
    if method == "exact":
        first, second, similarity = _exact_pairs(hashes, owners, sizes, threshold)
    elif method == "minhash":
        first, second, similarity = _minhash_pairs(hashes, owners, sizes, threshold, num_perm, seed)
    else:
        raise ValueError(f"method must be 'exact' or 'minhash', got {method!r}")
    order = np.lexsort((first, second))
    return SimilarPairs(first[order], second[order], similarity[order], method)


def similar_pairs(
    sets: Sequence[np.ndarray],
    threshold: float,
    *,
    method: Method = "exact",
    num_perm: int = 128,
    seed: int = 1,
) -> SimilarPairs:
    """Every pair of non-empty sets whose Jaccard similarity is at least ``threshold``.

    ``exact`` (the default, faster as measured above) or ``minhash``: estimates from
    ``num_perm`` permutations. Results are ordered by ``(second, first)``.
    """
    hashes, owners = _distinct_by_hash(*_flatten(sets))
    return _similar(hashes, owners, len(sets), threshold, num_perm, seed, method)


def similar_texts(
    texts: Sequence[str] | WordTable,
    threshold: float,
    *,
    shingle_size: int = 3,
    method: Method = "exact",
    num_perm: int = 128,
    seed: int = 1,
) -> SimilarPairs:
    """``similar_pairs`` over the word-shingle sets of ``texts`` (or of a ``WordTable``)."""
    table = texts if isinstance(texts, WordTable) else WordTable.of(texts)
    hashes, owners = _distinct_by_hash(*table.shingles(shingle_size))
    return _similar(hashes, owners, table.n, threshold, num_perm, seed, method)
