"""``ragtrim tune``: the stratified split, the per-task-type choice of profile, the tuned config
that ``Pipeline.run(query, task_type=...)`` applies, and the command itself.

Pipelines use the hashing embedder of ``bench_support`` (no model is loaded).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from bench_support import TINY, cheap_config
from typer.testing import CliRunner

from ragtrim.bench.datasets import Dataset, Query, load_dataset
from ragtrim.bench.engine import System
from ragtrim.bench.tune import (
    choose_profiles,
    load_search,
    split_halves,
    split_spread,
    tune_profiles,
)
from ragtrim.cli import app
from ragtrim.config import dump_config, load_config
from ragtrim.errors import ConfigError
from ragtrim.pipeline import Pipeline

SEARCH = {"packer.budget": [80, 400], "retriever.top_k": [1, 10]}
NAN = float("nan")


def synthetic(counts: dict[str, int]) -> Dataset:
    """Queries of several task types, interleaved (so order preservation is visible)."""
    queries = [
        Query(f"{task_type}-{i}", f"question {i} about {task_type}", ("x",), task_type)
        for i in range(max(counts.values()))
        for task_type, n in counts.items()
        if i < n
    ]
    return Dataset("synthetic", Path("synthetic"), [], queries, None, "0" * 16)


def strict_json(path: Path) -> dict:
    """Parse JSON, refusing NaN and Infinity (not JSON, though ``json.dumps`` writes them)."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{path} contains {constant}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("tune")
    summary = tune_profiles(
        TINY, root / "tuned.yaml", config=cheap_config(root / "cache"), search=SEARCH
    )
    return root / "tuned.yaml", summary


# --- split ----------------------------------------------------------------------------------


def test_split_halves_is_stratified_disjoint_and_keeps_order() -> None:
    dataset = synthetic({"factoid": 5, "yes_no": 4, "unanswerable": 1})
    before = list(dataset.queries)
    tune, test = split_halves(dataset, seed=0)
    ids = [q.id for q in dataset.queries]
    tune_ids, test_ids = [q.id for q in tune.queries], [q.id for q in test.queries]
    assert not set(tune_ids) & set(test_ids) and set(tune_ids) | set(test_ids) == set(ids)
    assert tune_ids == [i for i in ids if i in tune_ids]  # original order kept
    assert test_ids == [i for i in ids if i in test_ids]
    assert Counter(q.task_type for q in tune.queries) == {
        "factoid": 3,
        "yes_no": 2,
        "unanswerable": 1,
    }
    assert Counter(q.task_type for q in test.queries) == {"factoid": 2, "yes_no": 2}
    assert tune.name == test.name == "synthetic" and dataset.queries == before


def test_split_halves_is_seeded() -> None:
    dataset = synthetic({"factoid": 6, "yes_no": 6})
    first, again = split_halves(dataset, seed=7), split_halves(dataset, seed=7)
    assert [q.id for q in first[0].queries] == [q.id for q in again[0].queries]
    splits = {tuple(q.id for q in split_halves(dataset, seed)[0].queries) for seed in range(8)}
    assert len(splits) > 1


@pytest.mark.parametrize("seed", range(5))
def test_split_halves_barely_moves_when_queries_are_added(seed: int) -> None:
    """A growing evaluation set keeps its split: each added query moves at most one existing
    query of its task type across halves (shuffling positions would reshuffle them all)."""
    small = synthetic({"factoid": 40, "yes_no": 30})
    grown = synthetic({"factoid": 44, "yes_no": 30})
    old_ids = {q.id for q in small.queries}
    before = {q.id for q in split_halves(small, seed)[0].queries}
    after = {q.id for q in split_halves(grown, seed)[0].queries} & old_ids
    assert len(before ^ after) <= 4
    # the split depends on ids, not on the order of the file
    reversed_file = replace(small, queries=small.queries[::-1])
    assert {q.id for q in split_halves(reversed_file, seed)[0].queries} == before


# --- choosing profiles ----------------------------------------------------------------------


