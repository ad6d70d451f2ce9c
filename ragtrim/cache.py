"""Retrieval and semantic query caches on diskcache (safe across threads and processes).

Agent loops repeat the same retrieval many times; the retrieval cache makes the repeat free.
Its key covers everything that can change the result (normalised query, filters, task
profile, every query-stage config, the index fingerprint, the ragtrim version), so a changed
index or config can only miss, never serve a stale result.

The semantic cache (opt-in) also reuses the result of an *earlier, different* query whose
embedding is at least ``threshold`` cosine-similar, with identical filters, profile, stage
configs and index. It trades a measured false-hit rate for hits on paraphrases.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ragtrim.types import Candidate

logger = logging.getLogger(__name__)
_warned: set[str] = set()
_warn_lock = threading.Lock()


def open_diskcache(directory: Path, **settings: Any):
    """Open a diskcache; a corrupted one is reported once, moved aside and rebuilt."""
    import diskcache

    directory = Path(directory)
    try:
        cache = diskcache.Cache(str(directory), **settings)
        cache.get("__ragtrim_probe__")
        return cache
    except sqlite3.DatabaseError as exc:
        aside = directory.with_name(f"{directory.name}.corrupt-{int(time.time())}")
        with _warn_lock:
            if str(directory) not in _warned:
                _warned.add(str(directory))
                logger.warning("cache %s is corrupted (%s); moved to %s and rebuilt", directory, exc, aside)
        directory.rename(aside)
        return diskcache.Cache(str(directory), **settings)


def normalise_query(query: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", query).casefold().split())


def cache_key(*parts: Any) -> str:
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class RetrievalCache:
    """Candidates after the query stages, keyed by everything that determines them."""

    def __init__(self, directory: Path, ttl_seconds: float | None = None) -> None:
        self._cache = open_diskcache(Path(directory) / "retrieval")
        self.ttl = ttl_seconds
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> tuple[list[Candidate], dict[str, Any]] | None:
        value = self._cache.get(key)
        if value is None:
            self.misses += 1
            return None
        try:
            payload = json.loads(value)
            result = [Candidate.from_dict(c) for c in payload["candidates"]], payload["extra"]
        except (ValueError, KeyError, TypeError):
            self._cache.delete(key)
            self.misses += 1
            return None
        self.hits += 1
        return result

    def set(self, key: str, candidates: list[Candidate], extra: Mapping[str, Any]) -> None:
        payload = {"candidates": [c.to_dict() for c in candidates], "extra": dict(extra)}
        self._cache.set(key, json.dumps(payload, ensure_ascii=False), expire=self.ttl)

    def close(self) -> None:
        self._cache.close()


class SemanticCache:
    """Nearest earlier query within one bucket (same filters, profile, configs and index)."""

    def __init__(
        self, directory: Path, threshold: float = 0.95, ttl_seconds: float | None = None, max_entries: int = 10_000
    ) -> None:
        self._cache = open_diskcache(Path(directory) / "semantic")
        self.threshold = threshold
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0

    def _entries(self, bucket: str) -> tuple[np.ndarray, list[str], list[float]]:
        """Bucket entries, stored as JSON + raw float32 (never pickled), minus expired ones."""
        raw = self._cache.get(f"bucket:{bucket}")
        if raw is None:
            return np.zeros((0, 0), dtype=np.float32), [], []
        try:
            data = json.loads(raw)
            vectors = np.frombuffer(base64.b64decode(data["vectors"]), dtype=np.float32)
            vectors = vectors.reshape(len(data["keys"]), -1)
        except (ValueError, KeyError, TypeError):
            self._cache.delete(f"bucket:{bucket}")
            return np.zeros((0, 0), dtype=np.float32), [], []
        keys, times = list(data["keys"]), list(data["times"])
        if self.ttl is not None:
            live = [i for i, t in enumerate(times) if t >= time.time() - self.ttl]
            vectors, keys, times = vectors[live], [keys[i] for i in live], [times[i] for i in live]
        return vectors, keys, times

    def lookup(self, bucket: str, vector: np.ndarray) -> tuple[str, float] | None:
        """The retrieval-cache key of the most similar earlier query, if similar enough."""
        vectors, keys, _ = self._entries(bucket)
        if len(keys) and vectors.shape[1] == len(vector):
            similarity = vectors @ np.asarray(vector, dtype=np.float32)
            best = int(np.argmax(similarity))
            if similarity[best] >= self.threshold:
                self.hits += 1
                return keys[best], float(similarity[best])
        self.misses += 1
        return None

    def add(self, bucket: str, vector: np.ndarray, result_key: str) -> None:
        with self._cache.transact():
            vectors, keys, times = self._entries(bucket)
            row = np.asarray(vector, dtype=np.float32).reshape(1, -1)
            vectors = np.vstack([vectors, row]) if len(keys) else row
            keys, times = keys + [result_key], times + [time.time()]
            keep = slice(-self.max_entries, None)
            payload = {
                "keys": keys[keep],
                "times": times[keep],
                "vectors": base64.b64encode(np.ascontiguousarray(vectors[keep]).tobytes()).decode(),
            }
            self._cache.set(f"bucket:{bucket}", json.dumps(payload))

    def close(self) -> None:
        self._cache.close()
