"""Ingestion on SciFact: cold vs warm (embedding cache) speed, incremental upserts, save, load.

Run from the repository root: ``python benchmarks/bench_ingest.py``. Reads
``<repo>/../shared/datasets/scifact`` (skips with a message when absent) and writes
``benchmarks/results/ingest_scifact.json`` and ``.md``. Scratch files (embedding cache, saved
index) go to ``benchmarks/.work/ingest/`` (git-ignored); the saved index is reused by
``bench_retrieval.py`` and ``bench_latency.py``.

- Pipeline: the default config (StructureChunker 192/256 tokens, real all-MiniLM-L6-v2 from the
  offline package, chunk + sentence embeddings, BM25 + FAISS), ``cache.directory`` pointed at
  the scratch folder, which is deleted first so the cold run starts from an empty cache.
- Torch threads: a probe embeds the same 512 texts with 1 and with 2 intra-op threads
  (interleaved, twice each) and the cold run uses the faster setting (``--torch-threads`` forces
  one). On a shared 2-core machine a second thread often loses to OpenMP spin-waits.
- Cold: ``ingest`` of the 5,183 abstracts on a fresh ``Pipeline`` (model load included).
  Warm: a *new* ``Pipeline`` on the same cache directory ingests the same documents; every
  vector must come from the cache (``pipe.embedder.model_calls == 0``). The warm run still
  chunks, reads ~56k cached vectors and builds BM25 and FAISS.
- Incremental: 50 seeded documents get one appended sentence and are upserted alone, then a
  full-corpus re-sync where the same 50 changed again (5,133 unchanged).
- Save (atomic folder, checksummed), size on disk per chunk, and ``Pipeline.load`` (median of
  5) plus resident memory, measured in a fresh Python process so that the numbers are not
  inflated by this one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from _provenance import environment, footer, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets" / "scifact"
RESULTS = REPO / "benchmarks" / "results"
WORK = REPO / "benchmarks" / ".work" / "ingest"
CHANGED_DOCS = 50
LOAD_REPEATS = 5
PROBE_TEXTS = 512
SEED = 0


def config_with_cache(cache_dir: Path) -> dict[str, Any]:
    from ragtrim.pipeline import Pipeline

    config = Pipeline().to_config()
    config["cache"]["directory"] = str(cache_dir)
    return config


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def rss_mb() -> float:
    """Current resident set size of this process, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("cannot read VmRSS from /proc/self/status")


class PhaseClock:
    """Progress callback recording when each ingestion task first and last reported."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self._printed: dict[str, int] = {}

    def __call__(self, task: str, done: int, total: int) -> None:
        now = time.perf_counter() - self.started
        self.first.setdefault(task, now)
        self.last[task] = now
        decile = int(10 * done / total) if total else 10
        if self._printed.get(task, -1) < decile:
            self._printed[task] = decile
            print(f"    {now:7.1f}s {task}: {done}/{total}", flush=True)

    def phases(self) -> dict[str, float]:
        """Seconds attributed to each task: from the previous task's last report to its own."""
        out, previous = {}, 0.0
        for task in sorted(self.last, key=self.last.get):
            out[task] = round(self.last[task] - previous, 3)
            previous = self.last[task]
        return out


