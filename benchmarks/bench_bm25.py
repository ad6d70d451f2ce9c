"""BM25 on SciFact: retrieval quality, query throughput against rank_bm25, build time, memory.

Run from the repository root: ``python benchmarks/bench_bm25.py``. Reads
``<repo>/../shared/datasets/scifact`` (skips with a message when absent) and writes
``benchmarks/results/bm25_scifact.json`` and ``.md``.

- One unit per abstract, text = title + " " + abstract; 300 test claims (queries.jsonl) judged
  by the BEIR test qrels; nDCG@10 with BEIR's linear gain (``ragtrim.bench.metrics``).
- Defaults are chosen on the 809 *train* claims (qrels = their cited documents, as in BEIR's
  train split) so that the test numbers are not tuned on the test set.
- Throughput: ragtrim ``search(k=10)`` vs ``rank_bm25.BM25Okapi.get_scores`` + argsort on the
  same token lists and the same okapi parameters, median of 5 interleaved repeats.
"""

from __future__ import annotations

import csv
import itertools
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import fields
from importlib.metadata import version
from pathlib import Path

import numpy as np
import rank_bm25
import scipy
from _provenance import environment, write_results

from ragtrim.bench.metrics import bootstrap_ci, ndcg_at_k
from ragtrim.index.bm25 import DEFAULT_B, DEFAULT_K1, BM25Index
from ragtrim.index.tokenization import Tokenizer

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets" / "scifact"
RESULTS = REPO / "benchmarks" / "results"
K = 10
REPEATS = 5
VARIANTS = ("lucene", "okapi", "bm25+")
K1_GRID = (0.9, 1.2, 1.5)
#: rank_bm25.BM25Okapi's defaults, used for the like-for-like comparison
OKAPI_REFERENCE = {"k1": 1.5, "b": 0.75, "epsilon": 0.25}


