"""A persistent embedding cache, and an embedder that reads through it.

Re-embedding unchanged text is the most expensive thing a RAG app does twice, so vectors are
stored on disk (``diskcache``: SQLite, safe across threads and processes) under
``fingerprint|kind|sha256(text)``. The fingerprint names the model, its weights and every
setting that changes a vector, so changing any of them misses instead of serving stale rows.

A cache must never break the app that uses it: a corrupted database is moved aside and
replaced by an empty one, and a damaged entry is a miss; both are logged.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ragtrim.cachedir import default_cache_dir
from ragtrim.diskcache_util import RecoveringCache
from ragtrim.diskcache_util import is_corruption as _is_corruption  # noqa: F401 (kept importable here)
from ragtrim.embedding.models import as_text_list, check_kind
from ragtrim.errors import InputError

logger = logging.getLogger(__name__)

#: a lone surrogate (text that is not valid Unicode): tokenizers reject it, so the model sees
#: U+FFFD in its place; cache keys still hash the exact text
_SURROGATE = re.compile("[\ud800-\udfff]")

#: vectors are stored little-endian so a cache directory is portable between machines
_STORED_DTYPE = np.dtype("<f4")


class FingerprintedEmbedder(Protocol):
    """What :class:`CachedEmbedder` wraps: a model-backed or callable embedder.

    One whose ``dimension`` loads a model should also have a ``known_dimension`` property (the
    width once loaded, else ``None``), so that cache hits never load it.
    """

    @property
    def fingerprint(self) -> str: ...

    @property
    def dimension(self) -> int | None: ...

    def embed(self, texts: Sequence[str], kind: str = "passage") -> np.ndarray: ...


def cache_key(fingerprint: str, kind: str, text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{fingerprint}|{kind}|{digest}"


class EmbeddingCache:
    """Vectors on disk at ``<directory>/embeddings``; ``directory`` defaults to the user cache.

    ``size_limit_bytes`` bounds the store; the least recently stored vectors are evicted first.
    """

    def __init__(self, directory: Path | str | None = None, size_limit_bytes: int = 2**31) -> None:
        if size_limit_bytes <= 0:
            raise InputError(f"size_limit_bytes: expected a positive int, got {size_limit_bytes}")
        base = Path(directory).expanduser() if directory is not None else default_cache_dir()
        self.directory = base / "embeddings"
        self.size_limit_bytes = size_limit_bytes
        #: entries found damaged (wrong length, wrong dimension, non-finite) and deleted
        self.corrupt_values = 0
        #: ``set_many`` calls that could not write (full disk, read-only directory)
        self.write_errors = 0
        self._lock = threading.Lock()
        self._store = RecoveringCache(self.directory, "embedding", size_limit=self.size_limit_bytes)

    def _decode(self, key: str, raw: Any, dimension: int | None) -> np.ndarray | None:
        problem = None
        if not isinstance(raw, bytes):
            problem = f"a {type(raw).__name__} instead of bytes"
        elif len(raw) % _STORED_DTYPE.itemsize or not raw:
            problem = f"{len(raw)} bytes, not a whole number of float32 values"
        elif dimension is not None and len(raw) != dimension * _STORED_DTYPE.itemsize:
            problem = f"{len(raw) // _STORED_DTYPE.itemsize} values instead of {dimension}"
        if problem is None:
            vector = np.frombuffer(raw, dtype=_STORED_DTYPE).astype(np.float32)
            if np.isfinite(vector).all():
                return vector
            problem = "NaN or infinite values"
        self._store.run(lambda store: store.delete(key, retry=True), False)
        with self._lock:
            self.corrupt_values += 1
            first = self.corrupt_values == 1
        if first:
            logger.warning(
                "embedding cache at %s: entry %s holds %s; treated as a miss and deleted "
                "(further damaged entries are counted in corrupt_values, not logged)",
                self.directory,
                key,
                problem,
            )
        return None

    def get_many(
        self, fingerprint: str, kind: str, texts: Sequence[str], dimension: int | None = None
    ) -> list[np.ndarray | None]:
        """One vector or ``None`` (miss) per text; entries of the wrong ``dimension`` are misses."""
        keys = [cache_key(fingerprint, kind, text) for text in texts]
        raws = self._store.run(
            lambda store: [store.get(key, default=None, retry=True) for key in keys],
            [None] * len(keys),
        )
        return [
            None if raw is None else self._decode(k, raw, dimension)
            for k, raw in zip(keys, raws, strict=True)
        ]

    def set_many(
        self, fingerprint: str, kind: str, texts: Sequence[str], vectors: np.ndarray | Sequence[Any]
    ) -> None:
        rows = np.asarray(vectors, dtype=_STORED_DTYPE)
        if rows.ndim != 2 or rows.shape[0] != len(texts):
            raise InputError(
                f"vectors: expected shape ({len(texts)}, dimension) for {len(texts)} texts, "
                f"got {rows.shape}"
            )
        items = [
            (cache_key(fingerprint, kind, t), row.tobytes())
            for t, row in zip(texts, rows, strict=True)
        ]

        def write(store: Any) -> None:
            with store.transact(retry=True):
                for key, value in items:
                    store.set(key, value, retry=True)

        try:
            self._store.run(write, None)
        except (sqlite3.DatabaseError, OSError) as exc:
            self._write_failed(len(items), exc)

    def _write_failed(self, count: int, exc: Exception) -> None:
        """A full disk or a read-only directory costs speed, not correctness: keep going."""
        with self._lock:
            self.write_errors += 1
            first = self.write_errors == 1
        if first:
            logger.warning(
                "embedding cache at %s: could not store %d vectors (%s); they will be embedded "
                "again next time (further failures are counted in write_errors, not logged)",
                self.directory,
                count,
                exc,
            )

    def __len__(self) -> int:
        """Stored vectors (0 for a cache that could not be opened)."""
        return self._store.run(len, 0)

    def volume(self) -> int:
        """Bytes used on disk (0 for a cache that could not be opened)."""
        return int(self._store.run(lambda store: store.volume(), 0))

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmbeddingCache({os.fspath(self.directory)!r})"


class CachedEmbedder:
    """Embed through ``cache``: identical texts in a call are embedded once, cached texts never.

    ``cache=None`` keeps only the in-call deduplication (pass ``EmbeddingCache()`` for the
    default directory). Counters count distinct texts: ``hits`` served from the cache,
    ``misses`` embedded; ``model_calls`` counts calls into the wrapped embedder (at most one per
    ``embed`` call, the wrapped embedder batches internally).
    """

    def __init__(
        self, embedder: FingerprintedEmbedder, cache: EmbeddingCache | None = None
    ) -> None:
        self.embedder = embedder
        self.cache = cache
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.model_calls = 0
        #: the width the caller needs (a loaded index's), used to reject damaged cached rows
        #: while the model's own width is not known without loading it
        self.expected_dimension: int | None = None

    @property
    def fingerprint(self) -> str:
        return self.embedder.fingerprint

    @property
    def dimension(self) -> int | None:
        return self.embedder.dimension

    def warm_up(self) -> None:
        warm_up = getattr(self.embedder, "warm_up", None)
        if warm_up is not None:
            warm_up()

    def reset_counters(self) -> None:
        with self._lock:
            self.hits = self.misses = self.model_calls = 0

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text], kind="query")[0]

    def embed(self, texts: Sequence[str], kind: str = "passage") -> np.ndarray:
        """One float32 row per text (query vectors with ``kind="query"``)."""
        check_kind(kind)
        items = as_text_list(texts)
        if not items:
            return self.embedder.embed([], kind=kind)
        unique = list(dict.fromkeys(items))
        fingerprint = self.embedder.fingerprint
        rows = self._cached_rows(fingerprint, kind, unique)
        missing = [i for i, row in enumerate(rows) if row is None]
        calls = 0
        if missing:
            width = self._embed_into(rows, missing, unique, fingerprint, kind)
            calls += 1
            stale = [i for i, row in enumerate(rows) if row is not None and len(row) != width]
            if stale:
                logger.warning(
                    "embedding cache: %d cached vectors for %r have another dimension than the "
                    "model's %d; re-embedding them (did the embedder change under one name?)",
                    len(stale),
                    fingerprint,
                    width,
                )
                self._embed_into(rows, stale, unique, fingerprint, kind)
                calls += 1
                missing += stale
        with self._lock:
            self.hits += len(unique) - len(missing)
            self.misses += len(missing)
            self.model_calls += calls
        matrix = np.vstack(rows).astype(np.float32, copy=False)
        if len(unique) == len(items):
            return matrix
        position = {text: i for i, text in enumerate(unique)}
        return matrix[[position[text] for text in items]]

    def _known_dimension(self) -> int | None:
        """The wrapped embedder's width if knowing it is free, else ``None``.

        Embedders whose ``dimension`` loads a model expose ``known_dimension`` instead.
        """
        if hasattr(type(self.embedder), "known_dimension"):
            known = self.embedder.known_dimension  # type: ignore[attr-defined]
        else:
            known = self.embedder.dimension
        return known if known is not None else self.expected_dimension

    def _cached_rows(self, fingerprint: str, kind: str, unique: list[str]) -> list[Any]:
        """Cached rows; ``None`` for misses and damaged entries.

        Rows are checked against the width only when it is known without loading the model;
        otherwise they must agree on one width. If they do not, some text is re-embedded
        anyway, so the model's width is worth loading to tell the damaged entries apart.
        """
        if self.cache is None:
            return [None] * len(unique)
        dimension = self._known_dimension()
        rows = self.cache.get_many(fingerprint, kind, unique, dimension=dimension)
        widths = {len(row) for row in rows if row is not None}
        if dimension is None and len(widths) > 1:
            dimension = self.embedder.dimension
            if dimension is not None:
                return self.cache.get_many(fingerprint, kind, unique, dimension=dimension)
            logger.warning(
                "embedding cache: vectors for %r have mixed dimensions %s; re-embedding",
                fingerprint,
                sorted(widths),
            )
            return [None] * len(unique)
        return rows

    def _embed_into(
        self, rows: list[Any], indices: list[int], unique: list[str], fingerprint: str, kind: str
    ) -> int:
        """Embed ``unique[i]`` for each ``i`` in ``indices`` in one call and store them.

        Returns the row width.
        """
        texts = [unique[i] for i in indices]
        model_texts = [_SURROGATE.sub("\ufffd", text) for text in texts]
        fresh = np.asarray(self.embedder.embed(model_texts, kind=kind), dtype=np.float32)
        if fresh.ndim != 2 or fresh.shape[0] != len(texts):
            raise InputError(
                f"embedder {fingerprint!r} returned shape {fresh.shape} for {len(texts)} texts"
            )
        for i, vector in zip(indices, fresh, strict=True):
            rows[i] = vector
        if self.cache is not None:
            self.cache.set_many(fingerprint, kind, texts, fresh)
        return int(fresh.shape[1])

    def __repr__(self) -> str:
        return f"CachedEmbedder({self.embedder!r}, cache={self.cache!r})"
