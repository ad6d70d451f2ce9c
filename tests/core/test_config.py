"""Pipeline configuration: YAML/JSON round trips, precise errors, task profiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pipeline_support import DOCS, default_config, tiny_config

from ragtrim.config import PipelineConfig, dump_config, load_config
from ragtrim.errors import ConfigError
from ragtrim.pipeline import Pipeline


def custom_config(cache_dir: Path) -> dict[str, Any]:
    config = default_config()
    config["cache"]["directory"] = str(cache_dir)
    config["stages"]["reranker"] = None
    config["stages"]["packer"]["init_parameters"].update(
        budget=600, granularity="chunk", scorer="hand"
    )
    config["stages"]["retriever"]["init_parameters"].update(fusion="rrf", bm25_top_k=30)
    config["index"]["bm25_variant"] = "okapi"
    config["profiles"] = {
        "lookup": {"packer": {"budget": 300}, "retriever": {"top_k": 20}},
        "summary": {"packer": {"budget": 1200, "relative_threshold": 0.4}},
    }
    return config


def test_dict_round_trip(tmp_path: Path) -> None:
    pipe = Pipeline(custom_config(tmp_path))
    again = Pipeline.from_config(pipe.to_config())
    assert again.to_config() == pipe.to_config()
    assert again.stages == pipe.stages
    assert again.stages["reranker"] is None
    assert again.to_config()["profiles"]["lookup"] == {
        "packer": {"budget": 300},
        "retriever": {"top_k": 20},
    }


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_file_round_trip(tmp_path: Path, suffix: str) -> None:
    pipe = Pipeline(custom_config(tmp_path))
    path = tmp_path / f"ragtrim{suffix}"
    pipe.save_config(path)
    text = path.read_text()
    parsed = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    assert parsed == pipe.to_config()
    assert load_config(path) == pipe.config
    assert Pipeline.from_config(path).to_config() == pipe.to_config()


def test_dump_config_formats_and_the_default_is_valid() -> None:
    config = load_config(default_config())
    as_yaml = dump_config(config)
    as_json = dump_config(config, fmt="json")
    assert yaml.safe_load(as_yaml) == json.loads(as_json) == config.model_dump(mode="json")
    assert list(yaml.safe_load(as_yaml)["stages"]) == [
        "chunker",
        "embedder",
        "filter",
        "retriever",
        "reranker",
        "dedup",
        "packer",
    ]


def set_path(config: dict, path: str, value: Any) -> dict:
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node[key]
    node[last] = value
    return config


BAD_CONFIGS = [
    ("colour", "blue", r"config\.colour: unknown key; valid keys: cache, index, pricing, profiles"),
    (
        "cache.ttl",
        5,
        r"config\.cache\.ttl: unknown key; "
        r"valid keys: directory, embeddings, rerank_scores, retrieval",
    ),
    ("index.bm25_kk", 1, r"config\.index\.bm25_kk: unknown key; valid keys: bm25_b, bm25_k1"),
    ("tokenizer.enc", "x", r"config\.tokenizer\.enc: unknown key; valid keys: encoding, model"),
    (
        "stages.packer.params",
        {},
        r"config\.stages\.packer\.params: unknown key; valid keys: init_parameters, type",
    ),
    (
        "cache.retrieval",
        "maybe",
        r"config\.cache\.retrieval: Input should be a valid boolean.*'maybe'",
    ),
    (
        "index.bm25_variant",
        "bm42",
        r"config\.index\.bm25_variant: Input should be 'lucene', 'okapi' or 'bm25\+'",
    ),
    (
        "cache.semantic_threshold",
        1.5,
        r"config\.cache\.semantic_threshold: Input should be less than or equal to 1",
    ),
    ("version", 2, r"config\.version: Input should be 1 \(got 2\)"),
    (
        "stages.ranker",
        {"type": "X"},
        r"config\.stages: unknown stage slot\(s\) 'ranker'; "
        r"valid slots in order: chunker, embedder, filter, retriever, reranker, dedup, packer",
    ),
    (
        "stages.chunker",
        None,
        r"config\.stages: required stage slot\(s\) missing or null: 'chunker'; "
        r"only dedup, filter, reranker may be null",
    ),
    (
        "stages.retriever.type",
        "BM25Only",
        r"stages\.retriever\.type: unknown stage type 'BM25Only'; valid: .*HybridRetriever",
    ),
    (
        "stages.packer.init_parameters.bugdet",
        5,
        r"stages\.packer: ContextPacker\.bugdet: unknown parameter; "
        r"valid parameters: budget, budget_scope",
    ),
    (
        "stages.packer.init_parameters.budget",
        "lots",
        r"stages\.packer: ContextPacker\.budget: Input should be a valid integer.*'lots'",
    ),
    (
        "profiles",
        {"lookup": {"ranker": {"k": 1}}},
        r"config\.profiles: profile 'lookup' overrides stage 'ranker'.*"
        r"valid stages: filter, retriever, reranker, dedup, packer",
    ),
    (
        "profiles",
        {"lookup": {"chunker": {"max_tokens": 9}}},
        r"profile 'lookup' overrides stage 'chunker', which cannot be overridden per task type",
    ),
    (
        "profiles",
        {"lookup": {"packer": {"bugdet": 1}}},
        r"profiles\.lookup\.packer: ContextPacker\.bugdet: unknown parameter; "
        r"valid parameters: budget",
    ),
    (
        "profiles",
        {"lookup": {"packer": {"budget": -1}}},
        r"profiles\.lookup\.packer: ContextPacker\.budget: Input should be greater than 0",
    ),
    (
        "profiles",
        {"lookup": {"packer": 300}},
        r"config\.profiles\.lookup\.packer: Input should be a valid dictionary \(got 300\)",
    ),
]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    BAD_CONFIGS,
    ids=[c[0] + "=" + repr(c[1])[:20] for c in BAD_CONFIGS],
)
def test_bad_configs_name_the_field_and_the_valid_choices(
    tmp_path: Path, path: str, value: Any, message: str
) -> None:
    config = set_path(default_config(), path, value)
    config["cache"]["directory"] = str(tmp_path)
    with pytest.raises(ConfigError, match=message):
        Pipeline(config)


def test_a_stage_in_the_wrong_slot_and_a_profile_for_a_disabled_stage(tmp_path: Path) -> None:
    config = default_config()
    config["stages"]["retriever"] = config["stages"]["packer"]
    with pytest.raises(
        ConfigError, match="stages.retriever: ContextPacker is a packer, not a retriever"
    ):
        Pipeline(config)
    config = default_config()
    config["cache"]["directory"] = str(tmp_path)
    config["stages"]["reranker"] = None
    config["profiles"] = {"deep": {"reranker": {"depth": 10}}}
    with pytest.raises(ConfigError, match="profiles.deep.reranker: that stage is disabled"):
        Pipeline(config)


def test_malformed_files_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("stages:\n  packer: {type: ContextPacker\n  dedup: [\n")
    with pytest.raises(
        ConfigError,
        match=rf"{broken}: malformed YAML at line 3, column 8: expected ',' or '}}', but got ':'$",
    ):
        load_config(broken)
    broken_json = tmp_path / "broken.json"
    broken_json.write_text('{"stages": {')
    with pytest.raises(
        ConfigError,
        match=rf"{broken_json}: malformed JSON at line 1, column 13: Expecting property name",
    ):
        Pipeline.from_config(broken_json)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(
        ConfigError, match=rf"{listing}: expected a mapping at the top level, got list"
    ):
        load_config(listing)
    with pytest.raises(ConfigError, match="missing.yaml: cannot read config"):
        load_config(tmp_path / "missing.yaml")
    typo = tmp_path / "typo.yaml"
    typo.write_text(dump_config(load_config(default_config())).replace("semantic:", "semantik:"))
    with pytest.raises(ConfigError, match=rf"{typo}\.cache\.semantik: unknown key"):
        load_config(typo)


def test_pipeline_config_objects_are_accepted_as_is(tmp_path: Path) -> None:
    config = load_config(custom_config(tmp_path))
    assert isinstance(config, PipelineConfig)
    assert Pipeline(config).config is config


# ---------------------------------------------------------------------------------- profiles
@pytest.fixture(scope="module")
def profiled(tiny_embedder_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    config = tiny_config(tiny_embedder_path, tmp_path_factory.mktemp("cache"))
    config["profiles"] = {
        "tight": {"packer": {"budget": 120}, "retriever": {"top_k": 3}},
        "wide": {
            "packer": {
                "budget": 2000,
                "granularity": "chunk",
                "scorer": "hand",
                "relative_threshold": 0.0,
            }
        },
    }
    pipe = Pipeline(config)
    pipe.ingest(DOCS)
    return pipe


def test_task_profiles_are_applied_by_run(profiled: Pipeline) -> None:
    question = "How long does Relay keep message data?"
    tight = profiled.run(question, task_type="tight")
    assert (tight.report.profile, tight.report.task_type) == ("tight", "tight")
    assert tight.tokens.budget == 120 and tight.tokens.prompt <= 120
    assert tight.report.stage("retriever").n_out <= 3
    assert tight.report.notes == [] or "cache" in " ".join(tight.report.notes)

    default = profiled.run(question)
    assert default.report.profile == "default" and default.tokens.budget == 1024
    assert default.report.stage("retriever").n_out == sum(1 for _ in profiled.index.chunks)

    wide = profiled.run(question, task_type="wide")
    assert wide.report.profile == "wide" and wide.tokens.budget == 2000
    # whole chunks and no cutoff: every candidate that survived dedup is packed
    assert len(wide.passages) == wide.report.stage("dedup").n_out > len(tight.passages)

    # a call-time budget still wins over the profile's
    assert profiled.run(question, task_type="tight", budget=100).tokens.prompt <= 100


def test_unknown_task_type_runs_the_default_profile_and_says_so(profiled: Pipeline) -> None:
    result = profiled.run("hotel cap in London", task_type="haiku")
    assert result.report.profile == "default" and result.report.task_type == "haiku"
    assert "no profile for task type 'haiku'; used the default profile" in result.report.notes
    assert result.tokens.budget == 1024
