"""LangChain adapters against the real langchain-core (plus langchain-classic's
ContextualCompressionRetriever and langchain-community's BM25Retriever as "their" retriever)."""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("langchain_core", reason="needs the langchain extra")
pytest.importorskip("langchain_classic", reason="ContextualCompressionRetriever: langchain-classic")
pytest.importorskip("langchain_community", reason="BM25Retriever: langchain-community")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from integrations_support import (  # noqa: E402
    assert_citations,
    context_tokens,
    shared_pipeline,
    subset_docs,
    subset_questions,
    subset_text,
)
from langchain_classic.retrievers import ContextualCompressionRetriever  # noqa: E402

with warnings.catch_warnings():  # langchain-community warns on import that it is being sunset
    warnings.simplefilter("ignore", DeprecationWarning)
    from langchain_community.retrievers import BM25Retriever
from langchain_core.documents import Document  # noqa: E402
from langchain_core.language_models.fake_chat_models import FakeListChatModel  # noqa: E402
from langchain_core.messages import HumanMessage, SystemMessage  # noqa: E402
from langchain_core.prompt_values import ChatPromptValue, StringPromptValue  # noqa: E402
from langchain_core.runnables import RunnableLambda, RunnablePassthrough  # noqa: E402
from langchain_text_splitters import RecursiveCharacterTextSplitter  # noqa: E402

from ragtrim.errors import InputError  # noqa: E402
from ragtrim.integrations._common import content_id  # noqa: E402
from ragtrim.integrations.langchain import (  # noqa: E402
    RagtrimCompressor,
    RagtrimPrompt,
    RagtrimRetriever,
    trim_documents,
)
from ragtrim.packing.templates import DEFAULT_INSTRUCTIONS  # noqa: E402

QUESTIONS = subset_questions()


@pytest.fixture(scope="module")
def pipe(tiny_embedder_path, tmp_path_factory):
    return shared_pipeline(tiny_embedder_path, tmp_path_factory.mktemp("integrations-cache"))


@pytest.fixture(scope="module")
def chunks() -> list[Document]:
    """The subset split the LangChain way: chunks without ids, offsets in ``start_index``."""
    docs = [
        Document(
            page_content=d["text"],
            metadata={"title": d["title"], "source": d["id"], **d["metadata"]},
        )
        for d in subset_docs()
    ]
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=600, chunk_overlap=100, add_start_index=True
    )
    return splitter.split_documents(docs)


@pytest.fixture(scope="module")
def bm25(chunks) -> BM25Retriever:
    return BM25Retriever.from_documents(chunks, k=6)


def by_content_id(chunks: list[Document]) -> dict[str, str]:
    return {content_id(c.page_content): c.page_content for c in chunks}


@pytest.mark.parametrize("question", QUESTIONS[:4], ids=lambda q: q["id"])
def test_contextual_compression_retriever_trims_to_the_budget(pipe, chunks, bm25, question):
    retriever = ContextualCompressionRetriever(
        base_retriever=bm25, base_compressor=RagtrimCompressor(pipeline=pipe, budget=250)
    )
    upstream = bm25.invoke(question["question"])
    out = retriever.invoke(question["question"])
    assert 1 <= len(out) <= len(upstream)
    assert_citations([(d.page_content, d.metadata) for d in out], by_content_id(chunks))
    assert context_tokens(pipe, [d.page_content for d in out]) <= 250
    assert context_tokens(pipe, [d.page_content for d in out]) < context_tokens(
        pipe, [d.page_content for d in upstream]
    )
    for doc in out:
        source = next(
            c for c in upstream if content_id(c.page_content) == doc.metadata["ragtrim_source_id"]
        )
        assert doc.id is None  # the chunk had none; its content id is in the metadata
        assert {
            k: doc.metadata[k] for k in source.metadata
        } == source.metadata  # start_index, title...
        start, end = doc.metadata["ragtrim_spans"][0]
        absolute = source.metadata["start_index"] + start  # offset into the unsplit document
        original = subset_text()[source.metadata["source"]]
        assert original[absolute : absolute + (end - start)] == source.page_content[start:end]


def test_compressor_hand_checked_spans_ids_and_scores(pipe):
    hotels = "The hotel cap in London is 250 GBP per night."
    docs = [
        Document(page_content=hotels, id="hotels", metadata={"rank_score": 7.5, "title": "Hotels"}),
        Document(
            page_content="Relay keeps message data for seven days by default.",
            id="relay",
            metadata={"rank_score": 1.0},
        ),
    ]
    compressor = RagtrimCompressor(pipeline=pipe, budget=200, score_key="rank_score")
    out = compressor.compress_documents(docs, "What is the hotel cap in London?")
    first = out[0]
    assert first.id == "hotels" and first.page_content == hotels
    assert first.metadata["ragtrim_spans"] == [[0, 45]]  # the whole 45-char sentence
    assert first.metadata["ragtrim_source_id"] == "hotels"
    assert first.metadata["ragtrim_retriever_score"] == 7.5
    assert first.metadata["title"] == "Hotels" and first.metadata["rank_score"] == 7.5
    assert docs[0].page_content == hotels and "ragtrim_citation" not in docs[0].metadata


def test_filters_apply_to_their_documents(pipe, chunks):
    picked = [c for c in chunks if c.metadata["source"].startswith("pol-password-mfa")]
    out = RagtrimCompressor(
        pipeline=pipe, budget=300, filters={"updated": {"$gte": "2025-01-01"}}
    ).compress_documents(picked, "minimum Okta password length")
    assert out and {d.metadata["source"] for d in out} == {"pol-password-mfa-2025"}


