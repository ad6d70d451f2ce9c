"""The hybrid index: chunks, BM25, FAISS vectors and per-sentence vectors, kept row-aligned.

Upserts are all-or-nothing: chunking, embedding, tokenisation and every check happen first,
and only when everything succeeded are old rows tombstoned and new rows appended. Every change
bumps ``fingerprint``, which the retrieval cache keys on, so a changed index never serves stale
results. The fingerprint also covers what the rows were built with (index config, embedding
model, chunk boundaries), so two pipelines that chunk or embed the same documents differently
never share cached results.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ragtrim.errors import IndexStoreError, InputError
from ragtrim.index.bm25 import BM25Index
from ragtrim.index.dense import DenseIndex
from ragtrim.index.sentence_terms import SentenceTerms
from ragtrim.index.tokenization import Tokenizer
from ragtrim.types import Chunk, Document

logger = logging.getLogger(__name__)

#: progress(task, done, total)
Progress = Callable[[str, int, int], None]
_EMBED_BLOCK = 256


class IndexConfig(BaseModel):
    """Build-time parameters of the index (changing them means re-ingesting)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    bm25_variant: Literal["lucene", "okapi", "bm25+"] = "lucene"
    bm25_k1: float = Field(1.2, gt=0)
    bm25_b: float = Field(0.75, ge=0, le=1)
    stopwords: Literal["english"] | None = "english"
    stemmer: Literal["english"] | None = "english"
    dense_index: Literal["auto", "flat", "hnsw"] = "auto"
    hnsw_threshold: int = Field(50_000, ge=1)
    hnsw_m: int = Field(32, ge=4)
    ef_search: int = Field(128, ge=1)
    #: embed every sentence at ingestion (the default reranker and the packer score sentences)
    embed_sentences: bool = True
    #: prefix the title and heading path to what BM25 and the embedder see (not to the prompt)
    contextual_headers: bool = True


@dataclass
class IngestStats:
    documents: int = 0
    unchanged: int = 0
    skipped_empty: int = 0
    removed: int = 0
    chunks: int = 0
    tokens: int = 0
    sentences: int = 0
    embedding_hits: int = 0
    embedding_misses: int = 0
    model_calls: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class _DocRecord:
    id: str
    fingerprint: str
    metadata: dict[str, Any]
    alive: bool = True


