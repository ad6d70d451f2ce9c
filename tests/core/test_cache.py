"""Retrieval and semantic caches through the pipeline: hits, never-stale misses, TTL,
corruption recovery, threads and processes sharing one cache folder."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pipeline_support import DOCS, cache_worker, tiny_config

from ragtrim.cache import RetrievalCache, SemanticCache, cache_key, normalise_query
from ragtrim.diskcache_util import open_diskcache
from ragtrim.pipeline import Pipeline
from ragtrim.types import Candidate, Chunk

LONDON = "What is the hotel cap in London?"
PARAPHRASE = "What is the hotel cap in London, please?"
UNRELATED = ["When does Beacon send an alert?", "How long does Relay keep message data?"]


def same_result(a, b) -> bool:
    return (
        a.context == b.context
        and [p.to_dict() for p in a.passages] == [p.to_dict() for p in b.passages]
        and a.tokens == b.tokens
    )


@pytest.fixture
def make(tiny_embedder_path: Path, tmp_path: Path):
    def build(**cache) -> Pipeline:
        pipe = Pipeline(tiny_config(tiny_embedder_path, tmp_path / "cache", **cache))
        pipe.ingest(DOCS)
        return pipe

    return build


# ---------------------------------------------------------------------------------- retrieval
def test_a_repeated_query_is_served_from_the_retrieval_cache(make) -> None:
    pipe = make()
    first = pipe.run(LONDON)
    assert first.report.cache["retrieval_hit"] is False
    again = pipe.run(LONDON)
    assert again.report.cache["retrieval_hit"] is True
    assert "retrieval served from cache" in again.report.notes
    assert same_result(first, again)
    assert again.report.cache["retrieval_hits"] == 1
    # normalised: case, width and spacing do not matter
    assert pipe.run("  what IS the hotel  cap in ＬＯＮＤＯＮ? ").report.cache["retrieval_hit"]
    # another process (a new pipeline on the same cache folder and index) hits too
    assert make().run(LONDON).report.cache["retrieval_hit"] is True


def test_an_index_change_can_only_miss(make) -> None:
    pipe = make()
    pipe.run(LONDON)
    pipe.ingest(
        [{"id": "travel-london", "text": "The hotel cap in London rises to 300 GBP in June."}]
    )
    after_add = pipe.run(LONDON)
    assert after_add.report.cache["retrieval_hit"] is False
    assert pipe.run(LONDON).report.cache["retrieval_hit"] is True
    pipe.delete(["travel-london", "travel-hotels"])
    after_delete = pipe.run(LONDON)
    assert after_delete.report.cache["retrieval_hit"] is False
    assert "London" not in after_delete.context
    pipe.ingest([dict(DOCS[1], text="The hotel cap in London is 275 GBP per night.")])
    changed = pipe.run(LONDON)
    assert changed.report.cache["retrieval_hit"] is False and "275 GBP" in changed.context


def test_filters_profiles_and_configs_are_part_of_the_key(
    make, tiny_embedder_path: Path, tmp_path: Path
) -> None:
    pipe = make()
    pipe.run(LONDON)
    travel = pipe.run(LONDON, filters={"product": "travel"})
    assert travel.report.cache["retrieval_hit"] is False
    assert pipe.run(LONDON, filters={"product": "travel"}).report.cache["retrieval_hit"] is True
    assert pipe.run(LONDON, filters={"product": "relay"}).report.cache["retrieval_hit"] is False

    profiled_config = tiny_config(tiny_embedder_path, tmp_path / "cache")
    profiled_config["profiles"] = {"narrow": {"retriever": {"top_k": 2}}}
    profiled = Pipeline(profiled_config)
    profiled.ingest(DOCS)
    assert profiled.run(LONDON).report.cache["retrieval_hit"] is True  # default profile: same
    narrow = profiled.run(LONDON, task_type="narrow")
    assert narrow.report.cache["retrieval_hit"] is False
    assert narrow.report.stage("retriever").n_out <= 2

    other_config = tiny_config(tiny_embedder_path, tmp_path / "cache")
    other_config["stages"]["dedup"]["init_parameters"]["semantic"] = False
    other = Pipeline(other_config)
    other.ingest(DOCS)
    assert other.index.fingerprint == pipe.index.fingerprint
    assert other.run(LONDON).report.cache["retrieval_hit"] is False

    # the same documents chunked differently: the index fingerprint differs, so no stale chunks
    rechunked_config = tiny_config(tiny_embedder_path, tmp_path / "cache")
    rechunked_config["stages"]["chunker"]["init_parameters"].update(
        min_tokens=4, target_tokens=10, max_tokens=14
    )
    rechunked = Pipeline(rechunked_config)
    rechunked.ingest(DOCS)
    result = rechunked.run(LONDON)
    assert result.report.cache["retrieval_hit"] is False
    live = {c.id for c in rechunked.index.chunks}
    assert all(cid in live for p in result.passages for cid in p.chunk_ids)


def test_retrieval_entries_expire(make) -> None:
    pipe = make(retrieval_ttl_seconds=0.5)
    pipe.run(LONDON)
    assert pipe.run(LONDON).report.cache["retrieval_hit"] is True
    time.sleep(0.7)
    assert pipe.run(LONDON).report.cache["retrieval_hit"] is False


# ---------------------------------------------------------------------------------- semantic
@pytest.fixture
def threshold(make) -> float:
    """Between the paraphrase's similarity and the closest unrelated question's."""
    embedder = make(semantic=False).embedder
    vectors = embedder.embed([LONDON, PARAPHRASE, *UNRELATED], kind="query")
    similarity = vectors[1:] @ vectors[0]
    assert similarity[0] > max(similarity[1:]) + 0.005
    return float((similarity[0] + max(similarity[1:])) / 2)


def test_semantic_cache_hits_a_paraphrase_and_nothing_else(make, threshold: float) -> None:
    pipe = make(semantic=True, semantic_threshold=threshold)
    original = pipe.run(LONDON)
    paraphrased = pipe.run(PARAPHRASE)
    assert paraphrased.report.cache["retrieval_hit"] is True
    assert paraphrased.report.cache["semantic_similarity"] >= threshold
    assert [p.doc_id for p in paraphrased.passages] == [p.doc_id for p in original.passages]
    for question in UNRELATED:
        result = pipe.run(question)
        assert result.report.cache["retrieval_hit"] is False
        assert "semantic_similarity" not in result.report.cache


def test_semantic_cache_never_crosses_filters_or_index_versions(make, threshold: float) -> None:
    pipe = make(semantic=True, semantic_threshold=threshold)
    pipe.run(LONDON)
    filtered = pipe.run(PARAPHRASE, filters={"product": "travel"})
    assert filtered.report.cache["retrieval_hit"] is False
    pipe.ingest([{"id": "new", "text": "Meal allowances are 40 GBP per day."}])
    assert pipe.run(PARAPHRASE).report.cache["retrieval_hit"] is False


def test_excluded_task_types_never_use_the_semantic_cache(make, threshold: float) -> None:
    pipe = make(semantic=True, semantic_threshold=threshold, semantic_exclude_task_types=["exact"])
    pipe.run(LONDON)
    excluded = pipe.run(PARAPHRASE, task_type="exact")
    assert excluded.report.cache["retrieval_hit"] is False
    assert "semantic_similarity" not in excluded.report.cache
    assert pipe.run(PARAPHRASE).report.cache["retrieval_hit"] is True


def test_semantic_entries_expire(tmp_path: Path) -> None:
    cache = SemanticCache(tmp_path, threshold=0.9, ttl_seconds=0.3)
    vector = np.array([0.6, 0.8], dtype=np.float32)
    cache.add("bucket", vector, "key-1")
    assert cache.lookup("bucket", vector) == ("key-1", pytest.approx(1.0))
    assert cache.lookup("other-bucket", vector) is None
    assert cache.lookup("bucket", np.array([1.0, 0.0], dtype=np.float32)) is None  # cos 0.6
    time.sleep(0.4)
    assert cache.lookup("bucket", vector) is None
    cache.close()


def test_a_semantic_bucket_keeps_the_newest_entries_of_the_newest_width(tmp_path: Path) -> None:
    cache = SemanticCache(tmp_path, threshold=0.99, max_entries=3)
    narrow = np.eye(8, dtype=np.float32)
    for i in range(5):
        cache.add("b", narrow[i], f"k{i}")
    assert [cache.lookup("b", narrow[i]) for i in range(2)] == [None, None]
    assert [cache.lookup("b", narrow[i])[0] for i in range(2, 5)] == ["k2", "k3", "k4"]
    cache.add("b", np.array([0.6, 0.8], dtype=np.float32), "wide-model")
    assert cache.lookup("b", narrow[4]) is None  # entries of the earlier width are void
    assert cache.lookup("b", np.array([0.6, 0.8], dtype=np.float32))[0] == "wide-model"
    cache.close()


def test_a_lookup_sees_what_another_writer_added_since(tmp_path: Path) -> None:
    reader = SemanticCache(tmp_path, threshold=0.99)
    writer = SemanticCache(tmp_path, threshold=0.99)
    vectors = np.eye(4, dtype=np.float32)
    writer.add("b", vectors[0], "k0")
    assert reader.lookup("b", vectors[0])[0] == "k0"
    writer.add("b", vectors[1], "k1")
    assert reader.lookup("b", vectors[1])[0] == "k1"
    assert reader.lookup("b", vectors[0])[0] == "k0"
    writer.close()
    reader.close()


def test_a_damaged_semantic_entry_is_skipped(tmp_path: Path) -> None:
    cache = SemanticCache(tmp_path, threshold=0.99)
    vectors = np.eye(4, dtype=np.float32)
    for i in range(3):
        cache.add("b", vectors[i], f"k{i}")
    _, prefix = SemanticCache._keys("b")
    raw = open_diskcache(tmp_path / "semantic")
    raw.set(f"{prefix}2", b"{not json\n\x00")
    raw.close()
    assert cache.lookup("b", vectors[1]) is None
    assert [cache.lookup("b", vectors[i])[0] for i in (0, 2)] == ["k0", "k2"]
    cache.close()


# ---------------------------------------------------------------------------------- robustness
def test_a_corrupted_cache_is_reported_once_and_rebuilt(
    make, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make().run(LONDON)
    cache_dir = tmp_path / "cache"
    for name in ("retrieval", "embeddings"):
        (cache_dir / name / "cache.db").write_bytes(b"definitely not sqlite " * 500)
    with caplog.at_level(logging.WARNING):
        pipe = make()
        first, second = pipe.run(LONDON), pipe.run(LONDON)
        make().run(LONDON)  # a later pipeline finds healthy caches: nothing more to report
    warnings = [r.getMessage() for r in caplog.records if "corrupted" in r.getMessage()]
    assert len(warnings) == 2, warnings
    for name, label in (("retrieval", "retrieval"), ("embeddings", "embedding")):
        assert sum(str(cache_dir / name) in w and w.startswith(label) for w in warnings) == 1
        aside = list(cache_dir.glob(f"{name}.corrupt-*"))
        assert len(aside) == 1 and (aside[0] / "cache.db").read_bytes().startswith(b"definitely")
    assert (first.report.cache["retrieval_hit"], second.report.cache["retrieval_hit"]) == (
        False,
        True,
    )
    assert same_result(first, second)


def test_a_damaged_entry_is_a_miss(tmp_path: Path) -> None:
    cache = RetrievalCache(tmp_path)
    chunk = Chunk("d#0-5", "d", "hello", 0, 5, 1)
    cache.set("good", [Candidate(chunk, 0.5, {"bm25": 1.0})], {"naive": 3})
    raw = open_diskcache(tmp_path / "retrieval")
    raw.set("bad", "{not json")
    raw.close()
    assert cache.get("bad") is None and cache.get("bad") is None
    candidates, extra = cache.get("good")
    assert candidates[0].chunk == chunk and extra == {"naive": 3}
    assert (cache.hits, cache.misses) == (1, 2)
    cache.close()


def test_keys_and_normalisation() -> None:
    assert normalise_query("  Hello\tWORLD ") == normalise_query("hello world")
    assert normalise_query("ｈｅｌｌｏ") == "hello"
    assert cache_key({"a": 1, "b": 2}, "p") == cache_key({"b": 2, "a": 1}, "p")
    assert cache_key({"a": 1}, "p") != cache_key({"a": 2}, "p")


def test_threads_share_one_cache(tmp_path: Path) -> None:
    retrieval = RetrievalCache(tmp_path)
    semantic = SemanticCache(tmp_path, threshold=0.99)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(25):
                chunk = Chunk(f"d{i}#0-1", f"d{i}", "x", 0, 1, 1)
                retrieval.set(f"{worker}-{i}", [Candidate(chunk, float(i))], {"naive": i})
                assert retrieval.get(f"{worker}-{i}")[1] == {"naive": i}
                vector = np.zeros(8, dtype=np.float32)
                vector[(worker + i) % 8] = 1.0
                semantic.add("b", vector, f"{worker}-{i}")
                assert semantic.lookup("b", vector) is not None
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert all(retrieval.get(f"{w}-{i}") is not None for w in range(4) for i in range(25))


def test_two_processes_share_one_cache_folder(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        runs = pool.starmap(cache_worker, [(str(tmp_path), 0), (str(tmp_path), 1)])
    shared = [(q, docs) for q, docs in runs[0] if not q.startswith("private")]
    assert shared == [(q, docs) for q, docs in runs[1] if not q.startswith("private")]
    assert all(docs for _, docs in shared)
    # and the cache they wrote is healthy and complete for a third user
    assert cache_worker(str(tmp_path), 2, rounds=4)[0] == runs[0][0]


ADDS_PER_PROCESS = 150


def one_hot(position: int) -> np.ndarray:
    vector = np.zeros(2 * ADDS_PER_PROCESS, dtype=np.float32)
    vector[position] = 1.0
    return vector


def semantic_adder(directory: str, worker: int, start: threading.Barrier) -> None:
    """Run in a spawned process: add entries to one bucket as fast as possible."""
    cache = SemanticCache(Path(directory), threshold=0.99)
    start.wait(timeout=60)
    for i in range(ADDS_PER_PROCESS):
        cache.add("shared", one_hot(worker * ADDS_PER_PROCESS + i), f"{worker}-{i}")
    cache.close()


def test_two_processes_adding_to_one_bucket_lose_nothing(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    workers = [
        context.Process(target=semantic_adder, args=(str(tmp_path), w, start)) for w in (0, 1)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
        assert process.exitcode == 0
    cache = SemanticCache(tmp_path, threshold=0.99)
    for worker in (0, 1):
        for i in range(ADDS_PER_PROCESS):
            found = cache.lookup("shared", one_hot(worker * ADDS_PER_PROCESS + i))
            assert found == (f"{worker}-{i}", pytest.approx(1.0))
    cache.close()


def test_query_anchors_keep_numbers_and_quoted_terms():
    from ragtrim.cache import query_anchors, semantic_bucket

    assert query_anchors("When was Kestrel Relay 3.3 released?") == "3.3"
    assert query_anchors("what does `relayctl topics list` print") == "relayctl topics list"
    assert query_anchors("How long is data kept?") == ""
    assert semantic_bucket("b", "Relay 3.3 release date") != semantic_bucket(
        "b", "Relay 3.1 release date"
    )
    assert semantic_bucket("b", "When was Relay 3.3 released?") == semantic_bucket(
        "b", "relay 3.3: release date?"
    )
