"""Packing units: the pieces of candidate text the packer may send.

A unit is one sentence of a candidate chunk (or the whole chunk at ``granularity="chunk"``);
contiguous runs of chosen sentences become spans when they are rendered. A sentence shared by
overlapping candidates, or repeated verbatim in another document, is one unit, owned by the
first candidate that holds it: sending it twice adds tokens and no information.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ragtrim.query import QueryContext
from ragtrim.types import Candidate, Chunk, Span

#: Markdown heading and code-fence lines: labels that carry no content of their own
LABEL_PREFIXES = ("#", "```", "~~~")


def heading_text(chunk: Chunk) -> str:
    """The chunk's document title and section path: what the sentences under it are about."""
    return " ".join([chunk.title or "", *chunk.section])


@dataclass(slots=True)
class Unit:
    candidate: int
    doc_id: str
    title: str
    start: int
    end: int
    text: str
    value: float = 0.0
    cost: int = 0
    truncated: bool = False
    #: a Markdown heading or code-fence line: a label, never worth selecting on its own
    label: bool = False
    #: the document's whitespace just before this unit (rejoins adjacent units verbatim)
    lead: str = ""
    #: the sentence's position in its chunk and the chunk's sentence count
    position: int = 0
    siblings: int = 1


@dataclass
class UnitSet:
    """Units with what scoring reads: sentence vectors (one row per unit, or ``None``), the
    stored term ids per unit (``None`` rows are tokenised), and per candidate the units that
    cover its text."""

    units: list[Unit] = field(default_factory=list)
    vectors: np.ndarray | None = None
    term_ids: list[np.ndarray | None] = field(default_factory=list)
    vocabulary: Any = None
    coverage: list[list[int]] = field(default_factory=list)
    #: (previous, following) unit in the same chunk, filled by the first feature pass
    neighbours: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.units)


@dataclass(frozen=True, slots=True)
class _Piece:
    """What a unit takes from its chunk alone, whatever the question (offsets in the chunk)."""

    start: int
    end: int
    text: str
    cost: int
    label: bool
    lead: str


@functools.lru_cache(maxsize=16_384)
def _pieces(text: str, spans: tuple[Span, ...], token_count: int, sentences: bool) -> tuple:
    """WHY cached: the same chunks come back query after query, and slicing, costing and
    labelling their sentences was a fifth of the packing time (timed per phase)."""
    # selection only needs costs roughly (pro rata from the chunk's stored exact count):
    # the rendered prompt is counted exactly afterwards and trimmed until it fits
    tokens_per_char = token_count / max(len(text), 1)
    out = []
    for a, b in spans:
        piece = text[a:b]
        before = text[max(0, a - 16) : a]
        out.append(
            _Piece(
                a,
                b,
                piece,
                max(1, round(tokens_per_char * (b - a))) + 1,
                sentences and piece.startswith(LABEL_PREFIXES),
                before[len(before.rstrip()) :],
            )
        )
    return tuple(out)


def build_units(
    ctx: QueryContext,
    candidates: list[Candidate],
    granularity: str,
    with_vectors: bool,
    with_terms: bool,
) -> UnitSet:
    if not candidates:
        return UnitSet()
    out = UnitSet()
    seen: dict[tuple[str, int, int], int] = {}
    same_text: dict[str, int] = {}
    unit_vectors: list[np.ndarray] = []
    sentences = granularity == "sentence"
    for ci, candidate in enumerate(candidates):
        chunk = candidate.chunk
        spans: tuple[Span, ...] = (
            chunk.sentences or ((0, len(chunk.text)),) if sentences else ((0, len(chunk.text)),)
        )
        vectors = None
        if sentences and with_vectors:
            vectors = ctx.sentence_vectors(chunk) if chunk.sentences else ctx.chunk_vectors([chunk])
        pieces = _pieces(chunk.text, spans, chunk.token_count, sentences)
        stored = ctx.sentence_term_ids(chunk) if sentences and with_terms else None
        if stored is not None:
            out.vocabulary = stored[0]
        kept, covering = [], []
        doc_id, title, offset, siblings = chunk.doc_id, chunk.title, chunk.start, len(spans)
        for si, piece in enumerate(pieces):
            key = (doc_id, offset + piece.start, offset + piece.end)
            known = seen.get(key, same_text.get(piece.text))
            if known is not None:
                covering.append(known)
                continue
            seen[key] = same_text[piece.text] = len(out.units)
            covering.append(len(out.units))
            out.units.append(
                Unit(
                    ci,
                    doc_id,
                    title,
                    key[1],
                    key[2],
                    piece.text,
                    0.0,
                    piece.cost,
                    False,
                    piece.label,
                    piece.lead,
                    si,
                    siblings,
                )
            )
            kept.append(si)
            out.term_ids.append(stored[1][si] if stored is not None else None)
        out.coverage.append(covering)
        if vectors is not None and kept:
            unit_vectors.append(vectors[kept])
    if unit_vectors:
        out.vectors = np.concatenate(unit_vectors)
    return out
