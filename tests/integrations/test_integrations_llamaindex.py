"""LlamaIndex adapters against the real llama-index-core: a VectorStoreIndex (MockEmbedding, so
no model) and its query engine with MockLLM, which answers with the prompt it was given."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_index.core", reason="needs the llamaindex extra")

from integrations_support import (  # noqa: E402
    assert_citations,
    assert_spans_map,
    context_tokens,
    shared_pipeline,
    subset_docs,
    subset_text,
)
from llama_index.core import Document, VectorStoreIndex  # noqa: E402
from llama_index.core.embeddings import MockEmbedding  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.node_parser import SentenceSplitter  # noqa: E402
from llama_index.core.query_engine import RetrieverQueryEngine  # noqa: E402
from llama_index.core.schema import (  # noqa: E402
    MediaResource,
    Node,
    NodeRelationship,
    NodeWithScore,
    TextNode,
)

from ragtrim.errors import InputError  # noqa: E402
from ragtrim.integrations.llamaindex import (  # noqa: E402
    RagtrimPostprocessor,
    RagtrimRetriever,
    trim_nodes,
)

QUESTION = "What is the minimum length for my Okta password?"


@pytest.fixture(scope="module")
def pipe(tiny_embedder_path, tmp_path_factory):
    return shared_pipeline(tiny_embedder_path, tmp_path_factory.mktemp("integrations-cache"))


@pytest.fixture(scope="module")
def index() -> VectorStoreIndex:
    docs = [
        Document(
            text=d["text"],
            id_=d["id"],
            metadata={"title": d["title"], **d["metadata"]},
            excluded_llm_metadata_keys=list(d["metadata"]),
        )
        for d in subset_docs()
    ]
    return VectorStoreIndex.from_documents(
        docs,
        embed_model=MockEmbedding(embed_dim=8),
        transformations=[SentenceSplitter(chunk_size=256, chunk_overlap=32)],
    )


def node_texts(index: VectorStoreIndex) -> dict[str, str]:
    return {node_id: node.get_content() for node_id, node in index.docstore.docs.items()}


def test_query_engine_with_the_postprocessor(pipe, index):
    before = node_texts(index)
    engine = index.as_query_engine(
        llm=MockLLM(),
        similarity_top_k=8,
        node_postprocessors=[RagtrimPostprocessor(pipeline=pipe, budget=250)],
    )
    response = engine.query(QUESTION)
    nodes = response.source_nodes
    assert nodes
    assert_citations([(n.node.get_content(), n.node.metadata) for n in nodes], before)
    assert context_tokens(pipe, [n.node.get_content() for n in nodes]) <= 250
    for item in nodes:
        node = item.node
        assert node.node_id == node.metadata["ragtrim_source_id"]
        assert item.score == node.metadata["ragtrim_score"]
        assert node.get_content() in str(response)  # MockLLM echoes the prompt it was sent
        source = index.docstore.get_node(node.node_id)
        assert node.ref_doc_id == source.ref_doc_id and node.ref_doc_id in subset_text()
        start, end = node.metadata["ragtrim_spans"][0]
        document = subset_text()[node.ref_doc_id]
        assert (
            document[node.start_char_idx : node.start_char_idx + end - start]
            == (source.get_content()[start:end])
        )
    assert "ragtrim_" not in str(response)  # citation keys are hidden from the LLM
    assert node_texts(index) == before  # the stored nodes were not modified


def test_postprocess_nodes_directly_and_retriever_scores(pipe, index):
    retrieved = index.as_retriever(similarity_top_k=6).retrieve(QUESTION)
    trimmed = RagtrimPostprocessor(pipeline=pipe, budget=200).postprocess_nodes(
        retrieved, query_str=QUESTION
    )
    assert trimmed
    scores = {n.node.node_id: n.score for n in retrieved}
    for item in trimmed:
        assert item.node.metadata["ragtrim_retriever_score"] == pytest.approx(
            scores[item.node.node_id]
        )


def test_postprocessor_round_trips_through_to_dict(pipe, tmp_path):
    processor = RagtrimPostprocessor(
        pipeline=pipe, budget=250, task_type="lookup", filters={"product": "relay"}
    )
    data = processor.to_dict()
    assert data["class_name"] == "RagtrimPostprocessor" and data["pipeline"] == pipe.to_config()
    again = RagtrimPostprocessor.from_dict(data)
    assert again.pipeline.to_config() == pipe.to_config()
    assert (again.budget, again.task_type, again.filters) == (250, "lookup", {"product": "relay"})
    config_file = tmp_path / "ragtrim.yaml"
    pipe.save_config(config_file)
    assert RagtrimPostprocessor(pipeline=config_file).pipeline.to_config() == pipe.to_config()


def test_retriever_over_the_ragtrim_index_in_a_query_engine(pipe):
    retriever = RagtrimRetriever(pipe, budget=250, filters={"product": "internal"})
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM())
    response = engine.query(QUESTION)
    nodes = response.source_nodes
    assert nodes
    assert_citations([(n.node.get_content(), n.node.metadata) for n in nodes], subset_text())
    for item in nodes:
        node = item.node
        doc_id = node.metadata["ragtrim_source_id"]
        assert node.metadata["product"] == "internal"
        assert node.relationships[NodeRelationship.SOURCE].node_id == doc_id
        assert node.node_id == f"{doc_id}#{node.start_char_idx}-{node.end_char_idx}"
        assert node.get_content() in str(response)
    assert "product: internal" not in str(response)  # metadata stays out of the prompt


def test_bad_nodes_are_named(pipe):
    good = NodeWithScore(node=TextNode(id_="a", text="ok"), score=1.0)
    image_only = Node(id_="img", image_resource=MediaResource(url="https://example.com/x.png"))
    cases = [
        ([good, TextNode(id_="b", text="x")], "LlamaIndex node #1: expected a NodeWithScore"),
        ([NodeWithScore(node=image_only)], "LlamaIndex node #0 (id='img'): Node has no text"),
        (
            [NodeWithScore(node=TextNode(id_="c", text="x", metadata={"when": {1, 2}}))],
            "metadata when is a set",
        ),
        ([NodeWithScore(node=TextNode(id_="d", text="x"), score=float("inf"))], "score is inf"),
    ]
    for nodes, fragment in cases:
        with pytest.raises(InputError) as excinfo:
            trim_nodes(pipe, QUESTION, nodes)
        assert fragment in str(excinfo.value)
    with pytest.raises(InputError, match="needs the query"):
        RagtrimPostprocessor(pipeline=pipe).postprocess_nodes([good])


def test_hand_checked_offsets_in_a_node_with_parent_offsets(pipe):
    text = "Okta passwords must be at least 14 characters long. Passwords do not expire."
    node = TextNode(id_="n1", text=text, start_char_idx=1000, end_char_idx=1000 + len(text))
    (item,), _ = trim_nodes(
        pipe,
        "How long must an Okta password be?",
        [NodeWithScore(node=node, score=0.9)],
        budget=200,
    )
    spans = item.node.metadata["ragtrim_spans"]
    assert_spans_map(item.node.get_content(), text, spans)
    assert item.node.start_char_idx == 1000 + spans[0][0]
    assert item.node.end_char_idx == 1000 + spans[-1][1]
    assert item.node.metadata["ragtrim_retriever_score"] == 0.9
    assert node.text == text  # the input node is untouched


def test_a_multimodal_node_with_text_becomes_a_text_node(pipe):
    text = "Okta passwords must be at least 14 characters long."
    node = Node(id_="mm", text_resource=MediaResource(text=text), metadata={"kind": "scan"})
    (item,), _ = trim_nodes(
        pipe, "Okta password length", [NodeWithScore(node=node, score=1.0)], budget=200
    )
    assert type(item.node) is TextNode and item.node.node_id == "mm"
    assert item.node.text == text and item.node.metadata["ragtrim_spans"] == [[0, len(text)]]
    assert item.node.metadata["kind"] == "scan"
