"""Chunking throughput, memory and chunk-size quality.

Run from the repository root: ``python benchmarks/bench_chunking.py`` (``--mb 50`` sets the
synthetic document size). Writes ``benchmarks/results/chunking.json`` and ``.md``.

- A synthetic Markdown-ish document (headings, prose with abbreviations and numbers, lists,
  fenced code, tables, the odd spaceless blob and run-on paragraph; accented Latin and CJK),
  generated deterministically, chunked as ONE document by each chunker.
- The covid-qa corpus (``<repo>/../shared/datasets/covid-qa/corpus.jsonl``; skipped with a
  message when absent), every document chunked by each chunker.

Every case runs in a fresh subprocess so that peak RSS (``resource.getrusage``) belongs to that
case alone; ``rss_input_mb`` is the RSS after the input is built and before chunking.
Token counts are exact o200k_base counts; every emitted chunk is checked against the chunker's
maximum and the document text.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
COVID = REPO.parent / "shared" / "datasets" / "covid-qa" / "corpus.jsonl"
RESULTS = REPO / "benchmarks" / "results"
SEED = 20240611

CHUNKERS: dict[str, tuple[str, dict[str, Any], int]] = {
    # name: (stage type, parameters, max tokens per chunk)
    "structure": ("StructureChunker", {}, 256),
    "structure-overlap32": ("StructureChunker", {"overlap_tokens": 32}, 256),
    "token": ("TokenChunker", {"chunk_tokens": 256}, 256),
    "sentence-window": ("SentenceWindowChunker", {"window": 1, "max_tokens": 256}, 256),
}

_SYLLABLES = [
    "ka", "lo", "mi", "ran", "tes", "vo", "qui", "pra", "den", "sol", "ter", "na", "bri", "ux",
    "gal", "mo", "ver", "sin", "to", "phe", "ly", "ca", "ment", "tion", "al", "ic", "or",
]  # fmt: skip
_COMMON = [
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with", "was", "on", "be",
    "by", "this", "are", "from", "at", "an", "which", "or", "not", "have", "has", "were", "been",
    "their", "its", "these", "more", "than", "also", "other", "such", "into", "some", "can",
]  # fmt: skip
_INSERTS = [
    "Dr. Lee", "e.g. this", "i.e. that", "3.14", "v2.4.1", "1,000.5", "the U.S. team",
    "at 5 p.m.", "Fig. 2", "No. 7", "https://example.org/a/b.html", "ops@example.com",
    "café", "naïve", "São Paulo", "数据集", "模型。", "et al.",
]  # fmt: skip


def synthetic_markdown(size_bytes: int, seed: int = SEED) -> str:
    """A deterministic Markdown-ish document of about ``size_bytes`` UTF-8 bytes."""
    rng = random.Random(seed)
    vocabulary = _COMMON * 6 + [
        "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(6000)
    ]

    def sentence() -> str:
        words = rng.choices(vocabulary, k=rng.randint(6, 28))
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), rng.choice(_INSERTS))
        text = " ".join(words)
        return text[0].upper() + text[1:] + rng.choice([".", ".", ".", "?", "!", "..."])

    sentences = [sentence() for _ in range(20_000)]
    parts: list[str] = []
    size = 0
    section = 0
    while size < size_bytes:
        roll = rng.random()
        if roll < 0.08:
            section += 1
            block = (
                "#" * rng.choice([1, 2, 2, 3, 3, 3])
                + f" Section {section} {sentences[section % 997][:40]}"
            )
        elif roll < 0.60:
            block = " ".join(rng.choices(sentences, k=rng.randint(1, 8)))
            if rng.random() < 0.2:
                block = block.replace(". ", ".\n", 2)  # hard-wrapped prose
        elif roll < 0.75:
            marker = rng.choice(["-", "*", "1."])
            block = "\n".join(f"{marker} {s}" for s in rng.choices(sentences, k=rng.randint(2, 7)))
        elif roll < 0.85:
            lines = [
                f"    value_{i} = compute({i}, '{rng.choice(vocabulary)}')"
                for i in range(rng.randint(3, 40))
            ]
            block = "```python\ndef f():\n" + "\n".join(lines) + "\n```"
        elif roll < 0.95:
            rows = [
                f"| {rng.choice(vocabulary)} | {rng.randint(0, 10**6)} "
                f"| {rng.choice(sentences)[:30]} |"
                for _ in range(rng.randint(2, 25))
            ]
            block = "| name | value | note |\n|---|---:|---|\n" + "\n".join(rows)
        elif roll < 0.985:
            block = " ".join(rng.choices(sentences, k=rng.randint(40, 120)))  # run-on paragraph
        else:
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
            block = "".join(rng.choices(alphabet, k=rng.randint(2_000, 40_000)))  # spaceless blob
        parts.append(block)
        size += len(block.encode("utf-8")) + 2
    return "\n\n".join(parts)


def load_covid() -> list[dict[str, Any]]:
    with COVID.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return float(ordered[index])


def run_case(corpus: str, chunker_name: str, megabytes: float) -> dict[str, Any]:
    """Executed in a child process: build the input, chunk it, measure, verify."""
    from ragtrim.chunking import chunkers  # noqa: F401  (registers the stages)
    from ragtrim.stage import stage_class
    from ragtrim.tokens import get_counter
    from ragtrim.types import Document

    counter = get_counter("o200k_base")
    if corpus == "synthetic":
        text = synthetic_markdown(int(megabytes * 1_000_000))
        documents = [Document(id="synthetic", text=text)]
        del text
    else:
        documents = [Document.coerce(record) for record in load_covid()]
    stage_type, params, max_tokens = CHUNKERS[chunker_name]
    chunker = stage_class(stage_type)(**params)
    input_bytes = sum(len(d.text.encode("utf-8")) for d in documents)
    rss_input = rss_mb()

    began = time.perf_counter()
    all_chunks = [chunker.run(document, counter) for document in documents]  # type: ignore[attr-defined]
    seconds = time.perf_counter() - began
    rss_peak = rss_mb()

    counts: list[int] = []
    for document, chunks in zip(documents, all_chunks, strict=True):
        for chunk in chunks:
            assert document.text[chunk.start : chunk.end] == chunk.text
            assert chunk.token_count <= max_tokens
            counts.append(chunk.token_count)
    document_tokens = sum(
        sum(counter.count_many([d.text[i : i + 100_000] for i in range(0, len(d.text), 100_000)]))
        for d in documents
    )
    n_chunks = len(counts)
    result: dict[str, Any] = {
        "corpus": corpus,
        "chunker": chunker_name,
        "stage": chunker.to_dict(),
        "documents": len(documents),
        "input_mb": round(input_bytes / 1e6, 2),
        "document_tokens": document_tokens,
        "chunks": n_chunks,
        "seconds": round(seconds, 3),
        "chunks_per_s": round(n_chunks / seconds, 1),
        "mb_per_s": round(input_bytes / 1e6 / seconds, 3),
        "rss_input_mb": round(rss_input, 1),
        "rss_peak_mb": round(rss_peak, 1),
        "tokens": {
            "mean": round(statistics.fmean(counts), 1),
            "min": min(counts),
            "p5": percentile(counts, 0.05),
            "p50": percentile(counts, 0.50),
            "p95": percentile(counts, 0.95),
            "max": max(counts),
            "share_below_48": round(sum(c < 48 for c in counts) / n_chunks, 4),
            "sum_over_document": round(sum(counts) / document_tokens, 3),
        },
    }
    if corpus == "synthetic" and chunker_name == "structure":
        result["breakdown_s"] = _breakdown(documents[0].text, counter)
    return result


def _breakdown(text: str, counter: Any) -> dict[str, float]:
    """Where StructureChunker's time goes: parsing, sentence splitting, block counting."""
    from ragtrim.chunking import block_sentences, parse_blocks

    began = time.perf_counter()
    blocks = parse_blocks(text)
    parsed = time.perf_counter()
    for block in blocks:
        block_sentences(text, block)
    split = time.perf_counter()
    for i in range(0, len(blocks), 256):
        counter.count_many([text[b.start : b.end] for b in blocks[i : i + 256]])
    counted = time.perf_counter()
    return {
        "parse_blocks": round(parsed - began, 3),
        "sentences": round(split - parsed, 3),
        "count_blocks": round(counted - split, 3),
        "blocks": len(blocks),
    }


