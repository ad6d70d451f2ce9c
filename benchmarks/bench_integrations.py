"""Context tokens and answer recall of each framework's default retriever, with and without ragtrim.

Run from the repository root: ``python benchmarks/bench_integrations.py [--limit N]``. Reads
``corpora/kestrel`` (51 documents, 348 questions; ``--limit`` takes a seeded random subset) and
writes ``benchmarks/results/integrations.json`` and ``.md``.

Each setup is the framework's documented default, with the default MiniLM model where one
needs embeddings (``sentence-transformers/all-MiniLM-L6-v2``, offline):

- LangChain: ``RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)``,
  ``InMemoryVectorStore``, ``as_retriever()`` (k=4).
- LlamaIndex: ``VectorStoreIndex.from_documents`` (default ``SentenceSplitter``, 1024 tokens),
  ``as_retriever()`` (similarity_top_k=2); node text as the LLM sees it (with its metadata).
- Haystack BM25: ``DocumentSplitter()`` (200 words), ``InMemoryBM25Retriever`` (top_k=10).
- Haystack embeddings: the same splits, sentence-transformers-haystack's document/text
  embedders, ``InMemoryEmbeddingRetriever`` (top_k=10).

"Without" is the retrieved documents joined as the framework would put them in a prompt;
"with" is the documents the ragtrim adapter returns for the same retrieval, joined the same
way (no filters, the question's ``task_type``). Two ragtrim configurations, fixed in
:data:`VARIANTS` and not tuned on these questions: ``Pipeline.default()`` as it is, and the
same with a looser sufficiency stop (``min_probability=0.005``) to show the tokens/recall
trade-off. Tokens are exact ``o200k_base`` counts. Answer recall is
``ragtrim.bench.metrics.answer_recall`` on that text (label-only questions do not count).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "corpora" / "kestrel"
RESULTS = REPO / "benchmarks" / "results"
WORK = REPO / "benchmarks" / ".work" / "integrations"
SEED = 0
#: ragtrim configurations: name -> packer overrides on top of ``Pipeline.default()``
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "min_probability=0.005": {"min_probability": 0.005},
}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@dataclass
class Setup:
    """One framework retriever: ``retrieve(question) -> documents`` and the adapter's trim."""

    name: str
    framework: str
    description: str
    retrieve: Callable[[str], list[Any]]
    texts: Callable[[Sequence[Any]], list[str]]
    trim: Callable[[Any, str, list[Any], str | None], tuple[list[Any], Any]]
    version: str


