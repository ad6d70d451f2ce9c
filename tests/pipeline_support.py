"""Shared builders for end-to-end tests: pipeline configs with the tiny local embedder, cheap
deterministic embedders, and small hand-written documents whose answers are known."""

from __future__ import annotations

import copy
import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from fakes import HashingEmbedder

from ragtrim.config import PipelineConfig, StageSpec
from ragtrim.embedding.models import CallableEmbedder
from ragtrim.pipeline import Pipeline, default_stages

REPO = Path(__file__).resolve().parents[1]
KESTREL = REPO / "corpora" / "kestrel" / "corpus.jsonl"

_DEFAULT_CONFIG: dict[str, Any] | None = None


def default_config() -> dict[str, Any]:
    """What ``Pipeline().to_config()`` returns, without opening caches in the user's cache
    folder; computed once, a fresh deep copy per call."""
    global _DEFAULT_CONFIG
    if _DEFAULT_CONFIG is None:
        stages = {slot: StageSpec(**stage.to_dict()) for slot, stage in default_stages().items()}
        _DEFAULT_CONFIG = PipelineConfig(stages=stages).model_dump(mode="json")
    return copy.deepcopy(_DEFAULT_CONFIG)


def tiny_config(model: Path | str | None, cache_dir: Path, **cache: Any) -> dict[str, Any]:
    """The default pipeline with the tiny sentence-transformer and a private cache folder."""
    config = default_config()
    if model is not None:
        config["stages"]["embedder"] = {
            "type": "SentenceTransformerEmbedder",
            "init_parameters": {"model": str(model)},
        }
    config["cache"]["directory"] = str(cache_dir)
    config["cache"].update(cache)
    return config


def hash_embedder(name: str = "hash64") -> CallableEmbedder:
    """Bag-of-words vectors: texts sharing words are similar; no model, no torch."""
    return CallableEmbedder(HashingEmbedder().embed, name=name)


def cheap_vectors(texts: list[str], dimension: int = 16) -> np.ndarray:
    """Deterministic, nearly free vectors (for measuring everything but the model)."""
    rows = np.zeros((len(texts), dimension), dtype=np.float32)
    for i, text in enumerate(texts):
        rows[i, len(text) % dimension] = 1.0
        rows[i, zlib.crc32(text[:32].encode("utf-8", "surrogatepass")) % dimension] += 0.5
    return rows


def kestrel(limit: int | None = None) -> list[dict[str, Any]]:
    with KESTREL.open(encoding="utf-8") as handle:
        docs = [json.loads(line) for line in handle]
    return docs[:limit] if limit else docs


DOCS: list[dict[str, Any]] = [
    {
        "id": "relay-retention",
        "text": (
            "# Relay retention\n\nKestrel Relay keeps message data for seven days by default. "
            "Operators can raise the retention period to ninety days in relay.toml. "
            "Expired segments are deleted by the compactor every hour."
        ),
        "metadata": {"product": "relay", "doc_type": "guide", "updated": "2025-02-01"},
    },
    {
        "id": "travel-hotels",
        "text": (
            "# Hotel policy\n\nThe hotel cap in London is 250 GBP per night. "
            "In Paris the cap is 220 EUR per night. "
            "Bookings above the cap need written approval from a director."
        ),
        "metadata": {"product": "travel", "doc_type": "policy", "updated": "2024-11-15"},
    },
    {
        "id": "beacon-alerts",
        "text": (
            "# Beacon alerting\n\nBeacon sends an alert when the error rate exceeds five percent "
            "for ten minutes. Alerts are routed to the on-call rotation through the pager "
            "integration. Silenced alerts expire after twenty four hours."
        ),
        "metadata": {"product": "beacon", "doc_type": "guide", "updated": "2025-03-10"},
    },
    {
        "id": "relay-upgrades",
        "text": (
            "# Upgrading Relay\n\nUpgrade one broker at a time and wait for the cluster to report "
            "healthy before continuing. Rolling upgrades keep the cluster available. "
            "Never skip more than one minor version."
        ),
        "metadata": {"product": "relay", "doc_type": "guide", "updated": "2025-01-20"},
    },
]


def passages_of(result: Any) -> list[tuple[str, str]]:
    return [(p.doc_id, p.text) for p in result.passages]


def returned_chunk_ids(result: Any) -> set[str]:
    """Every chunk the query path handed on: packed ones plus every reported drop."""
    packed = {cid for p in result.passages for cid in p.chunk_ids}
    return packed | {d.chunk_id for d in result.report.drops}


def cache_worker(cache_dir: str, worker: int, rounds: int = 15) -> list[tuple[str, list[str]]]:
    """Run in a spawned process: ingest and query through a cache folder shared with others."""
    config = tiny_config(None, Path(cache_dir), semantic=True, semantic_threshold=0.9)
    pipe = Pipeline(config, embedder=hash_embedder())
    pipe.ingest(DOCS)
    questions = [
        "What is the hotel cap in London?",
        "How long does Relay keep message data?",
        "When does Beacon send an alert?",
        f"private question {worker}",
    ]
    seen = []
    for i in range(rounds):
        question = questions[i % len(questions)]
        result = pipe.run(question)
        seen.append((question, [p.doc_id for p in result.passages]))
    return seen
