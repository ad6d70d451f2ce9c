"""Deduplication on COVID-QA chunked with overlap: tokens removed per kind, answers kept.

Run from the repository root: ``python benchmarks/bench_dedup.py``. Reads
``<repo>/../shared/datasets/covid-qa`` (skips with a message when absent) and writes
``benchmarks/results/dedup_covid.json`` and ``.md``. The index is built once under
``benchmarks/.work/dedup/`` (git-ignored) and reused by later runs.

- Corpus: 98 full research papers, chunked by the default StructureChunker with
  ``overlap_tokens=48`` (``stages.chunker.init_parameters``), so neighbouring chunks repeat
  text; everything else is the default pipeline (real MiniLM).
- For every one of the 1,380 questions: the default hybrid retriever's top 30, reranked by the
  default EmbeddingReranker (the pipeline's order, which decides which copy dedup keeps), then
  the Deduplicator with each kind alone (overlap merge, exact, near-duplicate, semantic) and
  with all of them (the default).
- Tokens removed: the stage's own per-kind accounting (``stats["tokens_removed"]``) and, as a
  check, the token counts of the candidates before minus after.
- Answer recall (``ragtrim.bench.metrics.answer_recall``) over the candidate texts joined by
  blank lines, before and after. A *lost* answer is one present before dedup and absent
  after: the target is zero. Every loss (and gain) is listed with the drop that caused it.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from _provenance import environment, footer, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets" / "covid-qa"
RESULTS = REPO / "benchmarks" / "results"
WORK = REPO / "benchmarks" / ".work" / "dedup"
OVERLAP_TOKENS = 48
TOP_K = 30
KINDS = ("merge_overlaps", "exact", "near_duplicate", "semantic")
VARIANTS = {
    "overlap merge": {"merge_overlaps"},
    "exact": {"exact"},
    "near-duplicate": {"near_duplicate"},
    "semantic": {"semantic"},
    "all (default)": set(KINDS),
}
SHOWN_EXAMPLES = 10


def joined(candidates) -> str:
    return "\n\n".join(c.chunk.text for c in candidates)


def copies(candidates):
    from ragtrim.types import Candidate

    return [Candidate(c.chunk, c.score, dict(c.scores)) for c in candidates]


def overlap_profile(pipe) -> dict[str, Any]:
    """How much text consecutive chunks of a document share (characters and tokens)."""
    by_doc: dict[str, list] = {}
    for chunk, alive in zip(pipe.index.chunks, pipe.index.alive, strict=True):
        if alive:
            by_doc.setdefault(chunk.doc_id, []).append(chunk)
    shared_chars, shared_tokens = [], []
    for chunks in by_doc.values():
        chunks.sort(key=lambda c: c.start)
        for left, right in zip(chunks, chunks[1:], strict=False):
            overlap = left.end - right.start
            shared_chars.append(max(overlap, 0))
            if overlap > 0:
                shared_tokens.append(pipe.counter.count(right.text[:overlap]))
    shared = np.asarray(shared_chars)
    return {
        "chunks": int(sum(len(c) for c in by_doc.values())),
        "neighbour_pairs": int(shared.size),
        "pairs_overlapping": int((shared > 0).sum()),
        "mean_overlap_tokens": float(np.mean(shared_tokens)) if shared_tokens else 0.0,
        "median_overlap_tokens": float(np.median(shared_tokens)) if shared_tokens else 0.0,
    }


def explain(query, before, after, drops) -> dict[str, Any]:
    """Which drops removed the answer: dropped chunks that contain it, and their twins."""
    from ragtrim.bench.metrics import answer_recall

    by_id = {c.id: c for c in before}
    kept_ids = {c.id for c in after}
    culprits = []
    for drop in drops:
        chunk = by_id.get(drop.chunk_id)
        if chunk is None or answer_recall(chunk.chunk.text, query.span_answers) != 1.0:
            continue
        twin = by_id.get(drop.kept_id)
        culprits.append(
            {
                "dropped": drop.chunk_id,
                "reason": drop.reason.value,
                "detail": drop.detail,
                "kept_twin": drop.kept_id,
                "twin_contains_answer": None
                if twin is None
                else answer_recall(twin.chunk.text, query.span_answers) == 1.0,
                "twin_kept": drop.kept_id in kept_ids,
            }
        )
    return {
        "query_id": query.id,
        "question": query.question,
        "answers": list(query.span_answers),
        "culprits": culprits,
        "answer_spans_chunk_boundary": not culprits,
    }


def main() -> int:
    if not (DATA / "corpus.jsonl").is_file():
        print(f"COVID-QA not found at {DATA}; skipping the dedup benchmark")
        return 0
    import torch

    from ragtrim.bench.datasets import load_dataset
    from ragtrim.bench.engine import indexed_pipeline
    from ragtrim.bench.metrics import answer_recall
    from ragtrim.embedding.cache import CachedEmbedder, EmbeddingCache
    from ragtrim.pipeline import Pipeline
    from ragtrim.query import QueryContext

    torch.set_num_threads(1)  # ingestion is set-up here: one core, the other stays free
    dataset = load_dataset(DATA)
    config = Pipeline().to_config()
    config["cache"]["directory"] = str(WORK / "cache")
    config["stages"]["chunker"]["init_parameters"]["overlap_tokens"] = OVERLAP_TOKENS
    started = time.perf_counter()
    pipe, index_info = indexed_pipeline(
        Pipeline(config),
        dataset,
        progress=lambda task, done, total: (
            print(f"    {task}: {done}/{total}", flush=True)
            if done == total or done % 1000 == 0
            else None
        ),
    )
    index_info["seconds"] = time.perf_counter() - started
    profile = overlap_profile(pipe)
    print(f"index: {profile} ({index_info})", flush=True)

    # query-time vectors (questions, and any candidate the index has no vector for) go to a
    # cache that starts empty on every run, so query-time embedding costs are measured cold
    shutil.rmtree(WORK / "query-cache", ignore_errors=True)
    pipe.embedder = CachedEmbedder(pipe.embedder.embedder, EmbeddingCache(WORK / "query-cache"))
    model = pipe.embedder.embedder
    queries = dataset.queries
    pipe.embedder.embed([q.question for q in queries], kind="query")
    retriever = pipe.stages["retriever"].with_params(top_k=TOP_K)
    reranker = pipe.stages["reranker"]
    dedup_default = pipe.stages["dedup"]
    dedups = {
        name: dedup_default.with_params(**{kind: kind in kinds for kind in KINDS})
        for name, kinds in VARIANTS.items()
    }
    totals = {
        name: {"stage_tokens_removed": dict.fromkeys(("overlap", "exact", "near", "semantic"), 0)}
        for name in VARIANTS
    }
    records = []
    examples: dict[str, list] = {name: [] for name in VARIANTS}
    gains: dict[str, list] = {name: [] for name in VARIANTS}
    dedup_ms: dict[str, list[float]] = {name: [] for name in VARIANTS}
    embedded = {name: {"model_calls": 0, "texts": 0, "truncated_texts": 0} for name in VARIANTS}
    for number, query in enumerate(queries, start=1):
        ctx = QueryContext(query.question, pipe.counter, None, None, pipe.index, pipe.embedder)
        candidates = retriever.run(ctx, []).candidates
        candidates = reranker.run(ctx, candidates).candidates
        before = joined(candidates)
        record: dict[str, Any] = {
            "query_id": query.id,
            "candidates": len(candidates),
            "tokens_before": sum(c.chunk.token_count for c in candidates),
            "answer_before": answer_recall(before, query.span_answers),
        }
        for name, dedup in dedups.items():
            calls = (pipe.embedder.model_calls, pipe.embedder.misses, model.truncated_texts)
            t0 = time.perf_counter()
            out = dedup.run(ctx, copies(candidates))
            dedup_ms[name].append((time.perf_counter() - t0) * 1000)
            embedded[name]["model_calls"] += pipe.embedder.model_calls - calls[0]
            embedded[name]["texts"] += pipe.embedder.misses - calls[1]
            embedded[name]["truncated_texts"] += model.truncated_texts - calls[2]
            for kind, tokens in out.stats["tokens_removed"].items():
                totals[name]["stage_tokens_removed"][kind] += tokens
            after = answer_recall(joined(out.candidates), query.span_answers)
            record[name] = {
                "tokens_after": sum(c.chunk.token_count for c in out.candidates),
                "kept": len(out.candidates),
                "answer_after": after,
            }
            if record["answer_before"] == 1.0 and after == 0.0:
                examples[name].append(explain(query, candidates, out.candidates, out.drops))
            elif record["answer_before"] == 0.0 and after == 1.0:
                gains[name].append(query.id)
        records.append(record)
        if number % 100 == 0:
            print(f"  {number}/{len(queries)} queries", flush=True)

    answered_before = [r for r in records if r["answer_before"] == 1.0]
    variants = {}
    for name in VARIANTS:
        tokens_before = sum(r["tokens_before"] for r in records)
        tokens_after = sum(r[name]["tokens_after"] for r in records)
        lost = [r["query_id"] for r in answered_before if r[name]["answer_after"] == 0.0]
        variants[name] = {
            "kinds": sorted(VARIANTS[name]),
            "stage_tokens_removed": totals[name]["stage_tokens_removed"],
            "stage_tokens_removed_total": sum(totals[name]["stage_tokens_removed"].values()),
            "tokens_before": tokens_before,
            "tokens_after": tokens_after,
            "tokens_removed_measured": tokens_before - tokens_after,
            "share_removed": (tokens_before - tokens_after) / tokens_before,
            "mean_candidates_kept": float(np.mean([r[name]["kept"] for r in records])),
            "answer_recall_after": float(np.mean([r[name]["answer_after"] for r in records])),
            "lost_answers": len(lost),
            "lost_query_ids": lost,
            "gained_answers": len(gains[name]),
            "gained_query_ids": gains[name],
            "loss_examples": examples[name][:SHOWN_EXAMPLES],
            "query_time_embedding": embedded[name],
            "dedup_ms_p50": float(np.percentile(dedup_ms[name], 50)),
            "dedup_ms_p95": float(np.percentile(dedup_ms[name], 95)),
        }
        print(
            f"  {name:15s} removed {variants[name]['tokens_removed_measured']} tokens "
            f"({100 * variants[name]['share_removed']:.1f}%), lost {len(lost)}, "
            f"gained {len(gains[name])}",
            flush=True,
        )

    result = {
        "dataset": "COVID-QA (98 papers, 1,380 questions)",
        "queries": len(records),
        "top_k": TOP_K,
        "chunker": config["stages"]["chunker"],
        "dedup_default": dedup_default.to_dict(),
        "index": {**index_info, **profile},
        "answer_recall_before": float(np.mean([r["answer_before"] for r in records])),
        "queries_answer_present_before": len(answered_before),
        "variants": variants,
        "target_lost_answers": 0,
        "environment": environment(numpy=np.__version__),
    }
    markdown = write_results(RESULTS, "dedup_covid", result, render_markdown)
    print(f"wrote {markdown}")
    return 0


def render_markdown(r: dict) -> str:
    index = r["index"]
    lines = [
        "# Deduplication on COVID-QA (chunked with overlap)",
        "",
        f"{index['chunks']} chunks from 98 papers, StructureChunker with "
        f"`overlap_tokens={OVERLAP_TOKENS}`: {index['pairs_overlapping']} of "
        f"{index['neighbour_pairs']} neighbouring chunk pairs overlap (median "
        f"{index['median_overlap_tokens']:.0f} tokens). For each of the {r['queries']} questions: "
        f"hybrid top {r['top_k']}, default EmbeddingReranker, then the Deduplicator. Answer "
        "recall over the candidate texts joined by blank lines. Generated by "
        "`python benchmarks/bench_dedup.py`.",
        "",
        f"Answer recall before dedup: {r['answer_recall_before']:.4f} "
        f"({r['queries_answer_present_before']} questions with the answer in the candidates).",
        "",
        "| dedup kinds | tokens removed | share of candidate tokens | candidates kept (mean) "
        "| answer recall after | answers lost | answers gained | dedup p50 / p95 ms "
        "| query-time model calls (texts) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in r["variants"].items():
        lines.append(
            f"| {name} | {v['tokens_removed_measured']} | {100 * v['share_removed']:.1f}% | "
            f"{v['mean_candidates_kept']:.1f} of {r['top_k']} | {v['answer_recall_after']:.4f} | "
            f"{v['lost_answers']} | {v['gained_answers']} | "
            f"{v['dedup_ms_p50']:.2f} / {v['dedup_ms_p95']:.2f} | "
            f"{v['query_time_embedding']['model_calls']} ({v['query_time_embedding']['texts']}) |"
        )
    every = r["variants"]["all (default)"]["query_time_embedding"]
    if every["model_calls"]:
        embedding_note = (
            "Query-time model calls: with every kind on, the semantic step needed vectors for "
            "candidates that the overlap merge created and embedded them with MiniLM at query "
            f"time ({every['model_calls']} calls, {every['texts']} texts, "
            f"{every['truncated_texts']} of them longer than the model's input limit); that is "
            "the dedup latency of the default row."
        )
    else:
        embedding_note = (
            "Query-time model calls: none in any row. The query-time embedding cache starts "
            "empty on every run, so a candidate without a stored vector (e.g. one created by "
            "the overlap merge) would show up here as a model call."
        )
    lines += [
        "",
        embedding_note,
        "",
        f"Target: 0 answers lost (present before dedup, absent after). Tokens before dedup: "
        f"{r['variants']['all (default)']['tokens_before']} over all questions.",
        "",
        "## The stage's own accounting, all kinds together",
        "",
        "| kind | tokens removed |",
        "|---|---|",
        *(
            f"| {kind} | {tokens} |"
            for kind, tokens in r["variants"]["all (default)"]["stage_tokens_removed"].items()
        ),
        "",
    ]
    for name, v in r["variants"].items():
        if not v["loss_examples"] and not v["gained_answers"]:
            continue
        lines += [f"## {name}: losses and gains", ""]
        for example in v["loss_examples"]:
            causes = "; ".join(
                f"{c['reason']} ({c['detail']}) of {c['dropped']}, kept twin {c['kept_twin']} "
                f"contains the answer: {c['twin_contains_answer']}"
                for c in example["culprits"]
            )
            lines.append(
                f"- lost {example['query_id']} ({example['answers'][0][:80]!r}): "
                + (causes or "no dropped chunk held the answer alone (it spanned a join)")
            )
        if v["gained_answers"]:
            lines.append(
                f"- gained {v['gained_answers']}: {', '.join(v['gained_query_ids'][:10])} "
                "(an answer that crosses a chunk boundary is found once the overlap is merged)"
            )
        lines.append("")
    env = r["environment"]
    return "\n".join(lines + footer(env, "numpy"))


if __name__ == "__main__":
    raise SystemExit(main())