def test_id_key_names_the_source_id(pipe, chunks):
    docs = [Document(page_content=d["text"], metadata={"doc": d["id"]}) for d in subset_docs()[:3]]
    out = RagtrimCompressor(pipeline=pipe, budget=300, id_key="doc").compress_documents(
        docs, "When was Kestrel Relay 3.1 released?"
    )
    assert out
    assert {d.metadata["ragtrim_source_id"] for d in out} <= {d.metadata["doc"] for d in docs}
    assert_citations([(d.page_content, d.metadata) for d in out], subset_text())


def test_retriever_over_the_ragtrim_index(pipe):
    retriever = RagtrimRetriever(pipeline=pipe, budget=250)
    out = retriever.invoke("What are FieldKit support's opening hours on Saturdays?")
    assert out
    assert_citations([(d.page_content, d.metadata) for d in out], subset_text())
    assert context_tokens(pipe, [d.page_content for d in out]) <= 250
    meta = {d["id"]: d["metadata"] for d in subset_docs()}
    for doc in out:
        assert doc.id == doc.metadata["ragtrim_source_id"]
        assert doc.metadata["product"] == meta[doc.id]["product"]
    batched = retriever.batch(["When was Kestrel Relay 3.1 released?", "What does ISR mean?"])
    assert len(batched) == 2 and all(batched)


def test_lcel_chain_sends_the_budgeted_messages(pipe, bm25):
    seen = []
    prompt = RagtrimPrompt(pipeline=pipe, budget=300)
    chain = (
        {"context": bm25, "question": RunnablePassthrough()}
        | prompt
        | RunnableLambda(lambda value: seen.append(value) or value)
        | FakeListChatModel(responses=["8 failed attempts, 30 minutes [1]"])
    )
    question = "After how many wrong password attempts does Okta lock me out, and for how long?"
    reply = chain.invoke(question)
    assert reply.content == "8 failed attempts, 30 minutes [1]"
    (value,) = seen
    assert isinstance(value, ChatPromptValue)
    system, user = value.messages
    assert isinstance(system, SystemMessage) and system.content == DEFAULT_INSTRUCTIONS
    assert isinstance(user, HumanMessage) and user.content.endswith(f"Question: {question}")
    counter = pipe.counter
    assert sum(counter.count(m.content) + 3 for m in value.messages) + 3 <= 300
    result = prompt.trim({"question": question, "context": bm25.invoke(question)})
    assert user.content == result.messages[1]["content"]
    for passage in result.passages:
        assert passage.text in user.content


def test_prompt_from_the_index_as_a_string(pipe):
    prompt = RagtrimPrompt(pipeline=pipe, budget=300, output="prompt")
    value = prompt.invoke("In Relay terminology, what does ISR mean?")
    assert isinstance(value, StringPromptValue)
    assert value.text == prompt.trim("In Relay terminology, what does ISR mean?").prompt
    assert pipe.counter.count(value.text) <= 300


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (3, "input must be a question string or a mapping"),
        ({"query": "x"}, "input has no 'question' key (keys: ['query'])"),
        (
            {"question": "x", "context": "not a list"},
            "'context' must be a list of Documents, got str",
        ),
    ],
)
def test_prompt_rejects_bad_input(pipe, value, fragment):
    with pytest.raises(InputError) as excinfo:
        RagtrimPrompt(pipeline=pipe).invoke(value)
    assert fragment in str(excinfo.value)


def test_bad_documents_are_named(pipe):
    good = Document(page_content="ok", id="a")
    cases = [
        ([good, "text"], "LangChain document #1: expected a langchain_core Document, got str"),
        (
            [Document.model_construct(page_content=b"raw", metadata={}, id="b")],
            "LangChain document #0 (id='b'): content must be a string, got bytes",
        ),
        ([Document(page_content="x", metadata={"tags": {"a"}})], "metadata tags is a set"),
        (
            [good, Document(page_content="other", id="a")],
            "LangChain documents #0 and #1 share the id 'a' but have different text",
        ),
    ]
    for docs, fragment in cases:
        with pytest.raises(InputError) as excinfo:
            trim_documents(pipe, "q", docs)
        assert fragment in str(excinfo.value)
    with pytest.raises(InputError, match="no metadata key 'doc' \\(id_key\\)"):
        trim_documents(pipe, "q", [Document(page_content="x")], id_key="doc")
    with pytest.raises(InputError, match="no metadata key 's' \\(score_key\\)"):
        trim_documents(pipe, "q", [Document(page_content="x")], score_key="s")


def test_no_documents_give_no_context(pipe):
    out, result = trim_documents(pipe, "When was Relay 3.1 released?", [])
    assert out == [] and result.passages == []


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_budget_and_citations_hold_for_any_retrieved_set(pipe, chunks, data):
    picked = data.draw(st.lists(st.sampled_from(chunks), min_size=1, max_size=8))
    budget = data.draw(st.integers(min_value=110, max_value=700))
    question = data.draw(st.sampled_from(QUESTIONS))["question"]
    out, result = trim_documents(pipe, question, picked, budget=budget)
    assert result.tokens.prompt <= budget and result.tokens.messages <= budget
    assert context_tokens(pipe, [d.page_content for d in out]) <= result.tokens.context <= budget
    assert_citations([(d.page_content, d.metadata) for d in out], by_content_id(picked))
