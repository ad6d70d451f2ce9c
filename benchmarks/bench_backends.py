"""Quality of the whole pipeline per embedding backend: the ``ragtrim bench`` headline on the
bundled corpus and every ``../shared`` data set, and SciFact nDCG@10, torch fp32 vs ONNX.

Run from the repository root: ``python benchmarks/bench_backends.py`` (``--backends`` to pick).
Writes ``benchmarks/results/backends.{json,md}``. Each backend ingests each corpus itself
(its vectors have their own fingerprint, so no index or cache is shared between backends); the
bench indexes are kept under the cache dir, so a re-run only queries. Every bench run is the
README's: the committed sweep, the test half of ``ragtrim tune``'s split, the same limits.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from _provenance import environment, footer, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
SWEEP = REPO / "benchmarks" / "configs" / "sweep.yaml"
#: name -> (path, answerable only, query limit), as in benchmarks/README.md's bench commands
DATASETS: dict[str, tuple[Path, bool, int | None]] = {
    "kestrel": (REPO / "corpora" / "kestrel", False, None),
    "squad2-dev-half": (SHARED / "squad2-dev-half", True, 600),
    "hotpotqa-dev-300": (SHARED / "hotpotqa-dev-300", False, None),
    "covid-qa": (SHARED / "covid-qa", False, 400),
    "pubmedqa-l": (SHARED / "pubmedqa-l", False, 300),
    "scifact": (SHARED / "scifact", False, None),
}
BACKENDS: dict[str, dict[str, Any]] = {
    "torch-fp32": {},  # the default config's own embedder
    "onnx-fp32": {"type": "OnnxEmbedder", "init_parameters": {"precision": "fp32"}},
    "onnx-int8": {"type": "OnnxEmbedder", "init_parameters": {"precision": "int8"}},
}
DEFAULT_SYSTEM = "ragtrim"
NAIVE = "naive-hybrid-top5"
SEED = 0


def backend_config(backend: str) -> dict[str, Any]:
    """The default pipeline's config with only the embedder swapped."""
    from ragtrim import Pipeline

    config = copy.deepcopy(Pipeline.default().to_config())
    if BACKENDS[backend]:
        config["stages"]["embedder"] = copy.deepcopy(BACKENDS[backend])
    return config


def bench_one(name: str, backend: str, out: Path) -> dict[str, Any]:
    from ragtrim.bench.runner import run_benchmark

    path, answerable_only, limit = DATASETS[name]
    started = time.perf_counter()
    run_benchmark(
        path,
        out,
        config=backend_config(backend),
        sweep=SWEEP,
        limit=limit,
        seed=SEED,
        answerable_only=answerable_only,
        half="test",
    )
    result = json.loads((out / "results.json").read_text(encoding="utf-8"))
    metric, summary = result["metric"], result["summary"]

    def point(system: str) -> dict[str, Any]:
        row = summary[system]
        return {"context_tokens": row["context_tokens"], "quality": row[metric]["mean"]}

    return {
        "metric": metric,
        "queries": result["dataset"]["queries"],
        "headline": result["headline"],
        "default": point(DEFAULT_SYSTEM),
        "naive": point(NAIVE),
        "cap_250": point("ragtrim[cap=250]"),
        "index": result["index"],
        "seconds": round(time.perf_counter() - started, 1),
    }


def scifact_ndcg(backend: str) -> dict[str, Any] | None:
    """The pipeline's document ranking (hybrid retrieval + reranker) on all SciFact test claims
    with qrels, nDCG@10 and recall@100 (the retriever's depth caps recall at its top_k)."""
    from ragtrim.bench.engine import prepared, query_candidates
    from ragtrim.bench.metrics import ndcg_at_k

    path = DATASETS["scifact"][0]
    dataset, pipe, _ = prepared(path, backend_config(backend), False, None, SEED)
    qrels = dataset.qrels or {}
    scores = []
    for query in dataset.queries:
        if query.id not in qrels:
            continue
        _, candidates, _, _ = query_candidates(pipe, pipe.stages, query)
        ranking = list(dict.fromkeys(c.chunk.doc_id for c in candidates))
        scores.append(ndcg_at_k(ranking, qrels[query.id], 10))
    return {"claims": len(scores), "ndcg@10": float(np.mean(scores)), "per_claim": scores}


