"""The ``ragtrim`` command line, in process (typer's CliRunner) and as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pipeline_support import DOCS, tiny_config
from typer.testing import CliRunner

from ragtrim.cli import app
from ragtrim.config import load_config
from ragtrim.pipeline import Pipeline

runner = CliRunner()
LONDON = "What is the hotel cap in London?"


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, prog_name="ragtrim")


def assert_user_error(result, fragment: str) -> None:
    """Exit 2, exactly one line on stderr naming the problem, nothing on stdout, no traceback."""
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert result.stdout == "" and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def workspace(tiny_embedder_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    config = tiny_config(tiny_embedder_path, root / "cache")
    config["profiles"] = {"lookup": {"packer": {"budget": 150}}}
    (root / "ragtrim.yaml").write_text(yaml.safe_dump(config))
    (root / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in DOCS[:2]))
    notes = root / "notes"
    notes.mkdir()
    for doc in DOCS[2:]:
        front = yaml.safe_dump(doc["metadata"])
        (notes / f"{doc['id']}.md").write_text(f"---\n{front}---\n{doc['text']}\n")
    (notes / "latin1.txt").write_bytes("Caf\u00e9".encode("latin-1"))
    (notes / "blob.md").write_bytes(b"\x00\x01binary")
    return root


@pytest.fixture(scope="module")
def first_ingest(workspace: Path):
    return invoke(
        "ingest",
        workspace / "docs.jsonl",
        workspace / "notes",
        "--index",
        workspace / "index",
        "--config",
        workspace / "ragtrim.yaml",
    )


@pytest.fixture(scope="module")
def index(workspace: Path, first_ingest) -> Path:
    assert first_ingest.exit_code == 0, first_ingest.stderr
    return workspace / "index"


@pytest.mark.parametrize("command", [[], ["ingest"], ["query"], ["bench"], ["tune"], ["config"]])
def test_help_works_for_every_command(command: list[str]) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0 and "Usage" in result.stdout
    if command:
        assert f"ragtrim {command[0]}" in " ".join(result.stdout.split())


def test_config_prints_yaml_that_load_config_accepts(tmp_path: Path, tmp_cache_dir: Path) -> None:
    result = invoke("config")
    assert result.exit_code == 0
    assert not tmp_cache_dir.exists()  # printing a config opens no cache
    path = tmp_path / "printed.yaml"
    path.write_text(result.stdout)
    config = load_config(path)
    assert config.model_dump(mode="json") == Pipeline().to_config()
    as_json = invoke("config", "--format", "json")
    assert json.loads(as_json.stdout) == yaml.safe_load(result.stdout)
    assert_user_error(
        invoke("config", "--format", "xml"), "--format: expected yaml or json, got 'xml'"
    )


def test_ingest_reports_bad_files_by_path_and_shows_progress(
    workspace: Path, first_ingest, index: Path
) -> None:
    for result in (
        first_ingest,
        invoke("ingest", workspace / "docs.jsonl", workspace / "notes", "--index", index),
    ):
        assert result.exit_code == 0, result.stderr
        assert f"skipped: {workspace / 'notes' / 'latin1.txt'}: not valid UTF-8" in result.stderr
        assert f"skipped: {workspace / 'notes' / 'blob.md'}: binary file" in result.stderr
        assert "indexing" in result.stderr
    for task in ("chunking", "embedding", "embedding sentences"):
        assert task in first_ingest.stderr
    assert (
        "documents: 4, changed: 4, unchanged: 0, skipped empty: 0, skipped files: 2"
        in first_ingest.stdout
    )
    assert "documents: 4, changed: 0, unchanged: 4" in result.stdout
    assert "embedding model calls: 0" in result.stdout


def test_ingest_json_summary_and_upsert(workspace: Path, index: Path) -> None:
    changed = workspace / "changed.jsonl"
    changed.write_text(
        json.dumps(dict(DOCS[0], text="Relay keeps data for thirty days now.")) + "\n"
    )
    result = invoke("ingest", changed, "--index", index, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["documents"] == 1 and summary["changed"] == 1 and summary["unchanged"] == 0
    assert summary["index_chunks"] == len(Pipeline.load(index).index)
    assert "chunking" not in result.stderr  # no progress bars in --json mode
    restore = workspace / "restore.jsonl"
    restore.write_text(json.dumps(DOCS[0]) + "\n")
    assert invoke("ingest", restore, "--index", index, "--json").exit_code == 0


def test_query_json_parses_and_honours_options(index: Path) -> None:
    result = invoke("query", LONDON, "--index", index, "--json", "--budget", "200")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["query"] == LONDON
    assert data["tokens"]["prompt"] <= 200 and data["tokens"]["budget"] == 200
    assert data["passages"][0]["doc_id"] == "travel-hotels" and "250 GBP" in data["context"]
    assert [s["name"] for s in data["report"]["stages"]] == [
        "filter",
        "retriever",
        "reranker",
        "dedup",
        "packer",
    ]
    filtered = json.loads(
        invoke(
            "query", LONDON, "--index", index, "--json", "--filters", '{"product": "beacon"}'
        ).stdout
    )
    assert {p["doc_id"] for p in filtered["passages"]} <= {"beacon-alerts"}
    profiled = json.loads(
        invoke("query", LONDON, "--index", index, "--json", "--task-type", "lookup").stdout
    )
    assert profiled["report"]["profile"] == "lookup" and profiled["tokens"]["prompt"] <= 150


def test_query_prints_the_prompt(index: Path) -> None:
    result = invoke("query", LONDON, "--index", index)
    assert result.exit_code == 0
    assert result.stdout.startswith("Answer the question") and "250 GBP" in result.stdout
    assert "prompt" in result.stderr and "tokens" in result.stderr


def test_pipeline_save_then_query_from_the_command_line(
    tiny_embedder_path: Path, tmp_path: Path
) -> None:
    pipe = Pipeline(tiny_config(tiny_embedder_path, tmp_path / "cache"))
    pipe.ingest(DOCS)
    pipe.save(tmp_path / "saved")
    result = invoke("query", LONDON, "--index", tmp_path / "saved", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["context"] == pipe.run(LONDON).context


def test_user_errors_are_one_line_with_status_2(
    workspace: Path, index: Path, tmp_path: Path
) -> None:
    assert_user_error(invoke("query", LONDON, "--index", tmp_path), "no index here")
    assert_user_error(
        invoke("query", LONDON, "--index", index, "--filters", "{product"),
        "--filters: not valid JSON",
    )
    assert_user_error(
        invoke("query", LONDON, "--index", index, "--filters", '{"product": {"$regex": "x"}}'),
        "unknown operator '$regex'",
    )
    assert_user_error(
        invoke("query", LONDON, "--index", index, "--budget", "0"), "budget must be a positive"
    )
    assert_user_error(
        invoke("query", LONDON, "--index", index, "--budget", "5"),
        "smaller than the prompt template",
    )
    assert_user_error(invoke("query", "  ", "--index", index), "query is empty")
    assert_user_error(invoke("query", LONDON), "Missing option '--index'")
    assert_user_error(invoke("query", LONDON, "--index", index, "--budget", "many"), "'--budget'")
    assert_user_error(invoke("frobnicate"), "No such command 'frobnicate'")
    assert_user_error(
        invoke("ingest", tmp_path / "nope.jsonl", "--index", tmp_path / "i"),
        "nope.jsonl: no such file",
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text("stages: [\n")
    assert_user_error(
        invoke("ingest", workspace / "docs.jsonl", "--index", tmp_path / "i2", "--config", broken),
        f"{broken}: malformed YAML at line 2",
    )
    dupes = tmp_path / "dupes.jsonl"
    dupes.write_text(json.dumps(DOCS[0]) + "\n" + json.dumps(DOCS[0]) + "\n")
    assert_user_error(
        invoke("ingest", dupes, "--index", tmp_path / "i3"),
        "duplicate document ids: 'relay-retention'",
    )
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.md").write_bytes(b"\xff\xfe")
    result = invoke("ingest", only_bad, "--index", tmp_path / "i4")
    assert result.exit_code == 2 and "error: ingest: no documents given" in result.stderr
    assert "skipped:" in result.stderr and "Traceback" not in result.stderr


def test_the_installed_entry_point(index: Path, tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "ragtrim.cli", "config"], capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0 and yaml.safe_load(ok.stdout)["version"] == 1
    bad = subprocess.run(
        [sys.executable, "-m", "ragtrim.cli", "query", "x", "--index", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert (
        bad.stderr.strip()
        == f"error: {tmp_path}: no index here; run 'ragtrim ingest ... --index {tmp_path}' first"
    )
