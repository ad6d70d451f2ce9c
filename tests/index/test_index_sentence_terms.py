"""Sentence terms stored at ingestion must equal what scoring computes from the text, stay
row-aligned through upserts, deletes, compaction and save/load, and make packing identical."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pipeline_support import DOCS, hash_embedder, kestrel, tiny_config

from ragtrim.errors import IndexStoreError
from ragtrim.index.persistence import seal_manifest
from ragtrim.index.sentence_terms import FOLDER, SentenceTerms
from ragtrim.pipeline import Pipeline
from ragtrim.query import QueryContext
from ragtrim.scoring import sentence_terms
from ragtrim.types import Candidate, Chunk

QUESTIONS = [
    "How long does Relay keep message data?",
    "What is the hotel cap in London?",
    "Which alerts does Beacon send?",
    "How do I rotate an API key?",
]


@pytest.fixture
def pipe(tmp_path: Path) -> Pipeline:
    pipeline = Pipeline(
        tiny_config(None, tmp_path / "cache", retrieval=False), embedder=hash_embedder()
    )
    pipeline.ingest(DOCS + kestrel(10))
    return pipeline


def stored_sets(index, row: int) -> list[frozenset[str]]:
    terms = index.sentence_terms
    return [frozenset(terms.vocabulary[i] for i in ids) for ids in terms.of_row(row)]


def expected_sets(chunk: Chunk) -> list[frozenset[str]]:
    spans = chunk.sentences or ((0, len(chunk.text)),)
    return [sentence_terms(chunk.text[a:b]) for a, b in spans]


def assert_aligned(index) -> None:
    assert len(index.sentence_terms) == len(index.chunks)
    for row, chunk in enumerate(index.chunks):
        assert stored_sets(index, row) == expected_sets(chunk)


def test_stored_terms_equal_the_tokenised_text_after_upserts_deletes_and_compaction(pipe):
    assert_aligned(pipe.index)
    pipe.ingest([dict(DOCS[0], text=DOCS[0]["text"] + " Snapshots are kept for 30 days.")])
    pipe.delete([DOCS[1]["id"]])
    assert len(pipe.index.chunks) > len(pipe.index)  # tombstones
    assert_aligned(pipe.index)
    pipe.index.compact()
    assert len(pipe.index.chunks) == len(pipe.index)
    assert_aligned(pipe.index)


def pack_all(pipe: Pipeline, index) -> list[str]:
    packer = pipe.stages["packer"]
    contexts = []
    for question in QUESTIONS:
        ctx = QueryContext(question, pipe.counter, None, None, pipe.index, pipe.embedder)
        candidates = pipe.stages["retriever"].run(ctx, []).candidates
        ctx.index = index
        contexts.append(packer.run(ctx, [Candidate(c.chunk, c.score) for c in candidates]).context)
    return contexts


def test_packing_with_stored_terms_equals_packing_from_text(pipe):
    class TextOnly:
        """The index without stored terms: scoring tokenises every sentence."""

        def __getattr__(self, name):
            return getattr(pipe.index, name)

        def sentence_terms_of(self, chunk_id):
            return None

    stored = pack_all(pipe, pipe.index)
    assert stored == pack_all(pipe, TextOnly())
    assert all(stored)


def test_save_load_round_trip_and_rebuild_when_missing(pipe, tmp_path):
    pipe.save(tmp_path / "index")
    loaded = Pipeline.load(tmp_path / "index", embedder=hash_embedder())
    assert loaded.index.sentence_terms.vocabulary == pipe.index.sentence_terms.vocabulary
    np.testing.assert_array_equal(loaded.index.sentence_terms.ids, pipe.index.sentence_terms.ids)
    # an index written before sentence terms existed: rebuilt from the chunks at load
    data = next(p for p in (tmp_path / "index").iterdir() if (p / FOLDER).is_dir())
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    shutil.rmtree(data / FOLDER)
    manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.startswith(FOLDER)}
    (tmp_path / "index" / "manifest.json").write_text(json.dumps(seal_manifest(manifest)))
    rebuilt = Pipeline.load(tmp_path / "index", embedder=hash_embedder())
    assert_aligned(rebuilt.index)
    assert pack_all(rebuilt, rebuilt.index) == pack_all(pipe, pipe.index)


def test_inconsistent_stored_terms_are_an_error_naming_the_folder(pipe, tmp_path):
    terms = pipe.index.sentence_terms
    terms.save(tmp_path)
    np.save(tmp_path / FOLDER / "chunk_offsets.npy", terms.chunk_offsets[:-1])
    with pytest.raises(IndexStoreError, match="sentence_terms: sentence terms do not match"):
        SentenceTerms.load(tmp_path, pipe.index.chunks)
    (tmp_path / FOLDER / "terms.json").write_text("{not json")
    with pytest.raises(IndexStoreError, match="cannot read sentence terms"):
        SentenceTerms.load(tmp_path, pipe.index.chunks)


def test_a_chunk_without_sentence_spans_is_one_sentence():
    terms = SentenceTerms()
    chunk = Chunk(id="c", doc_id="d", text="Relay keeps data", start=0, end=16, token_count=3)
    terms.append([chunk])
    assert [set(terms.vocabulary[i] for i in ids) for ids in terms.of_row(0)] == [
        {"relay", "keep", "data"}
    ]
