"""Fuzzing documents, queries, filters, budgets and configs (issue 15): every call returns a
result or raises a ``RagtrimError``; a result never exceeds its budget, its counts are exact
and its prompt holds only the template's reserved lines.

Bounded for CI (``fuzz-ci``); ``RAGTRIM_FUZZ_PROFILE=long`` runs 3,000 examples per test.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from fuzz_support import (
    FUZZ,
    budgets,
    dedup_params,
    documents,
    filter_params,
    filters,
    packer_params,
    queries,
    reranker_params,
    retriever_params,
)
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pipeline_support import DOCS, hash_embedder, tiny_config

from ragtrim.errors import RagtrimError
from ragtrim.packing.templates import reserved_lines
from ragtrim.pipeline import Pipeline
from ragtrim.tokens import get_counter
from ragtrim.types import TrimResult

COUNTER = get_counter("o200k_base")


def config_for(cache_dir: Path, **stages: dict[str, Any]) -> dict[str, Any]:
    config = tiny_config(None, cache_dir, embeddings=False, retrieval=False)
    for slot, params in stages.items():
        config["stages"][slot]["init_parameters"].update(params)
    return config


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    built = Pipeline(
        config_for(tmp_path_factory.mktemp("fuzz")), embedder=hash_embedder(), counter=COUNTER
    )
    built.ingest(DOCS)
    return built


def check(result: TrimResult, pipe: Pipeline, budget: Any) -> None:
    """What every result must satisfy."""
    packer = pipe.stages["packer"]
    limit = packer.effective_budget(budget)  # type: ignore[union-attr]
    scope = packer.config.budget_scope  # type: ignore[union-attr]
    tokens = result.tokens
    assert tokens.context == COUNTER.count(result.context)
    assert tokens.prompt == COUNTER.count(result.prompt)
    if limit is not None:
        used = tokens.context if scope == "context" else max(tokens.prompt, tokens.messages)
        assert used <= limit, (used, limit)
    numbers = [p.number for p in result.passages]
    assert numbers == list(range(1, len(numbers) + 1))
    header = reserved_lines(packer.config.passage_header).header  # type: ignore[union-attr]
    headers = [line for line in result.prompt.splitlines() if header.match(line)]
    assert len(headers) >= len(result.passages)


def attempt(call) -> TrimResult | None:
    try:
        return call()
    except RagtrimError:
        return None


@FUZZ
@given(query=queries, flt=filters, budget=budgets)
def test_run_on_an_index(pipe: Pipeline, query: str, flt: Any, budget: Any) -> None:
    result = attempt(lambda: pipe.run(query, filters=flt, budget=budget))
    if result is not None:
        check(result, pipe, budget)


@FUZZ
@given(query=queries, docs=documents, budget=budgets, scores=st.booleans())
def test_trim_of_arbitrary_documents(
    pipe: Pipeline, query: str, docs: list[dict[str, Any]], budget: Any, scores: bool
) -> None:
    given_scores = [1.0 / (i + 1) for i in range(len(docs))] if scores else None
    result = attempt(
        lambda: pipe.trim(query, documents=copy.deepcopy(docs), scores=given_scores, budget=budget)
    )
    if result is not None:
        check(result, pipe, budget)


@settings(FUZZ, max_examples=max(FUZZ.max_examples // 2, 10))
@given(params=packer_params, docs=documents, query=queries, budget=budgets)
def test_arbitrary_packer_configs(
    tmp_path_factory: pytest.TempPathFactory,
    params: dict[str, Any],
    docs: list[dict[str, Any]],
    query: str,
    budget: Any,
) -> None:
    try:
        built = Pipeline(
            config_for(tmp_path_factory.getbasetemp() / "fuzz-configs", packer=params),
            embedder=hash_embedder(),
            counter=COUNTER,
        )
    except RagtrimError:
        event("config rejected")
        return
    result = attempt(lambda: built.trim(query, documents=docs, budget=budget))
    event("result" if result is not None else "RagtrimError")
    if result is not None:
        check(result, built, budget)


@FUZZ
@given(docs=documents)
def test_ingest_then_query(tmp_path_factory: pytest.TempPathFactory, docs: list[Any]) -> None:
    built = Pipeline(
        config_for(tmp_path_factory.getbasetemp() / "fuzz-ingest"),
        embedder=hash_embedder(),
        counter=COUNTER,
    )
    if attempt(lambda: built.ingest(docs)) is None:
        return
    result = attempt(lambda: built.run("hotel cap London", budget=300))
    if result is not None:
        check(result, built, 300)


@settings(FUZZ, max_examples=max(FUZZ.max_examples // 2, 10))
@given(
    retriever=retriever_params,
    reranker=reranker_params,
    dedup=dedup_params,
    flt=filter_params,
    query=queries,
    budget=budgets,
)
def test_arbitrary_query_stage_configs(
    tmp_path_factory: pytest.TempPathFactory,
    retriever: dict[str, Any],
    reranker: dict[str, Any],
    dedup: dict[str, Any],
    flt: dict[str, Any],
    query: str,
    budget: Any,
) -> None:
    try:
        built = Pipeline(
            config_for(
                tmp_path_factory.getbasetemp() / "fuzz-stages",
                retriever=retriever,
                reranker=reranker,
                dedup=dedup,
                filter=flt,
            ),
            embedder=hash_embedder(),
            counter=COUNTER,
        )
    except RagtrimError:
        event("config rejected")
        return
    built.ingest(DOCS)
    result = attempt(lambda: built.run(query, budget=budget))
    event("result" if result is not None else "RagtrimError")
    if result is not None:
        check(result, built, budget)
