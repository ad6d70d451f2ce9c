"""One contract, every stage: construct -> to_dict -> from_dict -> equal; errors name fields."""

import json
import subprocess
import sys

import pytest
import yaml

import ragtrim.pipeline  # noqa: F401  (imports every built-in stage, filling the registry)
from ragtrim.errors import ConfigError
from ragtrim.stage import Stage, available_stages, stage_class

ALL_STAGES = available_stages()


def test_every_pipeline_slot_has_a_stage():
    kinds = {stage_class(name).kind for name in ALL_STAGES}
    assert {"chunker", "embedder", "filter", "retriever", "reranker", "dedup", "packer"} <= kinds


@pytest.mark.parametrize("name", ALL_STAGES)
def test_round_trip_through_dict_json_and_yaml(name):
    stage = stage_class(name)()
    data = stage.to_dict()
    assert set(data) == {"type", "init_parameters"} and data["type"] == name
    assert Stage.from_dict(data) == stage
    assert Stage.from_dict(json.loads(json.dumps(data))) == stage
    assert Stage.from_dict(yaml.safe_load(yaml.safe_dump(data))) == stage
    hash(stage)


@pytest.mark.parametrize("name", ALL_STAGES)
def test_unknown_parameter_names_the_valid_ones(name):
    cls = stage_class(name)
    with pytest.raises(ConfigError) as excinfo:
        cls(no_such_parameter=1)
    message = str(excinfo.value)
    assert f"{name}.no_such_parameter" in message and "valid parameters:" in message
    for field in cls.Config.model_fields:
        assert field in message


def test_constructing_every_stage_loads_no_model():
    """Light __init__: building all stages must not import torch or sentence-transformers."""
    script = (
        "import sys\n"
        "from ragtrim.stage import available_stages, stage_class\n"
        "import ragtrim.pipeline\n"
        "[stage_class(n)() for n in available_stages()]\n"
        "heavy = ('torch', 'sentence_transformers', 'transformers')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr


def test_wrong_type_names_field_and_value():
    with pytest.raises(
        ConfigError, match=r"HybridRetriever.bm25_top_k: .*greater than or equal to 1.*got -3"
    ):
        stage_class("HybridRetriever")(bm25_top_k=-3)


def test_unknown_stage_type_lists_valid_types():
    with pytest.raises(ConfigError, match="valid: .*HybridRetriever"):
        Stage.from_dict({"type": "Nope", "init_parameters": {}})
    with pytest.raises(ConfigError, match="unknown key"):
        Stage.from_dict({"type": "HybridRetriever", "params": {}})


def test_with_params_returns_new_validated_stage():
    retriever = stage_class("HybridRetriever")()
    deeper = retriever.with_params(top_k=10)
    assert deeper.config.top_k == 10 and retriever.config.top_k != 10
    with pytest.raises(ConfigError):
        retriever.with_params(top_k=0)