SYSTEMS = [System(name, "ragtrim") for name in ("default", "p1", "p2", "p3")]
TABLE = {
    ("default", "factoid"): {"tokens": 100.0, "quality": 0.9},
    ("p1", "factoid"): {"tokens": 40.0, "quality": 0.8},
    ("p2", "factoid"): {"tokens": 60.0, "quality": 0.87},
    ("p3", "factoid"): {"tokens": 60.0, "quality": 0.88},
    ("default", "unanswerable"): {"tokens": 100.0, "quality": NAN},
    ("p1", "unanswerable"): {"tokens": 50.0, "quality": NAN},
    ("p2", "unanswerable"): {"tokens": 30.0, "quality": NAN},
    ("default", "yes_no"): {"tokens": 90.0, "quality": 0.5},
    ("p1", "yes_no"): {"tokens": 20.0, "quality": NAN},
    ("p3", "yes_no"): {"tokens": 70.0, "quality": 0.5},
}


def chosen(target: float) -> dict[str, str]:
    return {t: s.name for t, s in choose_profiles(TABLE, SYSTEMS, target).items()}


def test_choose_profiles_takes_the_cheapest_system_within_target_of_the_best() -> None:
    # factoid: floor 0.855 rules out p1; p2 and p3 tie on tokens, p3 has the better quality
    # unanswerable: nothing to find, so the cheapest context; yes_no: p1 measured nothing
    assert chosen(0.95) == {"factoid": "p3", "unanswerable": "p2", "yes_no": "p3"}
    assert chosen(0.85)["factoid"] == "p1"
    assert chosen(1.0)["factoid"] == "default"


def test_choose_profiles_returns_the_system_objects() -> None:
    systems = [System("default", "ragtrim"), System("lean", "ragtrim", overrides={"packer": {}})]
    table = {("default", "t"): {"tokens": 9.0, "quality": 1.0}}
    table[("lean", "t")] = {"tokens": 3.0, "quality": 1.0}
    assert choose_profiles(table, systems, 0.95) == {"t": systems[1]}


def test_prior_queries_shrink_a_small_task_type_towards_the_pooled_quality() -> None:
    """A 4-query task type where the cheap profile looks perfect by luck, while over the
    40 queries of the other type it loses a third of the answers."""
    systems = [System("default", "ragtrim"), System("cheap", "ragtrim")]
    table = {
        ("default", "small"): {"tokens": 100.0, "quality": 1.0, "n": 4, "n_quality": 4},
        ("cheap", "small"): {"tokens": 30.0, "quality": 1.0, "n": 4, "n_quality": 4},
        ("default", "big"): {"tokens": 100.0, "quality": 0.9, "n": 40, "n_quality": 40},
        ("cheap", "big"): {"tokens": 30.0, "quality": 0.6, "n": 40, "n_quality": 40},
    }
    assert choose_profiles(table, systems, 0.95)["small"].name == "cheap"
    # pooled: default 0.909, cheap 0.636; with 5 prior queries the small type's cheap quality
    # becomes (4 * 1.0 + 5 * 0.636) / 9 = 0.798 < 0.95 * (4 + 5 * 0.909) / 9 = 0.902
    shrunk = choose_profiles(table, systems, 0.95, prior_queries=5)
    assert shrunk["small"].name == "default"
    assert shrunk["big"].name == "default"


# --- tune_profiles --------------------------------------------------------------------------


def test_tune_profiles_writes_a_config_with_a_profile_per_task_type(
    tuned: tuple[Path, str],
) -> None:
    path, summary = tuned
    config = load_config(path)
    assert config.stages["embedder"].type == "BenchHashingEmbedder"
    assert set(config.profiles) == {"factoid", "yes_no", "unanswerable"}
    report = strict_json(path.with_suffix(".report.json"))
    assert report["metric"] == "answer_recall" and report["target"] == 0.95
    for task_type, system in report["profiles"].items():
        assert config.profiles[task_type] == system["overrides"]
        assert f"| {task_type} | {system['name']} |" in summary
    assert report["fingerprint"] == load_dataset(TINY).fingerprint
    tune_half, test_half = split_halves(load_dataset(TINY), 0)
    assert report["tune_half"]["default"]["queries"] == len(tune_half.queries)
    assert report["test_half"]["default"]["queries"] == len(test_half.queries)
    assert "tune half: default" in summary and "test half: default" in summary


