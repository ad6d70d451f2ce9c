"""Remove repeated text from the candidate list before it costs prompt tokens.

The same text reaches a prompt twice through chunk overlap, FAQ pages that copy manuals, and
mirrored pages. Candidates arrive best-first; every step keeps the best-ranked copy and
reports each removed candidate with its reason, the tokens it would have cost and the kept
candidate it duplicates ("kept twin"). A twin may itself be removed by a later step, in which
case its own drop names the next twin, so every chain ends at a candidate that was kept.

Steps, in order: merge overlapping or touching chunks of one document, drop exact copies
(normalised text), drop near-duplicates (word-shingle Jaccard), drop semantic duplicates
(chunk-vector cosine), then optionally re-order by Maximal Marginal Relevance.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Sequence
from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import Field

from ragtrim.dedup.minhash import WordTable, similar_texts
from ragtrim.errors import ConfigError, InputError
from ragtrim.query import QueryContext, StageOutput
from ragtrim.stage import Stage, StageConfig
from ragtrim.tokens import TokenCounter
from ragtrim.types import Candidate, Chunk, Drop, DropReason, Span, chunk_id

logger = logging.getLogger(__name__)

STAGE_NAME = "dedup"
MINHASH_SEED = 1


def exact_key(text: str) -> str:
    """Casefolded text with whitespace runs collapsed and punctuation stripped at both ends."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    collapsed = " ".join(text.casefold().split())
    start, end = 0, len(collapsed)
    while start < end and _is_edge_noise(collapsed[start]):
        start += 1
    while end > start and _is_edge_noise(collapsed[end - 1]):
        end -= 1
    return collapsed[start:end]


def _is_edge_noise(char: str) -> bool:
    return char == " " or unicodedata.category(char).startswith("P")


def _merge_sentences(members: Sequence[Chunk], start: int) -> tuple[Span, ...]:
    """Members' sentence spans, absolute, without repeats or spans inside another, relative."""
    absolute = sorted(
        {(m.start + a, m.start + b) for m in members for a, b in m.sentences},
        key=lambda span: (span[0], -span[1]),
    )
    merged: list[Span] = []
    reach = -1
    for a, b in absolute:
        if b <= reach:  # inside (or equal to) a span that starts no later
            continue
        merged.append((a - start, b - start))
        reach = b
    return tuple(merged)


def _check_length(chunk: Chunk) -> None:
    if len(chunk.text) != chunk.end - chunk.start:
        raise InputError(
            f"dedup.merge_overlaps: chunk {chunk.id!r} has {len(chunk.text)} characters but "
            f"spans [{chunk.start}, {chunk.end}); chunk text must equal "
            "document.text[start:end] (or set merge_overlaps=False)"
        )


def _disagreement(first: Chunk, second: Chunk, start: int, end: int) -> InputError:
    return InputError(
        f"dedup.merge_overlaps: chunks {first.id!r} and {second.id!r} of document "
        f"{first.doc_id!r} overlap on [{start}, {end}) but their texts differ there; chunk "
        "text must equal document.text[start:end] (or set merge_overlaps=False)"
    )


def _merge_component(
    members: list[Candidate], best: Candidate, counter: TokenCounter
) -> tuple[Candidate, list[Drop]]:
    """One candidate spanning the union of ``members`` (sorted by start, longest first).

    Overlapping text is kept once: ``text = a.text + b.text[a.end - b.start:]``. Tokens saved
    are attributed member by member, telescoping over growing prefixes of the merged text:
    a member saves its own count minus the tokens its new text added, so the drops add up to
    exactly (sum of member counts) - (merged count). The leftmost member's own count stands in
    for the count of its text, which spares one tokenisation per merge.
    """
    chunks = [m.chunk for m in members]
    for chunk in chunks:
        _check_length(chunk)
    start, reach = chunks[0].start, chunks[0].end
    text = chunks[0].text
    previous_count = chunks[0].token_count
    added = [previous_count]
    details = [""]
    for chunk in chunks[1:]:
        if chunk.end <= reach:
            if text[chunk.start - start : chunk.end - start] != chunk.text:
                raise _disagreement(chunks[0], chunk, chunk.start, chunk.end)
            details.append("contained")
            added.append(0)
            continue
        overlap = reach - chunk.start
        if overlap and text[len(text) - overlap :] != chunk.text[:overlap]:
            raise _disagreement(chunks[0], chunk, chunk.start, reach)
        text += chunk.text[overlap:]
        reach = chunk.end
        details.append(f"overlap={overlap} chars" if overlap else "adjacent")
        count = counter.count(text)
        added.append(count - previous_count)
        previous_count = count
    if reach == chunks[0].end:  # nothing extended the leftmost member: count it for real
        previous_count = added[0] = counter.count(text)
    merged_id = chunk_id(best.chunk.doc_id, start, reach)
    merged_chunk = Chunk(
        id=merged_id,
        doc_id=best.chunk.doc_id,
        text=text,
        start=start,
        end=reach,
        token_count=previous_count,
        metadata=best.chunk.metadata,
        section=best.chunk.section,
        sentences=_merge_sentences(chunks, start),
    )
    scores: dict[str, float] = {}
    for member in members:
        for key, value in member.scores.items():
            scores[key] = max(value, scores.get(key, value))
    merged = Candidate(merged_chunk, max(m.score for m in members), scores)
    survivor = next((i for i, c in enumerate(chunks) if c.id == merged_id), None)
    drops = [
        Drop(
            chunk_id=chunk.id,
            reason=DropReason.OVERLAP_MERGED,
            stage=STAGE_NAME,
            tokens=chunk.token_count - added[i],
            kept_id=merged_id,
            detail=details[i] or "leftmost piece",
        )
        for i, chunk in enumerate(chunks)
        if i != survivor
    ]
    return merged, drops