def child(corpus: str, chunker_name: str, megabytes: float) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, __file__, "--case", corpus, chunker_name, "--mb", str(megabytes)],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"case {corpus}/{chunker_name} failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def markdown_report(payload: dict[str, Any]) -> str:
    lines = [
        "# Chunking benchmark",
        "",
        f"Machine: {payload['machine']}; Python {payload['python']}; tiktoken "
        f"{payload['tiktoken']}; encoding o200k_base. Synthetic document: "
        f"{payload['synthetic_mb']} MB (one document). Each case in a fresh process.",
        "",
        "| corpus | chunker | MB | chunks | s | chunks/s | MB/s | RSS input MB | RSS peak MB "
        "| tokens mean | p5 | p50 | p95 | max | <48 | sum/doc |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in payload["results"]:
        t = r["tokens"]
        lines.append(
            f"| {r['corpus']} | {r['chunker']} | {r['input_mb']} | {r['chunks']} | {r['seconds']} "
            f"| {r['chunks_per_s']} | {r['mb_per_s']} | {r['rss_input_mb']} | {r['rss_peak_mb']} "
            f"| {t['mean']} | {t['p5']:.0f} | {t['p50']:.0f} | {t['p95']:.0f} | {t['max']} "
            f"| {t['share_below_48']:.1%} | {t['sum_over_document']} |"
        )
    for r in payload["results"]:
        if "breakdown_s" in r:
            b = r["breakdown_s"]
            lines += [
                "",
                f"StructureChunker on the synthetic document, component timings (s): "
                f"parse_blocks {b['parse_blocks']}, sentence splitting {b['sentences']}, "
                f"counting all {b['blocks']} blocks {b['count_blocks']}.",
            ]
    lines += [
        "",
        "`sum/doc` = total chunk tokens / document tokens (1.0 = no overlap, no loss; "
        "sentence windows overlap by design). `<48` = share of chunks below the default "
        "min_tokens.",
    ]
    if payload.get("skipped"):
        lines += ["", f"Skipped: {payload['skipped']}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=50.0, help="synthetic document size (MB)")
    parser.add_argument("--case", nargs=2, metavar=("CORPUS", "CHUNKER"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--chunkers", nargs="*", default=list(CHUNKERS), choices=list(CHUNKERS),
        help="chunkers to run (default: all)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case[0], args.case[1], args.mb)))
        return

    results, skipped = [], ""
    corpora = ["synthetic"]
    if COVID.is_file():
        corpora.append("covid-qa")
    else:
        skipped = f"covid-qa corpus not found at {COVID}"
        print(skipped, file=sys.stderr)
    for corpus in corpora:
        for name in args.chunkers:
            result = child(corpus, name, args.mb)
            print(
                f"{corpus:>9} {name:<20} {result['seconds']:8.2f}s {result['mb_per_s']:7.3f} MB/s "
                f"{result['chunks_per_s']:9.1f} chunks/s peak RSS {result['rss_peak_mb']:7.1f} MB "
                f"mean tokens {result['tokens']['mean']}",
                file=sys.stderr,
            )
            results.append(result)
    payload = {
        "machine": f"{platform.machine()} {platform.processor() or ''} "
        f"{platform.system()} ({_cpu_count()} CPUs)".replace("  ", " "),
        "python": platform.python_version(),
        "tiktoken": version("tiktoken"),
        "synthetic_mb": args.mb,
        "results": results,
        "skipped": skipped,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "chunking.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "chunking.md").write_text(markdown_report(payload), encoding="utf-8")
    print(f"wrote {RESULTS / 'chunking.json'} and chunking.md", file=sys.stderr)


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
