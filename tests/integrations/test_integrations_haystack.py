"""Haystack components against the real haystack-ai: an InMemoryBM25Retriever pipeline with the
trimmer inserted, run and round-tripped through YAML."""

from __future__ import annotations

import os

import pytest

# Haystack decides on import whether Pipeline.run sends usage telemetry; tests are offline.
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
pytest.importorskip("haystack", reason="needs the haystack extra")

from haystack import Document  # noqa: E402
from haystack import Pipeline as HaystackPipeline  # noqa: E402
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever  # noqa: E402
from haystack.core.errors import DeserializationError  # noqa: E402
from haystack.dataclasses import ByteStream, ChatMessage  # noqa: E402
from haystack.document_stores.in_memory import InMemoryDocumentStore  # noqa: E402
from integrations_support import (  # noqa: E402
    assert_citations,
    context_tokens,
    shared_pipeline,
    subset_docs,
    subset_text,
)

from ragtrim.errors import ConfigError, InputError  # noqa: E402
from ragtrim.integrations.haystack import (  # noqa: E402
    RagtrimRetriever,
    RagtrimTrimmer,
    trim_documents,
)

ALLOWED = ["ragtrim.integrations.haystack"]
QUESTION = "When was Kestrel Relay 3.1 released?"


@pytest.fixture(scope="module")
def pipe(tiny_embedder_path, tmp_path_factory):
    return shared_pipeline(tiny_embedder_path, tmp_path_factory.mktemp("integrations-cache"))


@pytest.fixture(scope="module")
def store() -> InMemoryDocumentStore:
    store = InMemoryDocumentStore()
    store.write_documents(
        [
            Document(id=d["id"], content=d["text"], meta={"title": d["title"], **d["metadata"]})
            for d in subset_docs()
        ]
    )
    return store


def rag(store: InMemoryDocumentStore, trimmer: RagtrimTrimmer) -> HaystackPipeline:
    pipeline = HaystackPipeline()
    pipeline.add_component("retriever", InMemoryBM25Retriever(document_store=store, top_k=5))
    pipeline.add_component("trimmer", trimmer)
    pipeline.connect("retriever.documents", "trimmer.documents")
    return pipeline


def run(pipeline: HaystackPipeline, question: str = QUESTION, **trimmer) -> dict:
    return pipeline.run(
        {"retriever": {"query": question}, "trimmer": {"query": question, **trimmer}},
        include_outputs_from={"retriever"},
    )


def test_pipeline_run_trims_bm25_documents(pipe, store):
    out = run(rag(store, RagtrimTrimmer(pipeline=pipe.to_config(), budget=250)))
    docs, upstream = out["trimmer"]["documents"], out["retriever"]["documents"]
    assert docs and len(docs) <= len(upstream)
    assert_citations([(d.content, d.meta) for d in docs], subset_text())
    assert context_tokens(pipe, [d.content for d in docs]) <= 250
    bm25 = {d.id: d.score for d in upstream}
    for doc in docs:
        assert doc.id == doc.meta["ragtrim_source_id"]
        assert doc.meta["ragtrim_retriever_score"] == pytest.approx(bm25[doc.id])
        assert doc.score == doc.meta["ragtrim_score"]
        assert doc.meta["product"] == next(
            d["metadata"]["product"] for d in subset_docs() if d["id"] == doc.id
        )
    prompt = out["trimmer"]["prompt"]
    assert pipe.counter.count(prompt) <= 250 and prompt.endswith(f"Question: {QUESTION}\nAnswer:")
    system, user = out["trimmer"]["messages"]
    assert isinstance(system, ChatMessage) and system.role.value == "system"
    assert all(d.content in user.text for d in docs)