# --------------------------------------------------------------------------- setups
def langchain_setup(pipe: Any, corpus: list[dict[str, Any]]) -> Setup:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import InMemoryVectorStore
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from ragtrim.integrations import langchain as adapter

    class MiniLM(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return pipe.embedder.embed(texts).tolist()

        def embed_query(self, text: str) -> list[float]:
            return pipe.embedder.embed([text], kind="query")[0].tolist()

    docs = [
        Document(page_content=d["text"], metadata={"title": d["title"], "source": d["id"]})
        for d in corpus
    ]
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    store = InMemoryVectorStore.from_documents(splitter.split_documents(docs), embedding=MiniLM())
    retriever = store.as_retriever()
    return Setup(
        "langchain-vector",
        "LangChain",
        "RecursiveCharacterTextSplitter(1000, 200) + "
        "InMemoryVectorStore(MiniLM).as_retriever(), k=4",
        retriever.invoke,
        lambda found: [d.page_content for d in found],
        lambda ragtrim, q, found, task: adapter.trim_documents(ragtrim, q, found, task_type=task),
        _version("langchain-core"),
    )


def llamaindex_setup(pipe: Any, corpus: list[dict[str, Any]]) -> Setup:
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.embeddings import BaseEmbedding
    from llama_index.core.schema import MetadataMode

    from ragtrim.integrations import llamaindex as adapter

    class MiniLM(BaseEmbedding):
        def _get_query_embedding(self, query: str) -> list[float]:
            return pipe.embedder.embed([query], kind="query")[0].tolist()

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return pipe.embedder.embed([text])[0].tolist()

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return pipe.embedder.embed(texts).tolist()

    docs = [Document(text=d["text"], id_=d["id"], metadata={"title": d["title"]}) for d in corpus]
    index = VectorStoreIndex.from_documents(docs, embed_model=MiniLM(model_name="all-MiniLM-L6-v2"))
    retriever = index.as_retriever()
    return Setup(
        "llamaindex-vector",
        "LlamaIndex",
        "VectorStoreIndex(MiniLM), default SentenceSplitter "
        "(1024 tokens), as_retriever(), similarity_top_k=2",
        retriever.retrieve,
        lambda found: [n.node.get_content(metadata_mode=MetadataMode.LLM) for n in found],
        lambda ragtrim, q, found, task: adapter.trim_nodes(ragtrim, q, found, task_type=task),
        _version("llama-index-core"),
    )


def haystack_setups(pipe: Any, corpus: list[dict[str, Any]]) -> list[Setup]:
    from haystack import Document
    from haystack.components.preprocessors import DocumentSplitter
    from haystack.components.retrievers.in_memory import (
        InMemoryBM25Retriever,
        InMemoryEmbeddingRetriever,
    )
    from haystack.document_stores.in_memory import InMemoryDocumentStore
    from haystack_integrations.components.embedders.sentence_transformers import (
        SentenceTransformersDocumentEmbedder,
        SentenceTransformersTextEmbedder,
    )

    from ragtrim.embedding.models import DEFAULT_EMBEDDING_MODEL, resolve_model_source
    from ragtrim.integrations import haystack as adapter

    docs = [
        Document(content=d["text"], meta={"title": d["title"], "source": d["id"]}) for d in corpus
    ]
    splits = DocumentSplitter().run(docs)["documents"]
    bm25_store = InMemoryDocumentStore()
    bm25_store.write_documents(splits)
    bm25 = InMemoryBM25Retriever(document_store=bm25_store)

    model = str(resolve_model_source(DEFAULT_EMBEDDING_MODEL))
    doc_embedder = SentenceTransformersDocumentEmbedder(model=model, progress_bar=False)
    doc_embedder.warm_up()
    dense_store = InMemoryDocumentStore()
    dense_store.write_documents(doc_embedder.run(splits)["documents"])
    text_embedder = SentenceTransformersTextEmbedder(model=model, progress_bar=False)
    text_embedder.warm_up()
    dense = InMemoryEmbeddingRetriever(document_store=dense_store)

    def dense_retrieve(question: str) -> list[Any]:
        vector = text_embedder.run(question)["embedding"]
        return dense.run(query_embedding=vector)["documents"]

    def texts(found: Sequence[Any]) -> list[str]:
        return [d.content for d in found]

    def trim(ragtrim: Any, question: str, found: list[Any], task: str | None) -> tuple[list, Any]:
        return adapter.trim_documents(ragtrim, question, found, task_type=task)

    version = _version("haystack-ai")
    return [
        Setup(
            "haystack-bm25",
            "Haystack",
            "DocumentSplitter() (200 words) + InMemoryBM25Retriever, top_k=10",
            lambda q: bm25.run(query=q)["documents"],
            texts,
            trim,
            version,
        ),
        Setup(
            "haystack-embedding",
            "Haystack",
            "DocumentSplitter() + sentence-transformers-"
            "haystack embedders (MiniLM) + InMemoryEmbeddingRetriever, top_k=10",
            dense_retrieve,
            texts,
            trim,
            version,
        ),
    ]


def _version(distribution: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(distribution)


# --------------------------------------------------------------------------- measuring
def measure(
    setup: Setup, pipes: dict[str, Any], queries: list[dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """Per variant, one row per query; every variant trims the same retrieval."""
    from ragtrim.bench.metrics import answer_recall

    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in pipes}
    for query in queries:
        question = query["question"]
        found = setup.retrieve(question)
        before = "\n\n".join(setup.texts(found))
        for name, pipe in pipes.items():
            started = time.perf_counter()
            trimmed, result = setup.trim(pipe, question, found, query.get("task_type"))
            trim_ms = (time.perf_counter() - started) * 1000
            after = "\n\n".join(setup.texts(trimmed))
            rows[name].append(
                {
                    "id": query["id"],
                    "retrieved": len(found),
                    "kept": len(trimmed),
                    "tokens_without": pipe.counter.count(before),
                    "tokens_with": pipe.counter.count(after),
                    "prompt_tokens_with": result.tokens.prompt,
                    "recall_without": answer_recall(before, query["answers"]),
                    "recall_with": answer_recall(after, query["answers"]),
                    "trim_ms": trim_ms,
                }
            )
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(key: str) -> float:
        return statistics.fmean(r[key] for r in rows)

    def recall(key: str) -> tuple[float, int]:
        values = [r[key] for r in rows if r[key] is not None]
        return statistics.fmean(values), len(values)

    recall_without, n = recall("recall_without")
    recall_with, _ = recall("recall_with")
    lost = sum(1 for r in rows if r["recall_without"] == 1.0 and r["recall_with"] == 0.0)
    gained = sum(1 for r in rows if r["recall_without"] == 0.0 and r["recall_with"] == 1.0)
    return {
        "queries": len(rows),
        "mean_tokens_without": mean("tokens_without"),
        "mean_tokens_with": mean("tokens_with"),
        "median_tokens_without": statistics.median(r["tokens_without"] for r in rows),
        "median_tokens_with": statistics.median(r["tokens_with"] for r in rows),
        "token_reduction": 1 - mean("tokens_with") / mean("tokens_without"),
        "mean_prompt_tokens_with": mean("prompt_tokens_with"),
        "answer_recall_without": recall_without,
        "answer_recall_with": recall_with,
        "answer_recall_n": n,
        "answers_lost": lost,
        "answers_gained": gained,
        "mean_retrieved": mean("retrieved"),
        "mean_kept": mean("kept"),
        "mean_trim_ms": mean("trim_ms"),
        "p95_trim_ms": sorted(r["trim_ms"] for r in rows)[max(0, int(0.95 * len(rows)) - 1)],
    }


def markdown(report: dict[str, Any]) -> str:
    packer = report["config"]["stages"]["packer"]["init_parameters"]
    lines = [
        "# Framework integrations: default retrievers with and without ragtrim",
        "",
        f"Kestrel corpus ({report['documents']} documents), {report['queries']} questions. "
        "Generated by `python benchmarks/bench_integrations.py`. Tokens: exact `o200k_base` "
        "counts of the retrieved documents joined as the framework passes them to a prompt; "
        '"with" is what the ragtrim adapter returns for the same retrieval '
        f"(`Pipeline.default()`, {report['budget']:,}-token prompt budget, packer "
        f"`min_probability` {packer['min_probability']}; the second variant only loosens "
        "that stop). Answer recall: "
        f"`ragtrim.bench.metrics.answer_recall` over {report['recall_n']} questions with span "
        'answers; "answers lost" counts questions whose answer was in the retrieved '
        "text but not in the trimmed text.",
        "",
    ]
    for name, entry in report["setups"].items():
        first = next(iter(entry["variants"].values()))
        lines += [
            f"## {name}",
            "",
            f"{entry['framework']} {entry['version']}: {entry['description']}. "
            f"Without ragtrim: **{first['mean_tokens_without']:.0f}** context tokens on average "
            f"(median {first['median_tokens_without']:.0f}), answer recall "
            f"**{first['answer_recall_without']:.3f}**.",
            "",
            "| ragtrim | mean tokens | median tokens | reduction | answer recall "
            "| answers lost | docs kept / retrieved | trim ms (mean / p95) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for variant, s in entry["variants"].items():
            lines.append(
                f"| {variant} | {s['mean_tokens_with']:.0f} | {s['median_tokens_with']:.0f} "
                f"| {100 * s['token_reduction']:.1f}% | {s['answer_recall_with']:.3f} "
                f"| {s['answers_lost']} | {s['mean_kept']:.1f} / {s['mean_retrieved']:.1f} "
                f"| {s['mean_trim_ms']:.0f} / {s['p95_trim_ms']:.0f} |"
            )
        lines.append("")
    lines += [
        "Trim time is dominated by embedding retrieved sentences the first time they are seen "
        "(the embedding cache makes repeats free): the run starts with an empty cache, the "
        "default variant trims first and pays for them, the second variant reuses them, and "
        "later setups reuse what earlier ones embedded.",
        "",
        f"Machine: {report['machine']}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="seeded random subset of queries")
    args = parser.parse_args(argv)

    from ragtrim.pipeline import Pipeline

    corpus = read_jsonl(CORPUS / "corpus.jsonl")
    queries = read_jsonl(CORPUS / "queries.jsonl")
    if args.limit:
        queries = sorted(random.Random(SEED).sample(queries, args.limit), key=lambda q: q["id"])
    # the note under the tables says the run starts with an empty embedding cache: make it so
    shutil.rmtree(WORK / "cache", ignore_errors=True)
    config = Pipeline().to_config()
    config["cache"]["directory"] = str(WORK / "cache")
    pipe = Pipeline(config)
    pipe.warm_up()
    pipes = {}
    for name, overrides in VARIANTS.items():
        variant = json.loads(json.dumps(config))
        variant["stages"]["packer"]["init_parameters"].update(overrides)
        pipes[name] = Pipeline(variant, embedder=pipe.stages["embedder"])  # one loaded model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        setups = [
            langchain_setup(pipe, corpus),
            llamaindex_setup(pipe, corpus),
            *haystack_setups(pipe, corpus),
        ]
    report: dict[str, Any] = {
        "documents": len(corpus),
        "queries": len(queries),
        "seed": SEED if args.limit else None,
        "budget": pipe.stages["packer"].config.budget,
        "variants": VARIANTS,
        "config": config,
        "machine": f"{platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs",
        "setups": {},
    }
    for setup in setups:
        started = time.perf_counter()
        rows = measure(setup, pipes, queries)
        summaries = {name: summarise(variant_rows) for name, variant_rows in rows.items()}
        report["recall_n"] = next(iter(summaries.values()))["answer_recall_n"]
        report["setups"][setup.name] = {
            "framework": setup.framework,
            "version": setup.version,
            "description": setup.description,
            "variants": summaries,
            "rows": rows,
        }
        for name, summary in summaries.items():
            print(
                f"{setup.name} [{name}]: {summary['mean_tokens_without']:.0f} -> "
                f"{summary['mean_tokens_with']:.0f} tokens, recall "
                f"{summary['answer_recall_without']:.3f} -> "
                f"{summary['answer_recall_with']:.3f}",
                file=sys.stderr,
            )
        print(f"{setup.name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "integrations.json").write_text(
        json.dumps(report, indent=2) + "\n", encoding="utf-8"
    )
    (RESULTS / "integrations.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
