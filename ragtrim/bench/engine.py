"""Evaluate systems on a data set: naive top-k baselines and ragtrim pipelines, per query.

Retrieval is the expensive part and most sweeps only vary the packer, so systems are grouped
by their query-stage parameters: each group retrieves once per query and every packer variant
packs those same candidates. Baselines concatenate the top-k whole chunks (k = 1..10) of one
retrieval per mode, with the same prompt template, so token counts are comparable.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ragtrim.bench.datasets import Dataset, Query, load_dataset
from ragtrim.bench.metrics import answer_recall, doc_recall, evidence_recall, ndcg_at_k, recall_at_k
from ragtrim.config import QUERY_SLOTS
from ragtrim.errors import ConfigError, IndexStoreError
from ragtrim.packing.packer import ContextPacker
from ragtrim.pipeline import Pipeline
from ragtrim.query import QueryContext
from ragtrim.stage import Stage
from ragtrim.types import Candidate

Progress = Callable[[str, int, int], None]
BASELINE_MODES = ("bm25", "dense", "hybrid")
BASELINE_KS = tuple(range(1, 11))


@dataclass(frozen=True)
class System:
    """A naive baseline (``mode`` + ``k``) or a ragtrim pipeline variant (``overrides``)."""

    name: str
    kind: str  # "naive" | "ragtrim"
    mode: str = ""
    k: int = 0
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "mode": self.mode,
            "k": self.k,
            "overrides": {s: dict(p) for s, p in self.overrides.items()},
        }


def baseline_systems(
    modes: Sequence[str] = BASELINE_MODES, ks: Sequence[int] = BASELINE_KS
) -> list[System]:
    return [System(f"naive-{mode}-top{k}", "naive", mode=mode, k=k) for mode in modes for k in ks]


def grid_systems(grid: Mapping[str, Sequence[Any]], prefix: str = "ragtrim") -> list[System]:
    """Cartesian product of ``{"slot.param": [values]}``, one system per combination."""
    keys = sorted(grid)
    for key in keys:
        if not isinstance(key, str) or "." not in key:
            raise ConfigError(
                f"sweep grid key {key!r}: expected 'slot.parameter', e.g. 'packer.budget'"
            )
        if not isinstance(grid[key], (list, tuple)) or not grid[key]:
            raise ConfigError(
                f"sweep grid key {key!r}: expected a non-empty list of values, got {grid[key]!r}"
            )
    systems = []
    for values in itertools.product(*(grid[k] for k in keys)):
        overrides: dict[str, dict[str, Any]] = {}
        for key, value in zip(keys, values, strict=True):
            slot, param = key.split(".", 1)
            overrides.setdefault(slot, {})[param] = value
        label = ",".join(f"{k.split('.', 1)[1]}={v}" for k, v in zip(keys, values, strict=True))
        systems.append(
            System(f"{prefix}[{label}]" if label else prefix, "ragtrim", overrides=overrides)
        )
    return systems


def primary_metric(dataset: Dataset) -> str:
    """The quality measure a data set supports best: answers, then evidence, then documents."""
    if any(q.span_answers for q in dataset.queries):
        return "answer_recall"
    if any(q.gold_sentences for q in dataset.queries):
        return "evidence_recall"
    return "doc_recall"


def _corpus_key(pipe: Pipeline, dataset: Dataset) -> str:
    digest = hashlib.sha256()
    for doc in dataset.documents:
        digest.update(f"{doc.id}\x00{doc.fingerprint()}\n".encode("utf-8", "surrogatepass"))
    config = pipe.config
    for part in (config.stages["chunker"], config.index, config.tokenizer):
        digest.update(repr(part.model_dump() if part else None).encode())
    digest.update(pipe.embedder.fingerprint.encode())
    return digest.hexdigest()[:20]


def indexed_pipeline(
    pipe: Pipeline, dataset: Dataset, progress: Progress | None = None
) -> tuple[Pipeline, dict]:
    """The pipeline with the data set ingested; the index is saved under the cache dir and
    reused by later runs over the same documents and ingestion config."""
    folder = pipe.cache_dir / "bench-indexes" / _corpus_key(pipe, dataset)
    info: dict[str, Any] = {"index_dir": str(folder)}
    if (folder / "manifest.json").exists():
        try:
            started = time.perf_counter()
            loaded = Pipeline.load(folder, pipe.config)
            info.update(reused=True, load_seconds=round(time.perf_counter() - started, 3))
            return loaded, info
        except IndexStoreError as exc:
            info["reload_error"] = str(exc)
    started = time.perf_counter()
    stats = pipe.ingest(dataset.documents, progress=progress)
    info.update(
        reused=False,
        ingest_seconds=round(time.perf_counter() - started, 2),
        chunks=stats.chunks,
        tokens=stats.tokens,
        embedding_model_calls=stats.model_calls,
    )
    pipe.save(folder)
    return pipe, info


def prepared(
    dataset_path: Any,
    config: Any,
    answerable_only: bool,
    limit: int | None,
    seed: int,
    progress: Progress | None = None,
) -> tuple[Dataset, Pipeline, dict]:
    """The data set as ``bench`` and ``tune`` take it (answerable questions only, a seeded
    subset) and the pipeline with it ingested (see ``indexed_pipeline``)."""
    dataset = load_dataset(dataset_path)
    if answerable_only:
        dataset = dataset.answerable()
    if limit is not None:
        dataset = dataset.subset(limit, seed)
    pipe = Pipeline.from_config(config) if config is not None else Pipeline.default()
    pipe, info = indexed_pipeline(pipe, dataset, progress)
    return dataset, pipe, info


def _variant(
    stages: Mapping[str, Stage | None], overrides: Mapping[str, Mapping[str, Any]]
) -> dict[str, Stage | None]:
    out = dict(stages)
    for slot, params in overrides.items():
        if slot not in out:
            raise ConfigError(f"sweep override {slot!r}: unknown slot")
        if out[slot] is None:
            raise ConfigError(f"sweep override {slot!r}: that stage is disabled in the config")
        out[slot] = out[slot].with_params(**params)  # type: ignore[union-attr]
    return out


def _query_metrics(query: Query, context: str, doc_ids: list[str]) -> dict[str, Any]:
    evidence = evidence_recall(context, query.gold_sentences)
    return {
        "answer_recall": answer_recall(context, query.span_answers),
        "evidence_recall": None if evidence is None else evidence[0],
        "evidence_all": None if evidence is None else float(evidence[1]),
        "doc_recall": doc_recall(doc_ids, query.gold_doc_ids),
    }


def _ranked_doc_ids(candidates: Sequence[Candidate]) -> list[str]:
    return list(dict.fromkeys(c.chunk.doc_id for c in candidates))


def query_candidates(
    pipe: Pipeline, stages: Mapping[str, Stage | None], query: Query
) -> tuple[QueryContext, list[Candidate], dict[str, float], list[str]]:
    """One question through the query stages (packer excluded): its context, the candidates,
    each stage's time and the retriever's document ranking."""
    ctx = QueryContext(
        query.question, pipe.counter, query.task_type, query.filters, pipe.index, pipe.embedder
    )
    candidates: list[Candidate] = []
    stage_ms: dict[str, float] = {}
    ranking: list[str] = []
    for slot in QUERY_SLOTS:
        stage = stages[slot]
        if stage is None:
            continue
        t0 = time.perf_counter()
        candidates = stage.run(ctx, candidates).candidates  # type: ignore[attr-defined]
        stage_ms[slot] = (time.perf_counter() - t0) * 1000
        if slot == "retriever":
            ranking = _ranked_doc_ids(candidates)
    return ctx, candidates, stage_ms, ranking


def evaluate(
    pipe: Pipeline, dataset: Dataset, systems: Sequence[System], progress: Progress | None = None
) -> list[dict[str, Any]]:
    """One record per (system, query)."""
    base_stages = pipe.stages
    packer: ContextPacker = base_stages["packer"]  # type: ignore[assignment]
    records: list[dict[str, Any]] = []
    naive = [s for s in systems if s.kind == "naive"]
    ragtrim = [s for s in systems if s.kind == "ragtrim"]

    groups: dict[str, list[tuple[System, dict[str, Stage | None]]]] = {}
    for system in ragtrim:
        stages = _variant(base_stages, system.overrides)
        key = repr([stage.to_dict() if stage else None for stage in map(stages.get, QUERY_SLOTS)])
        groups.setdefault(key, []).append((system, stages))
    modes = sorted({s.mode for s in naive})
    max_k = max((s.k for s in naive), default=0)
    total = len(dataset.queries) * (len(groups) + len(modes))
    done = 0
    for mode in modes:
        retriever = base_stages["retriever"].with_params(mode=mode, top_k=max(max_k, 1))  # type: ignore[union-attr]
        for query in dataset.queries:
            ctx = QueryContext(
                query.question,
                pipe.counter,
                query.task_type,
                query.filters,
                pipe.index,
                pipe.embedder,
            )
            started = time.perf_counter()
            if base_stages["filter"] is not None:
                base_stages["filter"].run(ctx, [])  # type: ignore[attr-defined]
            found = retriever.run(ctx, []).candidates  # type: ignore[union-attr]
            latency = (time.perf_counter() - started) * 1000
            for system in (s for s in naive if s.mode == mode):
                top = found[: system.k]
                context = packer.render_naive(top)
                prompt = packer.templates.render(context, query.question).prompt
                record = {
                    "system": system.name,
                    "query_id": query.id,
                    "task_type": query.task_type,
                    "context_tokens": pipe.counter.count(context),
                    "prompt_tokens": pipe.counter.count(prompt),
                    "latency_ms": latency,
                    **_query_metrics(query, context, _ranked_doc_ids(top)),
                }
                records.append(record)
            done += 1
            if progress:
                progress("baselines", done, total)
    for group in groups.values():
        stages = group[0][1]
        for query in dataset.queries:
            started = time.perf_counter()
            ctx, candidates, stage_ms, ranking = query_candidates(pipe, stages, query)
            retrieval_ms = (time.perf_counter() - started) * 1000
            reranked = _ranked_doc_ids(candidates)
            retrieval = {}
            if dataset.qrels is not None and query.id in dataset.qrels:
                relevance = dataset.qrels[query.id]
                retrieval = {
                    "ndcg@10": ndcg_at_k(reranked, relevance, 10),
                    "retriever_ndcg@10": ndcg_at_k(ranking, relevance, 10),
                    "recall@100": recall_at_k(ranking, relevance, 100),
                }
            for system, variant in group:
                packer_variant: ContextPacker = variant["packer"]  # type: ignore[assignment]
                t0 = time.perf_counter()
                packed = packer_variant.run(
                    ctx, [Candidate(c.chunk, c.score, dict(c.scores)) for c in candidates]
                )
                pack_ms = (time.perf_counter() - t0) * 1000
                records.append(
                    {
                        "system": system.name,
                        "query_id": query.id,
                        "task_type": query.task_type,
                        "context_tokens": packed.context_tokens,
                        "prompt_tokens": packed.prompt_tokens,
                        "latency_ms": retrieval_ms + pack_ms,
                        "pack_ms": pack_ms,
                        "stage_ms": stage_ms,
                        **retrieval,
                        **_query_metrics(
                            query, packed.context, [p.doc_id for p in packed.passages]
                        ),
                    }
                )
            done += 1
            if progress:
                progress("ragtrim", done, total)
    return records


def summarise(
    records: Sequence[Mapping[str, Any]], metrics: Sequence[str], seed: int = 0
) -> dict[str, dict]:
    """Per system: mean tokens, quality metrics with bootstrap 95% intervals, latency p50/p95."""
    from ragtrim.bench.metrics import bootstrap_ci

    by_system: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        by_system.setdefault(record["system"], []).append(record)
    summary = {}
    for name, rows in by_system.items():
        entry: dict[str, Any] = {"queries": len(rows)}
        for key in ("context_tokens", "prompt_tokens"):
            entry[key] = float(np.mean([r[key] for r in rows]))
        for key in metrics:
            values = [r.get(key) for r in rows if r.get(key) is not None]
            if values:
                mean, low, high = bootstrap_ci(values, seed=seed)
                entry[key] = {"mean": mean, "ci95": [low, high], "n": len(values)}
        latency = np.array([r["latency_ms"] for r in rows])
        entry["latency_ms"] = {
            "p50": float(np.percentile(latency, 50)),
            "p95": float(np.percentile(latency, 95)),
        }
        summary[name] = entry
    return summary


def pareto_front(points: Mapping[str, tuple[float, float]]) -> list[str]:
    """Systems no other system beats on both fewer tokens and at least equal quality."""
    front = []
    for name, (tokens, quality) in points.items():
        dominated = any(
            (t <= tokens and q >= quality) and (t < tokens or q > quality)
            for other, (t, q) in points.items()
            if other != name
        )
        if not dominated:
            front.append(name)
    return sorted(front, key=lambda n: points[n][0])
