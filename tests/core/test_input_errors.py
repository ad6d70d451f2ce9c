"""Wrong results and uncaught errors found by the adversarial probe (issue 15, items 5-12):
each input gives a correct result or a ``RagtrimError`` naming the problem, and the CLI prints
one line and exits 2."""

from __future__ import annotations

import datetime
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pipeline_support import DOCS, hash_embedder, tiny_config
from typer.testing import CliRunner

from ragtrim.cache import cache_key
from ragtrim.cli import app
from ragtrim.config import MAX_CONFIG_VALUES, load_config
from ragtrim.errors import ConfigError, FilterError, InputError, RagtrimError
from ragtrim.filtering.language import MAX_FILTER_DEPTH, parse_filter
from ragtrim.packing.packer import ContextPacker
from ragtrim.pipeline import Pipeline
from ragtrim.retrieval.hybrid import HybridRetriever

LONDON = "What is the hotel cap in London?"
runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, prog_name="ragtrim")


def assert_user_error(result, fragment: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
    assert "Traceback" not in result.stderr


def make(cache_dir: Path, **cache) -> Pipeline:
    pipe = Pipeline(tiny_config(None, cache_dir, **cache), embedder=hash_embedder())
    pipe.ingest(
        [
            *DOCS,
            {"id": "int-three", "text": "Shelf three holds hotel receipts.", "metadata": {"n": 3}},
            {
                "id": "str-three",
                "text": "Shelf three holds hotel invoices.",
                "metadata": {"n": "3"},
            },
            {"id": "bool", "text": "Shelf true holds hotel vouchers.", "metadata": {"b": True}},
            {"id": "str-bool", "text": "Shelf true holds hotel passes.", "metadata": {"b": "True"}},
        ]
    )
    return pipe


# ------------------------------------------------------------------ 5: cache key collisions
@pytest.mark.parametrize(
    ("first", "second"),
    [({"n": np.int64(3)}, {"n": "3"}), ({"b": np.bool_(True)}, {"b": "True"})],
)
def test_typed_filters_never_share_a_cached_result(tmp_path: Path, first, second) -> None:
    cached = make(tmp_path / "cache")
    fresh = make(tmp_path / "off", retrieval=False)
    for flt in (first, second, first, second):
        got = cached.run("hotel shelf", filters=flt)
        want = fresh.run("hotel shelf", filters=flt)
        assert [p.doc_id for p in got.passages] == [p.doc_id for p in want.passages]
    assert cached.run("hotel shelf", filters=second).report.cache["retrieval_hit"] is True


def filter_key(spec) -> str:
    return cache_key(parse_filter(spec).to_dict())


values = st.one_of(
    st.sampled_from([3, 3.0, "3", True, "True", None, "2025-03-01", 0, -0.0, "", "a"]),
    st.integers(-3, 3).map(np.int64),
    st.booleans().map(np.bool_),
    st.floats(-3, 3, allow_nan=False).map(np.float32),
    st.dates(datetime.date(2025, 2, 27), datetime.date(2025, 3, 2)),
)
leaf = st.builds(lambda field, v: {field: v}, st.sampled_from(["n", "b"]), values)
operator = st.builds(
    lambda field, op, v: {field: {op: v}},
    st.sampled_from(["n", "b"]),
    st.sampled_from(["$eq", "$ne", "$contains"]),
    values,
)
filters = st.recursive(
    st.one_of(leaf, operator),
    lambda inner: st.one_of(
        st.builds(lambda xs: {"$or": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"$not": x}, inner),
    ),
    max_leaves=4,
)
METADATA = [
    {"n": v, "b": w}
    for v in [3, 3.0, "3", True, "True", None, "2025-03-01", "", "a", 0, 2, 2.5]
    for w in [True, "True", 1, "x", None]
] + [{}]


@settings(max_examples=300, deadline=None)
@given(filters, filters)
def test_filters_with_different_matches_never_share_a_key(first, second) -> None:
    a, b = parse_filter(first), parse_filter(second)
    if filter_key(first) == filter_key(second):
        assert (a.mask(METADATA) == b.mask(METADATA)).all(), (first, second)


def test_equal_filters_do_share_a_key() -> None:
    assert filter_key({"n": np.int64(3)}) == filter_key({"n": 3}) == filter_key({"n": {"$eq": 3}})
    assert filter_key({"b": np.bool_(True)}) == filter_key({"b": True})
    assert filter_key({"n": "3"}) != filter_key({"n": 3}) != filter_key({"n": True})


def test_cache_keys_refuse_what_json_cannot_say_exactly() -> None:
    with pytest.raises(TypeError):
        cache_key({"n": np.int64(3)})
    assert cache_key("\ud800") != cache_key("\ufffd")


# ------------------------------------------------------------------ 6: absurd weights
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 1e308, 1e7])
@pytest.mark.parametrize(
    ("stage", "field"),
    [
        (ContextPacker, "dense_weight"),
        (ContextPacker, "lexical_weight"),
        (HybridRetriever, "bm25_weight"),
        (HybridRetriever, "dense_weight"),
    ],
)
def test_non_finite_and_absurd_weights_are_config_errors(stage, field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"{stage.__name__}.{field}"):
        stage(**{field: value})


