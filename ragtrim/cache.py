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
import re
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import diskcache
import numpy as np

from ragtrim.diskcache_util import RecoveringCache
from ragtrim.types import Candidate

logger = logging.getLogger(__name__)
T = TypeVar("T")


class _Store:
    """A recovering diskcache plus the policy both query caches share: corruption is handled
    by :class:`RecoveringCache`; a busy, full or read-only cache costs a miss or a dropped
    write (logged once per cache), never a failed query."""

    def __init__(self, directory: Path, label: str) -> None:
        self.label = label
        self.cache = RecoveringCache(directory, label)
        self.errors = 0
        self._lock = threading.Lock()

    def run(self, operation: Callable[[diskcache.Cache], T], default: T) -> T:
        try:
            return self.cache.run(operation, default)
        except (sqlite3.DatabaseError, OSError, diskcache.Timeout) as exc:
            with self._lock:
                self.errors += 1
                first = self.errors == 1
            if first:
                logger.warning(
                    "%s cache at %s is unusable (%s); continuing without it for this call "
                    "(further failures are counted, not logged)",
                    self.label,
                    self.cache.directory,
                    exc,
                )
            return default

    def close(self) -> None:
        self.cache.close()


def normalise_query(query: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", query).casefold().split())


def cache_key(*parts: Any) -> str:
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class RetrievalCache:
    """Candidates after the query stages, keyed by everything that determines them."""

    def __init__(self, directory: Path, ttl_seconds: float | None = None) -> None:
        self._store = _Store(Path(directory) / "retrieval", "retrieval")
        self.ttl = ttl_seconds
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> tuple[list[Candidate], dict[str, Any]] | None:
        value = self._store.run(lambda cache: cache.get(key, retry=True), None)
        result = None
        if value is not None:
            try:
                payload = json.loads(value)
                result = [Candidate.from_dict(c) for c in payload["candidates"]], payload["extra"]
            except (ValueError, KeyError, TypeError):
                self._store.run(lambda cache: cache.delete(key, retry=True), False)
        if result is None:
            self.misses += 1
        else:
            self.hits += 1
        return result

    def set(self, key: str, candidates: list[Candidate], extra: Mapping[str, Any]) -> None:
        payload = {"candidates": [c.to_dict() for c in candidates], "extra": dict(extra)}
        text = json.dumps(payload, ensure_ascii=False)
        self._store.run(lambda cache: cache.set(key, text, expire=self.ttl, retry=True), None)

    def close(self) -> None:
        self._store.close()


_ANCHOR = re.compile(r"[`\"“”']([^`\"“”']{1,80})[`\"“”']|(\S*\d\S*)")


def query_anchors(query: str) -> str:
    """The parts of a query that a paraphrase must repeat exactly: tokens with digits (versions,
    years, ports, amounts) and quoted or backticked terms.

    Embedding cosine cannot tell "When was Relay 3.3 released?" from "... 3.1 ...": they score
    0.99. Keying the semantic cache on these anchors makes such pairs different buckets.
    """
    anchors = set()
    for quoted, with_digit in _ANCHOR.findall(normalise_query(query)):
        anchors.add((quoted or with_digit).strip(".,;:!?()[]{}"))
    return "\x1f".join(sorted(a for a in anchors if a))


def semantic_bucket(bucket: str, query: str) -> str:
    return f"{bucket}|{query_anchors(query)}"


class SemanticCache:
    """Nearest earlier query within one bucket (same filters, profile, configs, index and
    query anchors, see ``query_anchors``)."""

    def __init__(
        self,
        directory: Path,
        threshold: float = 0.93,
        ttl_seconds: float | None = None,
        max_entries: int = 10_000,
    ) -> None:
        self._store = _Store(Path(directory) / "semantic", "semantic")
        self.threshold = threshold
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0

    def _entries(
        self, cache: diskcache.Cache, bucket: str
    ) -> tuple[np.ndarray, list[str], list[float]]:
        """Bucket entries, stored as JSON + raw float32 (never pickled), minus expired ones."""
        raw = cache.get(f"bucket:{bucket}", retry=True)
        empty: tuple[np.ndarray, list[str], list[float]] = (
            np.zeros((0, 0), dtype=np.float32),
            [],
            [],
        )
        if raw is None:
            return empty
        try:
            data = json.loads(raw)
            keys, times = list(data["keys"]), [float(t) for t in data["times"]]
            vectors = np.frombuffer(base64.b64decode(data["vectors"]), dtype=np.float32)
            vectors = vectors.reshape(len(keys), -1)
            if len(times) != len(keys):
                raise ValueError("keys and times differ in length")
        except (ValueError, KeyError, TypeError):
            cache.delete(f"bucket:{bucket}", retry=True)
            return empty
        if self.ttl is not None:
            now = time.time()
            live = [i for i, t in enumerate(times) if t >= now - self.ttl]
            vectors, keys, times = vectors[live], [keys[i] for i in live], [times[i] for i in live]
        return vectors, keys, times

    def lookup(self, bucket: str, vector: np.ndarray) -> tuple[str, float] | None:
        """The retrieval-cache key of the most similar earlier query, if similar enough."""
        empty = (np.zeros((0, 0), dtype=np.float32), [], [])
        vectors, keys, _ = self._store.run(lambda cache: self._entries(cache, bucket), empty)
        query = np.asarray(vector, dtype=np.float32).ravel()
        if len(keys) and vectors.shape[1] == len(query):
            similarity = vectors @ query
            best = int(np.argmax(similarity))
            if similarity[best] >= self.threshold:
                self.hits += 1
                return keys[best], float(similarity[best])
        self.misses += 1
        return None

    def add(self, bucket: str, vector: np.ndarray, result_key: str) -> None:
        row = np.asarray(vector, dtype=np.float32).reshape(1, -1)

        def append(cache: diskcache.Cache) -> None:
            with cache.transact(retry=True):
                vectors, keys, times = self._entries(cache, bucket)
                if len(keys) and vectors.shape[1] != row.shape[1]:
                    vectors, keys, times = row[:0], [], []
                stacked = np.vstack([vectors, row]) if len(keys) else row
                keys, times = keys + [result_key], times + [time.time()]
                keep = slice(-self.max_entries, None)
                payload = {
                    "keys": keys[keep],
                    "times": times[keep],
                    "vectors": base64.b64encode(
                        np.ascontiguousarray(stacked[keep]).tobytes()
                    ).decode(),
                }
                cache.set(f"bucket:{bucket}", json.dumps(payload), retry=True)

        self._store.run(append, None)

    def close(self) -> None:
        self._store.close()
