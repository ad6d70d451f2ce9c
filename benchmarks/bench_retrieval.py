"""Hybrid retrieval on SciFact: BM25, dense (MiniLM) and every fusion method, document level.

Run from the repository root: ``python benchmarks/bench_retrieval.py`` (after
``bench_ingest.py``, whose saved index it reuses; without it the corpus is ingested here).
Reads ``<repo>/../shared/datasets/scifact`` (skips with a message when absent) and writes
``benchmarks/results/retrieval_scifact.json`` and ``.md``.

- Units are chunks (default StructureChunker); a document's score is its best chunk, so the
  ranked document list is the retriever's candidates in order with repeats removed. nDCG@10
  (BEIR linear gain) and recall@100 per query, from ``ragtrim.bench.metrics``.
- Test: the 300 claims of ``queries.jsonl`` judged by ``qrels_beir_test.tsv``. Train: the 809
  claims of ``queries_train.jsonl``, judged by their cited documents
  (``metadata.cited_doc_ids``), which is how the BEIR test qrels were made; the 505 train claims
  with rationale evidence are also scored against ``gold_doc_ids`` as a check.
  Fusion method and weights are chosen on train nDCG@10 only; the test numbers of that choice
  are reported, so the default is not tuned on the test set.
- Every system is ``HybridRetriever.with_params(...)`` on the indexed default pipeline. Deep
  runs take 300 chunks from each retriever and keep the top 300 fused (enough documents for
  recall@100); default-depth runs use the shipped depths (50 + 50, top 50), where
  normalisation-based fusion sees the same lists as in production.
- The paired difference of per-query nDCG@10 (hybrid minus single retriever) gets a 95%
  percentile-bootstrap interval (10,000 resamples, seed 0).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from _provenance import environment, footer, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets" / "scifact"
RESULTS = REPO / "benchmarks" / "results"
INGEST_INDEX = REPO / "benchmarks" / ".work" / "ingest" / "index"
WORK = REPO / "benchmarks" / ".work" / "retrieval"
DEEP = 300
DEFAULT_DEPTH = 50
FUSIONS = ("rrf", "convex_minmax", "convex_zscore", "dbsf")
BM25_WEIGHTS = (0.3, 0.5, 0.7)
RRF_K = 60.0
BOOTSTRAP_RESAMPLES = 10_000


def indexed_pipeline(dataset) -> tuple[Any, dict[str, Any]]:
    """The index saved by bench_ingest.py when it holds exactly this corpus, else a new one."""
    from ragtrim.bench.engine import indexed_pipeline as ingest_or_reuse
    from ragtrim.errors import IndexStoreError
    from ragtrim.pipeline import Pipeline

    config = Pipeline().to_config()
    config["cache"]["directory"] = str(WORK / "cache")
    expected = {d.id: d.fingerprint() for d in dataset.documents}
    if (INGEST_INDEX / "manifest.json").is_file():
        try:
            started = time.perf_counter()
            pipe = Pipeline.load(INGEST_INDEX, config)
            seconds = time.perf_counter() - started
            stored = {d.id: d.fingerprint for d in pipe.index.documents if d.alive}
            if stored == expected:
                return pipe, {"index": str(INGEST_INDEX), "reused": True, "load_seconds": seconds}
            print(f"{INGEST_INDEX} holds another corpus; ingesting here", flush=True)
        except IndexStoreError as exc:
            print(f"cannot reuse {INGEST_INDEX} ({exc}); ingesting here", flush=True)
    pipe, info = ingest_or_reuse(Pipeline(config), dataset)
    return pipe, info


def train_qrels(queries, source: str) -> dict[str, dict[str, int]]:
    if source == "cited":
        return {
            q.id: {d: 1 for d in q.metadata["cited_doc_ids"]}
            for q in queries
            if q.metadata.get("cited_doc_ids")
        }
    return {q.id: {d: 1 for d in q.gold_doc_ids} for q in queries if q.gold_doc_ids}


def systems() -> list[dict[str, Any]]:
    """Name, depth label and retriever parameters of every configuration."""
    out = []
    for depth_name, depth, top_k in (("deep", DEEP, DEEP), ("default", DEFAULT_DEPTH, 50)):
        common = {"bm25_top_k": depth, "dense_top_k": depth, "top_k": top_k, "rrf_k": RRF_K}
        out.append({"name": "bm25", "depth": depth_name, "params": {**common, "mode": "bm25"}})
        out.append({"name": "dense", "depth": depth_name, "params": {**common, "mode": "dense"}})
        for fusion in FUSIONS:
            for weight in BM25_WEIGHTS:
                params = {
                    **common,
                    "mode": "hybrid",
                    "fusion": fusion,
                    "bm25_weight": weight,
                    "dense_weight": round(1.0 - weight, 10),
                }
                out.append(
                    {"name": f"hybrid-{fusion}-w{weight}", "depth": depth_name, "params": params}
                )
    return out


def run_system(pipe, retriever, queries, keep_reranked: bool = False) -> dict[str, list[str]]:
    """Ranked document ids per query (best chunk first, repeats removed)."""
    from ragtrim.query import QueryContext

    rankings: dict[str, list[str]] = {}
    reranker = pipe.stages["reranker"]
    for query in queries:
        ctx = QueryContext(query.question, pipe.counter, None, None, pipe.index, pipe.embedder)
        candidates = retriever.run(ctx, []).candidates
        if keep_reranked:
            candidates = reranker.run(ctx, candidates).candidates
        rankings[query.id] = list(dict.fromkeys(c.chunk.doc_id for c in candidates))
    return rankings


def scores_of(rankings, qrels) -> dict[str, np.ndarray]:
    from ragtrim.bench.metrics import ndcg_at_k, recall_at_k

    ids = [q for q in qrels if q in rankings]
    return {
        "ndcg@10": np.array([ndcg_at_k(rankings[q], qrels[q], 10) for q in ids]),
        "recall@100": np.array([recall_at_k(rankings[q], qrels[q], 100) for q in ids]),
        "min_docs_ranked": min(len(rankings[q]) for q in ids),
    }


def paired(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    from ragtrim.bench.metrics import bootstrap_ci

    diff = a - b
    mean, low, high = bootstrap_ci(diff, n_resamples=BOOTSTRAP_RESAMPLES, seed=0)
    return {
        "mean_difference": mean,
        "ci95": [low, high],
        "queries_better": int((diff > 0).sum()),
        "queries_worse": int((diff < 0).sum()),
        "queries": int(diff.size),
    }


def truncation_check(pipe) -> dict[str, Any]:
    """How many indexed chunk texts exceed the embedding model's input limit (so their tails
    are never embedded)."""
    embedder = pipe.stages["embedder"]
    index = pipe.index
    texts = [index.indexed_text(c) for c, a in zip(index.chunks, index.alive, strict=True) if a]
    counts = np.array(embedder.count_model_tokens(texts))
    limit = embedder.max_tokens
    return {
        "chunks": len(texts),
        "model_token_limit": limit,
        "chunks_over_limit": int((counts > limit).sum()),
        "share_over_limit": float((counts > limit).mean()),
        "max_model_tokens": int(counts.max()),
        "p95_model_tokens": float(np.percentile(counts, 95)),
    }


def main() -> int:
    if not (DATA / "qrels_beir_test.tsv").is_file():
        print(f"SciFact not found at {DATA}; skipping the retrieval benchmark")
        return 0
    from ragtrim.bench.datasets import load_dataset

    test = load_dataset(DATA)
    train = load_dataset(DATA, split="train")
    qrels = {
        "test": test.qrels,
        "train_cited": train_qrels(train.queries, "cited"),
        "train_evidence": train_qrels(train.queries, "evidence"),
    }
    pipe, index_info = indexed_pipeline(test)
    print(
        f"index: {len(pipe.index)} chunks, {pipe.index.n_documents} documents ({index_info})",
        flush=True,
    )
    queries = {"test": test.queries, "train": train.queries}
    started = time.perf_counter()
    for split_queries in queries.values():  # embed every query once, in batches, into the cache
        pipe.embedder.embed([q.question for q in split_queries], kind="query")
    embed_seconds = time.perf_counter() - started

    base = pipe.stages["retriever"]
    rows = []
    per_query: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for system in systems():
        retriever = base.with_params(**system["params"])
        started = time.perf_counter()
        test_scores = scores_of(run_system(pipe, retriever, queries["test"]), qrels["test"])
        train_rankings = run_system(pipe, retriever, queries["train"])
        seconds = time.perf_counter() - started
        cited = scores_of(train_rankings, qrels["train_cited"])
        evidence = scores_of(train_rankings, qrels["train_evidence"])
        key = (system["name"], system["depth"])
        per_query[key] = {"test": test_scores["ndcg@10"], "train": cited["ndcg@10"]}
        row = {
            "system": system["name"],
            "depth": system["depth"],
            "params": system["params"],
            "test_ndcg@10": float(test_scores["ndcg@10"].mean()),
            "test_recall@100": float(test_scores["recall@100"].mean()),
            "test_min_docs_ranked": test_scores["min_docs_ranked"],
            "train_ndcg@10": float(cited["ndcg@10"].mean()),
            "train_recall@100": float(cited["recall@100"].mean()),
            "train_evidence_ndcg@10": float(evidence["ndcg@10"].mean()),
            "seconds": seconds,
        }
        rows.append(row)
        print(
            f"  {row['depth']:7s} {row['system']:26s} test nDCG@10 {row['test_ndcg@10']:.4f} "
            f"R@100 {row['test_recall@100']:.4f} | train nDCG@10 {row['train_ndcg@10']:.4f} "
            f"(evidence {row['train_evidence_ndcg@10']:.4f}) [{seconds:.0f} s]",
            flush=True,
        )

    def row_of(name: str, depth: str) -> dict[str, Any]:
        return next(r for r in rows if r["system"] == name and r["depth"] == depth)

    hybrids = [r for r in rows if r["system"].startswith("hybrid") and r["depth"] == "default"]
    chosen = max(hybrids, key=lambda r: r["train_ndcg@10"])
    shipped_fusion = base.config.fusion.value
    shipped_name = f"hybrid-{shipped_fusion}-w{base.config.bm25_weight}"
    comparisons = {}
    for label, name in (("chosen_on_train", chosen["system"]), ("shipped_default", shipped_name)):
        entry = {"system": name}
        for depth in ("default", "deep"):
            for single in ("bm25", "dense"):
                for split in ("test", "train"):
                    entry[f"{depth}_vs_{single}_{split}"] = paired(
                        per_query[(name, depth)][split], per_query[(single, depth)][split]
                    )
        comparisons[label] = entry
    chosen_vs_shipped = {
        split: paired(
            per_query[(chosen["system"], "default")][split],
            per_query[(shipped_name, "default")][split],
        )
        for split in ("train", "test")
    }
    identical_rankings = [
        f"{a}-w{w} == {b}-w{w} ({depth} depth)"
        for a, b in (("hybrid-convex_zscore", "hybrid-dbsf"),)
        for w in BM25_WEIGHTS
        for depth in ("default", "deep")
        if all(
            np.array_equal(
                per_query[(f"{a}-w{w}", depth)][split], per_query[(f"{b}-w{w}", depth)][split]
            )
            for split in ("test", "train")
        )
    ]

    reranked = {}
    for label, name in (("shipped_default", shipped_name), ("chosen_on_train", chosen["system"])):
        params = row_of(name, "default")["params"]
        retriever = base.with_params(**params)
        rankings = run_system(pipe, retriever, queries["test"], keep_reranked=True)
        test_scores = scores_of(rankings, qrels["test"])
        rankings = run_system(pipe, retriever, queries["train"], keep_reranked=True)
        train_scores = scores_of(rankings, qrels["train_cited"])
        reranked[label] = {
            "system": name,
            "reranker": pipe.stages["reranker"].to_dict(),
            "test_ndcg@10": float(test_scores["ndcg@10"].mean()),
            "train_ndcg@10": float(train_scores["ndcg@10"].mean()),
            "test_vs_retriever_only": paired(
                test_scores["ndcg@10"], per_query[(name, "default")]["test"]
            ),
        }
        print(f"  reranked {label}: test nDCG@10 {reranked[label]['test_ndcg@10']:.4f}")

    import faiss
    import torch

    result = {
        "dataset": "SciFact (BEIR test qrels; train claims' cited documents for tuning)",
        "index": {
            "chunks": len(pipe.index),
            "documents": pipe.index.n_documents,
            **index_info,
            "embedding_model": pipe.embedder.fingerprint,
        },
        "queries": {
            "test": len(qrels["test"]),
            "train_cited": len(qrels["train_cited"]),
            "train_evidence": len(qrels["train_evidence"]),
        },
        "query_embedding_seconds": embed_seconds,
        "depths": {"deep": [DEEP, DEEP, DEEP], "default": [DEFAULT_DEPTH, DEFAULT_DEPTH, 50]},
        "shipped_default": {"retriever": base.to_dict(), "system": shipped_name},
        "chosen_on_train": chosen,
        "comparisons": comparisons,
        "chosen_vs_shipped_default_depth": chosen_vs_shipped,
        "identical_per_query_ndcg": identical_rankings,
        "reranked": reranked,
        "rows": rows,
        "embedding_truncation": truncation_check(pipe),
        "environment": environment(
            numpy=np.__version__, faiss=faiss.__version__, torch=torch.__version__
        ),
    }
    markdown = write_results(RESULTS, "retrieval_scifact", result, render_markdown)
    print(f"chosen on train: {chosen['system']}; wrote {markdown}")
    return 0


def _ci(entry: dict[str, Any]) -> str:
    low, high = entry["ci95"]
    return (
        f"{entry['mean_difference']:+.4f} [{low:+.4f}, {high:+.4f}] "
        f"({entry['queries_better']}+/{entry['queries_worse']}-)"
    )


def render_markdown(r: dict) -> str:
    rows = r["rows"]

    def find(name: str, depth: str) -> dict[str, Any]:
        return next(x for x in rows if x["system"] == name and x["depth"] == depth)

    chosen = r["chosen_on_train"]
    shipped = r["shipped_default"]["system"]
    lines = [
        "# Hybrid retrieval on SciFact",
        "",
        f"{r['index']['documents']} abstracts as {r['index']['chunks']} chunks; "
        f"{r['queries']['test']} test claims (BEIR qrels), {r['queries']['train_cited']} train "
        "claims judged by their cited documents (how BEIR built the test qrels) for choosing "
        f"fusion and weights; {r['queries']['train_evidence']} train claims with rationale "
        "evidence also scored against `gold_doc_ids`. Document level: a document's score is "
        "its best chunk. Generated by `python benchmarks/bench_retrieval.py`.",
        "",
        f"Depths: deep = {r['depths']['deep'][0]} chunks per retriever, top "
        f"{r['depths']['deep'][2]} fused (recall@100 needs >= 100 documents; the shortest list "
        f"had {min(x['test_min_docs_ranked'] for x in rows if x['depth'] == 'deep')}); "
        f"default = the shipped {r['depths']['default'][0]} + {r['depths']['default'][1]}, "
        f"top {r['depths']['default'][2]}.",
        "",
        "## Headline (test)",
        "",
        "| system | nDCG@10 (default depth) | nDCG@10 (deep) | recall@100 (deep) |",
        "|---|---|---|---|",
    ]
    headline = ["bm25", "dense", *(f"hybrid-{f}-w0.5" for f in FUSIONS)]
    if chosen["system"] not in headline:
        headline.append(chosen["system"])
    for name in headline:
        default, deep = find(name, "default"), find(name, "deep")
        marks = []
        if name == shipped:
            marks.append("shipped default")
        if name == chosen["system"]:
            marks.append("chosen on train")
        label = f"{name} ({', '.join(marks)})" if marks else name
        lines.append(
            f"| {label} | {default['test_ndcg@10']:.4f} | {deep['test_ndcg@10']:.4f} | "
            f"{deep['test_recall@100']:.4f} |"
        )
    lines += [
        "",
        "## Does hybrid beat both single retrievers? (paired per-query nDCG@10 difference, "
        "95% bootstrap CI, queries better+/worse-)",
        "",
        "| hybrid | depth | split | vs BM25 | vs dense |",
        "|---|---|---|---|---|",
    ]
    for label, entry in r["comparisons"].items():
        for depth in ("default", "deep"):
            for split in ("test", "train"):
                lines.append(
                    f"| {entry['system']} ({label.replace('_', ' ')}) | {depth} | {split} | "
                    f"{_ci(entry[f'{depth}_vs_bm25_{split}'])} | "
                    f"{_ci(entry[f'{depth}_vs_dense_{split}'])} |"
                )
    cvs = r["chosen_vs_shipped_default_depth"]
    lines += [
        "",
        f"Chosen on train ({chosen['system']}) minus shipped default ({shipped}), default depth: "
        f"train {_ci(cvs['train'])}, test {_ci(cvs['test'])}.",
    ]
    if r["identical_per_query_ndcg"]:
        lines += [
            "",
            "`dbsf` and `convex_zscore` gave identical per-query nDCG@10 on both splits in "
            f"{len(r['identical_per_query_ndcg'])} of {2 * len(BM25_WEIGHTS)} (weight, depth) "
            "configurations. `dbsf` maps each retriever's scores by an affine function of "
            "their z-score (`(s - mean + 3 std) / 6 std`), and every candidate is scored by "
            "both retrievers, so a weighted sum of DBSF scores is a constant plus 1/6 of the "
            "z-score sum: the same ranking as `convex_zscore` for any weights.",
        ]
    lines += [
        "",
        "## After the default reranker (EmbeddingReranker on the top 50)",
        "",
        "| retriever | test nDCG@10 | train nDCG@10 | test gain over retriever alone |",
        "|---|---|---|---|",
    ]
    for entry in r["reranked"].values():
        lines.append(
            f"| {entry['system']} | {entry['test_ndcg@10']:.4f} | {entry['train_ndcg@10']:.4f} | "
            f"{_ci(entry['test_vs_retriever_only'])} |"
        )
    lines += [
        "",
        "## All configurations",
        "",
        "| system | depth | test nDCG@10 | test recall@100 | train nDCG@10 | train recall@100 "
        "| train nDCG@10 (evidence qrels) |",
        "|---|---|---|---|---|---|---|",
    ]
    for x in rows:
        deep = x["depth"] == "deep"
        test_recall = f"{x['test_recall@100']:.4f}" if deep else "n/a (50 chunks)"
        train_recall = f"{x['train_recall@100']:.4f}" if deep else "n/a (50 chunks)"
        lines.append(
            f"| {x['system']} | {x['depth']} | {x['test_ndcg@10']:.4f} | {test_recall} | "
            f"{x['train_ndcg@10']:.4f} | {train_recall} | {x['train_evidence_ndcg@10']:.4f} |"
        )
    t = r["embedding_truncation"]
    env = r["environment"]
    lines += [
        "",
        f"hybrid-<fusion>-w<x>: bm25_weight x, dense_weight 1 - x, rrf_k {RRF_K:g}.",
        "",
        f"Embedding input limit: {t['chunks_over_limit']} of {t['chunks']} indexed chunk texts "
        f"({100 * t['share_over_limit']:.1f}%) exceed the model's {t['model_token_limit']}-token "
        f"input (p95 {t['p95_model_tokens']:.0f}, max {t['max_model_tokens']} model tokens); "
        "their tails are not embedded.",
        "",
        *footer(env, "numpy", "faiss", "torch"),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