def merge_overlaps(
    candidates: Sequence[Candidate],
    counter: TokenCounter,
    members: dict[str, list[Chunk]] | None = None,
) -> tuple[list[Candidate], list[Drop]]:
    """Merge each document's overlapping or touching candidates into one, at the best rank.

    ``members``, when given, receives each merged chunk's id -> the chunks it was made of.
    """
    by_doc: dict[str, list[int]] = {}
    for position, candidate in enumerate(candidates):
        by_doc.setdefault(candidate.chunk.doc_id, []).append(position)
    replaced: dict[int, Candidate] = {}
    absorbed: set[int] = set()
    drops: list[Drop] = []
    for positions in by_doc.values():
        if len(positions) < 2:
            continue
        ordered = sorted(
            positions, key=lambda p: (candidates[p].chunk.start, -candidates[p].chunk.end, p)
        )
        components: list[list[int]] = []
        reach = -1
        for p in ordered:
            chunk = candidates[p].chunk
            if components and chunk.start <= reach:
                components[-1].append(p)
                reach = max(reach, chunk.end)
            else:
                components.append([p])
                reach = chunk.end
        for component in components:
            if len(component) < 2:
                continue
            best = min(component)
            merged, merged_drops = _merge_component(
                [candidates[p] for p in component], candidates[best], counter
            )
            replaced[best] = merged
            absorbed.update(component)
            if members is not None:
                members[merged.chunk.id] = [candidates[p].chunk for p in component]
            drops.extend(merged_drops)
    if not replaced:
        return list(candidates), drops
    kept = [
        replaced.get(p, c) for p, c in enumerate(candidates) if p in replaced or p not in absorbed
    ]
    return kept, drops


def _exact_survivors(kept: Sequence[Candidate], words: WordTable, drops: list[Drop]) -> list[int]:
    """Positions of the first candidate of each normalised text; later copies become drops.

    Equal normalised texts have equal word sequences, so only candidates whose word-sequence
    fingerprint is shared need their normalised text built (most have none in common).
    """
    fingerprints = words.fingerprints()
    _, inverse, counts = np.unique(fingerprints, return_inverse=True, return_counts=True)
    shared = counts[inverse] > 1
    first_with_key: dict[str, str] = {}
    survivors: list[int] = []
    for position, candidate in enumerate(kept):
        if not shared[position]:
            survivors.append(position)
            continue
        key = exact_key(candidate.chunk.text)
        twin = first_with_key.get(key)
        if twin is None:
            first_with_key[key] = candidate.id
            survivors.append(position)
            continue
        drops.append(
            Drop(
                chunk_id=candidate.id,
                reason=DropReason.DUPLICATE,
                stage=STAGE_NAME,
                tokens=candidate.chunk.token_count,
                kept_id=twin,
                detail="same normalised text",
            )
        )
    return survivors


