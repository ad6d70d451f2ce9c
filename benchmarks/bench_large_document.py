"""Ingesting one very large document: time and peak memory of chunking and indexing.

Run from the repository root: ``python benchmarks/bench_large_document.py`` (``--sizes 5 10
25 50`` sets the document sizes in MB). Writes ``benchmarks/results/large_document.json`` and
``.md``.

The document is the bundled Kestrel corpus (real Markdown: headings, prose, lists, tables,
code) repeated up to the target size, each repetition under its own heading and with a
numbered reference sentence appended to every prose paragraph, so chunks do not repeat.

Only ingestion is measured, not a model: the embedder is a ``CallableEmbedder`` returning
cheap deterministic 16-dimensional vectors, and the embedding cache is off. So ``seconds``
is the full ``Pipeline.ingest`` (structure-aware chunking with exact o200k_base token counts,
BM25 tokenisation and stemming, sparse matrix and FAISS inserts, sentence spans) plus one
query afterwards. Phase times come from the ingest progress callback.

Every size runs in a fresh subprocess so that peak RSS (``resource.getrusage``) belongs to
that case alone; ``rss_document_mb`` is the peak after the document string is built, before
ingestion, so ``peak_rss_mb - rss_document_mb`` is what ingestion added.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from importlib.metadata import version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
KESTREL = REPO / "corpora" / "kestrel" / "corpus.jsonl"
RESULTS = REPO / "benchmarks" / "results"
DIMENSION = 16
QUERIES = (
    "Which port does the Relay admin API listen on?",
    "How long does Relay keep message data?",
)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (``ru_maxrss`` is KiB on Linux)."""
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def build_document(megabytes: float) -> str:
    """Kestrel Markdown repeated to ``megabytes`` (UTF-8), every repetition distinct."""
    with KESTREL.open(encoding="utf-8") as handle:
        paragraphs = [p for line in handle for p in json.loads(line)["text"].split("\n\n")]
    target = int(megabytes * 2**20)
    parts: list[str] = []
    size = 0
    repetition = 0
    while size < target:
        parts.append(f"# Part {repetition}")
        for number, paragraph in enumerate(paragraphs):
            prose = paragraph[:1].isalpha()
            parts.append(f"{paragraph} Reference {repetition}.{number}." if prose else paragraph)
            size += len(parts[-1].encode("utf-8")) + 2
            if size >= target:
                break
        repetition += 1
    return "\n\n".join(parts)


def cheap_vectors(texts: list[str]) -> Any:
    import numpy as np

    rows = np.zeros((len(texts), DIMENSION), dtype=np.float32)
    for i, text in enumerate(texts):
        rows[i, len(text) % DIMENSION] = 1.0
        rows[i, zlib.crc32(text[:64].encode("utf-8", "surrogatepass")) % DIMENSION] += 0.5
    return rows