def probe_threads(documents, pipe_factory) -> dict[str, Any]:
    """Texts/s of the raw MiniLM (no cache) with 1 and 2 torch threads on the same texts."""
    import torch

    pipe = pipe_factory()
    chunks = [c for d in documents[:200] for c in pipe.chunk(d)]
    chunk_texts = [pipe.index.indexed_text(c) for c in chunks][: PROBE_TEXTS // 4]
    sentences = [c.text[a:b] for c in chunks for a, b in c.sentences]
    texts = chunk_texts + sentences[: PROBE_TEXTS - len(chunk_texts)]
    embedder = pipe.stages["embedder"]
    started = time.perf_counter()
    embedder.warm_up()
    model_load_seconds = time.perf_counter() - started
    embedder.embed(texts[:64])  # first call allocates; not timed
    runs: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(2):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            started = time.perf_counter()
            embedder.embed(texts)
            runs[threads].append(len(texts) / (time.perf_counter() - started))
            print(f"    probe: {threads} thread(s) {runs[threads][-1]:.1f} texts/s", flush=True)
    return {
        "texts": len(texts),
        "chunk_texts": len(chunk_texts),
        "sentence_texts": len(texts) - len(chunk_texts),
        "texts_per_second": {str(t): v for t, v in runs.items()},
        "mean_texts_per_second": {str(t): statistics.mean(v) for t, v in runs.items()},
        "model_load_seconds": model_load_seconds,
        "load_average": load_average(),
    }


def timed_ingest(pipe, documents) -> tuple[dict[str, Any], float]:
    clock = PhaseClock()
    before = (pipe.embedder.model_calls, pipe.embedder.hits, pipe.embedder.misses)
    load_before = load_average()
    started = time.perf_counter()
    stats = pipe.ingest(documents, progress=clock)
    seconds = time.perf_counter() - started
    record = {
        "seconds": seconds,
        "stats": asdict(stats),
        "model_calls": pipe.embedder.model_calls - before[0],
        "embedding_hits": pipe.embedder.hits - before[1],
        "embedding_misses": pipe.embedder.misses - before[2],
        "phases_seconds": clock.phases(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    if stats.chunks:
        record["chunks_per_second"] = stats.chunks / seconds
    return record, seconds


def revised(documents, chosen: set[str], revision: int):
    from ragtrim.types import Document

    suffix = f" This sentence was appended by the ingestion benchmark (revision {revision})."
    return [
        Document(id=d.id, text=d.text + suffix, metadata=d.metadata) if d.id in chosen else d
        for d in documents
    ]


def check_upsert(pipe, documents) -> None:
    """Every live chunk must be a slice of the current text of its document."""
    texts = {d.id: d.text for d in documents}
    live = [c for c, alive in zip(pipe.index.chunks, pipe.index.alive, strict=True) if alive]
    stale = [c.id for c in live if texts[c.doc_id][c.start : c.end] != c.text]
    if stale or pipe.index.n_documents != len(documents):
        raise SystemExit(
            f"upsert check failed: {len(stale)} stale live chunks, "
            f"{pipe.index.n_documents} live documents for {len(documents)}"
        )


def directory_size(directory: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        parts = path.relative_to(directory).parts
        name = "/".join(parts[1:]) if parts[0].startswith("data-") else "/".join(parts)
        sizes[name] = path.stat().st_size
    return sizes


def load_probe(index_dir: Path) -> None:
    """Run in a fresh process: RSS before and after ``Pipeline.load``, and load times."""
    import gc

    from ragtrim.pipeline import Pipeline

    baseline = rss_mb()
    seconds = []
    rss_after_first = None
    pipe = None
    for _ in range(LOAD_REPEATS):
        pipe = None
        gc.collect()
        started = time.perf_counter()
        pipe = Pipeline.load(index_dir)
        seconds.append(time.perf_counter() - started)
        if rss_after_first is None:
            rss_after_first = rss_mb()
    rss_after = rss_mb()
    started = time.perf_counter()
    pipe.warm_up()
    warm_up_seconds = time.perf_counter() - started
    index = pipe.index
    print(
        json.dumps(
            {
                "load_seconds": seconds,
                "load_seconds_median": statistics.median(seconds),
                "rss_mb_after_imports": baseline,
                "rss_mb_after_first_load": rss_after_first,
                "rss_mb_after_repeated_loads": rss_after,
                "rss_mb_after_model_warm_up": rss_mb(),
                "warm_up_seconds": warm_up_seconds,
                "chunks": len(index),
                "documents": index.n_documents,
                "in_memory_bytes": {
                    "chunk_vectors": int(index.dense.vectors.nbytes),
                    "sentence_vectors": int(index.sentence_vectors.nbytes),
                    "bm25": int(index.bm25.nbytes),
                },
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-threads", choices=("auto", "1", "2"), default="auto")
    parser.add_argument(
        "--limit", type=int, help="smoke test on the first N documents (results stay in .work)"
    )
    parser.add_argument("--load-probe", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_probe:
        load_probe(args.load_probe)
        return 0
    if not (DATA / "corpus.jsonl").is_file():
        print(f"SciFact not found at {DATA}; skipping the ingestion benchmark")
        return 0

    import torch

    from ragtrim.bench.datasets import load_dataset
    from ragtrim.pipeline import Pipeline

    dataset = load_dataset(DATA)
    documents = dataset.documents[: args.limit] if args.limit else dataset.documents
    work = WORK / "smoke" if args.limit else WORK
    cache_dir, index_dir = work / "cache", work / "index"
    results = work if args.limit else RESULTS
    print(f"SciFact: {len(documents)} documents; scratch folder {work}", flush=True)
    if cache_dir.exists():
        shutil.rmtree(cache_dir)
    work.mkdir(parents=True, exist_ok=True)
    config = config_with_cache(cache_dir)

    print("torch threads probe (raw model, no cache):", flush=True)
    probe = probe_threads(documents, lambda: Pipeline(config))
    if args.torch_threads == "auto":
        means = probe["mean_texts_per_second"]
        threads = int(max(means, key=means.get))
    else:
        threads = int(args.torch_threads)
    torch.set_num_threads(threads)
    print(f"cold ingestion with {threads} torch thread(s):", flush=True)

    shutil.rmtree(cache_dir, ignore_errors=True)  # the probe used no cache; be sure anyway
    cold_pipe = Pipeline(config)
    cold, cold_seconds = timed_ingest(cold_pipe, documents)
    print(f"  cold: {cold['stats']['chunks']} chunks in {cold_seconds:.1f} s", flush=True)

    if index_dir.exists():
        shutil.rmtree(index_dir)
    started = time.perf_counter()
    cold_pipe.save(index_dir)
    save_seconds = time.perf_counter() - started
    manifest = json.loads((index_dir / "manifest.json").read_text())
    chunks = manifest["counts"]["chunks"]
    sizes = directory_size(index_dir)
    total_bytes = sum(sizes.values())
    del cold_pipe

    print("warm re-ingestion (new Pipeline, same cache):", flush=True)
    warm_pipe = Pipeline(config)
    warm, warm_seconds = timed_ingest(warm_pipe, documents)
    print(f"  warm: {warm_seconds:.1f} s, model calls {warm_pipe.embedder.model_calls}", flush=True)

    chosen = set(random.Random(SEED).sample([d.id for d in documents], CHANGED_DOCS))
    revision_2 = revised(documents, chosen, 2)
    only_changed, _ = timed_ingest(warm_pipe, [d for d in revision_2 if d.id in chosen])
    check_upsert(warm_pipe, revision_2)
    revision_3 = revised(documents, chosen, 3)
    full_resync, _ = timed_ingest(warm_pipe, revision_3)
    check_upsert(warm_pipe, revision_3)
    print(
        f"  upsert {CHANGED_DOCS} changed: {only_changed['seconds']:.2f} s "
        f"({only_changed['model_calls']} model calls); full re-sync "
        f"{full_resync['seconds']:.2f} s ({full_resync['model_calls']} model calls)",
        flush=True,
    )
    del warm_pipe

    probe_run = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--load-probe", str(index_dir)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    loading = json.loads(probe_run.stdout.strip().splitlines()[-1])
    print(f"  load (median of {LOAD_REPEATS}): {loading['load_seconds_median']:.3f} s", flush=True)

    ratio = warm["chunks_per_second"] / cold["chunks_per_second"]
    result = {
        "dataset": "SciFact corpus (5,183 abstracts)",
        "documents": len(documents),
        "chunks": chunks,
        "sentences": manifest["counts"]["sentences"],
        "tokens": manifest["counts"]["tokens"],
        "embedding_model": manifest["embedding_model"],
        "torch_threads": {"used": threads, "choice": args.torch_threads, "probe": probe},
        "cold": cold,
        "warm": warm,
        "headline": {
            "cold_chunks_per_second": cold["chunks_per_second"],
            "warm_chunks_per_second": warm["chunks_per_second"],
            "warm_over_cold_speed": ratio,
            "target_warm_over_cold_speed": 20,
            "warm_model_calls": warm["model_calls"],
            "target_warm_model_calls": 0,
        },
        "incremental": {
            "changed_documents": CHANGED_DOCS,
            "upsert_changed_only": only_changed,
            "full_corpus_resync": full_resync,
        },
        "save_seconds": save_seconds,
        "disk": {
            "total_bytes": total_bytes,
            "bytes_per_chunk": total_bytes / chunks,
            "files": sizes,
        },
        "load": loading,
        "environment": environment(
            torch=torch.__version__, numpy=np.__version__, cpus=os.cpu_count()
        ),
    }
    markdown = write_results(results, "ingest_scifact", result, render_markdown)
    print(f"warm/cold = x{ratio:.1f}; wrote {markdown}")
    return 0


def render_markdown(r: dict) -> str:
    h, cold, warm = r["headline"], r["cold"], r["warm"]
    inc, disk, load = r["incremental"], r["disk"], r["load"]
    probe = r["torch_threads"]["probe"]
    one, two = (inc["upsert_changed_only"], inc["full_corpus_resync"])
    lines = [
        "# Ingestion on SciFact",
        "",
        f"{r['documents']} abstracts -> {r['chunks']} chunks, {r['sentences']} sentences, "
        f"{r['tokens']} tokens (default config; chunk and sentence vectors from "
        f"`{r['embedding_model']}`). Generated by `python benchmarks/bench_ingest.py` on "
        f"{r['environment']['cpus']} CPU cores shared with other work (load averages below).",
        "",
        "## Headline",
        "",
        "| metric | value | target |",
        "|---|---|---|",
        f"| cold ingestion (empty embedding cache) | {h['cold_chunks_per_second']:.1f} chunks/s "
        f"({cold['seconds']:.1f} s) | |",
        f"| warm re-ingestion (new Pipeline, same cache) | {h['warm_chunks_per_second']:.1f} "
        f"chunks/s ({warm['seconds']:.1f} s) | |",
        f"| warm / cold speed | x{h['warm_over_cold_speed']:.1f} | >= "
        f"x{h['target_warm_over_cold_speed']} |",
        f"| embedding model calls, warm run | {h['warm_model_calls']} "
        f"({warm['embedding_hits']} cache hits) | {h['target_warm_model_calls']} |",
        f"| upsert of {inc['changed_documents']} changed documents alone | "
        f"{one['seconds']:.2f} s, {one['model_calls']} model calls, "
        f"{one['embedding_misses']} texts embedded | |",
        f"| full-corpus re-sync, {inc['changed_documents']} changed | {two['seconds']:.2f} s, "
        f"{two['model_calls']} model calls, {two['stats']['unchanged']} unchanged skipped | |",
        f"| save (atomic, checksummed) | {r['save_seconds']:.2f} s | |",
        f"| index on disk | {disk['total_bytes'] / 1e6:.1f} MB = "
        f"{disk['bytes_per_chunk']:.0f} bytes/chunk | |",
        f"| `Pipeline.load` (median of {len(load['load_seconds'])}, fresh process) | "
        f"{load['load_seconds_median']:.3f} s | |",
        f"| RSS after imports / after load / after model warm-up | "
        f"{load['rss_mb_after_imports']:.0f} / {load['rss_mb_after_first_load']:.0f} / "
        f"{load['rss_mb_after_model_warm_up']:.0f} MB | |",
        "",
        "## Torch threads",
        "",
        f"Probe: the same {probe['texts']} texts ({probe['chunk_texts']} chunks, "
        f"{probe['sentence_texts']} sentences) embedded by the raw model, interleaved twice: "
        + ", ".join(
            f"{t} thread(s) {v:.1f} texts/s" for t, v in probe["mean_texts_per_second"].items()
        )
        + f" (load average {probe['load_average']}). The cold run used "
        f"**{r['torch_threads']['used']}** thread(s) ({r['torch_threads']['choice']}). "
        f"Model load: {probe['model_load_seconds']:.2f} s.",
        "",
        "## Phases (seconds; from the ingest progress callback)",
        "",
        "| run | " + " | ".join(cold["phases_seconds"]) + " | total | load avg before -> after |",
        "|---|" + "---|" * (len(cold["phases_seconds"]) + 2),
    ]
    for name, run in (("cold", cold), ("warm", warm)):
        lines.append(
            f"| {name} | "
            + " | ".join(f"{run['phases_seconds'].get(k, 0):.2f}" for k in cold["phases_seconds"])
            + f" | {run['seconds']:.2f} | {run['load_average_before']} -> "
            f"{run['load_average_after']} |"
        )
    lines += [
        "",
        "The warm run makes no model call and does not load the model: a fully cached embed "
        "no longer asks the model for its dimension (tested in "
        "`tests/embedding/test_embedding_cache.py`); its embedding phases are cache reads.",
        "",
        "## Index files",
        "",
        "| file | bytes | bytes/chunk |",
        "|---|---|---|",
        *(
            f"| {name} | {size} | {size / r['chunks']:.0f} |"
            for name, size in sorted(disk["files"].items(), key=lambda kv: -kv[1])
        ),
        "",
        "In memory after load: "
        + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in load["in_memory_bytes"].items())
        + ".",
        "",
        *footer(r["environment"], "torch", "numpy"),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
