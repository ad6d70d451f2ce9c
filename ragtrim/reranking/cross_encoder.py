"""Rerank the top candidates with a cross-encoder, which reads query and passage together.

A cross-encoder is far more precise than the bi-encoder that retrieved the candidates, and far
slower (one forward pass per pair), so only the top ``depth`` candidates are scored. Pairs
longer than the model's input limit are truncated by the model; which ones is reported, never
silent. Scores can be cached per (model, query, passage), since interactive apps re-ask.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import Field

from ragtrim.embedding.models import (
    TORCH_EXTRA,
    model_content_identity,
    model_label,
    resolve_model_source,
    torch_threads,
)
from ragtrim.errors import ConfigError, missing_extra
from ragtrim.query import QueryContext, StageOutput
from ragtrim.reranking.ordering import rank_tail_below
from ragtrim.stage import Stage, StageConfig
from ragtrim.types import Candidate

if TYPE_CHECKING:
    from pathlib import Path

    from sentence_transformers import CrossEncoder

logger = logging.getLogger(__name__)

DEFAULT_CROSS_ENCODER = "cross-encoder/ms-marco-MiniLM-L6-v2"
_REMEDY = (
    "no cross-encoder ships with ragtrim; pass a local model directory as model=, or download "
    "the model once into the Hugging Face cache"
)


class ScoreCache(Protocol):
    """The part of ``diskcache.Cache`` the reranker uses (a dict-like with ``get``/``set``)."""

    def get(self, key: str, default: Any = None) -> Any: ...
    def set(self, key: str, value: Any) -> Any: ...


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def score_cache_key(fingerprint: str, query: str, passage: str) -> str:
    return f"rerank|{fingerprint}|{_sha256(query)}|{_sha256(passage)}"


class CrossEncoderReranker(Stage):
    """Score the top ``depth`` candidates on ``(query, chunk text)``; the rest keep their order.

    Reranked candidates get ``scores["rerank"]`` and ``score`` = the cross-encoder score (the
    model's own activation: a sigmoid probability for single-score models), sorted descending
    (stable). Candidates beyond ``depth`` follow unchanged, with their previous scores, which
    are on the retriever's scale, not the cross-encoder's.
    """

    kind = "reranker"

    class Config(StageConfig):
        model: str = Field(DEFAULT_CROSS_ENCODER, min_length=1)
        depth: int = Field(50, gt=0)
        batch_size: int = Field(32, gt=0)
        max_length: int | None = Field(None, gt=0)
        device: str = Field("cpu", min_length=1)
        #: torch threads while scoring, as the embedder's ``small_batch_threads``: at depth 50 one
        #: thread was as fast as two on an idle 2-core machine (72-86 ms), and 9x faster when
        #: another process kept a core busy (93 ms vs 804 ms: OpenMP spin-waits). ``None``
        #: leaves torch's setting alone (deep reranking on many idle cores may gain from more).
        threads: int | None = Field(1, gt=0)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._model: CrossEncoder | None = None
        self._source: Path | None = None
        self._fingerprint: str | None = None
        self._cache: ScoreCache | None = None
        self._lock = threading.Lock()

    def use_cache(self, cache: ScoreCache | None) -> CrossEncoderReranker:
        """Cache scores in ``cache`` (e.g. a ``diskcache.Cache``); ``None`` turns caching off.

        The cache is runtime state, not configuration: it is not part of ``to_dict``.
        """
        self._cache = cache
        return self

    def warm_up(self) -> None:
        with self._lock:
            if self._model is None:
                self._model = self._load()

    def _load(self) -> CrossEncoder:
        try:
            from sentence_transformers import CrossEncoder
        except ImportError:
            raise missing_extra("sentence-transformers", TORCH_EXTRA) from None
        cfg = self.config
        source = self._resolved_source()
        try:
            model = CrossEncoder(
                str(source), device=cfg.device, max_length=cfg.max_length, local_files_only=True
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"CrossEncoderReranker.model: could not load {cfg.model!r} from {source}: {exc}"
            ) from exc
        if model.num_labels != 1:
            raise ConfigError(
                f"CrossEncoderReranker.model: {cfg.model!r} outputs {model.num_labels} scores per "
                "pair; a reranker needs a single-score cross-encoder (num_labels=1)"
            )
        model.eval()
        logger.debug("loaded cross-encoder %r from %s on %s", cfg.model, source, cfg.device)
        return model

    def _resolved_source(self) -> Path:
        if self._source is None:
            self._source = resolve_model_source(
                self.config.model, what="cross-encoder", remedy=_REMEDY
            )
        return self._source

    def _loaded(self) -> CrossEncoder:
        if self._model is None:
            self.warm_up()
        assert self._model is not None
        return self._model

    @property
    def max_length(self) -> int:
        """The longest (query, passage) pair, in model tokens, scored without truncation."""
        model = self._loaded()
        # sentence-transformers >= 6 renamed CrossEncoder.max_length to max_seq_length
        limit = getattr(model, "max_seq_length", None)
        if limit is None:
            limit = getattr(model, "max_length", None) or model.tokenizer.model_max_length
        return int(limit)

    @property
    def fingerprint(self) -> str:
        """Model id, weight content and truncation length: what determines a score."""
        if self._fingerprint is None:
            cfg = self.config
            label = model_label(cfg.model)
            parts = {
                "model": label,
                "content": model_content_identity(self._resolved_source()),
                "max_length": cfg.max_length,
            }
            digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
            self._fingerprint = f"ce:{label}:{digest[:32]}"
        return self._fingerprint

    def pair_token_counts(self, query: str, passages: list[str]) -> list[int]:
        """Exact model-token length of each (query, passage) pair, before truncation."""
        if not passages:
            return []
        encoded = self._loaded().tokenizer(
            [query] * len(passages),
            passages,
            add_special_tokens=True,
            truncation=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )
        return [len(ids) for ids in encoded["input_ids"]]

    def _cached_scores(self, query: str, texts: list[str]) -> dict[str, float]:
        if self._cache is None:
            return {}
        fingerprint = self.fingerprint
        found: dict[str, float] = {}
        for text in texts:
            value = self._cache.get(score_cache_key(fingerprint, query, text), None)
            if isinstance(value, (int, float)) and math.isfinite(value):
                found[text] = float(value)
        return found

    def _score(self, query: str, texts: list[str]) -> dict[str, float]:
        if not texts:
            return {}
        model = self._loaded()
        with torch_threads(self.config.threads):
            scores = model.predict(
                [(query, text) for text in texts],
                batch_size=self.config.batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
            )
        fresh = {text: float(score) for text, score in zip(texts, scores.reshape(-1), strict=True)}
        if self._cache is not None:
            fingerprint = self.fingerprint
            for text, score in fresh.items():
                self._cache.set(score_cache_key(fingerprint, query, text), score)
        return fresh

    def run(self, ctx: QueryContext, candidates: list[Candidate]) -> StageOutput:
        if not candidates:
            return StageOutput([])
        cfg = self.config
        head, tail = candidates[: cfg.depth], candidates[cfg.depth :]
        texts = list(dict.fromkeys(c.chunk.text for c in head))
        limit = self.max_length
        lengths = dict(zip(texts, self.pair_token_counts(ctx.query, texts), strict=True))
        over_length = [c.id for c in head if lengths[c.chunk.text] > limit]

        scores = self._cached_scores(ctx.query, texts)
        hits = len(scores)
        scores.update(self._score(ctx.query, [t for t in texts if t not in scores]))

        for candidate in head:
            score = scores[candidate.chunk.text]
            candidate.scores["rerank"] = score
            candidate.score = score
        reranked = sorted(head, key=lambda c: -c.score)

        notes = []
        if over_length:
            notes.append(
                f"{len(over_length)} of {len(head)} (query, passage) pairs exceed the "
                f"cross-encoder's {limit}-token limit and were scored truncated: "
                f"{', '.join(over_length[:5])}{' ...' if len(over_length) > 5 else ''}"
            )
        notes += rank_tail_below(reranked, tail)
        stats = {
            "reranked": len(head),
            "scored": len(texts) - hits,
            "cache_hits": hits,
            "over_length": over_length,
            "max_length": limit,
        }
        return StageOutput(reranked + tail, notes=notes, stats=stats)
