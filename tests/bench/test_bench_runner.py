"""The benchmark engine and runner: systems, per-query evaluation, aggregates, the Pareto
front, the headline, the files ``ragtrim bench`` writes, and the command itself.

Pipelines use the hashing embedder of ``bench_support`` (no model is loaded) and the tiny
ragtrim-JSONL data set: four queries (two factoid with span answers, one yes/no, one
unanswerable) over three documents, q1 filtered to English documents, qrels for q1 and q4.
"""

from __future__ import annotations

import json
import platform
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from bench_support import TINY, cheap_config
from typer.testing import CliRunner

from ragtrim.bench.datasets import Dataset, Query, load_dataset
from ragtrim.bench.engine import (
    System,
    baseline_systems,
    evaluate,
    grid_systems,
    pareto_front,
    summarise,
)
from ragtrim.bench.metrics import answer_recall
from ragtrim.bench.plots import plot_tokens_vs_quality
from ragtrim.bench.runner import DEFAULT_GRID, headline, load_sweep, run_benchmark
from ragtrim.cli import app
from ragtrim.config import dump_config, load_config
from ragtrim.errors import ConfigError
from ragtrim.pipeline import Pipeline
from ragtrim.query import QueryContext
from ragtrim.retrieval.hybrid import HybridRetriever
from ragtrim.tokens import load_encoding
from ragtrim.types import Candidate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL_SWEEP = {"baselines": ["hybrid"], "k": [1, 5], "grid": {"packer.budget": [100, 400]}}
SMALL_SYSTEMS = {
    "naive-hybrid-top1",
    "naive-hybrid-top5",
    "ragtrim",
    "ragtrim[budget=100]",
    "ragtrim[budget=400]",
}


@pytest.fixture(scope="module")
def tiny() -> Dataset:
    return load_dataset(TINY)