def run_case(megabytes: float) -> dict[str, Any]:
    """One size, in this process (called in a fresh subprocess by ``main``)."""
    from ragtrim.config import PipelineConfig, StageSpec
    from ragtrim.embedding.models import CallableEmbedder
    from ragtrim.pipeline import Pipeline, default_stages

    started = time.perf_counter()
    text = build_document(megabytes)
    build_seconds = time.perf_counter() - started
    rss_document = peak_rss_mb()

    with tempfile.TemporaryDirectory() as cache_dir:
        stages = {slot: StageSpec(**stage.to_dict()) for slot, stage in default_stages().items()}
        config = PipelineConfig(stages=stages).model_dump(mode="json")
        config["cache"].update(directory=cache_dir, embeddings=False, retrieval=False)
        pipe = Pipeline(
            config, embedder=CallableEmbedder(cheap_vectors, name="cheap", dimension=DIMENSION)
        )

        phases: dict[str, float] = {}
        clock = time.perf_counter()

        def progress(task: str, done: int, total: int) -> None:
            if done >= total and task not in phases:
                phases[task] = round(time.perf_counter() - clock, 3)

        rss_before = peak_rss_mb()
        clock = time.perf_counter()
        stats = pipe.ingest([{"id": "large", "text": text}], progress=progress)
        ingest_seconds = time.perf_counter() - clock
        rss_after_ingest = peak_rss_mb()

        query_seconds = []
        for question in QUERIES:
            clock = time.perf_counter()
            result = pipe.run(question, budget=400)
            query_seconds.append(time.perf_counter() - clock)

    chunks = pipe.index.chunks
    assert all(text[c.start : c.end] == c.text for c in chunks[:: max(1, len(chunks) // 2000)])
    assert max(c.token_count for c in chunks) <= 256
    assert result.tokens.prompt <= 400
    return {
        "megabytes": megabytes,
        "bytes": len(text.encode("utf-8")),
        "characters": len(text),
        "chunks": stats.chunks,
        "sentences": stats.sentences,
        "tokens": stats.tokens,
        "build_document_seconds": round(build_seconds, 3),
        "ingest_seconds": round(ingest_seconds, 3),
        "seconds_per_mb": round(ingest_seconds / megabytes, 3),
        "phase_seconds": phases,
        "dense_index": pipe.index.dense.resolved_kind if pipe.index.dense else None,
        "first_query_seconds": round(query_seconds[0], 3),
        "query_seconds": round(query_seconds[1], 3),
        "rss_document_mb": round(rss_document, 1),
        "rss_before_ingest_mb": round(rss_before, 1),
        "peak_rss_mb": round(rss_after_ingest, 1),
        "ingest_rss_mb": round(rss_after_ingest - rss_before, 1),
        "ingest_rss_per_document_mb": round((rss_after_ingest - rss_before) / megabytes, 2),
    }


def markdown(results: dict[str, Any]) -> str:
    rows = results["cases"]
    lines = [
        "# Ingesting one large document",
        "",
        "One document of N MB (the Kestrel corpus repeated, every repetition distinct), ingested",
        "by the default pipeline with a cheap callable embedder (16-d vectors, embedding cache",
        "off): chunking, exact token counts, BM25 tokenisation and indexing, FAISS inserts.",
        "Each size in a fresh process; RSS from `resource.getrusage`.",
        f"Machine: {results['machine']}; Python {results['python']}; ragtrim {results['ragtrim']}.",
        "",
        "| MB | chunks | sentences | tokens | ingest s | s/MB | chunking s | indexing s "
        "| dense | 1st query s | query s | RSS before MB | peak RSS MB | added MB/doc MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        phases = r["phase_seconds"]
        indexing = phases.get("indexing", 0) - phases.get("embedding sentences", 0)
        lines.append(
            f"| {r['megabytes']:g} | {r['chunks']:,} | {r['sentences']:,} | {r['tokens']:,} "
            f"| {r['ingest_seconds']:.1f} | {r['seconds_per_mb']:.2f} "
            f"| {phases.get('chunking', 0):.1f} | {indexing:.1f} | {r['dense_index']} "
            f"| {r['first_query_seconds']:.3f} | {r['query_seconds']:.3f} "
            f"| {r['rss_before_ingest_mb']:.0f} | {r['peak_rss_mb']:.0f} "
            f"| {r['ingest_rss_per_document_mb']:.1f} |"
        )
    first, last = rows[0], rows[-1]
    growth = last["ingest_seconds"] / first["ingest_seconds"]
    size_ratio = last["megabytes"] / first["megabytes"]
    lines += [
        "",
        f"Time from {first['megabytes']:g} MB to {last['megabytes']:g} MB grows {growth:.1f}x for "
        f"{size_ratio:.0f}x the text ({growth / size_ratio:.2f} of linear); memory added by "
        f"ingestion stays at {min(r['ingest_rss_per_document_mb'] for r in rows):.1f}-"
        f"{max(r['ingest_rss_per_document_mb'] for r in rows):.1f} MB per MB of document.",
        "Above 50,000 chunks the dense index switches to HNSW (`index.dense_index: auto`); FAISS",
        "builds the graph lazily, so the first query pays for it (`1st query s`).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[5, 10, 25, 50])
    parser.add_argument("--case", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case is not None:
        print(json.dumps(run_case(args.case)))
        return
    cases = []
    for megabytes in args.sizes:
        completed = subprocess.run(
            [sys.executable, __file__, "--case", str(megabytes)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        case = json.loads(completed.stdout.strip().splitlines()[-1])
        print(
            f"{megabytes:g} MB: {case['ingest_seconds']:.1f} s, {case['chunks']} chunks, "
            f"peak RSS {case['peak_rss_mb']:.0f} MB",
            flush=True,
        )
        cases.append(case)
    results = {
        "benchmark": "large_document",
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, 2 cores shared",
        "python": platform.python_version(),
        "ragtrim": version("ragtrim"),
        "embedder": f"CallableEmbedder, {DIMENSION}-d cheap vectors; embedding cache off",
        "cases": cases,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "large_document.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "large_document.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
