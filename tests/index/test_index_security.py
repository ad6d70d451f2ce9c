"""Index folders may come from elsewhere (issue 15, item 2): the manifest is checksummed like
the data files, and a folder never chooses where ragtrim reads its caches."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from pipeline_support import DOCS, hash_embedder, tiny_config

from ragtrim.errors import IndexStoreError
from ragtrim.index.persistence import (
    CHECKSUM_FIELD,
    FORMAT_VERSION,
    read_index_dir,
    seal_manifest,
)
from ragtrim.pipeline import Pipeline

LONDON = "What is the hotel cap in London?"


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    pipe = Pipeline(tiny_config(None, tmp_path / "own-cache"), embedder=hash_embedder())
    pipe.ingest(DOCS)
    pipe.save(tmp_path / "index")
    return tmp_path / "index"


def rewrite(index: Path, change, seal: bool = True) -> None:
    path = index / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(seal_manifest(manifest) if seal else manifest))


def test_an_index_cannot_choose_the_cache_directory(
    saved: Path, tmp_path: Path, tmp_cache_dir: Path
) -> None:
    planted = tmp_path / "prepared-by-the-author"
    rewrite(saved, lambda m: m["config"]["cache"].update(directory=str(planted)))
    loaded = Pipeline.load(saved, embedder=hash_embedder())
    assert loaded.cache_dir == tmp_cache_dir
    assert loaded.config.cache.directory is None
    loaded.run(LONDON)
    assert not planted.exists()
    assert (tmp_cache_dir / "embeddings").is_dir()
    # the caller's own config still decides
    mine = tiny_config(None, tmp_path / "mine")
    assert Pipeline.load(saved, mine, embedder=hash_embedder()).cache_dir == tmp_path / "mine"


def test_a_save_does_not_record_the_cache_directory(saved: Path) -> None:
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["config"]["cache"]["directory"] is None
    assert "own-cache" not in (saved / "manifest.json").read_text()


def test_the_budget_flip_of_the_issue_is_detected(saved: Path) -> None:
    path = saved / "manifest.json"
    text = path.read_text()
    assert '"budget": 1024' in text
    path.write_text(text.replace('"budget": 1024', '"budget": 1224', 1))
    with pytest.raises(IndexStoreError, match=r"manifest.json: checksum mismatch"):
        Pipeline.load(saved, embedder=hash_embedder())


def _flip_positions(size: int, exhaustive: bool) -> list[int]:
    return list(range(size)) if exhaustive else random.Random(15).sample(range(size), 400)


@pytest.mark.parametrize(
    "exhaustive", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["400", "every"]
)
def test_one_bit_flips_of_the_manifest_are_errors_naming_it(saved: Path, exhaustive: bool) -> None:
    path = saved / "manifest.json"
    original = path.read_bytes()
    read_index_dir(saved)
    for position in _flip_positions(len(original), exhaustive):
        damaged = bytearray(original)
        damaged[position] ^= 1 << (position % 8)
        path.write_bytes(bytes(damaged))
        with pytest.raises(IndexStoreError, match="manifest.json") as info:
            read_index_dir(saved)
        assert str(path) in str(info.value), (position, info.value)
    path.write_bytes(original)
    assert read_index_dir(saved)[0]["format_version"] == FORMAT_VERSION


@pytest.mark.parametrize("key", ["config", "index_config"])
def test_a_manifest_without_config_is_an_index_store_error(saved: Path, key: str) -> None:
    rewrite(saved, lambda m: m.pop(key))
    with pytest.raises(IndexStoreError, match=f"manifest.json: '{key}' is missing"):
        Pipeline.load(saved, embedder=hash_embedder())


def test_an_invalid_saved_config_names_the_manifest(saved: Path) -> None:
    rewrite(saved, lambda m: m["config"].update(surprise=1))
    with pytest.raises(IndexStoreError, match="manifest.json: the saved config is invalid"):
        Pipeline.load(saved, embedder=hash_embedder())


def test_a_checksum_field_removed_is_an_error(saved: Path) -> None:
    rewrite(saved, lambda m: m.pop(CHECKSUM_FIELD), seal=False)
    with pytest.raises(IndexStoreError, match=f"'{CHECKSUM_FIELD}' is missing"):
        read_index_dir(saved)


def test_a_previous_version_index_loads_when_asked_and_is_upgraded_by_a_save(
    saved: Path, tmp_path: Path
) -> None:
    expected = Pipeline.load(saved, embedder=hash_embedder()).run(LONDON).context

    def as_format_1(manifest: dict) -> None:  # exactly what the previous ragtrim wrote
        manifest.pop(CHECKSUM_FIELD)
        manifest["format_version"] = 1

    rewrite(saved, as_format_1, seal=False)
    with pytest.raises(IndexStoreError, match="allow_unchecked_manifest=True"):
        Pipeline.load(saved, embedder=hash_embedder())
    old = Pipeline.load(saved, embedder=hash_embedder(), allow_unchecked_manifest=True)
    assert old.run(LONDON).context == expected
    old.save(saved)
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION and CHECKSUM_FIELD in manifest
    assert Pipeline.load(saved, embedder=hash_embedder()).run(LONDON).context == expected


def test_data_files_must_stay_inside_the_data_folder(saved: Path, tmp_path: Path) -> None:
    manifest = json.loads((saved / "manifest.json").read_text())
    data = saved / manifest["data_dir"]
    outside = tmp_path / "outside.jsonl"
    outside.write_text((data / "chunks.jsonl").read_text())
    (data / "chunks.jsonl").unlink()
    (data / "chunks.jsonl").symlink_to(outside)
    with pytest.raises(IndexStoreError, match="'chunks.jsonl' lies outside the data folder"):
        read_index_dir(saved)


def test_the_cli_names_the_switch_for_a_previous_version_index(saved: Path) -> None:
    from typer.testing import CliRunner

    from ragtrim.cli import app

    def as_format_1(manifest: dict) -> None:
        manifest.pop(CHECKSUM_FIELD)
        manifest["format_version"] = 1

    rewrite(saved, as_format_1, seal=False)
    runner = CliRunner()
    refused = runner.invoke(app, ["query", LONDON, "--index", str(saved)])
    assert refused.exit_code == 2
    assert "--allow-unchecked-manifest" in refused.stderr and len(refused.stderr.splitlines()) == 1
