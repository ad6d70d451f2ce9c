"""The pipeline: named stages in a fixed order, an index, caches, and task profiles.

Ingestion: chunker -> embedder -> index. Query: filter -> retriever -> reranker -> dedup ->
packer. ``run`` answers from the pipeline's own index; ``trim`` runs the same stages (minus
retrieval) on candidates that an existing RAG app already retrieved.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from ragtrim import __version__
from ragtrim.cache import (
    RetrievalCache,
    ScoreStore,
    SemanticCache,
    cache_key,
    normalise_query,
    semantic_bucket,
)
from ragtrim.cachedir import default_cache_dir
from ragtrim.chunking.chunkers import StructureChunker
from ragtrim.config import QUERY_SLOTS, SLOTS, PipelineConfig, StageSpec, dump_config, load_config
from ragtrim.dedup.deduplicator import Deduplicator
from ragtrim.embedding.cache import CachedEmbedder, EmbeddingCache
from ragtrim.embedding.models import SentenceTransformerEmbedder
from ragtrim.embedding.onnx import OnnxEmbedder  # noqa: F401  (registers the stage)
from ragtrim.errors import ConfigError, IndexStoreError, InputError
from ragtrim.filtering.language import parse_filter
from ragtrim.filtering.stage import MetadataFilter
from ragtrim.index.persistence import read_index_dir, write_index_dir
from ragtrim.index.store import HybridIndex, IngestStats, Progress
from ragtrim.packing.packer import ContextPacker
from ragtrim.packing.pricing import savings
from ragtrim.query import QueryContext
from ragtrim.reranking.cross_encoder import CrossEncoderReranker  # noqa: F401  (registers the stage)
from ragtrim.reranking.embedding import EmbeddingReranker
from ragtrim.retrieval.hybrid import HybridRetriever
from ragtrim.stage import Stage
from ragtrim.tokens import TokenCounter
from ragtrim.types import Candidate, Chunk, Document, Report, StageReport, TokenUsage, TrimResult

DEFAULT_PROFILE = "default"


DEFAULT_STAGE_TYPES: dict[str, type[Stage]] = {
    "chunker": StructureChunker,
    "embedder": SentenceTransformerEmbedder,
    "filter": MetadataFilter,
    "retriever": HybridRetriever,
    "reranker": EmbeddingReranker,
    "dedup": Deduplicator,
    "packer": ContextPacker,
}


def default_stages() -> dict[str, Stage]:
    return {slot: stage_type() for slot, stage_type in DEFAULT_STAGE_TYPES.items()}


class Pipeline:
    """Compose stages; ingest documents; trim every prompt to the minimum useful context."""

    def __init__(
        self,
        config: PipelineConfig | Mapping[str, Any] | None = None,
        *,
        counter: TokenCounter | None = None,
        embedder: Any | None = None,
    ) -> None:
        if config is None:
            config = PipelineConfig(
                stages={k: StageSpec(**v.to_dict()) for k, v in default_stages().items()}
            )
        elif not isinstance(config, PipelineConfig):
            config = load_config(config)
        self.config = config
        self.stages: dict[str, Stage | None] = {
            slot: None
            if spec is None
            else Stage.from_dict(spec.model_dump(), where=f"stages.{slot}")
            for slot, spec in config.stages.items()
        }
        for slot, stage in self.stages.items():
            if stage is not None and stage.kind != slot:
                raise ConfigError(
                    f"stages.{slot}: {type(stage).__name__} is a {stage.kind}, not a {slot}"
                )
        self._profiles = {
            name: self._build_profile(name, overrides)
            for name, overrides in config.profiles.items()
        }
        tokenizer = config.tokenizer
        self.counter = counter or TokenCounter(
            tokenizer.encoding if not tokenizer.model else None, model=tokenizer.model
        )
        cache_dir = Path(config.cache.directory) if config.cache.directory else default_cache_dir()
        self.cache_dir = cache_dir
        # the config validator guarantees an embedder stage
        base_embedder = embedder if embedder is not None else cast(Any, self.stages["embedder"])
        self.embedder = CachedEmbedder(
            base_embedder, EmbeddingCache(cache_dir) if config.cache.embeddings else None
        )
        self.index = HybridIndex(config.index)
        self._retrieval_cache = (
            RetrievalCache(cache_dir, config.cache.retrieval_ttl_seconds)
            if config.cache.retrieval
            else None
        )
        self._semantic_cache = (
            SemanticCache(
                cache_dir, config.cache.semantic_threshold, config.cache.semantic_ttl_seconds
            )
            if config.cache.semantic
            else None
        )
        self._bind_score_caches()

    def _bind_score_caches(self) -> None:
        """Give stages that cache model scores (the cross-encoder) one shared diskcache."""
        wanting = [
            s
            for stages in (self.stages, *self._profiles.values())
            for s in stages.values()
            if s is not None and hasattr(s, "use_cache")
        ]
        if wanting and self.config.cache.rerank_scores:
            scores = ScoreStore(self.cache_dir / "rerank")
            for stage in wanting:
                stage.use_cache(scores)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ construction
    @classmethod
    def default(cls, **overrides: Any) -> Pipeline:
        """The recommended pipeline: structure-aware chunks, hybrid retrieval, embedding
        reranker, dedup, sentence-level packing under a 1,024-token budget."""
        return cls(**overrides)

    @classmethod
    def from_config(cls, source: str | Path | Mapping[str, Any], **overrides: Any) -> Pipeline:
        return cls(load_config(source), **overrides)

    def to_config(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")

    def save_config(self, path: str | Path) -> None:
        dump_config(self.config, path)

    def _build_profile(
        self, name: str, overrides: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, Stage | None]:
        stages = dict(self.stages)
        for slot, params in overrides.items():
            stage = stages.get(slot)
            if stage is None:
                raise ConfigError(
                    f"profiles.{name}.{slot}: that stage is disabled in this pipeline"
                )
            try:
                stages[slot] = stage.with_params(**params)
            except ConfigError as exc:
                raise ConfigError(f"profiles.{name}.{slot}: {exc}") from None
        return stages

    def profile(self, task_type: str | None) -> tuple[str, dict[str, Stage | None], list[str]]:
        if task_type is None:
            return DEFAULT_PROFILE, self.stages, []
        if task_type in self._profiles:
            return task_type, self._profiles[task_type], []
        note = f"no profile for task type {task_type!r}; used the default profile"
        return DEFAULT_PROFILE, self.stages, [note]

    def warm_up(self) -> None:
        for stage in self.stages.values():
            if stage is not None:
                stage.warm_up()

    # ------------------------------------------------------------------ ingestion
    def chunk(self, document: Document) -> list[Chunk]:
        return self.stages["chunker"].run(document, self.counter)  # type: ignore[union-attr]

    def ingest(
        self, documents: Iterable[Document | Mapping[str, Any]], progress: Progress | None = None
    ) -> IngestStats:
        """Upsert documents by id: unchanged ones cost nothing, changed ones are re-chunked."""
        docs = [Document.coerce(d, i) for i, d in enumerate(documents)]
        if not docs:
            raise InputError("ingest: no documents given (empty corpus)")
        return self.index.upsert(docs, self.chunk, self.embedder, progress)

    def delete(self, doc_ids: Sequence[str]) -> int:
        """Remove documents by id; returns how many were present."""
        return self.index.delete(doc_ids)

    # ------------------------------------------------------------------ querying
    def run(
        self,
        query: str,
        *,
        task_type: str | None = None,
        filters: Mapping[str, Any] | None = None,
        budget: int | None = None,
    ) -> TrimResult:
        """Retrieve, rerank, deduplicate and pack the minimum useful context for ``query``."""
        query = _check_query(query)
        _check_filters(filters)
        profile_name, stages, notes = self.profile(task_type)
        report = Report(task_type=task_type, profile=profile_name, notes=notes)
        ctx = QueryContext(query, self.counter, task_type, filters, self.index, self.embedder)
        if len(self.index) == 0:
            report.notes.append("the index is empty: nothing to retrieve")
        candidates, naive = self._retrieve(ctx, stages, report, profile_name)
        return self._pack(ctx, stages, candidates, naive, report, budget)

    def trim(
        self,
        query: str,
        documents: Sequence[Document | Mapping[str, Any]],
        *,
        scores: Sequence[float] | None = None,
        task_type: str | None = None,
        filters: Mapping[str, Any] | None = None,
        budget: int | None = None,
    ) -> TrimResult:
        """Trim what another retriever already returned (ranked best first)."""
        query = _check_query(query)
        _check_filters(filters)
        given = _check_scores(scores, documents)
        profile_name, stages, notes = self.profile(task_type)
        report = Report(task_type=task_type, profile=profile_name, notes=notes)
        ctx = QueryContext(query, self.counter, task_type, filters, None, self.embedder)
        candidates: list[Candidate] = []
        for rank, item in enumerate(documents):
            doc = Document.coerce(item, rank)
            score = given[rank] if given is not None else 1.0 / (rank + 1)
            for chunk in self.chunk(doc):
                candidates.append(Candidate(chunk, score, {"retriever": score}))
        packer: ContextPacker = stages["packer"]  # type: ignore[assignment]
        naive = self.counter.count(packer.render_naive(candidates))
        for slot in ("filter", "reranker", "dedup"):
            candidates = self._run_stage(slot, stages[slot], ctx, candidates, report)
        return self._pack(ctx, stages, candidates, naive, report, budget)

    def _run_stage(
        self,
        slot: str,
        stage: Stage | None,
        ctx: QueryContext,
        candidates: list[Candidate],
        report: Report,
    ) -> list[Candidate]:
        if stage is None:
            return candidates
        started = time.perf_counter()
        out = stage.run(ctx, candidates)  # type: ignore[attr-defined]
        report.stages.append(
            StageReport(
                slot,
                type(stage).__name__,
                len(candidates),
                len(out.candidates),
                (time.perf_counter() - started) * 1000,
                out.drops,
                out.notes,
                out.stats,
            )
        )
        return out.candidates

    def _retrieve(
        self, ctx: QueryContext, stages: dict[str, Stage | None], report: Report, profile_name: str
    ) -> tuple[list[Candidate], int]:
        cache, semantic = self._retrieval_cache, self._semantic_cache
        if semantic is not None and ctx.task_type in self.config.cache.semantic_exclude_task_types:
            semantic = None
        # the parsed filter's canonical JSON: typed (3 and "3" differ), keys sorted, validated
        bucket = cache_key(
            parse_filter(ctx.filters).to_dict() if ctx.filters else None,
            profile_name,
            [s.to_dict() if s else None for s in (stages[k] for k in QUERY_SLOTS)],
            self.index.fingerprint,
            __version__,
        )
        key = cache_key(normalise_query(ctx.query), bucket)
        if cache is not None:
            hit = cache.get(key)
            if hit is None and semantic is not None:
                near = semantic.lookup(semantic_bucket(bucket, ctx.query), ctx.query_vector())
                if near is not None:
                    hit = cache.get(near[0])
                    if hit is not None:
                        report.cache["semantic_similarity"] = near[1]
            report.cache.update(self._cache_counters())
            if hit is not None:
                report.cache["retrieval_hit"] = True
                report.notes.append("retrieval served from cache")
                return hit[0], int(hit[1]["naive"])
            report.cache["retrieval_hit"] = False
        candidates: list[Candidate] = []
        naive = 0
        packer: ContextPacker = stages["packer"]  # type: ignore[assignment]
        for slot in QUERY_SLOTS:
            candidates = self._run_stage(slot, stages[slot], ctx, candidates, report)
            if slot == "retriever":
                naive = self.counter.count(packer.render_naive(candidates))
        if cache is not None:
            cache.set(key, candidates, {"naive": naive})
            if semantic is not None:
                semantic.add(semantic_bucket(bucket, ctx.query), ctx.query_vector(), key)
        return candidates, naive

    def _cache_counters(self) -> dict[str, int]:
        counters = {"embedding_hits": self.embedder.hits, "embedding_misses": self.embedder.misses}
        for name, cache in (
            ("retrieval", self._retrieval_cache),
            ("semantic", self._semantic_cache),
        ):
            if cache is not None:
                counters[f"{name}_hits"], counters[f"{name}_misses"] = cache.hits, cache.misses
        return counters

    def _pack(
        self,
        ctx: QueryContext,
        stages: dict[str, Stage | None],
        candidates: list[Candidate],
        naive: int,
        report: Report,
        budget: int | None,
    ) -> TrimResult:
        packer: ContextPacker = stages["packer"]  # type: ignore[assignment]
        started = time.perf_counter()
        packed = packer.run(ctx, candidates, budget)
        report.stages.append(
            StageReport(
                "packer",
                type(packer).__name__,
                len(candidates),
                len(packed.passages),
                (time.perf_counter() - started) * 1000,
                packed.drops,
                packed.notes,
                packed.stats,
            )
        )
        pricing = self.config.pricing
        report.cost = savings(naive, packed.context_tokens, pricing.model, pricing.prices)
        tokens = TokenUsage(
            packed.context_tokens,
            packed.prompt_tokens,
            packed.messages_tokens,
            naive,
            packed.budget,
            packed.static_prefix_tokens,
        )
        return TrimResult(
            ctx.query,
            packed.prompt,
            packed.messages,
            packed.context,
            packed.passages,
            tokens,
            report,
        )

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> None:
        """Write the index and config atomically (see ``ragtrim.index.persistence``)."""
        config = self.to_config()
        # where this machine keeps its caches is not part of an index (and never read back)
        config["cache"]["directory"] = None
        manifest = {
            "ragtrim_version": __version__,
            "config": config,
            "embedding_model": self.embedder.fingerprint,
            "encoding": self.counter.name,
            **self.index.manifest_entry(),
        }
        write_index_dir(Path(directory), self.index.write_files, manifest)

    @classmethod
    def load(
        cls,
        directory: str | Path,
        config: PipelineConfig | Mapping[str, Any] | str | Path | None = None,
        *,
        allow_unchecked_manifest: bool = False,
        **overrides: Any,
    ) -> Pipeline:
        """Load a saved index; ``config`` (else the saved one, minus its cache location).

        Everything in the folder is checked (manifest and data checksums). A folder saved by
        ragtrim before manifests were checksummed loads only with
        ``allow_unchecked_manifest=True``; save it again to upgrade it.
        """
        manifest, data_dir = read_index_dir(
            Path(directory), allow_unchecked_manifest=allow_unchecked_manifest
        )
        for key in ("config", "index_config"):
            if not isinstance(manifest.get(key), dict):
                raise IndexStoreError(
                    f"{Path(directory) / 'manifest.json'}: {key!r} is missing or not a mapping"
                )
        if config is None:
            try:
                config = load_config(_without_cache_location(manifest["config"]))
            except ConfigError as exc:
                raise IndexStoreError(
                    f"{Path(directory) / 'manifest.json'}: the saved config is invalid: {exc}"
                ) from None
        pipeline = cls(
            load_config(config) if isinstance(config, (str, Path)) else config, **overrides
        )
        if manifest.get("encoding") != pipeline.counter.name:
            raise IndexStoreError(
                f"{directory}: index was built with token encoding {manifest.get('encoding')!r}, "
                f"the pipeline uses {pipeline.counter.name!r}"
            )
        if (
            manifest.get("dimension")
            and manifest.get("embedding_model") != pipeline.embedder.fingerprint
        ):
            spec = pipeline.config.stages["embedder"]
            raise IndexStoreError(
                f"{directory}: index was built with embedding model "
                f"{_saved_embedder_model(manifest)!r} "
                f"({manifest.get('embedding_model')}), the pipeline's embedder is "
                f"{spec.init_parameters.get('model') if spec else None!r} "
                f"({pipeline.embedder.fingerprint}); re-ingest or use the same model"
            )
        if pipeline.config.index.model_dump() != manifest["index_config"]:
            raise IndexStoreError(
                f"{directory}: index config differs from the pipeline's index config; re-ingest"
            )
        pipeline.index = HybridIndex.read_files(data_dir, manifest)
        if pipeline.index.dense is not None:
            pipeline.embedder.expected_dimension = pipeline.index.dense.dimension
        return pipeline


def _saved_embedder_model(manifest: Mapping[str, Any]) -> Any:
    try:
        return manifest["config"]["stages"]["embedder"]["init_parameters"].get("model")
    except (KeyError, TypeError, AttributeError):
        return None


def _without_cache_location(config: Mapping[str, Any]) -> dict[str, Any]:
    """The saved config minus its cache directory.

    An index folder may come from someone else: letting it choose where this process reads
    caches would let its author point ragtrim at a cache they prepared. The cache location
    comes from the caller (a ``config``, ``$RAGTRIM_CACHE_DIR``, the user cache dir), never
    from the index.
    """
    cleaned = dict(config)
    cache = cleaned.get("cache")
    if isinstance(cache, Mapping):
        cleaned["cache"] = {k: v for k, v in cache.items() if k != "directory"}
    return cleaned


def _check_filters(filters: Any) -> None:
    """Validate the query's filter before any work (``FilterError`` names the place)."""
    if filters is not None and (filters or not isinstance(filters, Mapping)):
        parse_filter(filters)


def _check_scores(scores: Any, documents: Sequence[Any]) -> list[float] | None:
    """``trim``'s scores: one real number per document (a NaN is dropped by the packer)."""
    if scores is None:
        return None
    if isinstance(scores, (str, bytes)) or not isinstance(scores, Sequence | np.ndarray):
        raise InputError(f"trim: scores must be a sequence of numbers, got {type(scores).__name__}")
    if len(scores) != len(documents):
        raise InputError(f"trim: {len(scores)} scores for {len(documents)} documents")
    checked = []
    for i, value in enumerate(scores):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise InputError(f"trim: scores[{i}] must be a number, got {value!r}")
        checked.append(float(value))
    return checked


def _check_query(query: Any) -> str:
    if not isinstance(query, str):
        raise InputError(f"query must be a string, got {type(query).__name__}")
    if not query.strip():
        raise InputError("query is empty")
    return query.strip()


__all__ = ["Pipeline", "SLOTS"]
