"""The hybrid index through the pipeline: upserts, deletes, compaction, persistence.

Real components throughout: the tiny sentence-transformer (real loading and encoding code),
real tiktoken, BM25, FAISS and diskcache. A cheap callable embedder stands in for the model
only where a test is about something else (compaction, kill -9, a 2 MB document).
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from pipeline_support import (
    DOCS,
    cheap_vectors,
    hash_embedder,
    kestrel,
    returned_chunk_ids,
    tiny_config,
)

from ragtrim.chunking.chunkers import StructureChunker
from ragtrim.embedding.cache import CachedEmbedder
from ragtrim.embedding.models import CallableEmbedder
from ragtrim.errors import IndexStoreError, InputError
from ragtrim.index.persistence import seal_manifest
from ragtrim.index.store import HybridIndex, json_safe_metadata
from ragtrim.pipeline import Pipeline
from ragtrim.tokens import get_counter
from ragtrim.types import Document

LONDON = "What is the hotel cap in London?"


@pytest.fixture
def config(tiny_embedder_path: Path, tmp_path: Path) -> dict:
    # retrieval cache off: these tests must see the index itself, never a cached result
    return tiny_config(tiny_embedder_path, tmp_path / "cache", retrieval=False)


@pytest.fixture
def pipe(config: dict) -> Pipeline:
    pipeline = Pipeline(config)
    pipeline.ingest(DOCS)
    return pipeline


def all_live_texts(pipeline: Pipeline) -> list[str]:
    index = pipeline.index
    return [c.text for c, alive in zip(index.chunks, index.alive, strict=True) if alive]


def snapshot(pipeline: Pipeline) -> dict:
    """Everything a query can observe about the index."""
    index = pipeline.index
    return {
        "fingerprint": index.fingerprint,
        "chunks": len(index),
        "rows": len(index.chunks),
        "documents": index.n_documents,
        "bm25_rows": len(index.bm25),
        "dense_rows": len(index.dense) if index.dense else 0,
        "sentences": int(index.sentence_offsets[-1]),
        "texts": all_live_texts(pipeline),
    }


def answers(pipeline: Pipeline, queries: list[str]) -> list[tuple]:
    out = []
    for query in queries:
        result = pipeline.run(query)
        passages = [(p.doc_id, p.text, p.spans, round(p.score, 6)) for p in result.passages]
        out.append((result.prompt, passages, result.tokens.to_dict()))
    return out


QUERIES = [LONDON, "How long does Relay keep data?", "When does Beacon alert?", "rolling upgrade"]


# ---------------------------------------------------------------------------------- upserts
def test_unchanged_documents_make_no_model_calls(config: dict) -> None:
    pipe = Pipeline(config)
    first = pipe.ingest(DOCS)
    assert first.model_calls > 0 and first.chunks > 0 and first.unchanged == 0
    fingerprint, calls = pipe.index.fingerprint, pipe.embedder.model_calls

    again = pipe.ingest(DOCS)
    assert (again.unchanged, again.chunks, again.model_calls) == (len(DOCS), 0, 0)
    assert pipe.embedder.model_calls == calls
    assert pipe.index.fingerprint == fingerprint

    # a new process (same cache folder) re-chunks but embeds nothing, and builds the same index
    fresh = Pipeline(config)
    stats = fresh.ingest(DOCS)
    assert fresh.embedder.model_calls == 0 and stats.embedding_misses == 0
    assert stats.chunks == first.chunks
    assert fresh.index.fingerprint == fingerprint


def test_changed_document_loses_its_old_chunks_in_bm25_and_faiss(pipe: Pipeline) -> None:
    old_text = next(c.text for c in pipe.index.chunks if c.doc_id == "travel-hotels")
    assert "London" in old_text
    before = pipe.index.fingerprint
    changed = dict(
        DOCS[1], text="# Hotel policy\n\nThe zebra allowance in Madrid is 180 EUR per night."
    )
    stats = pipe.ingest([changed])
    assert (stats.removed, stats.unchanged, stats.documents) == (1, 0, 1)
    assert pipe.index.fingerprint != before
    assert pipe.index.n_documents == len(DOCS)

    rows = len(pipe.index.chunks)  # ask for every row: nothing may hide below the top-k
    hits, _ = pipe.index.bm25_search("hotel cap London 250 GBP", rows, None)
    assert hits.size and not any("London" in pipe.index.chunk_at(r).text for r in hits)
    vector = pipe.embedder.embed([old_text])[0]
    hits, _ = pipe.index.dense_search(vector, rows, None)
    assert hits.size and not any("London" in pipe.index.chunk_at(r).text for r in hits)

    result = pipe.run(LONDON)
    assert "London" not in result.context
    returned = returned_chunk_ids(result)
    assert returned and all(pipe.index.get_chunk(c) is not None for c in returned)
    assert not any("London" in pipe.index.get_chunk(c).text for c in returned)
    assert "zebra allowance" in pipe.run("zebra allowance in Madrid").context


def test_deleted_documents_are_never_returned(pipe: Pipeline) -> None:
    before = pipe.index.fingerprint
    assert pipe.delete(["travel-hotels", "travel-hotels", "no-such-doc"]) == 1
    deleted = pipe.index.fingerprint
    assert deleted != before
    assert pipe.delete(["no-such-doc"]) == 0
    assert pipe.delete(["travel-hotels"]) == 0
    assert pipe.index.fingerprint == deleted
    assert pipe.index.n_documents == len(DOCS) - 1
    assert not any("London" in text for text in all_live_texts(pipe))
    result = pipe.run(LONDON)
    assert not any(c.startswith("travel-hotels#") for c in returned_chunk_ids(result))
    assert all(p.doc_id != "travel-hotels" for p in result.passages)
    with pytest.raises(InputError, match="list of document ids"):
        pipe.index.delete("relay-retention")


def test_fingerprint_changes_on_every_change_and_never_on_a_no_op(config: dict) -> None:
    pipe = Pipeline(config)
    seen = [pipe.index.fingerprint]

    def changed(action) -> None:
        action()
        assert pipe.index.fingerprint not in seen
        seen.append(pipe.index.fingerprint)

    def unchanged(action) -> None:
        action()
        assert pipe.index.fingerprint == seen[-1]

    changed(lambda: pipe.ingest(DOCS[:2]))
    unchanged(lambda: pipe.ingest(DOCS[:2]))
    changed(lambda: pipe.ingest(DOCS[2:3]))
    changed(lambda: pipe.ingest([dict(DOCS[0], text=DOCS[0]["text"] + " Extra sentence.")]))
    changed(lambda: pipe.ingest([dict(DOCS[0], metadata={"product": "other"})]))
    changed(lambda: pipe.ingest([DOCS[0]]))  # back to the first version: still a new state
    unchanged(lambda: pipe.ingest([{"id": "never-seen", "text": "   "}]))
    unchanged(lambda: pipe.delete(["never-seen"]))
    changed(lambda: pipe.ingest([{"id": DOCS[2]["id"], "text": ""}]))  # emptied: removed
    changed(lambda: pipe.delete([DOCS[1]["id"]]))
    unchanged(lambda: pipe.index.compact())


def test_fingerprint_depends_on_how_the_index_was_built(
    config: dict, tiny_embedder_path: Path, tmp_path: Path
) -> None:
    """Same documents, other chunker or embedder: a shared retrieval cache must not match."""
    reference = Pipeline(config)
    reference.ingest(DOCS)
    small_chunks = tiny_config(tiny_embedder_path, tmp_path / "cache", retrieval=False)
    small_chunks["stages"]["chunker"]["init_parameters"].update(
        min_tokens=4, target_tokens=12, max_tokens=16
    )
    other = Pipeline(small_chunks)
    other.ingest(DOCS)
    assert len(other.index) > len(reference.index)
    assert other.index.fingerprint != reference.index.fingerprint
    hashed = Pipeline(config, embedder=hash_embedder())
    hashed.ingest(DOCS)
    assert hashed.index.fingerprint != reference.index.fingerprint


def test_empty_documents_are_skipped_and_counted(pipe: Pipeline) -> None:
    stats = pipe.ingest([{"id": "blank", "text": " \n\t "}, {"id": "empty", "text": ""}, DOCS[0]])
    assert (stats.skipped_empty, stats.unchanged, stats.chunks, stats.model_calls) == (2, 1, 0, 0)
    assert pipe.index.n_documents == len(DOCS)
    assert pipe.index.get_chunk("blank#0-0") is None
    # emptying an indexed document removes it
    stats = pipe.ingest([{"id": "beacon-alerts", "text": ""}])
    assert (stats.skipped_empty, stats.removed) == (1, 1)
    assert not any("Beacon" in text for text in all_live_texts(pipe))


def test_duplicate_ids_in_one_batch_are_named_and_nothing_changes(pipe: Pipeline) -> None:
    before = snapshot(pipe)
    batch = [DOCS[0], {"id": "x", "text": "one"}, {"id": "x", "text": "two"}, DOCS[0]]
    with pytest.raises(
        InputError, match=r"duplicate document ids in one batch: 'relay-retention', 'x'"
    ):
        pipe.ingest(batch)
    assert snapshot(pipe) == before


def test_an_embedder_failing_mid_batch_leaves_the_index_unchanged(config: dict) -> None:
    calls = {"n": 0, "fail_at": None}

    def flaky(texts: list[str]) -> np.ndarray:
        calls["n"] += 1
        if calls["fail_at"] == calls["n"]:
            raise RuntimeError("model server went away")
        return cheap_vectors(texts, 32)

    pipe = Pipeline(config, embedder=CallableEmbedder(flaky, name="flaky", dimension=32))
    pipe.ingest(DOCS[:3])
    before, before_answers = snapshot(pipe), answers(pipe, QUERIES)
    calls["fail_at"] = calls["n"] + 2  # chunk vectors succeed, sentence vectors fail
    update = [dict(DOCS[1], text="Changed text about a zebra."), DOCS[3]]
    with pytest.raises(RuntimeError, match="went away"):
        pipe.ingest(update)
    assert snapshot(pipe) == before
    assert answers(pipe, QUERIES) == before_answers
    calls["fail_at"] = None
    stats = pipe.ingest(update)
    assert stats.removed == 1 and pipe.index.n_documents == 4
    assert "zebra" in pipe.run("zebra").context


def test_vectors_the_index_cannot_take_are_rejected_before_any_change() -> None:
    counter = get_counter("o200k_base")
    chunker = StructureChunker()
    index = HybridIndex()
    docs = [Document.coerce(d) for d in DOCS]
    index.upsert(docs[:2], lambda d: chunker.run(d, counter), CachedEmbedder(hash_embedder()))
    rows, fingerprint = len(index.bm25), index.fingerprint

    narrow = CallableEmbedder(lambda texts: cheap_vectors(texts, 8), name="narrow")
    with pytest.raises(InputError, match="8-dimensional vectors but this index holds 64"):
        index.upsert(docs[1:], lambda d: chunker.run(d, counter), CachedEmbedder(narrow))
    assert (len(index.bm25), len(index.dense), index.fingerprint) == (rows, rows, fingerprint)
    assert index.n_documents == 2 and len(index) == rows


def test_json_unsafe_metadata(pipe: Pipeline, tmp_path: Path) -> None:
    day = datetime.date(2025, 4, 2)
    stats = pipe.ingest(
        [
            {
                "id": "dated",
                "text": "Dated note on the quarterly audit.",
                "metadata": {"updated": day, "tags": ("audit", "q2")},
            }
        ]
    )
    assert stats.chunks == 1
    chunk = next(c for c in pipe.index.chunks if c.doc_id == "dated")
    assert chunk.metadata["updated"] == "2025-04-02" and chunk.metadata["tags"] == ["audit", "q2"]
    found = pipe.run("quarterly audit", filters={"updated": {"$gte": datetime.date(2025, 4, 1)}})
    assert [p.doc_id for p in found.passages] == ["dated"]
    pipe.save(tmp_path / "index")  # would raise TypeError on the date before the fix

    before = snapshot(pipe)
    with pytest.raises(InputError, match=r"document 'bad': metadata tags\[1\] is a set"):
        pipe.ingest([DOCS[0] | {"id": "bad", "metadata": {"tags": ["ok", {1, 2}]}}])
    with pytest.raises(InputError, match=r"metadata score is nan"):
        pipe.ingest([DOCS[0] | {"id": "bad", "metadata": {"score": float("nan")}}])
    assert snapshot(pipe) == before
    assert json_safe_metadata("d", {"n": np.int64(3), "x": {"t": datetime.time(1, 2)}}) == {
        "n": 3,
        "x": {"t": "01:02:00"},
    }


# ---------------------------------------------------------------------------------- compaction
def test_compaction_keeps_results_identical(config: dict) -> None:
    pipe = Pipeline(config, embedder=hash_embedder())
    pipe.ingest(DOCS + kestrel(8))
    pipe.delete(["relay-upgrades"])
    assert len(pipe.index.chunks) > len(pipe.index)  # tombstones present, not auto-compacted
    vector = pipe.embedder.embed(["cluster upgrade broker"], kind="query")[0]

    def searches():
        bm25 = pipe.index.bm25_search("cluster upgrade broker retention", 20, None)
        dense = pipe.index.dense_search(vector, 20, None)
        return [
            ([pipe.index.chunk_at(r).id for r in rows], scores) for rows, scores in (bm25, dense)
        ]

    before, before_answers, fingerprint = searches(), answers(pipe, QUERIES), pipe.index.fingerprint
    pipe.index.compact()
    assert len(pipe.index.chunks) == len(pipe.index) == len(pipe.index.bm25)
    after = searches()
    for (ids_a, scores_a), (ids_b, scores_b) in zip(before, after, strict=True):
        assert ids_a == ids_b
        np.testing.assert_allclose(scores_a, scores_b, rtol=1e-6)
    assert answers(pipe, QUERIES) == before_answers
    assert pipe.index.fingerprint == fingerprint


def test_many_deletions_compact_automatically(config: dict) -> None:
    pipe = Pipeline(config, embedder=hash_embedder())
    pipe.ingest(DOCS + kestrel(6))
    pipe.delete([d["id"] for d in kestrel(6)])
    assert len(pipe.index.chunks) == len(pipe.index)
    assert pipe.index.n_documents == len(DOCS) == len(pipe.index.documents)
    assert "250 GBP" in pipe.run(LONDON).context


# ---------------------------------------------------------------------------------- persistence
def test_save_load_round_trip_gives_equal_results(
    pipe: Pipeline, config: dict, tmp_path: Path
) -> None:
    pipe.ingest([dict(DOCS[1], text=DOCS[1]["text"] + " Taxis are reimbursed.")])
    pipe.delete(["beacon-alerts"])
    pipe.save(tmp_path / "index")
    loaded = Pipeline.load(tmp_path / "index")
    # everything but the cache location, which never comes from an index folder
    saved = pipe.to_config()
    saved["cache"]["directory"] = None
    assert loaded.to_config() == saved
    assert snapshot(loaded) == snapshot(pipe)
    assert answers(loaded, QUERIES) == answers(pipe, QUERIES)
    # document fingerprints survive: re-ingesting is free after a load too
    calls = loaded.embedder.model_calls
    stats = loaded.ingest([dict(DOCS[1], text=DOCS[1]["text"] + " Taxis are reimbursed."), DOCS[0]])
    assert stats.unchanged == 2 and loaded.embedder.model_calls == calls
    assert loaded.index.fingerprint == pipe.index.fingerprint
    loaded.ingest([DOCS[2]])
    assert "Beacon" in loaded.run("When does Beacon alert?").context


def test_load_names_a_missing_or_corrupted_file(pipe: Pipeline, tmp_path: Path) -> None:
    target = tmp_path / "index"
    pipe.save(target)
    manifest = json.loads((target / "manifest.json").read_text())
    data = target / manifest["data_dir"]
    vectors = data / "sentence_vectors.npy"
    raw = bytearray(vectors.read_bytes())
    raw[-1] ^= 0xFF
    vectors.write_bytes(bytes(raw))
    with pytest.raises(IndexStoreError, match="sentence_vectors.npy: checksum mismatch"):
        Pipeline.load(target)
    (data / "chunks.jsonl").unlink()
    with pytest.raises(IndexStoreError, match="chunks.jsonl: missing file"):
        Pipeline.load(target)
    with pytest.raises(IndexStoreError, match="manifest.json: not found"):
        Pipeline.load(tmp_path / "nowhere")
    manifest["data_dir"] = "../elsewhere"
    (target / "manifest.json").write_text(json.dumps(seal_manifest(manifest)))
    with pytest.raises(IndexStoreError, match="'data_dir' must name a data-<id> folder"):
        Pipeline.load(target)


@pytest.fixture(scope="module")
def other_tiny_embedder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import build_tiny_sentence_transformer

    return build_tiny_sentence_transformer(
        tmp_path_factory.mktemp("models") / "other-embedder", seed=1
    )


def test_load_rejects_another_embedding_model_or_encoding(
    pipe: Pipeline, other_tiny_embedder: Path, tmp_path: Path
) -> None:
    pipe.save(tmp_path / "index")
    other = tiny_config(other_tiny_embedder, tmp_path / "cache", retrieval=False)
    with pytest.raises(IndexStoreError) as info:
        Pipeline.load(tmp_path / "index", other)
    message = str(info.value)
    assert pipe.embedder.fingerprint in message
    assert Pipeline(other).embedder.fingerprint in message

    cl100k = pipe.to_config()
    cl100k["tokenizer"]["encoding"] = "cl100k_base"
    with pytest.raises(IndexStoreError, match="'o200k_base'.*'cl100k_base'"):
        Pipeline.load(tmp_path / "index", cl100k)
    no_stemming = pipe.to_config()
    no_stemming["index"]["stemmer"] = None
    with pytest.raises(IndexStoreError, match="index config differs"):
        Pipeline.load(tmp_path / "index", no_stemming)


KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from pipeline_support import DOCS, cheap_vectors, kestrel
from ragtrim.embedding.models import CallableEmbedder
from ragtrim.pipeline import Pipeline

embedder = CallableEmbedder(lambda t: cheap_vectors(t, 1024), name="wide", dimension=1024)
pipe = Pipeline.load({target!r}, embedder=embedder)
pipe.ingest(kestrel())
print("saving", flush=True)
for _ in range(20):
    pipe.save({target!r})
"""