@pytest.fixture(scope="module")
def indexed(tiny: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    pipe = Pipeline(cheap_config(tmp_path_factory.mktemp("cache")))
    pipe.ingest(tiny.documents)
    return pipe


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "sweep.yaml"
    path.write_text(yaml.safe_dump(SMALL_SWEEP), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``run_benchmark`` with the built-in sweep: 30 baselines and 9 ragtrim systems."""
    root = tmp_path_factory.mktemp("bench")
    markdown = run_benchmark(TINY, root / "out", config=cheap_config(root / "cache"))
    return root / "out", markdown


def table_rows(markdown: str) -> dict[str, list[str]]:
    """The results table of ``results.md``: system name -> its cells, in file order (the
    quality-at-budget tables after it are not system rows)."""
    rows = {}
    for line in markdown.split("## Quality at context budgets")[0].splitlines():
        if line.startswith("| ") and not line.startswith("| system"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells
    return rows


def ranked(pipe: Pipeline, query: Query, mode: str, k: int) -> list[Candidate]:
    """What a naive baseline sees: the filter, then one retrieval in ``mode``."""
    ctx = QueryContext(
        query.question, pipe.counter, query.task_type, query.filters, pipe.index, pipe.embedder
    )
    pipe.stages["filter"].run(ctx, [])
    return pipe.stages["retriever"].with_params(mode=mode, top_k=k).run(ctx, []).candidates


def concatenation(candidates: list[Candidate]) -> str:
    """Whole chunks under the default passage header ``[n] source``, blank-line separated."""
    return "\n\n".join(
        f"[{n}] {c.chunk.title or c.chunk.doc_id}\n{c.chunk.text}"
        for n, c in enumerate(candidates, start=1)
    )


# --- systems --------------------------------------------------------------------------------


def test_baseline_systems_are_every_mode_times_every_k() -> None:
    systems = baseline_systems(("bm25", "hybrid"), (1, 3))
    assert [(s.name, s.kind, s.mode, s.k) for s in systems] == [
        ("naive-bm25-top1", "naive", "bm25", 1),
        ("naive-bm25-top3", "naive", "bm25", 3),
        ("naive-hybrid-top1", "naive", "hybrid", 1),
        ("naive-hybrid-top3", "naive", "hybrid", 3),
    ]
    defaults = baseline_systems()
    assert len({s.name for s in defaults}) == 30
    assert {s.mode for s in defaults} == {"bm25", "dense", "hybrid"}
    assert {s.k for s in defaults} == set(range(1, 11))


def test_grid_systems_are_the_cartesian_product_with_labels() -> None:
    systems = grid_systems({"retriever.top_k": [5, 10], "packer.budget": [100, 200]})
    assert [s.name for s in systems] == [
        "ragtrim[budget=100,top_k=5]",
        "ragtrim[budget=100,top_k=10]",
        "ragtrim[budget=200,top_k=5]",
        "ragtrim[budget=200,top_k=10]",
    ]
    assert all(s.kind == "ragtrim" for s in systems)
    assert systems[1].overrides == {"packer": {"budget": 100}, "retriever": {"top_k": 10}}
    same_slot = grid_systems({"packer.budget": [64], "packer.granularity": ["chunk"]}, "p")
    assert [(s.name, s.overrides) for s in same_slot] == [
        ("p[budget=64,granularity=chunk]", {"packer": {"budget": 64, "granularity": "chunk"}})
    ]
    assert [(s.name, dict(s.overrides)) for s in grid_systems({})] == [("ragtrim", {})]


def test_grid_key_without_a_slot_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"'budget'.*'slot\.parameter'"):
        grid_systems({"budget": [100], "packer.granularity": ["chunk"]})
    with pytest.raises(ConfigError, match=r"'packer\.budget'.*non-empty list"):
        grid_systems({"packer.budget": 100})


def test_load_sweep_without_a_file_is_the_default_sweep() -> None:
    systems, modes, ks = load_sweep(None)
    assert systems[0] == System("ragtrim", "ragtrim")
    assert [s.name for s in systems[1:]] == [s.name for s in grid_systems(DEFAULT_GRID)]
    assert modes == ["bm25", "dense", "hybrid"] and ks == list(range(1, 11))


def test_load_sweep_reads_named_systems_grid_baselines_and_ks(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "systems": [{"name": "lean", "overrides": {"packer": {"budget": 256}}}],
                "grid": {"packer.relative_threshold": [0.4, 0.6]},
                "baselines": ["bm25"],
                "k": [2, 4],
            }
        ),
        encoding="utf-8",
    )
    systems, modes, ks = load_sweep(path)
    assert [s.name for s in systems] == [
        "ragtrim",
        "lean",
        "ragtrim[relative_threshold=0.4]",
        "ragtrim[relative_threshold=0.6]",
    ]
    assert systems[1].overrides == {"packer": {"budget": 256}}
    assert modes == ["bm25"] and ks == [2, 4]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("grid: {packer.budget: [1]}\nbudgets: [1]\n", "unknown key(s) ['budgets']"),
        ("systems: [{overrides: {packer: {budget: 1}}}]\n", "systems[0] needs a 'name'"),
        ("systems: [{name: x, overrides: [1]}]\n", "systems[0].overrides: expected a mapping"),
        ("baselines: [sparse]\n", "baselines ['sparse'] unknown"),
        ("baselines: hybrid\n", "baselines: expected a list"),
        ("k: [0, 2]\n", "k: expected a list of positive integers"),
        ("grid: {budget: [100]}\n", "sweep grid key 'budget'"),
        ("grid: {packer.budget: 100}\n", "'packer.budget': expected a non-empty list"),
        ("- packer.budget: [1]\n", "expected a mapping"),
        ("grid: [unclosed\n", "cannot read sweep file"),
    ],
)
def test_bad_sweep_files_are_config_errors_naming_file_and_field(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as excinfo:
        load_sweep(path)
    assert str(path) in str(excinfo.value) and fragment in str(excinfo.value)


def test_missing_sweep_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml: cannot read sweep file"):
        load_sweep(tmp_path / "nope.yaml")


# --- evaluate -------------------------------------------------------------------------------


def test_naive_records_count_the_concatenated_top_k_with_tiktoken(
    indexed: Pipeline, tiny: Dataset
) -> None:
    # q5's answer is in its question but in no document: recall must be 0, measured on the
    # context, not on the prompt
    absent = Query("q5", "Is the kestrel a parrot?", ("parrot",), "factoid")
    dataset = replace(tiny, queries=[*tiny.queries, absent])
    systems = baseline_systems(("bm25", "hybrid"), (1, 2, 3))
    records = evaluate(indexed, dataset, systems)
    assert len(records) == len(systems) * len(dataset.queries)
    by_key = {(r["system"], r["query_id"]): r for r in records}
    encoding = load_encoding("o200k_base")  # tiktoken's Encoding, from a hash-checked local file
    grew = 0
    for query in dataset.queries:
        for mode in ("bm25", "hybrid"):
            top = ranked(indexed, query, mode, 10)
            for k in (1, 2, 3):
                context = concatenation(top[:k])
                record = by_key[(f"naive-{mode}-top{k}", query.id)]
                assert record["context_tokens"] == len(encoding.encode(context))
                assert record["prompt_tokens"] > record["context_tokens"]
                assert record["answer_recall"] == answer_recall(context, query.answers)
            top1, top3 = (by_key[(f"naive-{mode}-top{k}", query.id)] for k in (1, 3))
            grew += top3["context_tokens"] > top1["context_tokens"]
    assert grew > 0
    assert {r["answer_recall"] for r in records if r["query_id"] == "q5"} == {0.0}
    # q1 is filtered to English documents: two of the three, so top-3 is top-2
    q1 = {r["system"]: r["context_tokens"] for r in records if r["query_id"] == "q1"}
    assert q1["naive-bm25-top3"] == q1["naive-bm25-top2"]


def test_records_carry_system_query_and_task_type(indexed: Pipeline, tiny: Dataset) -> None:
    systems = [*baseline_systems(("dense",), (2,)), System("ragtrim", "ragtrim")]
    records = evaluate(indexed, tiny, systems)
    task_types = {q.id: q.task_type for q in tiny.queries}
    assert Counter((r["system"], r["query_id"]) for r in records) == Counter(
        (s.name, q) for s in systems for q in task_types
    )
    for record in records:
        assert record["task_type"] == task_types[record["query_id"]]
        assert record["latency_ms"] >= 0
    quality = {(r["system"], r["query_id"]): r["answer_recall"] for r in records}
    assert quality[("ragtrim", "q2")] is None and quality[("ragtrim", "q3")] is None
    assert quality[("ragtrim", "q1")] in (0.0, 1.0)
    ranking = {r["query_id"]: r for r in records if r["system"] == "ragtrim"}
    assert {q for q, r in ranking.items() if "ndcg@10" in r} == {"q1", "q4"}  # the qrels


def test_systems_sharing_query_stages_retrieve_once_per_group(
    indexed: Pipeline, tiny: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    depths: list[int] = []
    original = HybridRetriever.run

    def counting(self, ctx, candidates):
        depths.append(self.config.top_k)
        return original(self, ctx, candidates)

    monkeypatch.setattr(HybridRetriever, "run", counting)
    budgets = grid_systems({"packer.budget": [80, 120, 400]})
    deep = grid_systems({"retriever.top_k": [1, 2]}, prefix="deep")
    records = evaluate(indexed, tiny, [*budgets, *deep])
    n = len(tiny.queries)
    default_depth = indexed.stages["retriever"].config.top_k
    assert Counter(depths) == {default_depth: n, 1: n, 2: n}  # 3 groups, not 5 systems
    assert len(records) == 5 * n
    for record in records:
        if record["system"].startswith("ragtrim[budget="):
            budget = int(record["system"].split("=")[1].rstrip("]"))
            assert record["prompt_tokens"] <= budget
    tokens = {(r["system"], r["query_id"]): r["prompt_tokens"] for r in records}
    assert any(
        tokens[("ragtrim[budget=80]", q.id)] < tokens[("ragtrim[budget=400]", q.id)]
        for q in tiny.queries
    )


def test_an_override_of_an_unknown_slot_is_a_config_error(indexed: Pipeline, tiny: Dataset) -> None:
    with pytest.raises(ConfigError, match="'packr': unknown slot"):
        evaluate(indexed, tiny, [System("x", "ragtrim", overrides={"packr": {"budget": 1}})])


# --- aggregates -----------------------------------------------------------------------------


def test_summarise_means_bootstrap_interval_and_latency_percentiles() -> None:
    rows = [
        (10, 50, 1.0, 4.0),
        (20, 60, 0.0, 1.0),
        (30, 70, 1.0, 3.0),
        (40, 80, None, 2.0),
    ]
    records = [
        {
            "system": "a",
            "query_id": f"q{i}",
            "task_type": "factoid",
            "context_tokens": c,
            "prompt_tokens": p,
            "answer_recall": quality,
            "latency_ms": ms,
        }
        for i, (c, p, quality, ms) in enumerate(rows)
    ]
    records.append({**records[0], "system": "b", "answer_recall": None, "latency_ms": 7.0})
    summary = summarise(records, ["answer_recall", "doc_recall"], seed=3)
    a = summary["a"]
    assert a["queries"] == 4 and a["context_tokens"] == 25.0 and a["prompt_tokens"] == 65.0
    quality = a["answer_recall"]
    assert quality["mean"] == pytest.approx(2 / 3) and quality["n"] == 3
    low, high = quality["ci95"]
    assert 0.0 <= low <= quality["mean"] <= high <= 1.0 and low < high
    assert a["latency_ms"] == {"p50": 2.5, "p95": pytest.approx(3.85)}
    assert "doc_recall" not in a
    assert summary["b"]["queries"] == 1 and "answer_recall" not in summary["b"]
    assert summary["b"]["latency_ms"] == {"p50": 7.0, "p95": 7.0}
    assert summarise(records, ["answer_recall"], seed=3) == summary


def test_pareto_front_excludes_dominated_points_and_keeps_ties() -> None:
    points = {
        "cheap": (5.0, 0.2),
        "a": (10.0, 0.5),
        "twin-of-a": (10.0, 0.5),
        "same-tokens-worse": (10.0, 0.4),
        "best": (20.0, 0.8),
        "same-quality-dearer": (30.0, 0.8),
        "worse-and-dearer": (40.0, 0.7),
    }
    front = pareto_front(points)
    assert set(front) == {"cheap", "a", "twin-of-a", "best"}
    assert [points[n][0] for n in front] == sorted(points[n][0] for n in front)
    assert pareto_front({"only": (3.0, 0.0)}) == ["only"]


def _entry(tokens: float, quality: float) -> dict:
    return {"context_tokens": tokens, "answer_recall": {"mean": quality}}


def test_headline_is_the_token_ratio_at_equal_or_better_quality() -> None:
    summary = {
        "naive-hybrid-top5": _entry(100.0, 0.8),
        "naive-bm25-top1": _entry(10.0, 0.9),  # not a ragtrim system
        "ragtrim": _entry(40.0, 0.8),
        "ragtrim[relative_threshold=0.7]": _entry(20.0, 0.7),
        "ragtrim[relative_threshold=0.3]": _entry(50.0, 0.9),
    }
    head = headline(summary, "answer_recall")
    assert head["reached"] is True
    assert head["system"] == "ragtrim" and head["context_tokens"] == 40.0
    assert head["token_ratio"] == pytest.approx(2.5)
    assert head["baseline_quality"] == 0.8 and head["baseline_context_tokens"] == 100.0


def test_headline_says_when_no_ragtrim_system_reaches_the_baseline() -> None:
    summary = {
        "naive-hybrid-top5": _entry(100.0, 0.95),
        "ragtrim": _entry(40.0, 0.8),
        "ragtrim[relative_threshold=0.3]": _entry(60.0, 0.9),
    }
    head = headline(summary, "answer_recall")
    assert head["reached"] is False and "token_ratio" not in head
    assert head["best_ragtrim"] == "ragtrim[relative_threshold=0.3]"
    assert head["best_ragtrim_quality"] == 0.9
    assert headline({"ragtrim": _entry(1.0, 1.0)}, "answer_recall") == {}


def test_plot_writes_a_png_with_systems_lacking_the_metric(tmp_path: Path) -> None:
    summary = {
        "naive-hybrid-top1": _entry(30.0, 0.5),
        "naive-hybrid-top2": _entry(60.0, 0.7),
        "ragtrim": _entry(20.0, 0.6),
        "lean": _entry(15.0, 0.4),
        "no-metric": {"context_tokens": 5.0},
    }
    path = tmp_path / "plot.png"
    plot_tokens_vs_quality(summary, "answer_recall", ["lean", "ragtrim"], path, title="t")
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


# --- run_benchmark --------------------------------------------------------------------------


def test_run_benchmark_writes_results_json(default_run: tuple[Path, str], tiny: Dataset) -> None:
    out, _ = default_run
    result = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert result["dataset"]["fingerprint"] == tiny.fingerprint
    assert result["dataset"]["queries"] == 4 and result["dataset"]["documents"] == 3
    assert result["metric"] == "answer_recall"
    assert result["config"]["stages"]["embedder"]["type"] == "BenchHashingEmbedder"
    assert load_config(result["config"]).stages["packer"].type == "ContextPacker"
    environment = result["environment"]
    assert environment["python"] == platform.python_version()
    assert environment["packages"]["numpy"] == np.__version__
    assert len(result["systems"]) == 39 and set(result["summary"]) == set(result["systems"])
    records = result["records"]
    assert records["query_ids"] == ["q1", "q2", "q3", "q4"]
    assert records["task_types"] == ["factoid", "yes_no", "unanswerable", "factoid"]
    assert set(records["systems"]) == set(result["systems"])
    for name, columns in records["systems"].items():
        assert len(columns["context_tokens"]) == 4
        mean = result["summary"][name]["context_tokens"]
        assert np.mean(columns["context_tokens"]) == pytest.approx(mean)
    assert records["systems"]["ragtrim"]["answer_recall"][1] is None  # q2's answer is a label
    assert set(result["pareto_front"]) <= set(result["systems"])
    assert result["headline"]["baseline"] == "naive-hybrid-top5"


def test_run_benchmark_writes_a_table_row_per_system_and_a_plot(
    default_run: tuple[Path, str], tiny: Dataset
) -> None:
    out, markdown = default_run
    assert f"`{tiny.fingerprint}`" in markdown
    assert (out / "results.md").read_text(encoding="utf-8") == markdown
    result = json.loads((out / "results.json").read_text(encoding="utf-8"))
    rows = table_rows(markdown)
    assert set(rows) == set(result["systems"]) and len(rows) == 39
    tokens = [float(cells[1]) for cells in rows.values()]
    assert tokens == sorted(tokens)
    assert {name for name, cells in rows.items() if cells[-1] == "●"} == set(result["pareto_front"])
    assert "4 queries, 3 documents" in markdown and "with a span answer" not in markdown
    head = result["headline"]
    if head["reached"]:
        assert f"**{head['token_ratio']:.2f}x fewer tokens**" in markdown
    else:
        assert "no ragtrim system reached" in markdown
    png = (out / "tokens_vs_quality.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 1000


def test_run_benchmark_reports_evidence_recall_beside_answer_recall(
    default_run: tuple[Path, str],
) -> None:
    out, markdown = default_run
    result = json.loads((out / "results.json").read_text(encoding="utf-8"))
    header = next(line for line in markdown.splitlines() if line.startswith("| system"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[3:6] == ["answer_recall", "95% CI", "evidence recall"]
    for name, cells in table_rows(markdown).items():
        # q1 and q4 have gold sentences: evidence recall is their mean
        evidence = result["records"]["systems"][name]["evidence_recall"]
        assert [v is None for v in evidence] == [False, True, True, False]
        assert cells[5] == f"{result['summary'][name]['evidence_recall']['mean']:.3f}"
        assert result["summary"][name]["evidence_recall"]["mean"] == pytest.approx(
            (evidence[0] + evidence[3]) / 2, abs=1e-4
        )


def test_run_benchmark_reports_quality_at_context_budgets(
    default_run: tuple[Path, str],
) -> None:
    out, markdown = default_run
    result = json.loads((out / "results.json").read_text(encoding="utf-8"))
    report = result["quality_at_budget"]
    assert report["budget_scope"] == "context"
    assert report["budgets"] == [100, 150, 250, 400, 500, 750, 1000]
    assert report["metrics"] == ["answer_recall", "evidence_recall"]
    assert report["baseline_systems"] == [f"naive-hybrid-top{k}" for k in range(1, 11)]
    assert set(report["task_types"]) == {"factoid", "yes_no", "unanswerable"}
    # a label answer / no answer, and no gold sentence: nothing to measure quality by
    assert report["task_types"]["yes_no"]["metrics"] == {}
    assert report["task_types"]["unanswerable"]["metrics"] == {}
    summary, systems = result["summary"], result["systems"]
    ours = [n for n, s in systems.items() if s["kind"] == "ragtrim"]
    for metric in report["metrics"]:
        for row in report["all"]["metrics"][metric]["rows"]:
            fitting = [n for n in ours if summary[n]["context_tokens"] <= row["budget"]]
            if not fitting:
                assert row["best_system"] is None
                continue
            best = row["best_system"]
            assert best in fitting and row["best_context_tokens"] <= row["budget"]
            assert row["best_quality"] == max(summary[n][metric]["mean"] for n in fitting)
    assert "## Quality at context budgets" in markdown
    assert "### all queries (4)" in markdown and "### task type `factoid` (2)" in markdown
    assert "### task type `yes_no` (1)\n\nNo query of this scope has a quality measure." in (
        markdown
    )
    assert markdown.count("| 1,000 |") == 2  # all queries and factoid


def test_run_benchmark_answerable_only_drops_queries_without_span_answers(
    tmp_path: Path, small_sweep: Path, tiny: Dataset
) -> None:
    markdown = run_benchmark(
        TINY,
        tmp_path / "out",
        config=cheap_config(tmp_path / "cache"),
        sweep=small_sweep,
        answerable_only=True,
    )
    result = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    assert result["records"]["query_ids"] == ["q1", "q4"]
    assert result["dataset"]["queries"] == 2 and result["answerable_only"] is True
    assert result["dataset"]["fingerprint"] != tiny.fingerprint
    assert set(result["systems"]) == SMALL_SYSTEMS == set(table_rows(markdown))
    assert "2 queries with a span answer" in markdown


def test_run_benchmark_limit_subsets_the_queries(tmp_path: Path, small_sweep: Path) -> None:
    markdown = run_benchmark(
        TINY, tmp_path / "out", config=cheap_config(tmp_path / "cache"), sweep=small_sweep, limit=2
    )
    result = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    assert result["limit"] == 2 and result["dataset"]["queries"] == 2
    assert len(result["records"]["query_ids"]) == 2
    assert all(len(c["prompt_tokens"]) == 2 for c in result["records"]["systems"].values())
    assert "2 queries, 3 documents" in markdown


def test_run_benchmark_reuses_the_saved_index(tmp_path: Path, small_sweep: Path) -> None:
    config = cheap_config(tmp_path / "cache")
    for run in ("first", "second"):
        run_benchmark(TINY, tmp_path / run, config=config, sweep=small_sweep, limit=1)
    first, second = (
        json.loads((tmp_path / run / "results.json").read_text(encoding="utf-8"))["index"]
        for run in ("first", "second")
    )
    assert first["reused"] is False and first["chunks"] >= 3
    assert second["reused"] is True and second["index_dir"] == first["index_dir"]


# --- the command line -----------------------------------------------------------------------

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, prog_name="ragtrim")


def test_bench_command_writes_the_results(tmp_path: Path, small_sweep: Path) -> None:
    config = tmp_path / "ragtrim.yaml"
    dump_config(load_config(cheap_config(tmp_path / "cache")), config)
    out = tmp_path / "out"
    result = invoke(
        "bench",
        *("--dataset", TINY, "--out", out, "--config", config, "--sweep", small_sweep),
        "--answerable-only",
    )
    assert result.exit_code == 0, result.stderr
    assert "# ragtrim_tiny: tokens vs answer recall" in result.stdout
    assert "2 queries with a span answer" in result.stdout
    assert set(table_rows(result.stdout)) == SMALL_SYSTEMS
    assert (out / "results.md").read_text(encoding="utf-8") in result.stdout
    written = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert written["config"]["cache"]["directory"] == str(tmp_path / "cache")
    assert (out / "tokens_vs_quality.png").read_bytes().startswith(PNG_MAGIC)


def test_bench_command_with_a_missing_data_set_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dataset"
    result = invoke("bench", "--dataset", missing, "--out", tmp_path / "out")
    assert result.exit_code == 2 and result.stdout == ""
    assert f"error: {missing}: no such file or folder" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_bench_on_the_test_half_evaluates_only_its_questions(tmp_path: Path) -> None:
    from ragtrim.bench.tune import split_halves

    markdown = run_benchmark(
        TINY, tmp_path / "out", config=cheap_config(tmp_path / "cache"), half="test"
    )
    _, test = split_halves(load_dataset(TINY), 0)
    result = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    assert result["half"] == "test"
    assert result["dataset"]["queries"] == len(test.queries)
    assert f"{len(test.queries)} queries (the test half" in markdown


def test_bench_rejects_an_unknown_half(tmp_path: Path) -> None:
    done = CliRunner().invoke(
        app, ["bench", "--dataset", str(TINY), "--out", str(tmp_path), "--half", "middle"]
    )
    assert done.exit_code == 2 and "--half: expected 'tune' or 'test'" in done.output