def paired_ci(a: list[float], b: list[float], seed: int = SEED) -> tuple[float, float, float]:
    """Mean of b - a and its 95% bootstrap interval over claims."""
    diff = np.asarray(b) - np.asarray(a)
    rng = np.random.default_rng(seed)
    means = rng.choice(diff, size=(2000, diff.size), replace=True).mean(axis=1)
    return float(diff.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def render(result: dict[str, Any]) -> str:
    backends = result["backends"]
    lines = ["# The whole pipeline per embedding backend", ""]
    lines += [__doc__.split("\n\n", 1)[1].strip(), ""]
    lines += [
        "## Bench headline and the default system, test halves",
        "",
        "| data set | metric | backend | default: tokens / quality | naive hybrid top-5: "
        "tokens / quality | cap 250: tokens / quality | headline token ratio | ingest s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in result["datasets"]:
        for backend in backends:
            row = result["runs"].get(backend, {}).get(name)
            if row is None:
                continue
            head = row["headline"]
            ratio = (
                f"{head['token_ratio']:.2f}x"
                if head.get("reached") and head.get("token_ratio")
                else "not reached"
            )
            ingest = row["index"].get("ingest_seconds")
            lines.append(
                f"| {name} | {row['metric'].replace('_', ' ')} | {backend} | "
                f"{row['default']['context_tokens']:.0f} / {row['default']['quality']:.3f} | "
                f"{row['naive']['context_tokens']:.0f} / {row['naive']['quality']:.3f} | "
                f"{row['cap_250']['context_tokens']:.0f} / {row['cap_250']['quality']:.3f} | "
                f"{ratio} | {'reused' if ingest is None else f'{ingest:.0f}'} |"
            )
    lines += ["", "## Default-system quality against torch fp32 (points)", ""]
    others = [b for b in backends if b != "torch-fp32"]
    lines += [
        "| data set | " + " | ".join(others) + " |",
        "|---" * (len(others) + 1) + "|",
    ]
    torch_runs = result["runs"].get("torch-fp32", {})
    for name in result["datasets"]:
        if name not in torch_runs:
            continue
        cells = []
        for backend in others:
            row = result["runs"].get(backend, {}).get(name)
            base = torch_runs[name]["default"]["quality"]
            cells.append(
                "n/a" if row is None else f"{100 * (row['default']['quality'] - base):+.1f}"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    ndcg = result.get("scifact_ndcg") or {}
    if ndcg:
        lines += [
            "",
            "## SciFact nDCG@10, the pipeline's document ranking (all test claims with qrels)",
            "",
        ]
        lines += ["| backend | claims | nDCG@10 | vs torch fp32 (95% CI) |", "|---|---|---|---|"]
        base = ndcg.get("torch-fp32")
        for backend, row in ndcg.items():
            versus = "(reference)"
            if base is not None and backend != "torch-fp32":
                mean, low, high = paired_ci(base["per_claim"], row["per_claim"])
                versus = f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]"
            lines.append(f"| {backend} | {row['claims']} | {row['ndcg@10']:.4f} | {versus} |")
    lines += [
        "",
        f"Generated in {result['seconds']:.0f} s (load average at the end "
        f"{result['load_average']}: ingestion seconds are not a speed measurement; "
        "`bench_embedders.py` is).",
        "",
    ]
    lines += footer(result["environment"], "torch", "onnxruntime", "sentence_transformers")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    args = parser.parse_args()
    started = time.perf_counter()
    # provenance first: the code that runs is the code at the start
    env = environment(
        **{name: version(name) for name in ("torch", "onnxruntime", "sentence_transformers")}
    )
    present = [n for n in args.datasets if DATASETS[n][0].exists()]
    runs: dict[str, dict[str, Any]] = {}
    ndcg: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in present:
            for backend in args.backends:
                print(f"{name} / {backend}", flush=True)
                runs.setdefault(backend, {})[name] = bench_one(
                    name, backend, Path(scratch) / backend / name
                )
                print(f"  {runs[backend][name]['default']}", flush=True)
    if "scifact" in present:
        for backend in args.backends:
            ndcg[backend] = scifact_ndcg(backend)
            print(f"scifact nDCG@10 {backend}: {ndcg[backend]['ndcg@10']:.4f}", flush=True)
    result = {
        "backends": args.backends,
        "datasets": present,
        "runs": runs,
        "scifact_ndcg": ndcg,
        "seconds": time.perf_counter() - started,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "environment": env,
    }
    write_results(REPO / "benchmarks" / "results", "backends", result, render)


if __name__ == "__main__":
    main()
