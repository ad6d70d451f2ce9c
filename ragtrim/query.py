"""What a query-path stage sees: the query, its filters, the index (if any) and lazy vectors.

Every query stage has the same signature, ``run(ctx, candidates) -> StageOutput``, so stages
compose in any order the pipeline allows, and the same stages trim candidates that came from a
framework retriever (``ctx.index is None``): vectors are then embedded on demand through the
embedding cache instead of read from the index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ragtrim.types import Candidate, Chunk, Drop

if TYPE_CHECKING:
    from ragtrim.tokens import TokenCounter


class Embedder(Protocol):
    """Anything that turns texts into L2-normalised float32 rows (cached or not)."""

    def embed(self, texts: Sequence[str], kind: str = "passage") -> np.ndarray: ...


class IndexView(Protocol):
    """The read side of an index that query stages use (implemented by ``HybridIndex``)."""

    fingerprint: str

    def document_metadata(self) -> list[Mapping[str, Any]]: ...
    def chunk_document_rows(self) -> np.ndarray: ...
    def alive_mask(self) -> np.ndarray: ...
    def chunk_vector(self, chunk_id: str) -> np.ndarray | None: ...
    def sentence_vectors_of(self, chunk_id: str) -> np.ndarray | None: ...
    def sentence_terms_of(self, chunk_id: str) -> tuple[Any, list[np.ndarray]] | None: ...
    def chunk_at(self, row: int) -> Chunk: ...
    def bm25_search(
        self, query: str, k: int, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]: ...
    def bm25_scores_for(self, query: str, rows: np.ndarray) -> np.ndarray: ...
    def dense_search(
        self, vector: np.ndarray, k: int, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]: ...
    def dense_scores_for(self, vector: np.ndarray, rows: np.ndarray) -> np.ndarray: ...


@dataclass
class StageOutput:
    candidates: list[Candidate]
    drops: list[Drop] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class QueryContext:
    query: str
    counter: TokenCounter
    task_type: str | None = None
    filters: Mapping[str, Any] | None = None
    index: IndexView | None = None
    embedder: Embedder | None = None
    #: boolean mask over index chunk rows; set by the filter stage, honoured by retrievers
    allowed: np.ndarray | None = None
    _query_vector: np.ndarray | None = field(default=None, repr=False)

    def query_vector(self) -> np.ndarray:
        if self._query_vector is None:
            self._query_vector = self._require_embedder().embed([self.query], kind="query")[0]
        return self._query_vector

    def chunk_vectors(self, chunks: Sequence[Chunk]) -> np.ndarray:
        """One row per chunk: stored vectors where the index has them, embedded otherwise."""
        rows = [self.index.chunk_vector(c.id) if self.index is not None else None for c in chunks]
        missing = [i for i, row in enumerate(rows) if row is None]
        if missing:
            fresh = self._require_embedder().embed([chunks[i].text for i in missing])
            for i, vector in zip(missing, fresh, strict=True):
                rows[i] = vector
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return np.vstack([row for row in rows if row is not None]).astype(np.float32, copy=False)

    def sentence_vectors(self, chunk: Chunk) -> np.ndarray:
        """One row per sentence span of ``chunk`` (stored at ingestion when configured)."""
        if self.index is not None:
            stored = self.index.sentence_vectors_of(chunk.id)
            if stored is not None and len(stored) == len(chunk.sentences):
                return stored
        texts = [chunk.text[a:b] for a, b in chunk.sentences]
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return self._require_embedder().embed(texts)

    def sentence_term_ids(self, chunk: Chunk) -> tuple[Any, list[np.ndarray]] | None:
        """``(terms, ids per sentence)`` as stored at ingestion (``terms`` maps a term to its
        id), or ``None`` for a chunk the index does not hold (scoring tokenises its text)."""
        if self.index is None:
            return None
        stored = self.index.sentence_terms_of(chunk.id)
        if stored is None or len(stored[1]) != (len(chunk.sentences) or 1):
            return None
        return stored

    def _require_embedder(self) -> Embedder:
        if self.embedder is None:
            from ragtrim.errors import ConfigError

            raise ConfigError("this stage needs embeddings but the pipeline has no embedder")
        return self.embedder