def test_an_absurd_weight_in_a_config_file_names_the_stage(tmp_path: Path) -> None:
    config = tiny_config(None, tmp_path)
    config["stages"]["packer"]["init_parameters"]["dense_weight"] = 1e308
    with pytest.raises(ConfigError, match="stages.packer: ContextPacker.dense_weight: must be"):
        Pipeline(config, embedder=hash_embedder())
    assert ContextPacker(dense_weight=1e6).config.dense_weight == 1e6
    config["cache"]["retrieval_ttl_seconds"] = math.inf
    with pytest.raises(ConfigError, match="cache.retrieval_ttl_seconds"):
        load_config(config)


# ------------------------------------------------------------------ 8: lone surrogates
@pytest.mark.parametrize("caches", [True, False])
def test_lone_surrogates_in_queries_and_filters_give_results(
    tmp_path: Path, tiny_embedder_path: Path, caches: bool
) -> None:
    config = tiny_config(tiny_embedder_path, tmp_path, retrieval=caches, embeddings=caches)
    pipe = Pipeline(config)
    pipe.ingest(
        [
            *DOCS,
            {
                "id": "odd",
                "text": "Odd \udc80 bytes in a hotel note.",
                "metadata": {"p": "x\ud800"},
            },
        ]
    )
    for _ in range(2):
        result = pipe.run("hotel \ud800 cap in London?")
        assert "250 GBP" in result.context
        odd = pipe.run("odd hotel note \udc80", filters={"p": "x\ud800"})
        assert [p.doc_id for p in odd.passages] == ["odd"]
        assert pipe.run(LONDON, filters={"product": "\udfff"}).passages == []


# ------------------------------------------------------------------ 9: deep and odd filters
def nested(depth: int) -> dict:
    flt: dict = {"product": "travel"}
    for _ in range(depth):
        flt = {"$not": {"$not": flt}}
    return flt


