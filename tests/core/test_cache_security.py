"""Cache directories are untrusted input (issue 15, items 1 and 11).

Every test plants real rows in a real diskcache database (with diskcache's own pickling
``Disk`` or plain SQL) and then runs ragtrim on that directory: nothing planted may run, no
file outside the cache may be read or deleted, and a cache that cannot be used only costs
speed.
"""

from __future__ import annotations

import logging
import os
import pickle
import sqlite3
from pathlib import Path

import diskcache
import numpy as np
import pytest
from pipeline_support import DOCS, hash_embedder, tiny_config

from ragtrim.cache import RetrievalCache, ScoreStore
from ragtrim.diskcache_util import REFUSED, SafeDisk, open_diskcache
from ragtrim.embedding.cache import EmbeddingCache, cache_key
from ragtrim.pipeline import Pipeline

LONDON = "What is the hotel cap in London?"
CACHES = ("embeddings", "retrieval", "semantic")


class _Payload:
    """Unpickling this creates ``marker``: proof that a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def build(cache_dir: Path, **cache) -> Pipeline:
    settings = {"semantic": True, "semantic_threshold": 0.9, **cache}
    pipe = Pipeline(tiny_config(None, cache_dir, **settings), embedder=hash_embedder())
    pipe.ingest(DOCS)
    return pipe


def answer(pipe: Pipeline) -> tuple[str, list[str]]:
    result = pipe.run(LONDON)
    return result.context, [p.doc_id for p in result.passages]


def rows(directory: Path) -> list[tuple]:
    with sqlite3.connect(directory / "cache.db") as db:
        return db.execute("SELECT rowid, key, mode, filename FROM Cache").fetchall()


def poison_every_row(directory: Path, payload: bytes, marker: Path) -> int:
    """Turn every row into a pickle: half inline, half as a file inside the cache."""
    with sqlite3.connect(directory / "cache.db") as db:
        ids = [rowid for (rowid,) in db.execute("SELECT rowid FROM Cache")]
        for i, rowid in enumerate(ids):
            if i % 2:
                name = f"ab/cd/{rowid}.val"
                (directory / "ab" / "cd").mkdir(parents=True, exist_ok=True)
                (directory / name).write_bytes(payload)
                db.execute(
                    "UPDATE Cache SET mode = 4, filename = ?, value = NULL WHERE rowid = ?",
                    (name, rowid),
                )
            else:
                db.execute(
                    "UPDATE Cache SET mode = 4, filename = NULL, value = ? WHERE rowid = ?",
                    (payload, rowid),
                )
    return len(ids)


def test_planted_pickles_never_run_anywhere(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    expected = answer(build(cache_dir))
    marker = tmp_path / "pickle-ran"
    payload = pickle.dumps(_Payload(marker))
    assert sum(poison_every_row(cache_dir / name, payload, marker) for name in CACHES) > 10
    # and the fixed key read on every open, in every cache
    for name in (*CACHES, "rerank"):
        with diskcache.Cache(str(cache_dir / name)) as raw:  # diskcache's own pickling Disk
            raw.set("__ragtrim_probe__", _Payload(marker))
    pipe = build(cache_dir)  # opens every cache, re-ingests through the embedding cache
    assert answer(pipe) == expected
    assert answer(pipe) == expected  # the second run is served by the rebuilt entries
    assert not marker.exists()
    # the sanity check: the same rows do run code through diskcache's default Disk
    with diskcache.Cache(str(cache_dir / "rerank")) as raw:
        raw.get("__ragtrim_probe__")
    assert marker.exists()


def test_rows_naming_files_outside_the_cache_are_neither_read_nor_deleted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache_dir = tmp_path / "cache"
    expected = answer(build(cache_dir))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "linked.val").write_bytes(np.ones(64, "<f4").tobytes())
    embeddings = cache_dir / "embeddings"
    (embeddings / "zz").mkdir()
    (embeddings / "zz" / "link.val").symlink_to(outside / "linked.val")
    names = ["../../victim.txt", str(victim), "zz/link.val", "zz/../../../victim.txt"]
    with sqlite3.connect(embeddings / "cache.db") as db:
        ids = [rowid for (rowid,) in db.execute("SELECT rowid FROM Cache")]
        for i, rowid in enumerate(ids):
            db.execute(
                "UPDATE Cache SET mode = ?, filename = ?, value = NULL WHERE rowid = ?",
                (2 + i % 2, names[i % len(names)], rowid),
            )
    assert len(ids) >= len(names)
    with caplog.at_level(logging.WARNING, logger="ragtrim.diskcache_util"):
        pipe = build(cache_dir)  # every vector read is refused, deleted, re-embedded
        assert answer(pipe) == expected
    assert victim.read_text() == "precious"
    assert (outside / "linked.val").exists()
    assert not (embeddings / "zz" / "link.val").is_symlink()  # the planted link itself is gone
    assert any("outside the cache; not deleted" in r.getMessage() for r in caplog.records)
    assert pipe.embedder.cache is not None and pipe.embedder.cache.corrupt_values >= len(names)


def test_safe_disk_refuses_what_it_cannot_decode_safely(tmp_path: Path) -> None:
    with diskcache.Cache(str(tmp_path), disk=SafeDisk) as cache:
        with pytest.raises(TypeError, match="never pickled"):
            cache.set("k", [1, 2])
        with pytest.raises(TypeError, match="cache keys must be"):
            cache.set(("tuple",), b"x")
        cache.set("big", b"x" * 100_000)  # stored as a file inside the cache
        assert cache.get("big") == b"x" * 100_000
    with diskcache.Cache(str(tmp_path)) as raw:
        raw.set(("pickled", "key"), b"v")
    with diskcache.Cache(str(tmp_path), disk=SafeDisk) as cache:
        with pytest.raises(OSError, match="pickled cache key"):
            list(cache)
        assert cache.get("missing") is None
    assert SafeDisk(str(tmp_path)).inside("../x") is None
    assert SafeDisk(str(tmp_path)).inside(str(tmp_path / "ab" / "x")) is None
    assert SafeDisk(str(tmp_path)).inside("ab/cd/x.val") == str(tmp_path.resolve() / "ab/cd/x.val")


def test_a_refused_row_is_a_miss_for_every_reader(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    retrieval = RetrievalCache(tmp_path / "q")
    scores = ScoreStore(tmp_path / "rerank")
    embeddings = EmbeddingCache(tmp_path / "e")
    for directory, key in (
        (tmp_path / "q" / "retrieval", "k"),
        (tmp_path / "rerank", "s"),
        (embeddings.directory, cache_key("fp", "query", "q")),
    ):
        with diskcache.Cache(str(directory)) as raw:
            raw.set(key, _Payload(marker))
        with open_diskcache(directory) as safe:
            assert safe.get(key) is REFUSED
    assert retrieval.get("k") is None
    assert scores.get("s") is None
    assert embeddings.get_many("fp", "query", ["q"]) == [None]
    assert not marker.exists()


@pytest.mark.parametrize(
    "row",
    [
        ("sqlite_journal_mode", "off; VACUUM"),
        ("eviction_policy", "bogus"),
        ("size_limit", "a lot"),
        ("disk_pickle_protocol", 99.5),
        ("__class__", 1),
    ],
)
def test_a_bad_settings_row_is_moved_aside_not_obeyed(
    tmp_path: Path, row: tuple, caplog: pytest.LogCaptureFixture
) -> None:
    cache_dir = tmp_path / "cache"
    expected = answer(build(cache_dir))
    with sqlite3.connect(cache_dir / "retrieval" / "cache.db") as db:
        db.execute("INSERT OR REPLACE INTO Settings VALUES (?, ?)", row)
    with caplog.at_level(logging.WARNING):
        pipe = build(cache_dir)
    assert answer(pipe) == expected
    aside = list(cache_dir.glob("retrieval.corrupt-*"))
    assert len(aside) == 1
    with sqlite3.connect(aside[0] / "cache.db") as db:
        assert db.execute("SELECT value FROM Settings WHERE key = ?", row[:1]).fetchall()
    assert any(str(cache_dir / "retrieval") in r.getMessage() for r in caplog.records)


def test_a_database_that_is_a_symlink_is_moved_aside_and_its_target_kept(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    expected = answer(build(tmp_path / "prepared"))
    (cache_dir / "retrieval").mkdir(parents=True)
    target = tmp_path / "prepared" / "retrieval" / "cache.db"
    before = target.read_bytes()
    (cache_dir / "retrieval" / "cache.db").symlink_to(target)
    assert answer(build(cache_dir)) == expected
    assert len(list(cache_dir.glob("retrieval.corrupt-*"))) == 1
    assert target.read_bytes() == before


def test_a_database_that_is_a_directory_is_moved_aside(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    (cache_dir / "retrieval" / "cache.db").mkdir(parents=True)
    pipe = build(cache_dir)
    assert pipe.run(LONDON).report.cache["retrieval_hit"] is False
    assert pipe.run(LONDON).report.cache["retrieval_hit"] is True
    assert len(list(cache_dir.glob("retrieval.corrupt-*"))) == 1


def test_a_cache_that_cannot_be_opened_only_costs_speed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")
    expected = answer(build(tmp_path / "elsewhere"))
    with caplog.at_level(logging.WARNING, logger="ragtrim.diskcache_util"):
        pipe = build(blocked)
        assert answer(pipe) == expected and answer(pipe) == expected
    assert pipe.run(LONDON).report.cache["retrieval_hit"] is False
    assert len(pipe.embedder.cache) == 0
    opened = [r.getMessage() for r in caplog.records if "cannot be opened" in r.getMessage()]
    assert len(opened) == 3 and all(str(blocked) in m for m in opened)
    assert blocked.read_text().startswith("a file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_cache_only_costs_speed(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    expected = answer(build(cache_dir))
    for path in [cache_dir, *cache_dir.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        assert answer(build(cache_dir)) == expected
    finally:
        for path in [cache_dir, *cache_dir.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_a_wrong_width_cached_query_vector_is_a_miss(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    pipe = build(cache_dir, retrieval=False, semantic=False)
    expected = answer(pipe)
    pipe.save(tmp_path / "index")
    fingerprint = pipe.embedder.fingerprint
    with open_diskcache(cache_dir / "embeddings") as raw:
        raw.set(cache_key(fingerprint, "query", LONDON), np.ones(7, "<f4").tobytes())
    config = tiny_config(None, cache_dir, retrieval=False)
    fresh = Pipeline.load(tmp_path / "index", config, embedder=hash_embedder())
    assert answer(fresh) == expected
    assert fresh.embedder.cache.corrupt_values == 1
