"""Dense vectors in FAISS, with filtering applied inside the search, before top-k.

Exact inner-product search (``IndexFlatIP``) up to ``hnsw_threshold`` vectors, HNSW above it.
Deleted rows stay in FAISS as tombstones (HNSW cannot remove) and are excluded through an id
selector, together with the caller's filter mask; ``compact`` rebuilds without them.

When a filter keeps only a small share of the rows, HNSW's graph walk can return fewer than k
hits; then the allowed rows are searched exactly instead, so "k matching chunks exist" always
means "k are returned".
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from ragtrim.errors import IndexStoreError, InputError

IndexKind = Literal["auto", "flat", "hnsw"]


def _faiss():
    import faiss

    return faiss


class DenseIndex:
    def __init__(
        self,
        dimension: int,
        kind: IndexKind = "auto",
        hnsw_threshold: int = 50_000,
        hnsw_m: int = 32,
        ef_search: int = 128,
    ) -> None:
        self.dimension = dimension
        self.kind = kind
        self.hnsw_threshold = hnsw_threshold
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.vectors = np.zeros((0, dimension), dtype=np.float32)
        self.alive = np.zeros(0, dtype=bool)
        self._faiss_index = None

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def resolved_kind(self) -> str:
        if self.kind != "auto":
            return self.kind
        return "hnsw" if int(self.alive.sum()) > self.hnsw_threshold else "flat"

    def add(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise InputError(
                f"dense index: expected vectors of shape (n, {self.dimension}), got {vectors.shape}"
            )
        if not np.isfinite(vectors).all():
            raise InputError("dense index: vectors contain NaN or infinity")
        first = len(self.vectors)
        self.vectors = np.vstack([self.vectors, vectors]) if first else vectors.copy()
        self.alive = np.concatenate([self.alive, np.ones(len(vectors), dtype=bool)])
        if self._faiss_index is not None and self._built_kind == self.resolved_kind:
            self._faiss_index.add(vectors)
        else:
            self._faiss_index = None
        return np.arange(first, first + len(vectors))

    def remove(self, rows: np.ndarray) -> None:
        self.alive[np.asarray(rows, dtype=np.int64)] = False

    def compact(self) -> np.ndarray:
        """Drop tombstoned rows; returns the old row number of each kept row."""
        keep = np.flatnonzero(self.alive)
        self.vectors = np.ascontiguousarray(self.vectors[keep])
        self.alive = np.ones(len(keep), dtype=bool)
        self._faiss_index = None
        return keep

    def build(self) -> None:
        """Build the FAISS structure now (an HNSW graph over 88k vectors takes ~10 s), so that
        the first query after ingestion or loading is not the one that pays for it."""
        self._index()

    def _index(self):
        if self._faiss_index is None:
            faiss = _faiss()
            kind = self.resolved_kind
            if kind == "hnsw":
                index = faiss.IndexHNSWFlat(self.dimension, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = 80
            else:
                index = faiss.IndexFlatIP(self.dimension)
            if len(self.vectors):
                index.add(self.vectors)
            self._faiss_index = index
            self._built_kind = kind
        return self._faiss_index

    def search(
        self, query: np.ndarray, k: int, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows by inner product among alive rows allowed by ``mask``."""
        allowed = self.alive if mask is None else (self.alive & mask)
        n_allowed = int(allowed.sum())
        k = min(k, n_allowed)
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        if self.resolved_kind == "flat" or n_allowed <= max(4 * k, 2048):
            return self._exact(query[0], k, allowed)
        faiss = _faiss()
        index = self._index()
        params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
        if n_allowed < len(allowed):
            params.sel = faiss.IDSelectorBitmap(np.packbits(allowed, bitorder="little"))
        scores, rows = index.search(query, k, params=params)
        hits = rows[0] >= 0
        if int(hits.sum()) < k:
            return self._exact(query[0], k, allowed)
        return rows[0][hits].astype(np.int64), scores[0][hits]

    def _exact(
        self, query: np.ndarray, k: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if allowed.all():
            faiss = _faiss()
            index = self._index() if self.resolved_kind == "flat" else None
            if index is not None:
                scores, rows = index.search(query.reshape(1, -1), k)
                return rows[0].astype(np.int64), scores[0]
            scores, rows = faiss.knn(
                query.reshape(1, -1), self.vectors, k, metric=faiss.METRIC_INNER_PRODUCT
            )
            return rows[0].astype(np.int64), scores[0]
        candidates = np.flatnonzero(allowed)
        scores = self.vectors[candidates] @ query
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        order = top[np.lexsort((candidates[top], -scores[top]))]
        return candidates[order].astype(np.int64), scores[order].astype(np.float32)

    def save(self, directory: Path) -> None:
        np.save(directory / "dense_vectors.npy", self.vectors, allow_pickle=False)
        np.save(directory / "dense_alive.npy", self.alive, allow_pickle=False)
        if self.resolved_kind == "hnsw":
            _faiss().write_index(self._index(), str(directory / "dense.faiss"))

    @classmethod
    def load(cls, directory: Path, dimension: int, **params) -> DenseIndex:
        index = cls(dimension, **params)
        try:
            vectors = np.load(directory / "dense_vectors.npy", allow_pickle=False)
            alive = np.load(directory / "dense_alive.npy", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise IndexStoreError(f"{directory}: cannot read dense vectors: {exc}") from None
        if vectors.ndim != 2 or vectors.shape[1] != dimension or len(alive) != len(vectors):
            raise IndexStoreError(
                f"{directory / 'dense_vectors.npy'}: shape {vectors.shape} does not match "
                f"dimension {dimension} and {len(alive)} rows"
            )
        index.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index.alive = alive.astype(bool)
        faiss_file = directory / "dense.faiss"
        if index.resolved_kind == "hnsw" and faiss_file.exists():
            loaded = _faiss().read_index(str(faiss_file))
            if loaded.ntotal != len(vectors):
                raise IndexStoreError(
                    f"{faiss_file}: {loaded.ntotal} vectors, expected {len(vectors)}"
                )
            index._faiss_index = loaded
            index._built_kind = "hnsw"
        return index
