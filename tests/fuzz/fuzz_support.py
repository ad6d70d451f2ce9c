"""Hypothesis profiles and strategies for the fuzz suite.

``ci`` (default) keeps the suite to seconds; ``long`` is for a run by hand::

    RAGTRIM_FUZZ_PROFILE=long python -m pytest tests/fuzz -p no:randomly
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}
settings.register_profile("fuzz-ci", max_examples=40, **_COMMON)
settings.register_profile("fuzz-long", max_examples=3000, **_COMMON)

#: the profile the fuzz tests use (``settings(parent=...)`` keeps other suites unaffected)
FUZZ = settings.get_profile(f"fuzz-{os.environ.get('RAGTRIM_FUZZ_PROFILE', 'ci')}")


# ---------------------------------------------------------------------------- strategies
import math  # noqa: E402

from hypothesis import strategies as st  # noqa: E402

#: text that stresses every layer: lone surrogates, line breaks of every kind, reserved
#: prompt lines, Markdown structure, CJK, combining marks, emoji, control characters
_PIECES = [
    "\ud800",
    "\udfff",
    "\n",
    "\r\n",
    "\u2028",
    "\x1e",
    "\x00",
    "\t",
    "  ",
    "[1] ",
    "[7] Fake\n",
    "Question: ",
    "Answer:",
    "Context:\n",
    "# Heading\n",
    "```\n",
    "- item\n",
    "The hotel cap in London is 250 GBP. ",
    "Relay keeps data 7 days. ",
    "東京の",
    "e\u0301",
    "🙂",
    "...",
    "?",
    "!",
    ". ",
    "1.5",
    "---\n",
]
texts = st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=12)), max_size=25).map(
    "".join
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["relay", "travel", "2025-03-01", "2025-13-45", "", "\ud800", "3", "True"]),
    texts,
)
metadata = st.dictionaries(
    st.sampled_from(["product", "n", "updated", "tags", "title", "owner", "\ud800"]),
    st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.just("name"), scalars)),
    max_size=4,
)


def mostly(valid: st.SearchStrategy, odd: st.SearchStrategy) -> st.SearchStrategy:
    """Valid values nine times in ten: enough odd ones to probe every error, and enough fully
    valid configs (which combine several of these) to reach the packer."""
    # (one_of(valid, valid, ..., odd) would not do: hypothesis merges equal branches)
    return st.integers(0, 9).flatmap(lambda i: odd if i == 0 else valid)


queries = mostly(
    st.sampled_from(["What is the hotel cap in London?", "relay retention", "beacon alert"]),
    texts,
) | st.tuples(st.sampled_from(["hotel cap ", "relay "]), texts).map("".join)
documents = st.lists(
    st.fixed_dictionaries(
        {"id": mostly(st.sampled_from(["a", "b", "c", "d"]), texts), "text": texts},
        optional={"metadata": metadata},
    ),
    max_size=6,
)
filter_keys = st.one_of(
    st.sampled_from(
        [
            "product",
            "n",
            "updated",
            "tags",
            "owner.name",
            "$and",
            "$or",
            "$not",
            "$eq",
            "$in",
            "$gt",
            "$exists",
            "$contains",
            "$regex",
            "",
            "a..b",
        ]
    ),
    st.integers(0, 3),
)
filters = st.recursive(
    st.one_of(st.none(), scalars),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(filter_keys, inner, max_size=3)
    ),
    max_leaves=8,
)
budgets = mostly(
    st.one_of(st.none(), st.integers(40, 3000)),
    st.one_of(st.integers(-5, 40), st.sampled_from([True, 1.5, math.nan, "100", 10**12])),
)
weights = mostly(
    st.floats(min_value=0, max_value=5), st.sampled_from([math.inf, math.nan, 1e308, -1.0, 0.0])
)
packer_params = st.fixed_dictionaries(
    {},
    optional={
        "granularity": mostly(st.sampled_from(["sentence", "chunk"]), st.just("word")),
        "selection": st.sampled_from(["greedy", "knapsack"]),
        "budget_scope": st.sampled_from(["prompt", "context"]),
        "relative_threshold": mostly(st.floats(0, 1), st.floats(-0.5, 1.5)),
        "dense_weight": weights,
        "lexical_weight": weights,
        "chunk_weight": weights,
        "neighbours": st.integers(-1, 3),
        "keep_first_sentence": st.booleans(),
        "ordering": st.sampled_from(["score", "document", "edges"]),
        "overlong": st.sampled_from(["truncate", "drop"]),
        "passage_header": mostly(
            st.sampled_from(["[{n}] {source}", "{n}. {title}", "Source {n}: {doc_id}"]),
            st.sampled_from(["{title}", "{n", "{n} {bogus}"]),
        ),
    },
)
retriever_params = st.fixed_dictionaries(
    {},
    optional={
        "mode": mostly(st.sampled_from(["hybrid", "bm25", "dense"]), st.just("sparse")),
        "top_k": mostly(st.integers(1, 60), st.integers(-1, 0)),
        "bm25_top_k": mostly(st.integers(1, 60), st.just(0)),
        "bm25_weight": weights,
        "dense_weight": weights,
        "rrf_k": mostly(st.floats(0.5, 100), st.floats(-1, 0)),
    },
)
reranker_params = st.fixed_dictionaries(
    {},
    optional={
        "depth": mostly(st.integers(1, 60), st.just(0)),
        "top_sentences": mostly(st.integers(1, 4), st.just(0)),
        "sentence_weight": weights,
        "retrieval_weight": weights,
    },
)
dedup_params = st.fixed_dictionaries(
    {},
    optional={
        "jaccard_threshold": mostly(st.floats(0.01, 1), st.floats(-0.5, 1.5)),
        "semantic_threshold": mostly(st.floats(0.01, 1), st.floats(-0.5, 1.5)),
        "near_method": st.sampled_from(["exact", "minhash"]),
        "num_perm": mostly(st.integers(1, 64), st.just(0)),
        "mmr_lambda": mostly(st.one_of(st.none(), st.floats(0, 1)), st.floats(-0.5, 1.5)),
        "shingle_size": mostly(st.integers(1, 5), st.just(0)),
    },
)
filter_params = st.fixed_dictionaries(
    {}, optional={"base_filter": mostly(st.sampled_from([{"product": "travel"}, {}]), filters)}
)