def load_corpus() -> tuple[list[str], list[str]]:
    ids, texts = [], []
    with (DATA / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            ids.append(str(record["id"]))
            texts.append(f"{record.get('title', '')} {record['text']}")
    return ids, texts


def load_queries(name: str) -> list[dict]:
    with (DATA / name).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def load_test_qrels() -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with (DATA / "qrels_beir_test.tsv").open(encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader)
        if header != ["query-id", "corpus-id", "score"]:
            raise SystemExit(f"unexpected qrels header {header}")
        for query_id, doc_id, score in reader:
            qrels.setdefault(query_id, {})[doc_id] = int(score)
    return qrels


def cited_qrels(queries: Sequence[dict]) -> dict[str, dict[str, int]]:
    return {
        q["id"]: {str(d): 1 for d in q["metadata"]["cited_doc_ids"]}
        for q in queries
        if q["metadata"].get("cited_doc_ids")
    }


def per_query_ndcg(
    index: BM25Index,
    query_tokens: dict[str, list[str]],
    qrels: dict[str, dict[str, int]],
    doc_ids: list[str],
) -> np.ndarray:
    values = []
    for query_id, relevance in qrels.items():
        rows, _ = index.search(query_tokens[query_id], K)
        values.append(ndcg_at_k([doc_ids[r] for r in rows], relevance, K))
    return np.array(values)


def quality_grid(
    doc_ids, texts, queries, test_qrels, train_qrels
) -> tuple[list[dict], dict[tuple, tuple[np.ndarray, np.ndarray]]]:
    """Mean nDCG@10 per configuration, plus the per-query values for paired comparisons."""
    rows = []
    per_query = {}
    tokenizers = {
        (stem, stop): Tokenizer(
            stemmer="english" if stem else None, stopwords="english" if stop else None
        )
        for stem, stop in itertools.product((True, False), repeat=2)
    }
    tokenizers[("min_len_2", True)] = Tokenizer(min_token_length=2)
    for (stem, stop), tokenizer in tokenizers.items():
        corpus_tokens = tokenizer.tokenize_many(texts)
        query_tokens = {q["id"]: tokenizer.tokenize(q["question"]) for q in queries}
        grid = (
            itertools.product(VARIANTS, K1_GRID)
            if stem != "min_len_2"
            else [("lucene", DEFAULT_K1)]
        )
        for variant, k1 in grid:
            index = BM25Index(k1=k1, b=DEFAULT_B, variant=variant)
            index.add(corpus_tokens)
            test = per_query_ndcg(index, query_tokens, test_qrels, doc_ids)
            train = per_query_ndcg(index, query_tokens, train_qrels, doc_ids)
            per_query[(variant, k1, stem, stop)] = (test, train)
            rows.append(
                {
                    "variant": variant,
                    "k1": k1,
                    "b": DEFAULT_B,
                    "stemming": stem is True,
                    "stopwords": stop,
                    "min_token_length": 2 if stem == "min_len_2" else 1,
                    "ndcg10_test": float(test.mean()),
                    "ndcg10_train": float(train.mean()),
                }
            )
            print(
                f"  {variant:6s} k1={k1} stem={stem!s:9s} stop={stop!s:5s} "
                f"test={rows[-1]['ndcg10_test']:.4f} train={rows[-1]['ndcg10_train']:.4f}",
                flush=True,
            )
    return rows, per_query


def paired_effects(per_query: dict) -> list[dict]:
    """Per-query nDCG@10 gain of stemming and of stop words (others fixed), bootstrap 95% CI."""
    effects = []
    for variant in ("lucene", "okapi"):
        for factor, on, off in (
            ("stemming", (True, True), (False, True)),
            ("stop words", (True, True), (True, False)),
        ):
            record = {"variant": variant, "k1": DEFAULT_K1, "factor": factor}
            for split, position in (("test", 0), ("train", 1)):
                with_it = per_query[(variant, DEFAULT_K1, *on)][position]
                without = per_query[(variant, DEFAULT_K1, *off)][position]
                mean, low, high = bootstrap_ci(with_it - without, n_resamples=2000, seed=0)
                record[split] = {"gain": mean, "ci95": [low, high]}
            effects.append(record)
    return effects


def top10_agreement(index: BM25Index, reference, query_token_lists) -> dict:
    exact = tie_aware = 0
    max_abs_diff = 0.0
    for tokens in query_token_lists:
        ours = index.scores(tokens)
        theirs = reference.get_scores(tokens)
        max_abs_diff = max(max_abs_diff, float(np.abs(ours - theirs).max()))
        rows, _ = index.search(tokens, K)
        exact += np.array_equal(rows, np.argsort(theirs)[::-1][:K])
        tie_aware += np.array_equal(rows, np.lexsort((np.arange(len(theirs)), -theirs))[:K])
    return {
        "queries": len(query_token_lists),
        "identical_top10_vs_argsort": int(exact),
        "identical_top10_ties_by_row": int(tie_aware),
        "max_abs_score_diff": max_abs_diff,
    }


def throughput(runs: dict[str, tuple[object, list[list[str]]]]) -> dict:
    """Queries per second of each ``name -> (searcher, query token lists)``.

    All runs are interleaved within each repeat, so load from other processes on the machine
    hits them alike; the median of the repeats is reported.
    """

    def run(searcher, token_lists) -> float:
        started = time.perf_counter()
        if isinstance(searcher, BM25Index):
            for tokens in token_lists:
                searcher.search(tokens, K)
        else:
            for tokens in token_lists:
                np.argsort(searcher.get_scores(tokens))[::-1][:K]
        return time.perf_counter() - started

    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for searcher, token_lists in runs.values():
        run(searcher, token_lists[:20])  # warm-up: weights computed, caches filled
    for _ in range(REPEATS):
        for name, (searcher, token_lists) in runs.items():
            seconds[name].append(run(searcher, token_lists))
    return {
        name: {
            "queries": len(runs[name][1]),
            "qps": len(runs[name][1]) / statistics.median(seconds[name]),
            "seconds": seconds[name],
        }
        for name in runs
    }


def timed(function):
    started = time.perf_counter()
    value = function()
    return value, time.perf_counter() - started


def main() -> int:
    if not (DATA / "corpus.jsonl").is_file():
        print(f"SciFact not found at {DATA}; skipping the BM25 benchmark")
        return 0
    doc_ids, texts = load_corpus()
    test_queries = load_queries("queries.jsonl")
    train_queries = load_queries("queries_train.jsonl")
    test_qrels = load_test_qrels()
    train_qrels = cited_qrels(train_queries)
    queries = test_queries + train_queries
    print(f"corpus {len(doc_ids)} docs, {len(test_qrels)} test / {len(train_qrels)} train queries")

    print("quality grid (nDCG@10):")
    grid, per_query = quality_grid(doc_ids, texts, queries, test_qrels, train_qrels)
    best_train = max(grid, key=lambda r: r["ndcg10_train"])
    effects = paired_effects(per_query)

    tokenizer = Tokenizer()
    corpus_tokens, tokenize_seconds = timed(lambda: tokenizer.tokenize_many(texts))
    test_tokens = [tokenizer.tokenize(q["question"]) for q in test_queries]
    test_by_id = dict(zip((q["id"] for q in test_queries), test_tokens, strict=True))

    default_index = BM25Index()
    _, build_seconds = timed(
        lambda: (default_index.add(corpus_tokens), default_index.search([], 1))
    )
    default_ndcg = float(per_query_ndcg(default_index, test_by_id, test_qrels, doc_ids).mean())

    okapi_index = BM25Index(variant="okapi", **OKAPI_REFERENCE)
    _, okapi_build_seconds = timed(
        lambda: (okapi_index.add(corpus_tokens), okapi_index.search([], 1))
    )
    reference, reference_build_seconds = timed(
        lambda: rank_bm25.BM25Okapi(corpus_tokens, **OKAPI_REFERENCE)
    )
    agreement = top10_agreement(okapi_index, reference, test_tokens)
    print(f"okapi vs rank_bm25 top-10: {agreement}")
    keep_stopwords = Tokenizer(stopwords=None)
    no_stop_index = BM25Index()
    no_stop_index.add(keep_stopwords.tokenize_many(texts))
    no_stop_queries = [keep_stopwords.tokenize(q["question"]) for q in test_queries]
    speed = throughput(
        {
            "ragtrim_okapi": (okapi_index, test_tokens),
            "ragtrim_default": (default_index, test_tokens),
            "ragtrim_default_keeping_stopwords": (no_stop_index, no_stop_queries),
            "rank_bm25_okapi": (reference, test_tokens),
        }
    )
    speed["speedup_okapi_vs_rank_bm25"] = (
        speed["ragtrim_okapi"]["qps"] / speed["rank_bm25_okapi"]["qps"]
    )
    speed["speedup_default_vs_rank_bm25"] = (
        speed["ragtrim_default"]["qps"] / speed["rank_bm25_okapi"]["qps"]
    )
    print(
        f"throughput: ragtrim okapi {speed['ragtrim_okapi']['qps']:.0f} q/s, rank_bm25 "
        f"{speed['rank_bm25_okapi']['qps']:.1f} q/s, x{speed['speedup_okapi_vs_rank_bm25']:.1f}"
    )
    stopword_cost = {
        "nnz_with_stopwords": no_stop_index.nnz,
        "nnz_without_stopwords": default_index.nnz,
        "qps_with_stopwords": speed["ragtrim_default_keeping_stopwords"]["qps"],
        "qps_without_stopwords": speed["ragtrim_default"]["qps"],
    }

    memory = {
        "total_bytes": default_index.nbytes,
        **{f"{part}_bytes": size for part, size in default_index.memory_usage().items()},
        "nnz": default_index.nnz,
        "terms": len(default_index.vocab),
    }
    result = {
        "dataset": "SciFact (BEIR test qrels; train claims for tuning)",
        "corpus_docs": len(doc_ids),
        "test_queries": len(test_qrels),
        "train_queries": len(train_qrels),
        "default": {
            "index": default_index.params,
            "tokenizer": {f.name: getattr(tokenizer, f.name) for f in fields(tokenizer) if f.init},
            "ndcg10_test": default_ndcg,
            "target_ndcg10": 0.665,
        },
        "best_on_train": best_train,
        "grid": grid,
        "paired_effects": effects,
        "stopword_removal_cost": stopword_cost,
        "okapi_vs_rank_bm25": {"params": OKAPI_REFERENCE, **agreement},
        "throughput": {"repeats": REPEATS, "k": K, **speed},
        "build": {
            "tokenize_seconds": tokenize_seconds,
            "ragtrim_default_seconds": build_seconds,
            "ragtrim_okapi_seconds": okapi_build_seconds,
            "rank_bm25_seconds": reference_build_seconds,
        },
        "memory_default": memory,
        "environment": environment(
            numpy=np.__version__, scipy=scipy.__version__, rank_bm25=version("rank-bm25")
        ),
    }
    markdown = write_results(RESULTS, "bm25_scifact", result, render_markdown)
    print(f"default nDCG@10 (test) = {default_ndcg:.4f}; wrote {markdown}")
    return 0


def render_markdown(r: dict) -> str:
    d, s, a, b, m = (
        r["default"],
        r["throughput"],
        r["okapi_vs_rank_bm25"],
        r["build"],
        r["memory_default"],
    )
    lines = [
        "# BM25 on SciFact",
        "",
        f"{r['corpus_docs']} abstracts (title + text), {r['test_queries']} test claims "
        f"(BEIR qrels), {r['train_queries']} train claims (cited docs) used to pick defaults. "
        "nDCG@10, BEIR gain. Generated by `python benchmarks/bench_bm25.py`.",
        "",
        "## Headline",
        "",
        "| metric | value | target |",
        "|---|---|---|",
        f"| default nDCG@10 (test) | {d['ndcg10_test']:.4f} | >= {d['target_ndcg10']} |",
        f"| okapi speed vs rank_bm25 (same tokens, k1=1.5) | x{s['speedup_okapi_vs_rank_bm25']:.1f}"
        f" ({s['ragtrim_okapi']['qps']:.0f} vs {s['rank_bm25_okapi']['qps']:.1f} q/s) | >= 25x |",
        f"| default (lucene) speed vs rank_bm25 okapi | x{s['speedup_default_vs_rank_bm25']:.1f}"
        f" ({s['ragtrim_default']['qps']:.0f} q/s) | |",
        f"| okapi top-10 identical to rank_bm25 (ties by row) | "
        f"{a['identical_top10_ties_by_row']}/{a['queries']} | all |",
        f"| okapi top-10 identical to rank_bm25 argsort[::-1] | "
        f"{a['identical_top10_vs_argsort']}/{a['queries']} | |",
        f"| max abs score difference vs rank_bm25 | {a['max_abs_score_diff']:.2e} | |",
        f"| tokenize corpus (default tokenizer) | {b['tokenize_seconds']:.2f} s | |",
        f"| build: ragtrim default / okapi / rank_bm25 | {b['ragtrim_default_seconds']:.3f} s / "
        f"{b['ragtrim_okapi_seconds']:.3f} s / {b['rank_bm25_seconds']:.3f} s | |",
        f"| memory (tf + weights + row stats) | {m['total_bytes'] / 1e6:.2f} MB "
        f"({m['nnz']} nnz, {m['terms']} terms) | |",
        "",
        f"Default: `{d['index']}`, tokenizer `{d['tokenizer']}`.",
        "",
        "Best on train: "
        + ", ".join(f"{k}={v}" for k, v in r["best_on_train"].items() if not k.startswith("ndcg"))
        + f" (train {r['best_on_train']['ndcg10_train']:.4f}, "
        f"test {r['best_on_train']['ndcg10_test']:.4f}).",
        "",
        "## Do stemming and stop words pay off? (paired per-query nDCG@10 gain, 95% bootstrap CI)",
        "",
        "| variant | k1 | factor | gain test | gain train |",
        "|---|---|---|---|---|",
        *(
            f"| {e['variant']} | {e['k1']} | {e['factor']} | "
            + " | ".join(
                f"{e[split]['gain']:+.4f} [{e[split]['ci95'][0]:+.4f}, {e[split]['ci95'][1]:+.4f}]"
                for split in ("test", "train")
            )
            + " |"
            for e in r["paired_effects"]
        ),
        "",
        f"Removing stop words: {r['stopword_removal_cost']['nnz_with_stopwords']} -> "
        f"{r['stopword_removal_cost']['nnz_without_stopwords']} nnz, "
        f"{r['stopword_removal_cost']['qps_with_stopwords']:.0f} -> "
        f"{r['stopword_removal_cost']['qps_without_stopwords']:.0f} queries/s (default index).",
        "",
        "## Grid (b = 0.75)",
        "",
        "| variant | k1 | stemming | stop words | min len | nDCG@10 test | nDCG@10 train |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in r["grid"]:
        lines.append(
            f"| {row['variant']} | {row['k1']} | {'on' if row['stemming'] else 'off'} | "
            f"{'on' if row['stopwords'] else 'off'} | {row['min_token_length']} | "
            f"{row['ndcg10_test']:.4f} | {row['ndcg10_train']:.4f} |"
        )
    env = r["environment"]
    lines += [
        "",
        f"Environment: Python {env['python']}, numpy {env['numpy']}, scipy {env['scipy']}, "
        f"rank_bm25 {env['rank_bm25']}, {env['platform']}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
