from __future__ import annotations

import hashlib
import logging
import multiprocessing
import uuid
from pathlib import Path

import diskcache
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtrim.embedding import (
    CachedEmbedder,
    CallableEmbedder,
    EmbeddingCache,
    SentenceTransformerEmbedder,
    cache_key,
)
from ragtrim.errors import InputError

DIM = 8


def hash_vectors(texts: list[str]) -> np.ndarray:
    """A deterministic stand-in model: a text's vector comes from its sha256."""
    rows = []
    for text in texts:
        digest = hashlib.sha256(text.encode()).digest()
        rows.append(np.frombuffer(digest[:DIM], dtype=np.uint8).astype(np.float32) + 1.0)
    return np.vstack(rows)


class RecordingFunction:
    """Records every batch the model sees."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.batches.append(list(texts))
        return hash_vectors(texts)


def expected(texts: list[str]) -> np.ndarray:
    rows = hash_vectors(texts).astype(np.float64)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def cache(tmp_path: Path) -> EmbeddingCache:
    with EmbeddingCache(tmp_path) as opened:
        yield opened


# --- EmbeddingCache --------------------------------------------------------------------------


def test_lives_under_embeddings_and_defaults_to_the_cache_dir(tmp_cache_dir: Path) -> None:
    with EmbeddingCache() as default:
        assert default.directory == tmp_cache_dir / "embeddings"
        assert (tmp_cache_dir / "embeddings" / "cache.db").is_file()


def test_round_trip_is_bit_exact_and_keyed_by_fingerprint_and_kind(cache: EmbeddingCache) -> None:
    vectors = np.array([[0.1, -2.5, 3e-8], [1.0, 0.0, -0.0]], dtype=np.float32)
    cache.set_many("fp", "passage", ["a", "b"], vectors)
    got = cache.get_many("fp", "passage", ["a", "b", "c"])
    np.testing.assert_array_equal(got[0], vectors[0])
    np.testing.assert_array_equal(got[1], vectors[1])
    assert got[0].dtype == np.float32
    assert got[2] is None
    assert cache.get_many("other-fp", "passage", ["a"]) == [None]
    assert cache.get_many("fp", "query", ["a"]) == [None]
    assert len(cache) == 2


def test_keys_hash_the_text() -> None:
    digest = hashlib.sha256("héllo".encode()).hexdigest()
    assert cache_key("fp", "query", "héllo") == f"fp|query|{digest}"


def test_set_many_checks_shapes(cache: EmbeddingCache) -> None:
    with pytest.raises(InputError, match=r"expected shape \(2, dimension\)"):
        cache.set_many("fp", "passage", ["a", "b"], np.zeros((3, 4)))


def test_damaged_values_are_misses_deleted_and_warned_once(
    cache: EmbeddingCache, caplog: pytest.LogCaptureFixture
) -> None:
    cache.set_many("fp", "passage", ["good"], np.ones((1, 4), dtype=np.float32))
    raw = diskcache.Cache(str(cache.directory))
    raw.set(cache_key("fp", "passage", "odd"), b"\x00" * 7)
    raw.set(cache_key("fp", "passage", "wide"), np.ones(5, dtype=np.float32).tobytes())
    raw.set(cache_key("fp", "passage", "nan"), np.full(4, np.nan, dtype=np.float32).tobytes())
    raw.set(cache_key("fp", "passage", "pickled"), [1.0, 2.0])
    raw.close()
    texts = ["good", "odd", "wide", "nan", "pickled"]
    with caplog.at_level(logging.WARNING, logger="ragtrim.embedding.cache"):
        got = cache.get_many("fp", "passage", texts, dimension=4)
    assert [g is not None for g in got] == [True, False, False, False, False]
    assert cache.corrupt_values == 4
    assert len([r for r in caplog.records if "treated as a miss" in r.getMessage()]) == 1
    assert len(cache) == 1


def test_corrupted_database_is_moved_aside_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with EmbeddingCache(tmp_path) as first:
        first.set_many("fp", "passage", ["a"], np.ones((1, 4), dtype=np.float32))
        directory = first.directory
    (directory / "cache.db").write_bytes(b"this is not a sqlite database " * 200)

    with caplog.at_level(logging.WARNING, logger="ragtrim.embedding.cache"):
        rebuilt = EmbeddingCache(tmp_path)
    warnings = [r for r in caplog.records if "corrupted" in r.getMessage()]
    assert len(warnings) == 1
    assert str(directory) in warnings[0].getMessage()
    aside = list(tmp_path.glob("embeddings.corrupt-*"))
    assert len(aside) == 1
    assert (aside[0] / "cache.db").read_bytes().startswith(b"this is not a sqlite")
    assert rebuilt.get_many("fp", "passage", ["a"]) == [None]
    rebuilt.set_many("fp", "passage", ["a"], np.ones((1, 4), dtype=np.float32))
    assert rebuilt.get_many("fp", "passage", ["a"])[0] is not None
    rebuilt.close()


def test_corruption_found_after_opening_is_recovered_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.set_many("fp", "passage", ["a"], np.ones((1, 4), dtype=np.float32))
    cache.close()  # the next access reconnects and finds the damaged file
    (cache.directory / "cache.db").write_bytes(b"garbage!" * 5000)
    with caplog.at_level(logging.WARNING, logger="ragtrim.embedding.cache"):
        assert cache.get_many("fp", "passage", ["a"]) == [None]
        cache.set_many("fp", "passage", ["a"], np.full((1, 4), 2.0, dtype=np.float32))
        np.testing.assert_array_equal(cache.get_many("fp", "passage", ["a"])[0], [2.0] * 4)
    assert len([r for r in caplog.records if "corrupted" in r.getMessage()]) == 1
    assert len(list(tmp_path.glob("embeddings.corrupt-*"))) == 1
    cache.close()


def test_a_failing_write_is_logged_and_the_vectors_still_returned(
    cache: EmbeddingCache, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sqlite3

    def disk_full(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(diskcache.Cache, "set", disk_full)
    embedder = CachedEmbedder(CallableEmbedder(hash_vectors, name="hash"), cache)
    with caplog.at_level(logging.WARNING, logger="ragtrim.embedding.cache"):
        vectors = embedder.embed(["a", "b"])
        embedder.embed(["c"])
    np.testing.assert_allclose(vectors, expected(["a", "b"]), atol=1e-6)
    assert cache.write_errors == 2
    assert len([r for r in caplog.records if "could not store 2 vectors" in r.getMessage()]) == 1
    monkeypatch.undo()
    assert len(cache) == 0


def test_lock_errors_are_not_mistaken_for_corruption(tmp_path: Path) -> None:
    import sqlite3

    from ragtrim.embedding.cache import _is_corruption

    assert not _is_corruption(sqlite3.OperationalError("database is locked"))
    with pytest.raises(sqlite3.DatabaseError) as info:
        sqlite3.connect(":memory:").execute("PRAGMA this is not sql")
    assert not _is_corruption(info.value)


def _write_worker(directory: str, worker: int) -> None:
    """Run in a separate process: overlapping and private texts through the same cache."""
    shared = [f"shared text {i}" for i in range(150)]
    private = [f"worker {worker} text {i}" for i in range(150)]
    with EmbeddingCache(directory) as cache:
        embedder = CachedEmbedder(CallableEmbedder(hash_vectors, name="hash"), cache)
        for start in range(0, 150, 10):
            embedder.embed(shared[start : start + 10] + private[start : start + 10])


def test_two_processes_write_the_same_directory(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_worker, args=(str(tmp_path), w)) for w in (1, 2)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
        assert process.exitcode == 0
    texts = [f"shared text {i}" for i in range(150)]
    texts += [f"worker {w} text {i}" for w in (1, 2) for i in range(150)]
    with EmbeddingCache(tmp_path) as cache:
        got = cache.get_many("callable:hash", "passage", texts, dimension=DIM)
        assert len(cache) == 450
    assert all(g is not None for g in got)
    np.testing.assert_allclose(np.vstack(got), expected(texts), atol=1e-6)


# --- CachedEmbedder --------------------------------------------------------------------------


def test_second_embed_makes_no_model_calls(cache: EmbeddingCache) -> None:
    function = RecordingFunction()
    embedder = CachedEmbedder(CallableEmbedder(function, name="hash"), cache)
    texts = ["alpha", "beta", "alpha", "gamma"]
    first = embedder.embed(texts)
    assert function.batches == [["alpha", "beta", "gamma"]]
    assert (embedder.hits, embedder.misses, embedder.model_calls) == (0, 3, 1)
    np.testing.assert_allclose(first, expected(texts), atol=1e-6)

    embedder.reset_counters()
    second = embedder.embed(texts)
    assert (embedder.hits, embedder.misses, embedder.model_calls) == (3, 0, 0)
    assert len(function.batches) == 1
    np.testing.assert_array_equal(first, second)

    embedder.embed(["beta", "delta"])
    assert function.batches[-1] == ["delta"]
    assert (embedder.hits, embedder.misses, embedder.model_calls) == (4, 1, 1)


def test_cache_persists_across_instances(tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path) as cache:
        CachedEmbedder(CallableEmbedder(hash_vectors, name="hash"), cache).embed(["x", "y"])
    function = RecordingFunction()
    with EmbeddingCache(tmp_path) as reopened:
        embedder = CachedEmbedder(CallableEmbedder(function, name="hash"), reopened)
        embedder.embed(["x", "y"])
    assert function.batches == []
    assert embedder.hits == 2


def test_another_fingerprint_or_kind_misses(cache: EmbeddingCache) -> None:
    CachedEmbedder(CallableEmbedder(hash_vectors, name="model-a"), cache).embed(["x"])
    other_model = CachedEmbedder(CallableEmbedder(hash_vectors, name="model-b"), cache)
    other_model.embed(["x"])
    assert (other_model.hits, other_model.misses) == (0, 1)
    same_model = CachedEmbedder(CallableEmbedder(hash_vectors, name="model-a"), cache)
    same_model.embed(["x"], kind="query")
    assert (same_model.hits, same_model.misses) == (0, 1)
    query = same_model.embed_query("x")
    assert query.shape == (DIM,)
    assert same_model.hits == 1


def test_stale_dimension_under_one_name_is_re_embedded(
    cache: EmbeddingCache, caplog: pytest.LogCaptureFixture
) -> None:
    CachedEmbedder(CallableEmbedder(lambda t: np.ones((len(t), 3)), name="m"), cache).embed(["x"])
    function = RecordingFunction()
    embedder = CachedEmbedder(CallableEmbedder(function, name="m"), cache)
    with caplog.at_level(logging.WARNING, logger="ragtrim.embedding.cache"):
        vectors = embedder.embed(["x", "new"])
    assert vectors.shape == (2, DIM)
    assert function.batches == [["new"], ["x"]]
    assert any("another dimension" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(vectors, expected(["x", "new"]), atol=1e-6)


def test_without_a_cache_only_deduplicates() -> None:
    function = RecordingFunction()
    embedder = CachedEmbedder(CallableEmbedder(function, name="hash"), None)
    embedder.embed(["a", "a", "b"])
    embedder.embed(["a"])
    assert function.batches == [["a", "b"], ["a"]]
    assert embedder.model_calls == 2


def test_empty_input(cache: EmbeddingCache) -> None:
    embedder = CachedEmbedder(CallableEmbedder(hash_vectors, name="hash", dimension=DIM), cache)
    assert embedder.embed([]).shape == (0, DIM)
    assert embedder.model_calls == 0


def test_wraps_the_real_sentence_transformer(tiny_embedder_path: Path, tmp_path: Path) -> None:
    model = SentenceTransformerEmbedder(model=str(tiny_embedder_path))
    texts = ["A cat sits on the mat.", "Revenue grew.", "A cat sits on the mat."]
    with EmbeddingCache(tmp_path) as cache:
        embedder = CachedEmbedder(model, cache)
        first = embedder.embed(texts)
        second = embedder.embed(texts)
        assert embedder.model_calls == 1
        assert embedder.fingerprint == model.fingerprint
        assert embedder.dimension == 32
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, model.embed(texts), atol=1e-6)


def test_a_fully_cached_call_never_loads_the_model(
    tiny_embedder_path: Path, tmp_path: Path
) -> None:
    texts = ["A cat sits on the mat.", "Revenue grew.", "Paris is in France."]
    with EmbeddingCache(tmp_path) as cache:
        first = CachedEmbedder(SentenceTransformerEmbedder(model=str(tiny_embedder_path)), cache)
        vectors = first.embed(texts)
        queries = first.embed(texts[:1], kind="query")
    model = SentenceTransformerEmbedder(model=str(tiny_embedder_path))
    with EmbeddingCache(tmp_path) as cache:
        warm = CachedEmbedder(model, cache)
        again = warm.embed(texts)
        query = warm.embed_query(texts[0])
    assert model._model is None
    assert (warm.hits, warm.misses, warm.model_calls) == (4, 0, 0)
    np.testing.assert_array_equal(again, vectors)
    np.testing.assert_array_equal(query, queries[0])


def test_a_damaged_width_is_caught_without_a_loaded_model(
    tiny_embedder_path: Path, tmp_path: Path
) -> None:
    texts = ["A cat sits on the mat.", "Revenue grew.", "Paris is in France."]
    model = SentenceTransformerEmbedder(model=str(tiny_embedder_path))
    with EmbeddingCache(tmp_path) as cache:
        vectors = CachedEmbedder(model, cache).embed(texts)
    raw = diskcache.Cache(str(tmp_path / "embeddings"))
    raw.set(cache_key(model.fingerprint, "passage", texts[1]), np.ones(31, "<f4").tobytes())
    raw.close()
    fresh = SentenceTransformerEmbedder(model=str(tiny_embedder_path))
    with EmbeddingCache(tmp_path) as cache:
        embedder = CachedEmbedder(fresh, cache)
        again = embedder.embed(texts)
        assert cache.corrupt_values == 1
    assert (embedder.hits, embedder.misses, embedder.model_calls) == (2, 1, 1)
    np.testing.assert_allclose(again, vectors, atol=1e-6)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> EmbeddingCache:
    with EmbeddingCache(tmp_path_factory.mktemp("shared")) as opened:
        yield opened


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(["a", "b", "c", "d", "e", "é", ""]), max_size=8), max_size=4)
)
def test_cached_equals_uncached_and_each_text_is_embedded_once(
    shared_cache: EmbeddingCache, calls: list[list[str]]
) -> None:
    function = RecordingFunction()
    # a fresh name per example: examples share the cache but never each other's entries
    embedder = CachedEmbedder(CallableEmbedder(function, name=uuid.uuid4().hex), shared_cache)
    for texts in calls:
        vectors = embedder.embed(texts)
        if texts:  # before the first call the function's width is unknown: (0, 0)
            assert vectors.shape == (len(texts), DIM)
            np.testing.assert_allclose(vectors, expected(texts), atol=1e-6)
    seen = [text for batch in function.batches for text in batch]
    assert len(seen) == len(set(seen))
    assert set(seen) == {text for texts in calls for text in texts}
    assert embedder.misses == len(seen)