def _greedy_keep(
    first: np.ndarray, second: np.ndarray, similarity: np.ndarray
) -> dict[int, tuple[int, float]]:
    """Walk candidates best-first; drop one that is similar to an already kept one.

    Pairs come ordered by ``(second, first)`` with ``first < second``; returns
    ``{dropped: (most similar kept twin, similarity)}``.
    """
    dropped: dict[int, tuple[int, float]] = {}
    k = 0
    while k < len(second):
        later = int(second[k])
        twin, best = -1, -np.inf
        while k < len(second) and second[k] == later:
            earlier = int(first[k])
            if earlier not in dropped and similarity[k] > best:
                twin, best = earlier, float(similarity[k])
            k += 1
        if twin >= 0:
            dropped[later] = (twin, best)
    return dropped


def _apply(
    candidates: list[Candidate],
    dropped: dict[int, tuple[int, float]],
    reason: DropReason,
    detail: str,
    drops: list[Drop],
) -> tuple[list[Candidate], int]:
    removed = 0
    for position in sorted(dropped):
        twin, similarity = dropped[position]
        tokens = candidates[position].chunk.token_count
        removed += tokens
        drops.append(
            Drop(
                chunk_id=candidates[position].id,
                reason=reason,
                stage=STAGE_NAME,
                tokens=tokens,
                kept_id=candidates[twin].id,
                detail=detail.format(similarity),
            )
        )
    return [c for p, c in enumerate(candidates) if p not in dropped], removed


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def mmr_order(relevance: np.ndarray, similarity: np.ndarray, weight: float) -> list[int]:
    """Maximal Marginal Relevance order: ``weight * rel - (1 - weight) * max sim to chosen``.

    Ties go to the better-ranked (earlier) candidate.
    """
    n = len(relevance)
    if n == 0:
        return []
    order = [int(np.argmax(relevance))]
    chosen = np.zeros(n, dtype=bool)
    chosen[order[0]] = True
    closest = similarity[order[0]].astype(np.float64)
    for _ in range(n - 1):
        marginal = weight * relevance - (1.0 - weight) * closest
        marginal[chosen] = -np.inf
        pick = int(np.argmax(marginal))
        order.append(pick)
        chosen[pick] = True
        np.maximum(closest, similarity[pick], out=closest)
    return order


def _min_max(scores: np.ndarray) -> np.ndarray:
    low, high = float(scores.min()), float(scores.max())
    if high > low:
        return (scores - low) / (high - low)
    return np.ones_like(scores)


