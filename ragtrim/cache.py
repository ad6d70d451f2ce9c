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

import hashlib
import json
import logging
import re
import sqlite3
import threading
import time
import unicodedata
from collections import OrderedDict
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


class ScoreStore:
    """Model scores (the cross-encoder's) on disk, as plain floats: a ``get``/``set`` mapping
    whose failures cost a miss or a dropped write, like the query caches."""

    def __init__(self, directory: Path) -> None:
        self._store = _Store(Path(directory), "rerank score")

    def get(self, key: str, default: Any = None) -> Any:
        value = self._store.run(lambda cache: cache.get(key, default, retry=True), default)
        return value if isinstance(value, float) else default

    def set(self, key: str, value: Any) -> None:
        score = float(value)
        self._store.run(lambda cache: cache.set(key, score, retry=True), None)

    def close(self) -> None:
        self._store.close()


def normalise_query(query: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", query).casefold().split())


def cache_key(*parts: Any) -> str:
    """SHA-256 of the parts' canonical JSON; only JSON types are accepted.

    There is deliberately no ``default=str``: it made ``numpy.int64(3)`` and ``"3"`` one key.
    Callers pass canonical forms (a parsed filter's ``canonical``, stage configs dumped as
    JSON); anything else is a ``TypeError``. Lone surrogates are escaped (``ensure_ascii``), so
    any ``str`` can be part of a key.
    """
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(payload.encode("ascii")).hexdigest()


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
        text = json.dumps(payload)  # ASCII: lone surrogates in texts survive SQLite
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


#: decoded semantic entries kept in memory between lookups (15 MB of 384-dimensional vectors)
_REMEMBERED_ENTRIES = 10_000

#: a semantic-cache entry: retrieval-cache key, time added, query vector
_Entry = tuple[str, float, np.ndarray]


def _decode_entry(raw: Any) -> _Entry | None:
    """A JSON header, a newline and raw little-endian float32 (never pickled); else ``None``."""
    try:
        header, _, body = raw.partition(b"\n")
        entry = json.loads(header)
        return str(entry["key"]), float(entry["time"]), np.frombuffer(body, dtype="<f4")
    except (AttributeError, ValueError, KeyError, TypeError):
        return None


class SemanticCache:
    """Nearest earlier query within one bucket (same filters, profile, configs, index and
    query anchors, see ``query_anchors``).

    Each add writes one entry under the bucket's next number, counter and entry in one
    transaction: an add costs the same however full the bucket is, and concurrent writers never
    lose each other's entries. A lookup reads the bucket newest first, within the last
    ``max_entries`` numbers, and stops at the first entry that has expired or is gone (older
    ones are older still) or that has another width (entries before a model change are void).
    Entries never change once written, so those read before are reused from memory and a lookup
    reads only what was added since.
    """

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
        self._lock = threading.Lock()
        self._remembered: OrderedDict[str, dict[int, _Entry]] = OrderedDict()
        self._remembered_count = 0

    @staticmethod
    def _keys(bucket: str) -> tuple[str, str]:
        """The bucket's counter key and its entries' key prefix (fixed length, any bucket)."""
        digest = hashlib.sha256(bucket.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f"count:{digest}", f"entry:{digest}:"

    def _entries(self, cache: diskcache.Cache, bucket: str) -> tuple[np.ndarray, list[str]]:
        """Live entries' vectors and keys, newest first; damaged entries are skipped."""
        count_key, prefix = self._keys(bucket)
        newest = cache.get(count_key, retry=True)
        with self._lock:
            known = self._remembered.pop(bucket, {})
            self._remembered_count -= len(known)
        if not isinstance(newest, int):
            return np.zeros((0, 0), dtype=np.float32), []
        if known and max(known) > newest:
            known = {}  # the store was replaced since: numbers started again
        oldest = -np.inf if self.ttl is None else time.time() - self.ttl
        live: dict[int, _Entry] = {}
        width = None
        for number in range(newest, max(newest - self.max_entries, 0), -1):
            entry = known.get(number)
            if entry is None:
                raw = cache.get(f"{prefix}{number}", retry=True)
                if raw is None:
                    break
                entry = _decode_entry(raw)
                if entry is None:
                    continue
            width = len(entry[2]) if width is None else width
            if entry[1] < oldest or len(entry[2]) != width:
                break
            live[number] = entry
        self._remember(bucket, live)
        if not live:
            return np.zeros((0, 0), dtype=np.float32), []
        rows = np.vstack([row for _, _, row in live.values()]).astype(np.float32, copy=False)
        return rows, [key for key, _, _ in live.values()]

    def _remember(self, bucket: str, live: dict[int, _Entry]) -> None:
        """Keep ``live`` for the next lookup, forgetting the least recently used buckets."""
        with self._lock:
            self._remembered[bucket] = live
            self._remembered_count += len(live)
            while self._remembered_count > _REMEMBERED_ENTRIES and len(self._remembered) > 1:
                _, dropped = self._remembered.popitem(last=False)
                self._remembered_count -= len(dropped)

    def lookup(self, bucket: str, vector: np.ndarray) -> tuple[str, float] | None:
        """The retrieval-cache key of the most similar earlier query, if similar enough."""
        empty: tuple[np.ndarray, list[str]] = (np.zeros((0, 0), dtype=np.float32), [])
        vectors, keys = self._store.run(lambda cache: self._entries(cache, bucket), empty)
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
        body = np.asarray(vector, dtype="<f4").ravel().tobytes()
        count_key, prefix = self._keys(bucket)

        def append(cache: diskcache.Cache) -> None:
            with cache.transact(retry=True):
                last = cache.get(count_key, retry=True)
                number = last + 1 if isinstance(last, int) and last >= 0 else 1
                header = json.dumps({"key": result_key, "time": time.time()}).encode()
                cache.set(count_key, number, retry=True)
                cache.set(f"{prefix}{number}", header + b"\n" + body, expire=self.ttl, retry=True)
                if number > self.max_entries:
                    cache.delete(f"{prefix}{number - self.max_entries}", retry=True)

        self._store.run(append, None)

    def close(self) -> None:
        self._store.close()