def test_filter_depth_is_limited_with_a_precise_error(tmp_path: Path) -> None:
    pipe = make(tmp_path)
    assert pipe.run(LONDON, filters=nested(MAX_FILTER_DEPTH // 2)).passages
    for depth in (MAX_FILTER_DEPTH, 400, 5000):
        with pytest.raises(FilterError, match=f"nested more than {MAX_FILTER_DEPTH} levels"):
            pipe.run(LONDON, filters=nested(depth))
    with pytest.raises(FilterError, match="keys must be strings, got 2"):
        pipe.run(LONDON, filters={"product": "travel", 2: "x"})
    with pytest.raises(FilterError, match="keys must be strings"):
        pipe.trim(LONDON, documents=DOCS, filters={1: "x", "a": "y"})


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("idx")
    pipe = Pipeline(tiny_config(None, root / "cache"), embedder=hash_embedder())
    pipe.ingest(DOCS)
    pipe.save(root / "index")
    return root / "index"


def test_deep_cli_filters_are_one_line(index: Path) -> None:
    deep = json.dumps(nested(400))
    assert_user_error(invoke("query", LONDON, "--index", index, "--filters", deep), "nested more")
    deeper = "[" * 100_000 + "]" * 100_000
    assert_user_error(
        invoke("query", LONDON, "--index", index, "--filters", deeper), "--filters: nested too"
    )
    assert_user_error(
        invoke("query", LONDON, "--index", index, "--filters", "[1]"), "expected a filter mapping"
    )


# ------------------------------------------------------------------ 10: YAML bombs, deep configs
def alias_bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join([*lines, f"stages: {{chunker: *a{levels - 1}}}"])


@pytest.mark.parametrize(
    ("text", "suffix", "fragment"),
    [
        (alias_bomb(), ".yaml", f"expands to more than {MAX_CONFIG_VALUES} values"),
        ("a: &x [*x]\nstages: {}", ".yaml", "contains itself"),
        ("stages: " + "[" * 50 + "]" * 50, ".yaml", "nested more than"),
        ("stages: " + "[" * 5000 + "]" * 5000, ".yaml", "nested too deeply to parse"),
        ('{"stages": ' + "[" * 100_000 + "]" * 100_000 + "}", ".json", "nested too deeply"),
    ],
)
def test_hostile_configs_fail_fast_with_a_config_error(
    tmp_path: Path, text: str, suffix: str, fragment: str
) -> None:
    path = tmp_path / f"config{suffix}"
    path.write_text(text)
    assert len(alias_bomb()) < 600
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=fragment) as info:
        load_config(path)
    assert time.perf_counter() - started < 10
    assert str(path) in str(info.value)
    assert_user_error(invoke("ingest", path, "--index", tmp_path / "i", "--config", path), fragment)


def test_hostile_mappings_are_checked_too() -> None:
    shared: list = ["x"] * 10
    for _ in range(6):
        shared = [shared] * 10
    with pytest.raises(ConfigError, match="expands to more than"):
        load_config({"stages": {"chunker": shared}})


# ------------------------------------------------------------------ 12: argument validation
def test_trim_scores_must_be_numbers(tmp_path: Path) -> None:
    pipe = make(tmp_path)
    for scores, fragment in (
        (["high", 0.1], r"scores\[0\] must be a number, got 'high'"),
        ([0.2, None], r"scores\[1\] must be a number"),
        ([True, 0.1], r"scores\[0\] must be a number"),
        ("ab", "scores must be a sequence of numbers"),
    ):
        with pytest.raises(InputError, match=fragment):
            pipe.trim(LONDON, documents=DOCS[:2], scores=scores)
    assert pipe.trim(LONDON, documents=DOCS[:2], scores=[np.float32(0.5), 1]).passages


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--target", "7"], "target: expected a number in (0, 1]"),
        (["--target", "nan"], "target: expected a number in (0, 1]"),
        (["--target", "-1"], "target: expected a number in (0, 1]"),
        (["--target", "0"], "target: expected a number in (0, 1]"),
        (["--prior-queries", "-5"], "prior_queries: expected a finite number >= 0"),
        (["--prior-queries", "inf"], "prior_queries: expected a finite number >= 0"),
        (["--limit", "0"], "limit: expected a whole number >= 1"),
    ],
)
def test_tune_arguments_are_checked_before_any_work(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    out = tmp_path / "tuned.yaml"
    started = time.perf_counter()
    result = invoke("tune", "--dataset", tmp_path / "no-such-dataset", "--out", out, *args)
    assert_user_error(result, fragment)
    assert time.perf_counter() - started < 5 and not out.exists()


def test_bench_limit_and_top_level_options_are_one_line(tmp_path: Path) -> None:
    assert_user_error(
        invoke("bench", "--dataset", tmp_path, "--out", tmp_path / "o", "--limit", "-2"),
        "--limit: expected a whole number >= 1",
    )
    assert_user_error(invoke("--bogus"), "No such option: --bogus")
    assert_user_error(invoke("--bogus", "query"), "No such option: --bogus")


def test_every_probe_input_is_a_ragtrim_error(tmp_path: Path) -> None:
    """The issue's list in one place: each is a RagtrimError (never another exception)."""
    pipe = make(tmp_path)
    calls = [
        lambda: pipe.run(LONDON, filters=nested(400)),
        lambda: pipe.run(LONDON, filters={2: "x", "a": 1}),
        lambda: pipe.trim(LONDON, documents=DOCS[:1], scores=["high"]),
        lambda: ContextPacker(dense_weight=math.inf),
        lambda: load_config({"stages": yaml.safe_load(alias_bomb())["stages"]}),
    ]
    for call in calls:
        with pytest.raises(RagtrimError):
            call()


def test_two_zero_fusion_weights_are_a_config_error() -> None:
    """Found by the fuzz suite: 0/0 fused scores are NaN and the context came back empty."""
    with pytest.raises(ConfigError, match="both 0 in hybrid mode"):
        HybridRetriever(bm25_weight=0, dense_weight=0)
    assert HybridRetriever(mode="dense", bm25_weight=0, dense_weight=0).config.mode == "dense"
    assert HybridRetriever(bm25_weight=0, dense_weight=1).config.bm25_weight == 0
