"""Shared by the framework adapter tests: one small ingested pipeline per session, the corpus
subset it holds, and the checks every adapter must pass (budget, citations -> source text)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline_support import kestrel, tiny_config

from ragtrim.packing.packer import ELLIPSIS
from ragtrim.pipeline import Pipeline

# Haystack decides on import whether Pipeline.run sends usage telemetry; tests are offline
# (the snippet tests import Haystack after this module).
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

REPO = Path(__file__).resolve().parents[2]
QUERIES = REPO / "corpora" / "kestrel" / "queries.jsonl"

#: twelve short Kestrel documents (about 9k tokens): fast to embed with the tiny model
SUBSET_IDS = (
    "relay-release-3-0",
    "relay-release-3-1",
    "relay-release-3-3",
    "relay-release-3-4",
    "relay-glossary",
    "relay-faq",
    "fieldkit-support-hours",
    "int-it-helpdesk",
    "int-holiday-calendar-2025",
    "pol-password-mfa-2024",
    "pol-password-mfa-2025",
    "ledger-release-2025-q3",
)

_SHARED: dict[str, Pipeline] = {}


def subset_docs() -> list[dict[str, Any]]:
    by_id = {d["id"]: d for d in kestrel()}
    return [by_id[i] for i in SUBSET_IDS]


def subset_text() -> dict[str, str]:
    return {d["id"]: d["text"] for d in subset_docs()}


def subset_questions() -> list[dict[str, Any]]:
    """Questions of queries.jsonl whose gold documents are all in the subset."""
    with QUERIES.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    return [q for q in rows if q["gold_doc_ids"] and set(q["gold_doc_ids"]) <= set(SUBSET_IDS)]


def shared_pipeline(model: Path, cache_dir: Path) -> Pipeline:
    """The default pipeline with the tiny embedder, the subset ingested; built once."""
    key = str(model)
    if key not in _SHARED:
        pipeline = Pipeline(tiny_config(model, cache_dir))
        pipeline.ingest(subset_docs())
        _SHARED[key] = pipeline
    return _SHARED[key]


def squash(text: str) -> str:
    return "".join(text.split())


def assert_spans_map(passage_text: str, source_text: str, spans: Sequence[Sequence[int]]) -> None:
    """Each ellipsis-separated piece of a passage is the source text at its span (the packer
    may join touching sentences with one space, so whitespace is ignored)."""
    pieces = passage_text.split(ELLIPSIS)
    assert len(pieces) == len(spans), (pieces, spans)
    for piece, (start, end) in zip(pieces, spans, strict=True):
        assert 0 <= start < end <= len(source_text)
        assert squash(piece.removesuffix("…")) == squash(source_text[start:end])


def assert_citations(
    items: Sequence[tuple[str, Mapping[str, Any]]], sources: Mapping[str, str]
) -> None:
    """``items``: (text, metadata) of output documents in order; ``sources``: id -> text."""
    assert [m["ragtrim_citation"] for _, m in items] == list(range(1, len(items) + 1))
    seen = set()
    for text, metadata in items:
        source_id = metadata["ragtrim_source_id"]
        assert source_id not in seen  # one passage per source
        seen.add(source_id)
        assert source_id in sources
        assert_spans_map(text, sources[source_id], metadata["ragtrim_spans"])
        assert isinstance(metadata["ragtrim_score"], float)


def context_tokens(pipeline: Pipeline, texts: Sequence[str]) -> int:
    return pipeline.counter.count("\n\n".join(texts))