class Deduplicator(Stage):
    """Drops repeated text, keeping the best-ranked copy and naming it in every drop."""

    kind: ClassVar[str] = "dedup"

    class Config(StageConfig):
        #: merge a document's overlapping or touching candidates into one candidate
        merge_overlaps: bool = True
        #: drop candidates whose normalised text equals a better-ranked one's
        exact: bool = True
        #: drop candidates whose word-shingle Jaccard with a kept one reaches the threshold
        near_duplicate: bool = True
        jaccard_threshold: float = Field(0.8, gt=0, le=1)
        shingle_size: int = Field(3, ge=1)
        #: "exact" Jaccard (measured faster at every candidate count, see minhash.py) or
        #: "minhash" estimates from ``num_perm`` permutations
        near_method: Literal["exact", "minhash"] = "exact"
        num_perm: int = Field(128, ge=1)
        #: drop candidates whose chunk-vector cosine with a kept one reaches the threshold
        semantic: bool = True
        semantic_threshold: float = Field(0.95, gt=0, le=1)
        #: re-order kept candidates by MMR with this relevance weight; None leaves the order
        mmr_lambda: Annotated[float, Field(ge=0, le=1)] | None = None

    config: Config

    def run(self, ctx: QueryContext, candidates: list[Candidate]) -> StageOutput:
        cfg = self.config
        self._check_vectors_available(ctx)
        drops: list[Drop] = []
        notes: list[str] = []
        removed = {"overlap": 0, "exact": 0, "near": 0, "semantic": 0}
        kept = list(candidates)
        members: dict[str, list[Chunk]] = {}
        if cfg.merge_overlaps and len(kept) > 1:
            kept, merge_drops = merge_overlaps(kept, ctx.counter, members)
            drops.extend(merge_drops)
            removed["overlap"] = sum(d.tokens for d in merge_drops)
        words: WordTable | None = None
        if (cfg.exact or cfg.near_duplicate) and len(kept) > 1:
            words = WordTable.of([c.chunk.text for c in kept])
        if cfg.exact and words is not None:
            survivors = _exact_survivors(kept, words, drops)
            removed["exact"] = sum(d.tokens for d in drops if d.reason is DropReason.DUPLICATE)
            if len(survivors) < len(kept):
                kept = [kept[p] for p in survivors]
                words = words.subset(survivors)
        if cfg.near_duplicate and words is not None and len(kept) > 1:
            kept, removed["near"] = self._drop_near(kept, words, drops, notes)
        vectors: np.ndarray | None = None
        if cfg.semantic and len(kept) > 1:
            kept, removed["semantic"], vectors = self._drop_semantic(ctx, kept, drops, members)
        if cfg.mmr_lambda is not None and len(kept) > 1:
            if vectors is None:
                vectors = self._vectors(ctx, kept, "mmr_lambda", members)
            relevance = _min_max(np.array([c.score for c in kept], dtype=np.float64))
            kept = [kept[p] for p in mmr_order(relevance, vectors @ vectors.T, cfg.mmr_lambda)]
        logger.debug(
            "dedup: %d candidates in, %d kept, tokens removed %s",
            len(candidates),
            len(kept),
            removed,
        )
        return StageOutput(
            candidates=kept,
            drops=drops,
            notes=notes,
            stats={"tokens_removed": removed, "kept": len(kept)},
        )

    def _check_vectors_available(self, ctx: QueryContext) -> None:
        for field, needed in (
            ("semantic", self.config.semantic),
            ("mmr_lambda", self.config.mmr_lambda is not None),
        ):
            if needed and ctx.index is None and ctx.embedder is None:
                raise ConfigError(
                    f"dedup.{field} needs chunk vectors but the query has neither an index "
                    f"nor an embedder; configure an embedder or set dedup.{field} to "
                    f"{'False' if field == 'semantic' else 'None'}"
                )

    def _drop_semantic(
        self,
        ctx: QueryContext,
        kept: list[Candidate],
        drops: list[Drop],
        members: dict[str, list[Chunk]],
    ) -> tuple[list[Candidate], int, np.ndarray]:
        """Drop semantic copies; also return the survivors' unit vectors (MMR reuses them)."""
        vectors = self._vectors(ctx, kept, "semantic", members)
        similarity = vectors @ vectors.T
        first, second = np.nonzero(np.triu(similarity >= self.config.semantic_threshold, k=1))
        order = np.lexsort((first, second))
        first, second = first[order], second[order]
        dropped = _greedy_keep(first, second, similarity[first, second])
        survivors = [p for p in range(len(kept)) if p not in dropped]
        kept, removed = _apply(kept, dropped, DropReason.SEMANTIC_DUPLICATE, "cosine={:.3f}", drops)
        return kept, removed, vectors[survivors]

    @staticmethod
    def _vectors(
        ctx: QueryContext, kept: list[Candidate], field: str, members: dict[str, list[Chunk]]
    ) -> np.ndarray:
        """Unit vectors of the candidates. A merged chunk is not in the index: when all its
        members are, it gets the mean of their stored vectors instead of a model call
        (embedding merged chunks on demand made dedup of overlapping chunks take 82 ms per
        query on COVID-QA). Everything else comes from ``ctx`` in one batch."""
        rows: list[np.ndarray | None] = [None] * len(kept)
        if ctx.index is not None:
            for i, candidate in enumerate(kept):
                parts = members.get(candidate.chunk.id)
                found = [ctx.index.chunk_vector(p.id) for p in parts] if parts else []
                stored = [v for v in found if v is not None]
                if stored and len(stored) == len(found):
                    rows[i] = _unit_rows(np.vstack(stored)).mean(axis=0)
        missing = [i for i, row in enumerate(rows) if row is None]
        if missing:
            try:
                fresh = ctx.chunk_vectors([kept[i].chunk for i in missing])
            except ConfigError as exc:
                raise ConfigError(f"dedup.{field}: {exc}") from exc
            for i, vector in zip(missing, fresh, strict=True):
                rows[i] = vector
        return _unit_rows(np.vstack([row for row in rows if row is not None]))

    def _drop_near(
        self, kept: list[Candidate], words: WordTable, drops: list[Drop], notes: list[str]
    ) -> tuple[list[Candidate], int]:
        cfg = self.config
        pairs = similar_texts(
            words,
            cfg.jaccard_threshold,
            shingle_size=cfg.shingle_size,
            method=cfg.near_method,
            num_perm=cfg.num_perm,
            seed=MINHASH_SEED,
        )
        if cfg.near_method == "minhash":
            notes.append(
                f"near_duplicate: Jaccard estimated with MinHash (num_perm={cfg.num_perm})"
            )
        dropped = _greedy_keep(pairs.first, pairs.second, pairs.similarity)
        return _apply(kept, dropped, DropReason.NEAR_DUPLICATE, "jaccard={:.2f}", drops)
