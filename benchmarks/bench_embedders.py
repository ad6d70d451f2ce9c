"""Embedding backends side by side: torch fp32 vs ONNX fp32 vs ONNX int8, 1 and 2 threads.

Run from the repository root: ``python benchmarks/bench_embedders.py`` (the run time is in the
results; most of it is torch). Reads ``<repo>/../shared/datasets/scifact`` and writes
``benchmarks/results/embedders.json`` and ``.md``.

- Throughput: texts/s embedding chunk-sized texts (SciFact abstracts cut at 200 MiniLM
  tokens, [CLS]/[SEP] included) and sentence-sized texts (sentences of those abstracts, 8-48
  tokens), one ``embed`` call per set; torch in batches of ``TORCH_BATCH`` (its fastest of 1, 8
  and 32 in a probe on this machine), ONNX with OnnxEmbedder's default of one text per run
  (int8 must; fp32 was as fast at 1 as at 8, and faster than at 32). Every (backend,
  threads) pair is timed once per round, in a rotated order, for ``ROUNDS`` rounds, so load
  from other processes falls on all of them alike; the median round is reported.
- Quality: dense-only nDCG@10 of the 300 SciFact test claims (BEIR qrels) against a corpus
  subset: every abstract judged relevant to a test claim plus random others (seed 0) up to
  ``QUALITY_DOCS``; each abstract is one text (title + text, truncated by the model at 256
  tokens), ranked by cosine. The paired per-query difference to torch gets a 95% bootstrap CI.
  Cosine agreement with torch is reported on every text embedded.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from _provenance import environment, footer, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets" / "scifact"
RESULTS = REPO / "benchmarks" / "results"
WORK = REPO / "benchmarks" / ".work" / "embedders"
CHUNK_TOKENS = 200
CHUNKS = 48
SENTENCES = 96
ROUNDS = 3
TORCH_BATCH = 8
QUALITY_DOCS = 600
#: ONNX fp32 is compared with torch by cosine on every throughput text instead (it is ~1.0)
QUALITY_BACKENDS = ("torch-fp32", "onnx-int8")
QUALITY_THREADS = 2
BACKENDS = ("torch-fp32", "onnx-fp32", "onnx-int8")
THREADS = (1, 2)


def make_embedder(backend: str, threads: int) -> Any:
    from ragtrim.embedding import OnnxEmbedder, SentenceTransformerEmbedder

    if backend == "torch-fp32":
        # small_batch_threads=None: the process-wide torch setting below applies to every call
        return SentenceTransformerEmbedder(batch_size=TORCH_BATCH, small_batch_threads=None)
    precision = backend.split("-")[1]
    return OnnxEmbedder(
        precision=precision,
        threads=threads,
        small_batch_threads=None,
        onnx_dir=str(WORK / "onnx"),
    )


def timed_embed(
    embedder: Any, backend: str, threads: int, texts: list[str]
) -> tuple[float, np.ndarray]:
    import torch

    if backend == "torch-fp32":
        torch.set_num_threads(threads)
    started = time.perf_counter()
    vectors = embedder.embed(texts)
    return time.perf_counter() - started, vectors


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def throughput_texts(corpus: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Chunk-sized prefixes of the first abstracts long enough, and their sentences."""
    from tokenizers import Tokenizer

    from ragtrim.embedding.models import DEFAULT_EMBEDDING_MODEL, resolve_model_source
    from ragtrim.embedding.onnx import ModelLayout

    layout = ModelLayout(resolve_model_source(DEFAULT_EMBEDDING_MODEL))
    tokenizer = Tokenizer.from_file(str(layout.tokenizer_path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    chunks: list[str] = []
    sentences: list[str] = []
    for doc in corpus:
        text = doc["text"]
        encoding = tokenizer.encode(text)
        if len(chunks) < CHUNKS and len(encoding.ids) > CHUNK_TOKENS:
            # token CHUNK_TOKENS - 2 is the last content token that fits with [CLS] and [SEP]
            chunks.append(text[: encoding.offsets[CHUNK_TOKENS - 2][1]])
        for sentence in text.split(". "):
            if len(sentences) < SENTENCES and 8 <= len(tokenizer.encode(sentence).ids) <= 48:
                sentences.append(sentence.strip())
        if len(chunks) >= CHUNKS and len(sentences) >= SENTENCES:
            break
    counts = [len(e.ids) for e in tokenizer.encode_batch(chunks)]
    assert min(counts) >= CHUNK_TOKENS - 2 and max(counts) <= CHUNK_TOKENS, counts
    return chunks, sentences


def measure_throughput(sets: dict[str, list[str]]) -> dict[str, Any]:
    embedders = {(b, t): make_embedder(b, t) for b in BACKENDS for t in THREADS}
    loads = {}
    for (backend, threads), embedder in embedders.items():
        started = time.perf_counter()
        embedder.warm_up()
        timed_embed(embedder, backend, threads, sets["sentence"][:32])  # first-call costs
        loads[f"{backend}/{threads}"] = round(time.perf_counter() - started, 2)
    pairs = list(embedders)
    seconds: dict[str, dict[str, list[float]]] = {name: {} for name in sets}
    vectors: dict[tuple[str, str], np.ndarray] = {}
    for round_index in range(ROUNDS):
        order = pairs[round_index % len(pairs) :] + pairs[: round_index % len(pairs)]
        for name, texts in sets.items():
            for backend, threads in order:
                took, rows = timed_embed(embedders[backend, threads], backend, threads, texts)
                seconds[name].setdefault(f"{backend}/{threads}", []).append(took)
                vectors[name, backend] = rows
        print(f"throughput round {round_index + 1}/{ROUNDS} done", flush=True)
    agreement = {
        backend: {
            name: cosine_summary((vectors[name, backend] * vectors[name, "torch-fp32"]).sum(1))
            for name in sets
        }
        for backend in BACKENDS[1:]
    }
    table = {
        name: {
            key: {
                "texts_per_s": round(len(sets[name]) / statistics.median(values), 1),
                "seconds": [round(v, 3) for v in values],
            }
            for key, values in per.items()
        }
        for name, per in seconds.items()
    }
    return {"warm_up_seconds": loads, "by_set": table, "cosine_to_torch": agreement}


def cosine_summary(cos: np.ndarray) -> dict[str, Any]:
    return {
        "texts": int(cos.size),
        "min": round(float(cos.min()), 6),
        "p1": round(float(np.percentile(cos, 1)), 6),
        "mean": round(float(cos.mean()), 6),
    }


def quality(corpus: list[dict[str, Any]]) -> dict[str, Any]:
    from ragtrim.bench.metrics import bootstrap_ci, ndcg_at_k

    queries = {q["id"]: q["question"] for q in read_jsonl(DATA / "queries.jsonl")}
    qrels: dict[str, dict[str, int]] = {}
    with (DATA / "qrels_beir_test.tsv").open(encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            qid, doc_id, score = line.rstrip("\n").split("\t")
            qrels.setdefault(qid, {})[doc_id] = int(score)
    relevant = {d for rel in qrels.values() for d in rel}
    others = sorted(d["id"] for d in corpus if d["id"] not in relevant)
    random.Random(0).shuffle(others)
    keep = relevant | set(others[: QUALITY_DOCS - len(relevant)])
    docs = [d for d in corpus if d["id"] in keep]
    doc_ids = [d["id"] for d in docs]
    doc_texts = [f"{d['title']} {d['text']}".strip() for d in docs]
    qids = sorted(qrels)
    query_texts = [queries[q] for q in qids]
    vectors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    seconds: dict[str, float] = {}
    for backend in QUALITY_BACKENDS:
        embedder = make_embedder(backend, QUALITY_THREADS)
        embedder.warm_up()
        started = time.perf_counter()
        if backend == "torch-fp32":
            import torch

            torch.set_num_threads(QUALITY_THREADS)
        vectors[backend] = (embedder.embed(doc_texts), embedder.embed(query_texts, kind="query"))
        seconds[backend] = round(time.perf_counter() - started, 1)
        print(f"quality: {backend} embedded in {seconds[backend]} s", flush=True)
    per_query: dict[str, list[float]] = {}
    for backend, (doc_vectors, query_vectors) in vectors.items():
        scores = query_vectors @ doc_vectors.T
        per_query[backend] = [
            ndcg_at_k([doc_ids[i] for i in np.argsort(-scores[row])[:10]], qrels[qid], 10)
            for row, qid in enumerate(qids)
        ]
    reference_docs, reference_queries = vectors["torch-fp32"]
    out: dict[str, Any] = {
        "documents": len(docs),
        "relevant_documents": len(relevant),
        "queries": len(qids),
        "embed_seconds": seconds,
        "ndcg_at_10": {b: round(float(np.mean(v)), 4) for b, v in per_query.items()},
        "delta_vs_torch": {},
        "cosine_to_torch": {},
    }
    for backend in QUALITY_BACKENDS[1:]:
        diff = np.array(per_query[backend]) - np.array(per_query["torch-fp32"])
        _, low, high = bootstrap_ci(diff.tolist(), n_resamples=10_000, seed=0)
        out["delta_vs_torch"][backend] = {
            "mean": round(float(diff.mean()), 4),
            "ci95": [round(low, 4), round(high, 4)],
            "better": int((diff > 1e-12).sum()),
            "worse": int((diff < -1e-12).sum()),
        }
        cos = np.concatenate(
            [
                (vectors[backend][0] * reference_docs).sum(1),
                (vectors[backend][1] * reference_queries).sum(1),
            ]
        )
        out["cosine_to_torch"][backend] = cosine_summary(cos)
    return out


def graph_sizes() -> dict[str, float]:
    sizes = {}
    for backend in BACKENDS[1:]:
        graph = make_embedder(backend, 1).graph()
        sizes[backend] = round(graph.stat().st_size / 1e6, 1)
    return sizes


def main() -> None:
    if not DATA.is_dir():
        print(f"skipped: {DATA} not found")
        return
    started = time.perf_counter()
    load_before = os.getloadavg()
    corpus = read_jsonl(DATA / "corpus.jsonl")
    chunks, sentences = throughput_texts(corpus)
    speed = measure_throughput({"chunk": chunks, "sentence": sentences})
    quality_result = quality(corpus)
    import onnxruntime
    import sentence_transformers
    import torch

    result = {
        "texts": {"chunk": len(chunks), "sentence": len(sentences)},
        "chunk_tokens": CHUNK_TOKENS,
        "batch_size": {"torch-fp32": TORCH_BATCH, "onnx-fp32": 1, "onnx-int8": 1},
        "rounds": ROUNDS,
        "throughput": speed,
        "quality": quality_result,
        "graph_mb": graph_sizes(),
        "load_average_before_after": [
            [round(x, 2) for x in load_before],
            [round(x, 2) for x in os.getloadavg()],
        ],
        "seconds": round(time.perf_counter() - started, 1),
        "environment": environment(
            torch=torch.__version__,
            onnxruntime=onnxruntime.__version__,
            sentence_transformers=sentence_transformers.__version__,
            cpus=os.cpu_count(),
        ),
    }
    path = write_results(RESULTS, "embedders", result, render)
    print(f"wrote {path}")


def render(r: dict[str, Any]) -> str:
    speed = r["throughput"]["by_set"]
    q = r["quality"]
    lines = [
        "# Embedding backends: torch fp32 vs ONNX fp32 vs ONNX int8",
        "",
        f"all-MiniLM-L6-v2 from the offline weights. Generated by "
        f"`python benchmarks/bench_embedders.py` in {r['seconds']} s. **The machine (2 cores) was "
        "shared with other engineers' work while this ran** (load average "
        f"{r['load_average_before_after'][0]} before, {r['load_average_before_after'][1]} after), "
        "so absolute speeds are low and noisy; the backends were interleaved in one run, so the "
        "ratios are the figure to read. Re-run on a quiet machine for absolute numbers.",
        "",
        "## Throughput (texts/s, median of "
        f"{r['rounds']} interleaved rounds; texts per run: "
        + ", ".join(f"{b} {n}" for b, n in r["batch_size"].items())
        + ")",
        "",
        f"Chunk-sized: {r['texts']['chunk']} SciFact abstracts cut at {r['chunk_tokens']} "
        f"MiniLM tokens. Sentence-sized: {r['texts']['sentence']} sentences of 8-48 tokens.",
        "",
        "| backend | threads | chunks/s | x torch | sentences/s | x torch |",
        "|---|---|---|---|---|---|",
    ]
    for threads in THREADS:
        for backend in BACKENDS:
            key, ref = f"{backend}/{threads}", f"torch-fp32/{threads}"
            cells = []
            for name in ("chunk", "sentence"):
                value = speed[name][key]["texts_per_s"]
                cells += [f"{value}", f"x{value / speed[name][ref]['texts_per_s']:.2f}"]
            lines.append(f"| {backend} | {threads} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"ONNX graphs on disk: fp32 {r['graph_mb']['onnx-fp32']} MB, int8 "
        f"{r['graph_mb']['onnx-int8']} MB (per-channel dynamic quantisation of the weights; "
        "activations quantised at run time).",
        "",
        "## Quality",
        "",
        f"Dense-only retrieval, SciFact test: {q['queries']} claims (BEIR qrels) against "
        f"{q['documents']} abstracts (all {q['relevant_documents']} judged relevant to a test "
        "claim, plus random others, seed 0); one vector per abstract (title + text, truncated at "
        "256 tokens), ranked by cosine. This is a subset, so the figures are not comparable with "
        "the full-corpus results in retrieval_scifact.md; the differences between backends are "
        "what it measures.",
        "",
        "| backend | nDCG@10 | vs torch (paired, 95% CI, queries better+/worse-) | "
        "cosine to torch: min / p1 / mean |",
        "|---|---|---|---|",
    ]
    for backend in BACKENDS:
        if backend not in q["ndcg_at_10"]:
            lines.append(f"| {backend} | not run (see the cosines below) | | |")
            continue
        ndcg = q["ndcg_at_10"][backend]
        if backend == "torch-fp32":
            lines.append(f"| {backend} | {ndcg:.4f} | (reference) | 1 |")
            continue
        d, c = q["delta_vs_torch"][backend], q["cosine_to_torch"][backend]
        lines.append(
            f"| {backend} | {ndcg:.4f} | {d['mean']:+.4f} [{d['ci95'][0]:+.4f}, "
            f"{d['ci95'][1]:+.4f}] ({d['better']}+/{d['worse']}-) | "
            f"{c['min']:.6f} / {c['p1']:.6f} / {c['mean']:.6f} ({c['texts']} texts) |"
        )
    d8 = q["delta_vs_torch"]["onnx-int8"]
    lines += [
        "",
        "Cosine to torch's vector of the same text, on the throughput texts (min / p1 / mean):",
        "",
        "| backend | chunks | sentences |",
        "|---|---|---|",
    ]
    for backend, per in r["throughput"]["cosine_to_torch"].items():
        cells = [f"{c['min']:.6f} / {c['p1']:.6f} / {c['mean']:.6f}" for c in per.values()]
        lines.append(f"| {backend} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Embedding the {q['documents']} abstracts and {q['queries']} claims at "
        f"{QUALITY_THREADS} threads took: "
        + ", ".join(f"{b} {s} s" for b, s in q["embed_seconds"].items())
        + ".",
        "",
        "**Default embedder: unchanged** (`SentenceTransformerEmbedder`, torch fp32). ONNX fp32 "
        "gives torch's vectors (cosine 1.000000 to 6 places) and ONNX int8 is the fast one; on "
        f"this subset int8's nDCG@10 difference is {d8['mean']:+.4f} (95% CI "
        f"[{d8['ci95'][0]:+.4f}, {d8['ci95'][1]:+.4f}]). The whole pipeline per backend (the "
        "bench headline on every data set and full-corpus SciFact nDCG@10) is in "
        "[backends.md](backends.md) (`python benchmarks/bench_backends.py`). A new default would "
        "change every benchmark number and every cache key, so `OnnxEmbedder` stays opt-in: it "
        "is the way to run without torch.",
        "",
        *footer(r["environment"], "torch", "onnxruntime", "sentence_transformers", "cpus"),
    ]
    base = RESULTS / "base_install.md"
    if base.is_file():
        lines += ["", base.read_text(encoding="utf-8").strip().replace("# ", "## ", 1), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