def test_kill_9_mid_pipeline_save_leaves_a_loadable_index(config: dict, tmp_path: Path) -> None:
    target = tmp_path / "index"
    embedder = CallableEmbedder(lambda t: cheap_vectors(t, 1024), name="wide", dimension=1024)
    pipe = Pipeline(config, embedder=embedder)
    pipe.ingest(DOCS)
    pipe.save(target)
    previous = snapshot(pipe)
    original = json.loads((target / "manifest.json").read_text())["data_dir"]

    tests = str(Path(__file__).resolve().parents[1])
    script = textwrap.dedent(KILL_SCRIPT).format(tests=tests, target=str(target))
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "saving"
    interrupted = False
    deadline = time.time() + 60
    while time.time() < deadline and process.poll() is None:
        current = json.loads((target / "manifest.json").read_text())["data_dir"]
        writing = [p for p in target.glob("data-*") if p.name != current and any(p.iterdir())]
        if writing:
            os.kill(process.pid, signal.SIGKILL)
            interrupted = True
            break
        time.sleep(0.002)
    process.wait()
    assert interrupted, "the save finished before it could be interrupted"

    loaded = Pipeline.load(target, embedder=embedder)
    state = snapshot(loaded)
    manifest = json.loads((target / "manifest.json").read_text())
    if manifest["data_dir"] == original:
        assert state == previous
    else:  # the kill landed after a complete save: that save is what loads
        assert state["documents"] == len(DOCS) + len(kestrel())
    assert "250 GBP" in loaded.run(LONDON).context


# ---------------------------------------------------------------------------------- size
def test_a_2mb_document_end_to_end(config: dict) -> None:
    filler = "\n\n".join(d["text"] for d in kestrel())
    needle = "The quokka migration window closes on the ninth of Brumaire."
    text = (filler * (2_000_000 // len(filler) + 1))[:2_000_000]
    middle = text.index("\n\n", 1_000_000)
    text = text[:middle] + "\n\n" + needle + text[middle:]
    pipe = Pipeline(config, embedder=hash_embedder())
    stats = pipe.ingest([{"id": "huge", "text": text}])
    assert stats.chunks > 1_000 and pipe.index.n_documents == 1
    chunks = pipe.index.chunks
    assert chunks[0].start == 0 and all(text[c.start : c.end] == c.text for c in chunks[::97])
    assert max(c.token_count for c in chunks) <= 256
    result = pipe.run("When does the quokka migration window close?", budget=300)
    assert needle in result.context
    assert result.tokens.prompt <= 300