def test_yaml_round_trip_gives_the_same_output(pipe, store, tmp_path):
    pipeline = rag(store, RagtrimTrimmer(pipeline=pipe.to_config(), budget=250, task_type="lookup"))
    text = pipeline.dumps()
    assert "ragtrim.integrations.haystack.RagtrimTrimmer" in text
    with pytest.raises(DeserializationError, match="allowlist"):
        HaystackPipeline.loads(text)  # Haystack 3 loads only allow-listed modules
    loaded = HaystackPipeline.loads(text, allowed_modules=ALLOWED)
    assert loaded.dumps() == text
    trimmer = loaded.get_component("trimmer")
    assert (trimmer.budget, trimmer.task_type, trimmer.pipeline) == (
        250,
        "lookup",
        pipe.to_config(),
    )
    first = run(pipeline)["trimmer"]
    second = run(loaded)["trimmer"]
    assert [(d.id, d.content) for d in first["documents"]] == [
        (d.id, d.content) for d in second["documents"]
    ]
    assert first["prompt"] == second["prompt"]


def test_run_time_budget_and_filters_override(pipe, store):
    pipeline = rag(store, RagtrimTrimmer(pipeline=pipe, budget=400))
    both = run(
        pipeline,
        "minimum Okta password length",
        budget=150,
        filters={"updated": {"$gte": "2025-01-01"}},
    )
    assert "pol-password-mfa-2024" in {d.id for d in both["retriever"]["documents"]}
    out = both["trimmer"]
    assert pipe.counter.count(out["prompt"]) <= 150
    assert out["documents"]
    assert all(d.meta["updated"] >= "2025-01-01" for d in out["documents"])
    assert "pol-password-mfa-2024" not in {d.id for d in out["documents"]}


def test_a_pipeline_object_serialises_as_its_config(pipe):
    data = RagtrimTrimmer(pipeline=pipe, budget=300).to_dict()
    assert data == {
        "type": "ragtrim.integrations.haystack.RagtrimTrimmer",
        "init_parameters": {
            "pipeline": pipe.to_config(),
            "budget": 300,
            "task_type": None,
            "filters": None,
        },
    }
    assert RagtrimTrimmer.from_dict(data).to_dict() == data


def test_retriever_component_over_a_saved_index(pipe, tmp_path):
    pipe.save(tmp_path / "idx")
    retriever = RagtrimRetriever(pipeline=tmp_path / "idx", budget=250)
    data = retriever.to_dict()
    assert data["init_parameters"]["pipeline"] == str(tmp_path / "idx")
    pipeline = HaystackPipeline()
    pipeline.add_component("ragtrim", RagtrimRetriever.from_dict(data))
    loaded = HaystackPipeline.loads(pipeline.dumps(), allowed_modules=ALLOWED)
    out = loaded.run(
        {"ragtrim": {"query": "What are FieldKit support's opening hours on Saturdays?"}}
    )
    docs = out["ragtrim"]["documents"]
    assert docs
    assert_citations([(d.content, d.meta) for d in docs], subset_text())
    assert pipe.counter.count(out["ragtrim"]["prompt"]) <= 250
    with pytest.raises(ConfigError, match="index cannot be serialised"):
        RagtrimRetriever(pipeline=pipe).to_dict()


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"pipeline": {"stages": {}}}, "RagtrimRetriever needs an index"),
        ({}, "RagtrimRetriever needs an index"),
        ({"pipeline": "/no/such/dir"}, "no such saved index directory or config file"),
    ],
)
def test_retriever_config_errors(kwargs, fragment):
    with pytest.raises(ConfigError) as excinfo:
        RagtrimRetriever(**kwargs)
    assert fragment in str(excinfo.value)


@pytest.mark.parametrize("budget", [0, -5, 2.5, True])
def test_bad_budget(budget):
    with pytest.raises(ConfigError, match="RagtrimTrimmer: budget must be a positive integer"):
        RagtrimTrimmer(budget=budget)


def test_bad_documents_are_named(pipe):
    cases = [
        (
            [Document(id="b", blob=ByteStream(b"\x00\x01"))],
            "Haystack document #0 (id='b') has a blob; only text documents can be trimmed",
        ),
        ([Document(id="n")], "Haystack document #0 (id='n') has no content"),
        (
            [Document(id="ok", content="x"), {"content": "y"}],
            "Haystack document #1: expected a haystack Document, got dict",
        ),
        ([Document(id="m", content="x", meta={"raw": b"bytes"})], "metadata raw is a bytes"),
    ]
    for docs, fragment in cases:
        with pytest.raises(InputError) as excinfo:
            trim_documents(pipe, QUESTION, docs)
        assert fragment in str(excinfo.value)
