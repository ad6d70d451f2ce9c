"""Query-path latency on SciFact: filter -> retrieve -> fuse -> rerank -> dedup, then packing.

Run from the repository root: ``python benchmarks/bench_latency.py`` (after
``bench_ingest.py``, whose saved index it reuses; without it the corpus is ingested here).
Reads ``<repo>/../shared/datasets/scifact`` (skips with a message when absent) and writes
``benchmarks/results/latency_scifact.json`` and ``.md``.

- The default pipeline's query stages run one by one, as in ``ragtrim.bench.engine.evaluate``
  (the retrieval cache is not involved): query embedding (through the embedding cache),
  MetadataFilter, HybridRetriever (BM25 + FAISS + fusion, 50 + 50, top 50), EmbeddingReranker,
  Deduplicator. Each of the 300 test claims is timed end to end and per stage.
- Query-embedding cache: a fresh cache directory (deleted at start) makes the first pass cold
  (one MiniLM call per query); three more passes are warm (the vector comes from the cache).
  Twenty train claims warm the process up first (model loaded, code paths hot).
- Packing: ``ContextPacker.run`` (default budget) on exactly 50 candidates (the reranked list
  before dedup), twice per claim: the first call is the first time this process packs most of
  these sentences (nothing of theirs is in CPU caches or in-process caches), the second repeats
  it. Then on the dedup output, as in the real path.
- ``Pipeline.run`` with the retrieval cache disabled is timed too (packing included), as a
  check that the stage-by-stage numbers match what users see.
- Cross-encoder: no real cross-encoder weights exist offline, so ``CrossEncoderReranker`` runs a
  tiny locally built one (``tests/tiny_models.build_tiny_cross_encoder``: 2 layers, 32 hidden
  units, random weights) on the same 50 candidates. That is a *lower bound* for a real
  cross-encoder (ms-marco-MiniLM-L-6: 6 layers, 384 hidden units), reported separately.
- Wall time and process CPU time are both recorded: the machine's 2 cores are shared, so the
  load average is written next to every phase.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from _provenance import code_line, environment, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets" / "scifact"
RESULTS = REPO / "benchmarks" / "results"
INGEST_INDEX = REPO / "benchmarks" / ".work" / "ingest" / "index"
WORK = REPO / "benchmarks" / ".work" / "latency"
WARM_PASSES = 3
WARM_UP_QUERIES = 20
PACK_CANDIDATES = 50
CROSS_ENCODER_QUERIES = 100
STAGES = ("embed", "filter", "retriever", "reranker", "dedup")


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def indexed_pipeline(dataset, config: dict[str, Any]):
    """The index saved by bench_ingest.py when it holds exactly this corpus, else a new one."""
    from ragtrim.bench.engine import indexed_pipeline as ingest_or_reuse
    from ragtrim.errors import IndexStoreError
    from ragtrim.pipeline import Pipeline

    expected = {d.id: d.fingerprint() for d in dataset.documents}
    if (INGEST_INDEX / "manifest.json").is_file():
        try:
            pipe = Pipeline.load(INGEST_INDEX, config)
            stored = {d.id: d.fingerprint for d in pipe.index.documents if d.alive}
            if stored == expected:
                return pipe, {"index": str(INGEST_INDEX), "reused": True}
            print(f"{INGEST_INDEX} holds another corpus; ingesting here", flush=True)
        except IndexStoreError as exc:
            print(f"cannot reuse {INGEST_INDEX} ({exc}); ingesting here", flush=True)
    return ingest_or_reuse(Pipeline(config), dataset)


def summary(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    return {
        "p50": float(np.percentile(array, 50)),
        "p95": float(np.percentile(array, 95)),
        "mean": float(array.mean()),
        "max": float(array.max()),
        "n": int(array.size),
    }


def copies(candidates):
    from ragtrim.types import Candidate

    return [Candidate(c.chunk, c.score, dict(c.scores)) for c in candidates]


def query_path(pipe, question: str, reranker=None) -> dict[str, Any]:
    """Run the query stages once; wall ms per stage, total wall and CPU ms, the candidates."""
    from ragtrim.query import QueryContext

    stages = dict(pipe.stages)
    if reranker is not None:
        stages["reranker"] = reranker
    ctx = QueryContext(question, pipe.counter, None, None, pipe.index, pipe.embedder)
    stage_ms: dict[str, float] = {}
    outputs: dict[str, list] = {}
    cpu_started = time.process_time()
    started = time.perf_counter()
    t0 = started
    ctx.query_vector()
    stage_ms["embed"] = (time.perf_counter() - t0) * 1000
    candidates: list = []
    retriever_stats: dict[str, Any] = {}
    for slot in ("filter", "retriever", "reranker", "dedup"):
        stage = stages[slot]
        t0 = time.perf_counter()
        out = stage.run(ctx, candidates)
        stage_ms[slot] = (time.perf_counter() - t0) * 1000
        candidates = out.candidates
        if slot == "retriever":
            retriever_stats = out.stats
        outputs[slot] = copies(candidates) if slot in ("retriever", "reranker") else candidates
    total = (time.perf_counter() - started) * 1000
    return {
        "ctx": ctx,
        "stage_ms": stage_ms,
        "total_ms": total,
        "cpu_ms": (time.process_time() - cpu_started) * 1000,
        "retriever_ms": {k: v for k, v in retriever_stats.items() if k.endswith("_ms")},
        "outputs": outputs,
    }


def timed_pass(pipe, questions: list[str], reranker=None) -> dict[str, Any]:
    before = load_average()
    runs = [query_path(pipe, q, reranker) for q in questions]
    return {
        "total_ms": summary([r["total_ms"] for r in runs]),
        "cpu_ms": summary([r["cpu_ms"] for r in runs]),
        "stage_ms": {s: summary([r["stage_ms"][s] for r in runs]) for s in STAGES},
        "retriever_parts_ms": {
            k: summary([r["retriever_ms"].get(k, 0.0) for r in runs])
            for k in ("bm25_ms", "embed_ms", "dense_ms")
        },
        "candidates_after_dedup": summary([len(r["outputs"]["dedup"]) for r in runs]),
        "load_average_before": before,
        "load_average_after": load_average(),
        "_runs": runs,
    }


def time_calls(function: Callable[[], Any], repeat: int = 1) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        function()
    return (time.perf_counter() - started) * 1000 / repeat


def packing(pipe, runs) -> dict[str, Any]:
    packer = pipe.stages["packer"]
    exact_50, repeat_50, real_path, tokens = [], [], [], []
    for run in runs:
        ctx = run["ctx"]
        head = run["outputs"]["reranker"][:PACK_CANDIDATES]
        if len(head) == PACK_CANDIDATES:
            exact_50.append(time_calls(lambda h=head, c=ctx: packer.run(c, copies(h))))
            repeat_50.append(time_calls(lambda h=head, c=ctx: packer.run(c, copies(h))))
        deduped = run["outputs"]["dedup"]
        real_path.append(time_calls(lambda d=deduped, c=ctx: packer.run(c, copies(d))))
        tokens.append(packer.run(ctx, copies(deduped)).context_tokens)
    return {
        "budget": packer.config.budget,
        "granularity": packer.config.granularity,
        "exactly_50_candidates_ms": summary(exact_50),
        "exactly_50_candidates_repeat_ms": summary(repeat_50),
        "after_dedup_ms": summary(real_path),
        "context_tokens": summary(tokens),
        "target_p50_ms": 5,
    }


def pipeline_run(index_dir: Path, config: dict[str, Any], questions: list[str]) -> dict[str, Any]:
    """``Pipeline.run`` end to end (packing included), retrieval cache off, warm query cache."""
    from ragtrim.pipeline import Pipeline

    pipe = Pipeline.load(index_dir, config)
    pipe.warm_up()
    for question in questions:  # warm the process; query vectors are already cached
        pipe.run(question)
    before = load_average()
    totals, packs = [], []
    for question in questions:
        started = time.perf_counter()
        result = pipe.run(question)
        totals.append((time.perf_counter() - started) * 1000)
        packs.append(next(s.ms for s in result.report.stages if s.name == "packer"))
    return {
        "total_ms": summary(totals),
        "packer_ms": summary(packs),
        "total_minus_packer_ms": summary([t - p for t, p in zip(totals, packs, strict=True)]),
        "load_average_before": before,
        "load_average_after": load_average(),
    }


def cross_encoder(pipe, questions: list[str], warm_runs) -> dict[str, Any]:
    """The tiny cross-encoder's rerank stage with torch's default thread count and with one
    thread (its ``threads`` setting; interleaved rounds over the same queries), then the whole
    path with the faster setting."""
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    from tiny_models import build_tiny_cross_encoder

    from ragtrim.reranking.cross_encoder import CrossEncoderReranker

    directory = WORK / "tiny-cross-encoder"
    if not (directory / "config.json").is_file():
        build_tiny_cross_encoder(directory)
    default_threads = torch.get_num_threads()
    rerankers = {
        threads: CrossEncoderReranker(model=str(directory), depth=PACK_CANDIDATES, threads=threads)
        for threads in (default_threads, 1)
    }
    runs = warm_runs[:CROSS_ENCODER_QUERIES]
    for reranker in rerankers.values():
        reranker.warm_up()
        for run in runs[:WARM_UP_QUERIES]:
            reranker.run(run["ctx"], copies(run["outputs"]["retriever"]))
    before = load_average()
    stage: dict[int, list[float]] = {threads: [] for threads in rerankers}
    for _ in range(2):
        for threads, reranker in rerankers.items():
            for run in runs:
                retrieved = run["outputs"]["retriever"]
                stage[threads].append(
                    time_calls(lambda r=retrieved, c=run["ctx"], s=reranker: s.run(c, copies(r)))
                )
    faster = min(stage, key=lambda t: statistics.median(stage[t]))
    path = timed_pass(pipe, questions, rerankers[faster])
    return {
        "model": "tiny random BERT (2 layers, 32 hidden, MiniLM tokenizer) - LOWER BOUND",
        "depth": PACK_CANDIDATES,
        "queries_for_thread_comparison": len(runs),
        "rerank_stage_ms_by_torch_threads": {str(t): summary(v) for t, v in stage.items()},
        "torch_default_threads": default_threads,
        "threads_for_query_path": faster,
        "query_path_with_cross_encoder_ms": path["total_ms"],
        "load_average_before": before,
        "load_average_after": load_average(),
    }


def naive_count_cost(pipe, runs) -> dict[str, float]:
    """What ``Pipeline.run`` spends counting the naive top-k context for its savings report."""
    packer = pipe.stages["packer"]
    return summary(
        [
            time_calls(
                lambda r=run: pipe.counter.count(packer.render_naive(r["outputs"]["retriever"]))
            )
            for run in runs
        ]
    )


def strip_runs(phase: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in phase.items() if not k.startswith("_")}


def main() -> int:
    if not (DATA / "queries.jsonl").is_file():
        print(f"SciFact not found at {DATA}; skipping the latency benchmark")
        return 0
    import torch

    from ragtrim.bench.datasets import load_dataset
    from ragtrim.pipeline import Pipeline

    test = load_dataset(DATA)
    train = load_dataset(DATA, split="train")
    if WORK.exists():
        shutil.rmtree(WORK / "cache", ignore_errors=True)
    WORK.mkdir(parents=True, exist_ok=True)
    config = Pipeline().to_config()
    config["cache"]["directory"] = str(WORK / "cache")
    config["cache"]["retrieval"] = False
    pipe, index_info = indexed_pipeline(test, config)
    pipe.warm_up()
    print(f"index: {len(pipe.index)} chunks ({index_info})", flush=True)
    questions = [q.question for q in test.queries]
    for query in train.queries[:WARM_UP_QUERIES]:
        query_path(pipe, query.question)
    calls_before = pipe.embedder.model_calls

    cold = timed_pass(pipe, questions)
    cold["model_calls"] = pipe.embedder.model_calls - calls_before
    print(
        f"  cold query cache: p50 {cold['total_ms']['p50']:.1f} ms, "
        f"p95 {cold['total_ms']['p95']:.1f} ms ({cold['model_calls']} model calls)",
        flush=True,
    )
    warm_passes = []
    for number in range(WARM_PASSES):
        calls_before = pipe.embedder.model_calls
        phase = timed_pass(pipe, questions)
        phase["model_calls"] = pipe.embedder.model_calls - calls_before
        warm_passes.append(phase)
        print(
            f"  warm pass {number + 1}: p50 {phase['total_ms']['p50']:.1f} ms, "
            f"p95 {phase['total_ms']['p95']:.1f} ms ({phase['model_calls']} model calls)",
            flush=True,
        )
    warm_runs = [r for phase in warm_passes for r in phase["_runs"]]
    warm = {
        "passes": WARM_PASSES,
        "total_ms": summary([r["total_ms"] for r in warm_runs]),
        "cpu_ms": summary([r["cpu_ms"] for r in warm_runs]),
        "stage_ms": {s: summary([r["stage_ms"][s] for r in warm_runs]) for s in STAGES},
        "retriever_parts_ms": {
            k: summary([r["retriever_ms"].get(k, 0.0) for r in warm_runs])
            for k in ("bm25_ms", "embed_ms", "dense_ms")
        },
        "per_pass_p50_ms": [p["total_ms"]["p50"] for p in warm_passes],
        "per_pass_p95_ms": [p["total_ms"]["p95"] for p in warm_passes],
        "model_calls": sum(p["model_calls"] for p in warm_passes),
        "candidates_after_dedup": summary([len(r["outputs"]["dedup"]) for r in warm_runs]),
        "target_p50_ms": 50,
    }
    packed = packing(pipe, warm_passes[-1]["_runs"])
    print(
        f"  packing 50 candidates: p50 {packed['exactly_50_candidates_ms']['p50']:.2f} ms, "
        f"p95 {packed['exactly_50_candidates_ms']['p95']:.2f} ms (repeat: p50 "
        f"{packed['exactly_50_candidates_repeat_ms']['p50']:.2f}, p95 "
        f"{packed['exactly_50_candidates_repeat_ms']['p95']:.2f})",
        flush=True,
    )
    index_dir = Path(index_info.get("index") or index_info["index_dir"])
    via_run = pipeline_run(index_dir, config, questions)
    via_run["naive_count_ms"] = naive_count_cost(pipe, warm_passes[-1]["_runs"])
    print(f"  Pipeline.run: p50 {via_run['total_ms']['p50']:.1f} ms", flush=True)
    cross = cross_encoder(pipe, questions, warm_passes[-1]["_runs"])
    for threads, stats in cross["rerank_stage_ms_by_torch_threads"].items():
        p50 = stats["p50"]
        print(f"  tiny cross-encoder stage, {threads} thread(s): p50 {p50:.1f} ms", flush=True)

    result = {
        "dataset": "SciFact, 300 test claims",
        "index": {"chunks": len(pipe.index), **index_info},
        "stages": {
            slot: (stage.to_dict() if stage is not None else None)
            for slot, stage in pipe.stages.items()
            if slot in ("filter", "retriever", "reranker", "dedup", "packer")
        },
        "warm": warm,
        "cold_query_embedding": strip_runs(cold),
        "packing": packed,
        "pipeline_run": via_run,
        "cross_encoder_lower_bound": cross,
        "environment": environment(
            torch=torch.__version__,
            torch_threads=torch.get_num_threads(),
            numpy=np.__version__,
            cpus=os.cpu_count(),
        ),
    }
    markdown = write_results(RESULTS, "latency_scifact", result, render_markdown)
    print(f"wrote {markdown}")
    return 0


def _pp(s: dict[str, float], digits: int = 1) -> str:
    return f"{s['p50']:.{digits}f} / {s['p95']:.{digits}f}"


def render_markdown(r: dict) -> str:
    warm, cold, pack = r["warm"], r["cold_query_embedding"], r["packing"]
    run, cross, env = r["pipeline_run"], r["cross_encoder_lower_bound"], r["environment"]
    lines = [
        "# Query-path latency on SciFact",
        "",
        f"{r['index']['chunks']} chunks; the 300 test claims; default stages (hybrid 50 + 50 "
        "-> top 50, EmbeddingReranker, Deduplicator; ContextPacker for packing). "
        f"{env['cpus']} CPU cores shared with other work: load averages are given per phase. "
        "Generated by `python benchmarks/bench_latency.py`. All times in ms, p50 / p95.",
        "",
        "## Headline",
        "",
        "| measure | p50 / p95 ms | target |",
        "|---|---|---|",
        f"| query path (embed -> filter -> retrieve+fuse -> rerank -> dedup), warm query cache, "
        f"{warm['passes']} passes x 300 | {_pp(warm['total_ms'])} | p50 <= "
        f"{warm['target_p50_ms']} |",
        f"| same, cold query-embedding cache (1 MiniLM call per query) | "
        f"{_pp(cold['total_ms'])} | |",
        f"| packing, exactly {PACK_CANDIDATES} candidates, first call per claim | "
        f"{_pp(pack['exactly_50_candidates_ms'], 2)} | p50, p95 <= {pack['target_p50_ms']} |",
        f"| packing, exactly {PACK_CANDIDATES} candidates, same call repeated | "
        f"{_pp(pack['exactly_50_candidates_repeat_ms'], 2)} | p50, p95 <= "
        f"{pack['target_p50_ms']} |",
        f"| packing, dedup output (real path) | {_pp(pack['after_dedup_ms'], 2)} | |",
        f"| `Pipeline.run` end to end (packing included, retrieval cache off) | "
        f"{_pp(run['total_ms'])} | |",
        *(
            f"| tiny cross-encoder rerank stage, depth {cross['depth']}, {t} torch thread(s) "
            f"(LOWER BOUND, see below) | {_pp(v)} | reported separately |"
            for t, v in cross["rerank_stage_ms_by_torch_threads"].items()
        ),
        "",
        "## Per stage (warm query cache)",
        "",
        "| stage | p50 / p95 ms (warm) | p50 / p95 ms (cold query cache) |",
        "|---|---|---|",
        *(
            f"| {s} | {_pp(warm['stage_ms'][s], 2)} | {_pp(cold['stage_ms'][s], 2)} |"
            for s in STAGES
        ),
        *(
            f"| retriever: {k.removesuffix('_ms')} | {_pp(warm['retriever_parts_ms'][k], 2)} | "
            f"{_pp(cold['retriever_parts_ms'][k], 2)} |"
            for k in ("bm25_ms", "dense_ms")
        ),
        f"| total | {_pp(warm['total_ms'])} | {_pp(cold['total_ms'])} |",
        f"| process CPU time | {_pp(warm['cpu_ms'])} | {_pp(cold['cpu_ms'])} |",
        "",
        "`embed` is the query vector (a cache read when warm, a MiniLM call when cold); the "
        "retriever's own embed time is then ~0 because the vector is memoised on the query "
        f"context. Warm passes p50: {', '.join(f'{x:.1f}' for x in warm['per_pass_p50_ms'])} "
        f"ms; model calls during warm passes: {warm['model_calls']}; during the cold pass: "
        f"{cold['model_calls']}. Candidates after dedup: median "
        f"{warm['candidates_after_dedup']['p50']:.0f} of 50.",
        "",
        f"Load average (1, 5, 15 min): cold pass {cold['load_average_before']} -> "
        f"{cold['load_average_after']}; Pipeline.run {run['load_average_before']} -> "
        f"{run['load_average_after']}.",
        "",
        "## Packing",
        "",
        f"Budget {pack['budget']} tokens, granularity {pack['granularity']}; context tokens "
        f"emitted p50 {pack['context_tokens']['p50']:.0f}, p95 {pack['context_tokens']['p95']:.0f}."
        f" `Pipeline.run`'s own packer stage: {_pp(run['packer_ms'], 2)} ms; its total minus "
        f"packing: {_pp(run['total_minus_packer_ms'])} ms, of which counting the naive top-50 "
        f"context for the savings report (`counter.count(packer.render_naive(...))`) takes "
        f"{_pp(run['naive_count_ms'], 2)} ms.",
        "",
        "## Cross-encoder (lower bound)",
        "",
        f"{cross['model']}. No real cross-encoder weights are available offline; this model has "
        "the real tokenizer, input lengths and code path but about 1/800 of the per-token "
        "matrix compute of ms-marco-MiniLM-L-6-v2 (6 x 384 vs 2 x 32 hidden), so a real "
        "cross-encoder is far slower. Rerank stage on "
        f"the retriever's top {cross['depth']} over {cross['queries_for_thread_comparison']} "
        "queries, two interleaved rounds per setting: "
        + "; ".join(
            f"{t} torch thread(s) {_pp(v)} ms"
            for t, v in cross["rerank_stage_ms_by_torch_threads"].items()
        )
        + f" (torch's default here is {cross['torch_default_threads']}; `CrossEncoderReranker`'s "
        "`threads` defaults to 1). Whole query path with it instead of the EmbeddingReranker, "
        f"{cross['threads_for_query_path']} thread(s): "
        f"{_pp(cross['query_path_with_cross_encoder_ms'])} ms.",
        "",
        code_line(r["environment"]),
        "",
        f"Environment: Python {env['python']}, torch {env['torch']} ({env['torch_threads']} "
        f"intra-op threads; single-query embedding uses 1), numpy {env['numpy']}, "
        f"{env['platform']}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
