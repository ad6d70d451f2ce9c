"""The filter stage: turns the query's filter into the allowed-rows mask, before any top-k.

Retrievers search only ``ctx.allowed`` rows, so a filtered-out chunk can never take a top-k slot
(unlike post-filtering, which returns fewer than k, or score-zeroing, which still leaks rows).
Masks are memoised per (canonical filter, index fingerprint): the fingerprint changes with
every index mutation, so a cached mask is never stale.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from ragtrim.errors import IndexStoreError, InputError
from ragtrim.filtering.language import Filter, combine, parse_filter
from ragtrim.query import IndexView, QueryContext, StageOutput
from ragtrim.stage import Stage, StageConfig
from ragtrim.types import Candidate, Drop, DropReason

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _IndexMask:
    """What one filter allows in one index version (``chunks`` is read-only)."""

    chunks: np.ndarray
    documents: int
    absent_paths: tuple[str, ...]


def _index_mask(flt: Filter, index: IndexView) -> _IndexMask:
    metadata = index.document_metadata()
    doc_rows = np.asarray(index.chunk_document_rows(), dtype=np.intp)
    alive = np.asarray(index.alive_mask(), dtype=bool)
    if doc_rows.shape != alive.shape:
        raise IndexStoreError(
            f"index is inconsistent: {len(doc_rows)} chunk document rows but an alive mask of "
            f"{len(alive)} rows"
        )
    if len(doc_rows) and (doc_rows.min() < 0 or doc_rows.max() >= len(metadata)):
        raise IndexStoreError(
            f"index is inconsistent: chunk document rows point outside the {len(metadata)} "
            "document metadata rows"
        )
    doc_mask = flt.mask(metadata)
    chunks = doc_mask[doc_rows] & alive
    chunks.setflags(write=False)
    live_docs = np.zeros(len(metadata), dtype=bool)
    live_docs[doc_rows[alive]] = True
    allowed_docs = np.zeros(len(metadata), dtype=bool)
    allowed_docs[doc_rows[chunks]] = True
    live_metadata = [metadata[i] for i in np.flatnonzero(live_docs)]
    return _IndexMask(chunks, int(allowed_docs.sum()), tuple(flt.absent_paths(live_metadata)))


class MetadataFilter(Stage):
    """Restrict retrieval to chunks whose document metadata matches the filter.

    The effective filter is ``base_filter`` (e.g. a tenancy constraint) AND the query's
    ``filters``. With an index it sets ``ctx.allowed`` (ANDed with any mask already there);
    with candidates from a framework retriever it drops those whose metadata does not match.
    """

    kind = "filter"

    class Config(StageConfig):
        base_filter: dict[str, Any] | None = None
        cache_size: int = Field(default=256, ge=0)

        @field_validator("base_filter", mode="before")
        @classmethod
        def _valid_filter(cls, value: Any) -> Any:
            if value is not None:
                parse_filter(value)
            return value

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        base = self.config.base_filter
        self._base: Filter | None = parse_filter(base) if base is not None else None
        self._masks: OrderedDict[tuple[str, str], _IndexMask] = OrderedDict()
        self._lock = threading.Lock()

    def effective_filter(self, filters: Mapping[str, Any] | Filter | None) -> Filter | None:
        """``base_filter`` AND ``filters``; ``None`` when neither constrains anything."""
        query_filter = parse_filter(filters) if filters else None
        return combine(self._base, query_filter)

    def run(self, ctx: QueryContext, candidates: list[Candidate]) -> StageOutput:
        flt = self.effective_filter(ctx.filters)
        if flt is None:
            return StageOutput(list(candidates))
        notes: list[str] = []
        stats: dict[str, Any] = {}
        if ctx.index is not None:
            allowed = self._cached_mask(flt, ctx.index)
            chunks = allowed.chunks
            if ctx.allowed is not None:
                if len(ctx.allowed) != len(chunks):
                    raise InputError(
                        f"ctx.allowed has {len(ctx.allowed)} rows but the index has "
                        f"{len(chunks)} chunk rows"
                    )
                chunks = np.logical_and(ctx.allowed, chunks)
            ctx.allowed = chunks
            stats["allowed_chunks"] = int(chunks.sum())
            stats["allowed_documents"] = allowed.documents
            if stats["allowed_chunks"] == 0:
                notes.append("filter matched no chunks")
            notes.extend(
                f"filter field {path!r} occurs in no document" for path in allowed.absent_paths
            )
        keep = flt.mask([candidate.chunk.metadata for candidate in candidates])
        kept = [candidate for candidate, ok in zip(candidates, keep, strict=True) if ok]
        drops = [
            Drop(c.chunk.id, DropReason.FILTERED, stage="filter", tokens=c.chunk.token_count)
            for c, ok in zip(candidates, keep, strict=True)
            if not ok
        ]
        if candidates and not kept:
            notes.append("filter matched no candidates")
        return StageOutput(kept, drops, notes, stats)

    def _cached_mask(self, flt: Filter, index: IndexView) -> _IndexMask:
        if self.config.cache_size == 0:
            return _index_mask(flt, index)
        key = (flt.to_json(), str(index.fingerprint))
        with self._lock:
            found = self._masks.get(key)
            if found is not None:
                self._masks.move_to_end(key)
                return found
        computed = _index_mask(flt, index)
        with self._lock:
            self._masks[key] = computed
            while len(self._masks) > self.config.cache_size:
                self._masks.popitem(last=False)
        return computed
