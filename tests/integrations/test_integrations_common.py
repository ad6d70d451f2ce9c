"""The framework-independent rules of the adapters: version gates, ids, scores, metadata,
duplicates, pipeline sources; and that importing ragtrim never imports a framework."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pipeline_support import tiny_config

from ragtrim.errors import ConfigError, InputError, MissingDependencyError
from ragtrim.integrations._common import (
    VersionRange,
    check_source,
    check_version,
    content_id,
    make_source,
    release_tuple,
    require,
    resolve_pipeline,
    serialisable_source,
    unique_sources,
)
from ragtrim.pipeline import Pipeline

LANGCHAIN = VersionRange("langchain-core", "langchain", (0, 3), (2,))


def test_version_range_is_described_as_a_pip_specifier():
    assert LANGCHAIN.describe() == "langchain-core>=0.3,<2"
    assert VersionRange("llama-index-core", "llamaindex", (0, 12), (0, 15)).describe() == (
        "llama-index-core>=0.12,<0.15"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.14.25", (0, 14, 25)), ("3.0.0rc1", (3, 0, 0)), ("1.7.2.post1", (1, 7, 2)), ("2", (2,))],
)
def test_release_tuple(text, expected):
    assert release_tuple(text) == expected


def test_release_tuple_rejects_garbage():
    with pytest.raises(ConfigError, match="'dev'"):
        release_tuple("dev")


@pytest.mark.parametrize("installed", ["0.3.0", "0.3.86", "1.0.0", "1.99.3"])
def test_supported_versions_pass(installed):
    assert check_version(LANGCHAIN, installed) == installed


@pytest.mark.parametrize("installed", ["0.2.43", "0.1.0", "2.0.0", "10.1"])
def test_unsupported_versions_name_the_range(installed):
    with pytest.raises(ConfigError) as excinfo:
        check_version(LANGCHAIN, installed)
    message = str(excinfo.value)
    assert f"langchain-core {installed} is not supported" in message
    assert "langchain-core>=0.3,<2" in message and "ragtrim[langchain]" in message


def test_missing_framework_names_the_extra_and_the_range():
    with pytest.raises(MissingDependencyError) as excinfo:
        check_version(LANGCHAIN, None)
    assert isinstance(excinfo.value, ImportError)
    assert "pip install 'ragtrim[langchain]'" in str(excinfo.value)
    assert "langchain-core>=0.3,<2" in str(excinfo.value)


def test_require_reads_the_installed_distribution():
    with pytest.raises(MissingDependencyError, match="no-such-dist-ragtrim"):
        require(VersionRange("no-such-dist-ragtrim", "x", (1,), (2,)))
    import importlib.metadata

    installed = importlib.metadata.version("pydantic")
    with pytest.raises(ConfigError, match=f"pydantic {installed} is not supported"):
        require(VersionRange("pydantic", "x", (99,), (100,)))
    assert require(VersionRange("pydantic", "x", (2,), (3,))) == installed


def test_importing_ragtrim_imports_no_framework():
    code = (
        "import sys, ragtrim, ragtrim.integrations, ragtrim.integrations._common\n"
        "import ragtrim.pipeline\n"
        "roots = {'langchain', 'langchain_core', 'langchain_classic', 'llama_index', 'haystack'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in roots))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- sources
def test_content_id_is_stable_and_content_addressed():
    assert content_id("abc") == content_id("abc") == "content-ba7816bf8f01cfea"
    assert content_id("abc") != content_id("abd")


def test_make_source_keeps_the_framework_id_and_converts_dates():
    source = make_source(
        "X",
        3,
        "doc-1",
        "Some text.",
        {"updated": dt.date(2025, 2, 1), "tags": ("a", "b")},
        2,
        "orig",
    )
    assert (source.id, source.position, source.score, source.original) == ("doc-1", 3, 2.0, "orig")
    assert source.metadata == {"updated": "2025-02-01", "tags": ["a", "b"]}
    assert source.as_document() == {
        "id": "doc-1",
        "text": "Some text.",
        "metadata": source.metadata,
    }


@pytest.mark.parametrize("raw_id", [None, ""])
def test_documents_without_an_id_get_a_content_id(raw_id):
    assert make_source("X", 0, raw_id, "hello", None, None, None).id == content_id("hello")


def test_integer_ids_become_strings():
    assert make_source("X", 0, 17, "t", None, None, None).id == "17"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"text": b"bytes"}, "X document #4 (id='d'): content must be a string, got bytes"),
        ({"text": None}, "content must be a string, got NoneType"),
        ({"raw_id": True}, "X document #4: id must be a string, got bool"),
        ({"raw_id": 1.5}, "id must be a string, got float"),
        ({"metadata": ["a"]}, "metadata must be a mapping, got list"),
        ({"metadata": {"tags": {"x"}}}, "X document #4: document 'd': metadata tags is a set"),
        ({"metadata": {"a": {"b": object()}}}, "metadata a.b is a object"),
        ({"metadata": {1: "x"}}, "non-string key 1"),
        ({"score": float("nan")}, "score is nan"),
        ({"score": "high"}, "score must be a number, got str"),
    ],
)
def test_bad_documents_are_named(kwargs, fragment):
    args = {"raw_id": "d", "text": "t", "metadata": {}, "score": None} | kwargs
    with pytest.raises(InputError) as excinfo:
        make_source("X", 4, args["raw_id"], args["text"], args["metadata"], args["score"], None)
    assert fragment in str(excinfo.value)


def test_numpy_scores_are_plain_floats():
    import numpy as np

    score = make_source("X", 0, "d", "t", None, np.float32(0.5), None).score
    assert type(score) is float and score == 0.5


def test_repeats_collapse_to_the_first_and_conflicts_are_errors():
    a = make_source("X", 0, "d", "same", None, 3.0, None)
    b = make_source("X", 1, "e", "other", None, 2.0, None)
    again = make_source("X", 2, "d", "same", None, 1.0, None)
    assert unique_sources([a, b, again], "X") == [a, b]
    clash = make_source("X", 5, "d", "different", None, None, None)
    with pytest.raises(
        InputError, match="X documents #0 and #5 share the id 'd' but have different"
    ):
        unique_sources([a, b, clash], "X")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", None]), st.sampled_from(["x", "y"])), max_size=8
    )
)
def test_unique_sources_keeps_first_occurrence_order(rows):
    sources = [
        make_source("X", i, rid, text, None, None, None) for i, (rid, text) in enumerate(rows)
    ]
    ids = [s.id for s in sources]
    texts: dict[str, str] = {}
    if any(texts.setdefault(s.id, s.text) != s.text for s in sources):
        with pytest.raises(InputError):
            unique_sources(sources, "X")
        return
    kept = unique_sources(sources, "X")
    assert [s.id for s in kept] == list(dict.fromkeys(ids))
    assert all(s.position == ids.index(s.id) for s in kept)


# --------------------------------------------------------------------------- pipeline sources
def test_pipeline_sources_are_resolved_and_checked(tmp_path):
    pipe = Pipeline(tiny_config(None, tmp_path))
    assert resolve_pipeline(pipe) is pipe
    config = pipe.to_config()
    assert resolve_pipeline(config).to_config() == config
    path = tmp_path / "ragtrim.yaml"
    pipe.save_config(path)
    assert resolve_pipeline(path).to_config() == config
    assert resolve_pipeline(str(path)).to_config() == config
    with pytest.raises(ConfigError, match="no such saved index directory or config file"):
        resolve_pipeline(tmp_path / "missing")
    with pytest.raises(ConfigError, match="got int"):
        resolve_pipeline(3)
    with pytest.raises(ConfigError, match="Owner: pipeline .*missing.*no such"):
        check_source(str(tmp_path / "missing"), "Owner")
    with pytest.raises(ConfigError, match="stages"):
        check_source({"stages": {"packer": {"type": "NoSuchStage"}}}, "Owner")


def test_serialisable_source(tmp_path):
    pipe = Pipeline(tiny_config(None, tmp_path))
    assert serialisable_source(pipe, needs_index=False, owner="O") == pipe.to_config()
    assert serialisable_source(tmp_path, needs_index=True, owner="O") == str(tmp_path)
    assert serialisable_source({"a": 1}, needs_index=False, owner="O") == {"a": 1}
    with pytest.raises(ConfigError, match=r"O: a Pipeline object's index cannot be serialised"):
        serialisable_source(pipe, needs_index=True, owner="O")