def test_the_tuned_config_loads_and_run_applies_each_profile(tuned: tuple[Path, str]) -> None:
    path, _ = tuned
    profiles = load_config(path).profiles
    assert any(profiles.values()), "every task type kept the default: the test shows nothing"
    pipe = Pipeline.from_config(path)
    dataset = load_dataset(TINY)
    pipe.ingest(dataset.documents)
    default_budget = pipe.stages["packer"].config.budget
    default_depth = pipe.stages["retriever"].config.top_k
    for query in dataset.queries:
        overrides = profiles[query.task_type]
        result = pipe.run(query.question, task_type=query.task_type)
        assert result.report.profile == query.task_type
        budget = overrides.get("packer", {}).get("budget", default_budget)
        assert result.tokens.budget == budget and result.tokens.prompt <= budget
        depth = overrides.get("retriever", {}).get("top_k", default_depth)
        assert result.report.stage("retriever").n_out <= depth
    plain = pipe.run(dataset.queries[0].question)
    assert plain.report.profile == "default" and plain.tokens.budget == default_budget


def test_split_spread_replays_what_tune_gives_for_each_seed(tmp_path: Path) -> None:
    config = cheap_config(tmp_path / "cache")
    spread = split_spread(TINY, [0, 3], config=config, search=SEARCH, prior_queries=[0, 5])
    assert [(row["seed"], row["prior_queries"]) for row in spread] == [
        (0, 0),
        (0, 5),
        (3, 0),
        (3, 5),
    ]
    for row in spread:
        out = tmp_path / f"tuned-{row['seed']}-{row['prior_queries']}.yaml"
        tune_profiles(
            TINY,
            out,
            config=config,
            search=SEARCH,
            seed=row["seed"],
            prior_queries=row["prior_queries"],
        )
        report = json.loads(out.with_suffix(".report.json").read_text(encoding="utf-8"))
        assert row["test_half"] == report["test_half"]
        assert row["profiles"] == {t: p["name"] for t, p in report["profiles"].items()}


def test_tune_profiles_reports_a_half_without_queries(tmp_path: Path) -> None:
    # two queries of two task types: each type's single query goes to the tune half
    summary = tune_profiles(
        TINY, tmp_path / "t.yaml", config=cheap_config(tmp_path / "cache"), search=SEARCH, limit=2
    )
    report = strict_json(tmp_path / "t.report.json")
    assert report["test_half"]["default"]["queries"] == 0
    assert report["test_half"]["token_reduction"] is None
    assert "test half: no queries" in summary and "tune half: default" in summary
    load_config(tmp_path / "t.yaml")


def test_tune_profiles_reports_a_half_without_span_answers(tmp_path: Path) -> None:
    dataset = tmp_path / "labels"
    dataset.mkdir()
    (dataset / "corpus.jsonl").write_text((TINY / "corpus.jsonl").read_text(encoding="utf-8"))
    queries = [
        {"id": "f", "question": "What does the kestrel hunt?", "answers": ["small mammals"]},
        {"id": "y1", "question": "Do owls hunt at night?", "answers": ["yes"]},
        {"id": "y2", "question": "Do falcons dive?", "answers": ["yes"]},
    ]
    (dataset / "queries.jsonl").write_text(
        "".join(
            json.dumps({**q, "task_type": "factoid" if q["id"] == "f" else "yes_no"}) + "\n"
            for q in queries
        )
    )
    summary = tune_profiles(
        dataset, tmp_path / "t.yaml", config=cheap_config(tmp_path / "cache"), search=SEARCH
    )
    test_half = strict_json(tmp_path / "t.report.json")["test_half"]
    assert test_half["default"]["queries"] == 1 and test_half["default"]["answer_recall"] is None
    assert test_half["quality_ratio"] is None and test_half["token_reduction"] > 0
    test_line = next(line for line in summary.splitlines() if line.startswith("test half"))
    assert "answer_recall n/a" in test_line and "quality ratio n/a" in test_line


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("packer.budget: 100\n", "non-empty lists"),
        ("packer.budget: []\n", "non-empty lists"),
        ("- packer.budget\n", "expected a mapping"),
        ("packer.budget: [1\n", "cannot read search grid"),
    ],
)
def test_bad_search_files_name_the_file(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "search.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as excinfo:
        load_search(path)
    assert str(path) in str(excinfo.value) and fragment in str(excinfo.value)


# --- the command line -----------------------------------------------------------------------

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, prog_name="ragtrim")


