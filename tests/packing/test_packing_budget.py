"""The packer's promises, as properties: the budget is never exceeded, and the reported counts
are tiktoken's counts of exactly what was emitted."""

import pytest
from fakes import HashingEmbedder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragtrim.chunking.sentences import split_sentences
from ragtrim.errors import BudgetError, ConfigError
from ragtrim.packing.packer import ContextPacker
from ragtrim.packing.templates import MESSAGE_OVERHEAD, REPLY_OVERHEAD
from ragtrim.query import QueryContext
from ragtrim.tokens import get_counter
from ragtrim.types import Candidate, Chunk, chunk_id

EMBEDDER = HashingEmbedder()
WORDS = [
    "relay",
    "broker",
    "retention",
    "partition",
    "7 days",
    "4 MiB",
    "offset",
    "日本語",
    "😀",
    "policy",
    "per-diem",
    "£50",
    "TLS",
    "the",
    "a",
    "of",
    "is",
    "3.4",
    "e.g.",
    "Dr.",
    "U.S.",
    "\n",
    "\n\n",
]


def _candidate(doc: str, text: str, score: float, counter) -> Candidate:
    sentences = tuple((a, b) for a, b in split_sentences(text))
    chunk = Chunk(
        chunk_id(doc, 0, len(text)),
        doc,
        text,
        0,
        len(text),
        counter.count(text),
        {"title": f"Doc {doc}"},
        (),
        sentences,
    )
    return Candidate(chunk, score, {"fused": score})


texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=60).map(
    lambda ws: " ".join(ws).strip() or "x"
)
templates = st.sampled_from(
    [
        "{instructions}\n\nContext:\n{context}\n\nQuestion: {question}\nAnswer:",
        "Q: {question}\n{context}",
        "{context}\n---\n{question} {instructions}",
        "Use these sources.\n{context}\n\n{question}",
    ]
)


def _check_budget(
    items,
    budget,
    template,
    encoding,
    granularity,
    selection,
    scope,
    threshold,
    overlong,
    question,
    scorer="hand",
    span_fill=0,
    chunk_fill=None,
):
    counter = get_counter(encoding)
    if granularity == "chunk":
        scorer = "hand"  # the learned scorer takes sentence units only
    packer = ContextPacker(
        budget=budget,
        prompt_template=template,
        granularity=granularity,
        selection=selection,
        budget_scope=scope,
        relative_threshold=threshold,
        min_probability=threshold,
        overlong=overlong,
        neighbours=1,
        scorer=scorer,
        span_fill=span_fill,
        chunk_fill=chunk_fill,
    )
    candidates = [
        _candidate(f"d{i % 4}-{i}", text, score, counter) for i, (text, score) in enumerate(items)
    ]
    ctx = QueryContext(question, counter, embedder=EMBEDDER)
    try:
        result = packer.run(ctx, candidates)
    except BudgetError as exc:
        assert "smaller than the prompt template plus the question" in str(exc)
        assert scope == "prompt"
        return
    assert result.prompt_tokens == len(counter._encoding.encode_ordinary(result.prompt))
    assert result.context_tokens == counter.count(result.context)
    expected_messages = (
        sum(counter.count(m["content"]) + MESSAGE_OVERHEAD for m in result.messages)
        + REPLY_OVERHEAD
    )
    assert result.messages_tokens == expected_messages
    limit = (
        result.context_tokens
        if scope == "context"
        else max(result.prompt_tokens, result.messages_tokens)
    )
    assert limit <= budget
    assert result.context in result.prompt
    for passage in result.passages:
        assert f"[{passage.number}]" in result.context


PACKINGS = (
    st.lists(st.tuples(texts, st.floats(-5, 5)), min_size=0, max_size=12),
    st.integers(1, 1500),
    templates,
    st.sampled_from(["o200k_base", "cl100k_base"]),
    st.sampled_from(["sentence", "chunk"]),
    st.sampled_from(["greedy", "knapsack"]),
    st.sampled_from(["prompt", "context"]),
    st.floats(0, 1),
    st.sampled_from(["truncate", "drop"]),
    st.text(min_size=1, max_size=40).filter(str.strip),
    st.sampled_from(["learned", "hand"]),
    st.integers(0, 2),
    st.sampled_from([None, 0.3, 0.6, 1.0]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.tuples(*PACKINGS))
def test_budget_is_never_exceeded_and_counts_are_exact(packing):
    _check_budget(*packing)


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.tuples(*PACKINGS))
def test_budget_is_never_exceeded_10000_cases(packing):
    _check_budget(*packing)


def test_budget_smaller_than_template_names_both_numbers():
    counter = get_counter()
    ctx = QueryContext("What is the default retention?", counter, embedder=EMBEDDER)
    with pytest.raises(
        BudgetError,
        match=r"budget 5 is smaller than the prompt template plus the question \(\d+ tokens",
    ):
        ContextPacker(budget=5).run(ctx, [])


def test_invalid_budgets_and_templates():
    with pytest.raises(BudgetError, match="positive"):
        ContextPacker().effective_budget(0)
    with pytest.raises(ConfigError, match="budget"):
        ContextPacker(budget=-1)
    with pytest.raises(ConfigError, match=r"prompt_template: template must contain \{question\}"):
        ContextPacker(prompt_template="{context}")
    with pytest.raises(ConfigError, match="unknown slot"):
        ContextPacker(prompt_template="{context} {question} {tone}")
    with pytest.raises(ConfigError, match="context_window"):
        ContextPacker(budget=4000, context_window=4096, reserved_output_tokens=512)
    with pytest.raises(BudgetError, match="does not fit the model window"):
        ContextPacker(budget=None, context_window=4096, reserved_output_tokens=96).effective_budget(
            5000
        )