def json_safe_metadata(doc_id: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata as plain JSON values, so the index can be saved and cached results serialised.

    ``date``/``datetime``/``time`` values become ISO-8601 strings, which the filter language
    compares as dates exactly like the objects; tuples become lists. Anything else that JSON
    cannot hold (sets, bytes, objects) is an error naming the document and the key path.
    """

    def convert(value: Any, path: str) -> Any:
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or isinstance(value, (str, bool, int)):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise InputError(f"document {doc_id!r}: metadata {path} is {value!r}; use null")
            return value
        if isinstance(value, (datetime, date, time)):
            return value.isoformat()
        if isinstance(value, Mapping):
            out = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InputError(
                        f"document {doc_id!r}: metadata {path} has a non-string key {key!r}"
                    )
                out[key] = convert(item, f"{path}.{key}")
            return out
        if isinstance(value, (list, tuple)):
            return [convert(item, f"{path}[{i}]") for i, item in enumerate(value)]
        raise InputError(
            f"document {doc_id!r}: metadata {path} is a {type(value).__name__}; metadata values "
            "must be JSON values (string, number, bool, null, list, mapping) or dates"
        )

    return {key: convert(value, key) for key, value in metadata.items()}


def _json_safe(doc: Document) -> Document:
    safe = json_safe_metadata(doc.id, doc.metadata)
    return doc if safe == doc.metadata else doc.model_copy(update={"metadata": safe})


def _chunks_digest(chunks: Sequence[Chunk]) -> str:
    """Chunk boundaries and token counts: they differ whenever the chunker config does."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(f"{chunk.id}|{chunk.token_count}|{len(chunk.sentences)};".encode())
    return digest.hexdigest()


class HybridIndex:
    def __init__(self, config: IndexConfig | None = None, *, dimension: int | None = None) -> None:
        self.config = config or IndexConfig()
        self.tokenizer = Tokenizer(stopwords=self.config.stopwords, stemmer=self.config.stemmer)
        self.bm25 = self._new_bm25()
        self.dense: DenseIndex | None = self._new_dense(dimension) if dimension else None
        self.chunks: list[Chunk] = []
        self.alive = np.zeros(0, dtype=bool)
        self.chunk_doc_rows = np.zeros(0, dtype=np.int64)
        self.documents: list[_DocRecord] = []
        self._doc_row: dict[str, int] = {}
        self._chunk_row: dict[str, int] = {}
        self.sentence_vectors = np.zeros((0, dimension or 0), dtype=np.float32)
        self.sentence_offsets = np.zeros(1, dtype=np.int64)
        self.sentence_terms = SentenceTerms()
        self.fingerprint = "empty"
        self._last_bm25: tuple[str, np.ndarray] | None = None

    def _new_bm25(self) -> BM25Index:
        cfg = self.config
        return BM25Index(k1=cfg.bm25_k1, b=cfg.bm25_b, variant=cfg.bm25_variant)

    def _new_dense(self, dimension: int) -> DenseIndex:
        cfg = self.config
        return DenseIndex(dimension, cfg.dense_index, cfg.hnsw_threshold, cfg.hnsw_m, cfg.ef_search)

    # ------------------------------------------------------------------ ingestion
    def indexed_text(self, chunk: Chunk) -> str:
        """What retrieval sees: the chunk, prefixed by its title and heading path."""
        if not self.config.contextual_headers:
            return chunk.text
        header = [h for h in (chunk.title, " > ".join(chunk.section)) if h]
        return "\n".join([*header, chunk.text])

    def upsert(
        self,
        documents: Iterable[Document],
        chunk: Callable[[Document], list[Chunk]],
        embedder: Any,
        progress: Progress | None = None,
    ) -> IngestStats:
        docs = list(documents)
        stats = IngestStats(documents=len(docs))
        duplicates = sorted(i for i, n in Counter(d.id for d in docs).items() if n > 1)
        if duplicates:
            shown = ", ".join(repr(d) for d in duplicates[:10])
            more = f" and {len(duplicates) - 10} more" if len(duplicates) > 10 else ""
            raise InputError(f"duplicate document ids in one batch: {shown}{more}")
        docs = [_json_safe(doc) for doc in docs]

        changed: list[Document] = []
        to_remove: list[str] = []
        for doc in docs:
            row = self._doc_row.get(doc.id)
            current = self.documents[row] if row is not None and self.documents[row].alive else None
            if not doc.text.strip():
                stats.skipped_empty += 1
                if current is not None:
                    to_remove.append(doc.id)
                continue
            if current is not None and current.fingerprint == doc.fingerprint():
                stats.unchanged += 1
                continue
            if current is not None:
                to_remove.append(doc.id)
            changed.append(doc)

        new_chunks: list[Chunk] = []
        owners: list[int] = []
        digests: list[str] = []
        for i, doc in enumerate(changed):
            pieces = chunk(doc)
            new_chunks.extend(pieces)
            owners.extend([i] * len(pieces))
            digests.append(f"{doc.id}|{doc.fingerprint()}|{_chunks_digest(pieces)}")
            if progress:
                progress("chunking", i + 1, len(changed))
        stats.chunks = len(new_chunks)
        stats.tokens = sum(c.token_count for c in new_chunks)

        indexed = [self.indexed_text(c) for c in new_chunks]
        calls_before = (embedder.hits, embedder.misses, embedder.model_calls)
        vectors = self._embed(embedder, indexed, "embedding", progress)
        sentence_texts = (
            [c.text[a:b] for c in new_chunks for a, b in c.sentences]
            if self.config.embed_sentences
            else []
        )
        sentence_vectors = self._embed(embedder, sentence_texts, "embedding sentences", progress)
        stats.sentences = len(sentence_texts)
        stats.embedding_hits = embedder.hits - calls_before[0]
        stats.embedding_misses = embedder.misses - calls_before[1]
        stats.model_calls = embedder.model_calls - calls_before[2]
        self._check_vectors(embedder, vectors, len(new_chunks), "chunk")
        self._check_vectors(embedder, sentence_vectors, len(sentence_texts), "sentence")
        token_lists = self.tokenizer.tokenize_many(indexed)
        del indexed

        # every fallible step is done: mutate
        stats.removed = self._tombstone(to_remove)
        if progress:
            progress("indexing", 0, 1)
        self._append(changed, new_chunks, owners, token_lists, vectors, sentence_vectors)
        self._maybe_compact()
        if self.dense is not None:
            self.dense.build()
        if progress:
            progress("indexing", 1, 1)
        if changed or to_remove:
            identity = [self.config.model_dump_json(), str(getattr(embedder, "fingerprint", ""))]
            self._bump("upsert", identity + digests + sorted(to_remove))
        return stats

    def _check_vectors(self, embedder: Any, vectors: np.ndarray, rows: int, what: str) -> None:
        """Reject vectors the dense index would refuse, before anything is mutated."""
        if not rows:
            return
        name = getattr(embedder, "fingerprint", type(embedder).__name__)
        if vectors.ndim != 2 or vectors.shape[0] != rows:
            raise InputError(
                f"embedder {name!r} returned {what} vectors of shape {vectors.shape} "
                f"for {rows} texts"
            )
        if self.dense is not None and vectors.shape[1] != self.dense.dimension:
            raise InputError(
                f"embedder {name!r} returns {vectors.shape[1]}-dimensional vectors but this "
                f"index holds {self.dense.dimension}-dimensional ones; re-ingest everything "
                "with one model"
            )
        if not np.isfinite(vectors).all():
            raise InputError(f"embedder {name!r} returned NaN or infinite {what} vectors")

    def _embed(
        self, embedder: Any, texts: list[str], task: str, progress: Progress | None
    ) -> np.ndarray:
        dimension = self.dense.dimension if self.dense else None
        blocks = []
        for start in range(0, len(texts), _EMBED_BLOCK):
            blocks.append(embedder.embed(texts[start : start + _EMBED_BLOCK]))
            if progress:
                progress(task, min(start + _EMBED_BLOCK, len(texts)), len(texts))
        if not blocks:
            return np.zeros((0, dimension or embedder.dimension or 0), dtype=np.float32)
        return np.vstack(blocks).astype(np.float32, copy=False)

    def _append(self, docs, chunks, owners, token_lists, vectors, sentence_vectors) -> None:
        doc_rows = []
        for doc in docs:
            record = _DocRecord(doc.id, doc.fingerprint(), dict(doc.metadata))
            self._doc_row[doc.id] = len(self.documents)
            doc_rows.append(len(self.documents))
            self.documents.append(record)
        if not chunks:
            return
        if self.dense is None:
            self.dense = self._new_dense(vectors.shape[1])
            self.sentence_vectors = np.zeros((0, vectors.shape[1]), dtype=np.float32)
        first = len(self.chunks)
        self.bm25.add(token_lists)
        self.dense.add(vectors)
        for offset, chunk in enumerate(chunks):
            self._chunk_row[chunk.id] = first + offset
        self.chunks.extend(chunks)
        self.alive = np.concatenate([self.alive, np.ones(len(chunks), dtype=bool)])
        self.chunk_doc_rows = np.concatenate(
            [self.chunk_doc_rows, np.asarray([doc_rows[o] for o in owners], dtype=np.int64)]
        )
        counts = np.asarray(
            [len(c.sentences) if self.config.embed_sentences else 0 for c in chunks], dtype=np.int64
        )
        self.sentence_offsets = np.concatenate(
            [self.sentence_offsets, self.sentence_offsets[-1] + np.cumsum(counts)]
        )
        if len(sentence_vectors):
            self.sentence_vectors = np.vstack([self.sentence_vectors, sentence_vectors])
        self.sentence_terms.append(chunks)
        self._last_bm25 = None

    def delete(self, doc_ids: Sequence[str]) -> int:
        """Remove documents (and all their chunks); returns how many were present."""
        if isinstance(doc_ids, str):
            raise InputError(f"delete: expected a list of document ids, got the string {doc_ids!r}")
        ids = list(doc_ids)
        removed = self._tombstone(ids)
        if removed:
            self._bump("delete", sorted(set(ids)))
            self._maybe_compact()
        return removed

    def _tombstone(self, doc_ids: list[str]) -> int:
        present = (self._doc_row.get(d) for d in doc_ids)
        rows = sorted({r for r in present if r is not None and self.documents[r].alive})
        if not rows:
            return 0
        dead = np.isin(self.chunk_doc_rows, rows) & self.alive
        dead_rows = np.flatnonzero(dead)
        self.alive[dead_rows] = False
        self.bm25.remove(dead_rows)
        if self.dense is not None:
            self.dense.remove(dead_rows)
        for row in rows:
            self.documents[row].alive = False
        self._last_bm25 = None
        return len(rows)

    def _bump(self, operation: str, keys: Sequence[str]) -> None:
        digest = hashlib.sha256(f"{self.fingerprint}|{operation}|".encode())
        for key in keys:
            digest.update(key.encode("utf-8", "surrogatepass"))
        self.fingerprint = digest.hexdigest()[:24]

    def _maybe_compact(self) -> None:
        dead = len(self.alive) - int(self.alive.sum())
        if dead and dead > 0.25 * len(self.alive):
            self.compact()

    def compact(self) -> None:
        """Rebuild without tombstoned rows (row numbers change; chunk ids do not)."""
        keep = np.flatnonzero(self.alive)
        live_docs = [i for i, d in enumerate(self.documents) if d.alive]
        doc_map = {old: new for new, old in enumerate(live_docs)}
        chunks = [self.chunks[i] for i in keep]
        sentence_rows = [
            np.arange(self.sentence_offsets[i], self.sentence_offsets[i + 1]) for i in keep
        ]
        counts = np.asarray([len(r) for r in sentence_rows], dtype=np.int64)
        self.sentence_vectors = (
            self.sentence_vectors[np.concatenate(sentence_rows)]
            if counts.sum()
            else self.sentence_vectors[:0]
        )
        self.sentence_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.sentence_terms.take(keep)
        self.chunk_doc_rows = np.asarray(
            [doc_map[int(r)] for r in self.chunk_doc_rows[keep]], dtype=np.int64
        )
        self.documents = [self.documents[i] for i in live_docs]
        self._doc_row = {d.id: i for i, d in enumerate(self.documents)}
        self.chunks = chunks
        self._chunk_row = {c.id: i for i, c in enumerate(chunks)}
        self.alive = np.ones(len(chunks), dtype=bool)
        if self.dense is not None:
            self.dense.compact()
        self.bm25.compact()
        self._last_bm25 = None

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return int(self.alive.sum())

    @property
    def n_documents(self) -> int:
        return sum(d.alive for d in self.documents)

    def document_metadata(self) -> list[Mapping[str, Any]]:
        return [d.metadata for d in self.documents]

    def chunk_document_rows(self) -> np.ndarray:
        return self.chunk_doc_rows

    def alive_mask(self) -> np.ndarray:
        return self.alive

    def chunk_at(self, row: int) -> Chunk:
        return self.chunks[row]

    def get_chunk(self, chunk_id: str) -> Chunk | None:
        row = self._chunk_row.get(chunk_id)
        return self.chunks[row] if row is not None and self.alive[row] else None

    def _live_row(self, chunk_id: str) -> int | None:
        row = self._chunk_row.get(chunk_id)
        return row if row is not None and self.alive[row] else None

    def chunk_vector(self, chunk_id: str) -> np.ndarray | None:
        row = self._live_row(chunk_id)
        return None if row is None or self.dense is None else self.dense.vectors[row]

    def sentence_vectors_of(self, chunk_id: str) -> np.ndarray | None:
        row = self._live_row(chunk_id)
        if row is None:
            return None
        start, end = self.sentence_offsets[row], self.sentence_offsets[row + 1]
        return self.sentence_vectors[start:end] if end > start else None

    def sentence_terms_of(self, chunk_id: str) -> tuple[SentenceTerms, list[np.ndarray]] | None:
        row = self._live_row(chunk_id)
        return None if row is None else (self.sentence_terms, self.sentence_terms.of_row(row))

    def _bm25_all(self, query: str) -> np.ndarray:
        if self._last_bm25 is None or self._last_bm25[0] != query:
            self._last_bm25 = (query, self.bm25.scores(self.tokenizer.tokenize(query)))
        return self._last_bm25[1]

    def bm25_search(
        self, query: str, k: int, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        allowed = self.alive if mask is None else (mask & self.alive)
        return self.bm25.search(self.tokenizer.tokenize(query), k, allowed)

    def bm25_scores_for(self, query: str, rows: np.ndarray) -> np.ndarray:
        return self._bm25_all(query)[rows]

    def dense_search(
        self, vector: np.ndarray, k: int, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows by inner product; equal scores in row order, whichever search path ran
        (FAISS orders ties arbitrarily, so results would change when a filter or a tombstone
        switches the search to the masked path)."""
        if self.dense is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        self._check_width(vector)
        rows, scores = self.dense.search(vector, k, mask)
        order = np.lexsort((rows, -scores))
        return rows[order], scores[order]

    def dense_scores_for(self, vector: np.ndarray, rows: np.ndarray) -> np.ndarray:
        if self.dense is None:
            return np.zeros(len(rows), dtype=np.float32)
        self._check_width(vector)
        return self.dense.vectors[rows] @ np.asarray(vector, dtype=np.float32)

    def _check_width(self, vector: np.ndarray) -> None:
        width = np.asarray(vector).size
        if self.dense is not None and width != self.dense.dimension:
            raise InputError(
                f"query vector has {width} values but this index holds "
                f"{self.dense.dimension}-dimensional vectors; is the embedder the one the "
                "index was built with?"
            )

    # ------------------------------------------------------------------ persistence
    def write_files(self, directory: Path) -> None:
        with (directory / "chunks.jsonl").open("w", encoding="utf-8") as handle:
            for chunk in self.chunks:
                handle.write(json.dumps(chunk.to_dict(), ensure_ascii=False) + "\n")
        with (directory / "documents.jsonl").open("w", encoding="utf-8") as handle:
            for record in self.documents:
                handle.write(json.dumps(record.__dict__, ensure_ascii=False) + "\n")
        for name, array in (
            ("alive.npy", self.alive),
            ("chunk_doc_rows.npy", self.chunk_doc_rows),
            ("sentence_vectors.npy", self.sentence_vectors),
            ("sentence_offsets.npy", self.sentence_offsets),
        ):
            np.save(directory / name, array, allow_pickle=False)
        self.sentence_terms.save(directory)
        (directory / "bm25").mkdir()
        self.bm25.save(directory / "bm25")
        if self.dense is not None:
            self.dense.save(directory)

    def manifest_entry(self) -> dict[str, Any]:
        return {
            "index_config": self.config.model_dump(mode="json"),
            "fingerprint": self.fingerprint,
            "dimension": self.dense.dimension if self.dense else None,
            "counts": {
                "documents": self.n_documents,
                "chunks": len(self),
                "rows": len(self.chunks),
                "sentences": int(self.sentence_offsets[-1]),
                "tokens": sum(
                    c.token_count for c, a in zip(self.chunks, self.alive, strict=True) if a
                ),
            },
        }

    @classmethod
    def read_files(cls, directory: Path, entry: Mapping[str, Any]) -> HybridIndex:
        try:
            config = IndexConfig.model_validate(entry["index_config"])
            dimension = entry.get("dimension")
            fingerprint = str(entry["fingerprint"])
        except (KeyError, ValueError) as exc:
            raise IndexStoreError(
                f"{directory}: manifest lacks a valid index entry: {exc}"
            ) from None
        index = cls(config, dimension=dimension)
        try:
            with (directory / "chunks.jsonl").open(encoding="utf-8") as handle:
                index.chunks = [Chunk.from_dict(json.loads(line)) for line in handle]
            with (directory / "documents.jsonl").open(encoding="utf-8") as handle:
                index.documents = [_DocRecord(**json.loads(line)) for line in handle]
            index.alive = np.load(directory / "alive.npy", allow_pickle=False)
            index.chunk_doc_rows = np.load(directory / "chunk_doc_rows.npy", allow_pickle=False)
            index.sentence_vectors = np.load(directory / "sentence_vectors.npy", allow_pickle=False)
            index.sentence_offsets = np.load(directory / "sentence_offsets.npy", allow_pickle=False)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IndexStoreError(f"{directory}: cannot read index files: {exc}") from None
        index._check_loaded(directory)
        index.sentence_terms = SentenceTerms.load(directory, index.chunks)
        index.bm25 = BM25Index.load(directory / "bm25")
        if dimension:
            index.dense = DenseIndex.load(
                directory,
                dimension,
                kind=config.dense_index,
                hnsw_threshold=config.hnsw_threshold,
                hnsw_m=config.hnsw_m,
                ef_search=config.ef_search,
            )
        n = len(index.chunks)
        parts = {"bm25": len(index.bm25), "dense": len(index.dense) if index.dense else n}
        if any(rows != n for rows in parts.values()):
            raise IndexStoreError(f"{directory}: {n} chunks but {parts} index rows")
        index._doc_row = {d.id: i for i, d in enumerate(index.documents) if d.alive}
        index._chunk_row = {c.id: i for i, c in enumerate(index.chunks) if index.alive[i]}
        index.fingerprint = fingerprint
        if index.dense is not None:
            index.dense.build()
        return index

    def _check_loaded(self, directory: Path) -> None:
        """The row-aligned arrays must agree, or queries would return the wrong chunks."""
        n = len(self.chunks)
        offsets = self.sentence_offsets
        problems = []
        if not len(self.alive) == len(self.chunk_doc_rows) == n or len(offsets) != n + 1:
            problems.append(f"chunk arrays disagree on the number of rows ({n})")
        elif n and (
            self.chunk_doc_rows.min() < 0 or self.chunk_doc_rows.max() >= len(self.documents)
        ):
            problems.append("chunk document rows point outside documents.jsonl")
        elif (
            offsets[0] != 0
            or np.any(np.diff(offsets) < 0)
            or offsets[-1] != len(self.sentence_vectors)
        ):
            problems.append("sentence offsets do not match sentence_vectors.npy")
        if problems:
            raise IndexStoreError(f"{directory}: {problems[0]}")
        self.alive = self.alive.astype(bool)