def test_tune_command_writes_the_tuned_config(tmp_path: Path) -> None:
    config = tmp_path / "ragtrim.yaml"
    dump_config(load_config(cheap_config(tmp_path / "cache")), config)
    search = tmp_path / "search.yaml"
    search.write_text(yaml.safe_dump(SEARCH), encoding="utf-8")
    out = tmp_path / "tuned" / "ragtrim.yaml"
    result = invoke(
        "tune",
        *("--dataset", TINY, "--out", out, "--config", config),
        *("--search", search, "--target", "0.9"),
    )
    assert result.exit_code == 0, result.stderr
    assert f"tuned profiles written to {out} (answer_recall, target 0.9)" in result.stdout
    tuned = load_config(out)
    assert set(tuned.profiles) == {"factoid", "yes_no", "unanswerable"}
    report = strict_json(out.with_suffix(".report.json"))
    assert report["target"] == 0.9
    assert {p["name"].split("[")[0] for p in report["profiles"].values()} <= {"default", "profile"}
    for overrides in tuned.profiles.values():
        for slot, params in overrides.items():
            for param, value in params.items():
                assert value in SEARCH[f"{slot}.{param}"]


def test_tune_command_with_a_missing_data_set_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dataset"
    out = tmp_path / "tuned.yaml"
    result = invoke("tune", "--dataset", missing, "--out", out)
    assert result.exit_code == 2 and result.stdout == ""
    assert f"error: {missing}: no such file or folder" in result.stderr
    assert not out.exists()


def test_refit_scorer_writes_a_scorer_the_tuned_config_uses(tmp_path: Path) -> None:
    out = tmp_path / "tuned.yaml"
    summary = tune_profiles(
        TINY, out, config=cheap_config(tmp_path / "cache"), search=SEARCH, refit_scorer=True
    )
    scorer_path = out.with_suffix(".scorer.json")
    from ragtrim.packing.scorer import UnitScorer

    scorer = UnitScorer.load(scorer_path)
    tune_half, test_half = split_halves(load_dataset(TINY), 0)
    assert scorer.training["datasets"] == [load_dataset(TINY).name]
    assert 0 < scorer.training["questions"] <= len(tune_half.queries)
    config = load_config(out)
    assert config.stages["packer"].init_parameters["scorer_path"] == str(scorer_path)
    report = strict_json(out.with_suffix(".report.json"))
    refit = report["refit_scorer"]
    assert refit["test_half"]["shipped"]["queries"] == len(test_half.queries)
    assert refit["test_half"]["refit"]["queries"] == len(test_half.queries)
    assert "unit scorer refitted on the tune half" in summary
    Pipeline.from_config(out)  # the written config loads with its scorer


def test_refit_scorer_without_labels_names_the_data_set(tmp_path: Path) -> None:
    dataset = load_dataset(TINY)
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    (unlabelled / "corpus.jsonl").write_text(
        (Path(TINY) / "corpus.jsonl").read_text(encoding="utf-8"), encoding="utf-8"
    )
    rows = [
        {"id": q.id, "question": q.question, "answers": [], "task_type": q.task_type}
        for q in dataset.queries
    ]
    (unlabelled / "queries.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="no question with gold sentences or span answers"):
        tune_profiles(
            unlabelled,
            tmp_path / "t.yaml",
            config=cheap_config(tmp_path / "cache"),
            search=SEARCH,
            refit_scorer=True,
        )
