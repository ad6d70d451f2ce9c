"""LlamaIndex adapters: a node postprocessor and a retriever.

- :class:`RagtrimPostprocessor` trims the nodes of any retriever to the budget; use it as
  ``index.as_query_engine(node_postprocessors=[RagtrimPostprocessor(...)])`` or call
  ``postprocess_nodes(nodes, query_str=...)``.
- :class:`RagtrimRetriever` answers from a ragtrim index (``Pipeline.run``); it plugs into
  ``RetrieverQueryEngine.from_args(retriever, llm=...)`` like any LlamaIndex retriever.

Each output node is one cited source: a copy of the source node (id, relationships and
metadata kept; the stored node is never modified) whose text is the trimmed passage, with
``ragtrim_citation``, ``ragtrim_source_id``, ``ragtrim_spans`` (char offsets into the source
node's text), ``ragtrim_score`` and, when the retriever scored it, ``ragtrim_retriever_score``.
The ``ragtrim_*`` keys are excluded from the LLM and embedding views of the node, so they cost
no prompt tokens. LlamaIndex still prints the source's *own* metadata into the prompt unless
your nodes exclude it (``excluded_llm_metadata_keys``); those tokens are outside ragtrim's
budget, which counts passage text. ``start_char_idx``/``end_char_idx`` cover the passage's
first to last span in the source node's parent document when the source node had offsets.
Requires ``llama-index-core`` (extra ``llamaindex``); supported versions: :data:`SUPPORTED`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ragtrim.integrations._common import (
    CITATION_KEYS,
    PipelineSource,
    Source,
    VersionRange,
    make_source,
    output_metadata,
    require,
    resolve_pipeline,
    run_pipeline,
    serialisable_source,
    trim_sources,
)

SUPPORTED = VersionRange("llama-index-core", "llamaindex", (0, 12), (0, 15))
require(SUPPORTED)

from llama_index.core.bridge.pydantic import Field, field_serializer, field_validator  # noqa: E402
from llama_index.core.callbacks import CallbackManager  # noqa: E402
from llama_index.core.postprocessor.types import BaseNodePostprocessor  # noqa: E402
from llama_index.core.retrievers import BaseRetriever  # noqa: E402
from llama_index.core.schema import (  # noqa: E402
    BaseNode,
    NodeRelationship,
    NodeWithScore,
    QueryBundle,
    RelatedNodeInfo,
    TextNode,
)

from ragtrim.errors import InputError  # noqa: E402
from ragtrim.types import Passage, TrimResult  # noqa: E402

FRAMEWORK = "LlamaIndex"


def _node_text(node: BaseNode, position: int) -> Any:
    """A node's own text, without the metadata LlamaIndex may prepend."""
    if isinstance(node, TextNode):
        return node.text
    if hasattr(node, "text_resource"):  # the multimodal ``Node`` of llama-index-core >= 0.12.x
        resource = node.text_resource
        if resource is None or resource.text is None:
            raise InputError(
                f"{FRAMEWORK} node #{position} (id={node.node_id!r}): "
                f"{type(node).__name__} has no text resource (image/audio/video only?)"
            )
        return resource.text
    return node.get_content()


def to_sources(nodes: Sequence[Any]) -> list[Source]:
    """Nodes with scores -> ragtrim sources (validated; errors name the node)."""
    sources = []
    for position, item in enumerate(nodes):
        if not isinstance(item, NodeWithScore):
            raise InputError(
                f"{FRAMEWORK} node #{position}: expected a NodeWithScore, got {type(item).__name__}"
            )
        node = item.node
        sources.append(
            make_source(
                FRAMEWORK,
                position,
                node.node_id,
                _node_text(node, position),
                node.metadata,
                item.score,
                item,
            )
        )
    return sources


def _hidden_keys(keys: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*keys, *CITATION_KEYS]))


def _trimmed_node(passage: Passage, source: Source) -> NodeWithScore:
    """A copy of the source node holding the passage; the source node is left untouched."""
    original: BaseNode = source.original.node
    start = getattr(original, "start_char_idx", None)
    fields = {
        "text": passage.text,
        "metadata": output_metadata(original.metadata, passage, source.score),
        "excluded_llm_metadata_keys": _hidden_keys(original.excluded_llm_metadata_keys),
        "excluded_embed_metadata_keys": _hidden_keys(original.excluded_embed_metadata_keys),
        "start_char_idx": None if start is None else start + passage.start,
        "end_char_idx": None if start is None else start + passage.end,
        "relationships": dict(original.relationships),
        "embedding": None,  # the source's vector does not describe the trimmed text
    }
    if isinstance(original, TextNode):
        # model_copy keeps the node class and its templates, whatever this version calls them
        node = original.model_copy(update=fields)
    else:
        node = TextNode(id_=original.node_id, **fields)
    return NodeWithScore(node=node, score=float(passage.score))


def trim_nodes(
    pipeline: Any,
    query: str,
    nodes: Sequence[Any],
    *,
    budget: int | None = None,
    task_type: str | None = None,
    filters: Mapping[str, Any] | None = None,
) -> tuple[list[NodeWithScore], TrimResult]:
    """Trim retrieved nodes: one output node per cited source, in citation order."""
    pairs, result = trim_sources(
        pipeline,
        query,
        to_sources(nodes),
        FRAMEWORK,
        budget=budget,
        task_type=task_type,
        filters=filters,
    )
    return [_trimmed_node(p, s) for p, s in pairs], result


def retrieve_nodes(
    pipeline: Any,
    query: str,
    *,
    budget: int | None = None,
    task_type: str | None = None,
    filters: Mapping[str, Any] | None = None,
) -> tuple[list[NodeWithScore], TrimResult]:
    """Answer from the pipeline's index: one node per cited source.

    Node ids are ``<doc id>#<start>-<end>``; the SOURCE relationship points at the document id;
    ``start_char_idx``/``end_char_idx`` are offsets into the ingested document. All metadata is
    hidden from the LLM view, so the prompt holds exactly the budgeted passage text.
    """
    pairs, result = run_pipeline(
        pipeline, query, budget=budget, task_type=task_type, filters=filters
    )
    nodes = [
        NodeWithScore(
            node=TextNode(
                id_=f"{p.doc_id}#{p.start}-{p.end}",
                text=p.text,
                metadata=metadata,
                excluded_llm_metadata_keys=list(metadata),
                excluded_embed_metadata_keys=list(metadata),
                relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=p.doc_id)},
                start_char_idx=p.start,
                end_char_idx=p.end,
            ),
            score=float(p.score),
        )
        for p, metadata in pairs
    ]
    return nodes, result


class RagtrimPostprocessor(BaseNodePostprocessor):
    """Trim the nodes of any LlamaIndex retriever to the minimum useful context.

    ``pipeline`` serialises as its config (trimming needs no index), so ``to_dict``/``from_dict``
    round-trip.
    """

    pipeline: Any = Field(
        default=None,
        validate_default=True,
        description="Pipeline, config mapping/file, index dir, or None",
    )
    budget: int | None = Field(default=None, description="token budget; None: the packer's")
    task_type: str | None = None
    filters: dict[str, Any] | None = Field(default=None, description="ragtrim metadata filter")

    @field_validator("pipeline", mode="before")
    @classmethod
    def _resolve(cls, value: PipelineSource) -> Any:
        return resolve_pipeline(value)

    @field_serializer("pipeline")
    def _serialise(self, value: Any) -> Any:
        return serialisable_source(value, needs_index=False, owner="RagtrimPostprocessor")

    @classmethod
    def class_name(cls) -> str:
        return "RagtrimPostprocessor"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise InputError(
                "RagtrimPostprocessor needs the query: call "
                "postprocess_nodes(nodes, query_str=...) or use it in a query engine"
            )
        trimmed, _ = trim_nodes(
            self.pipeline,
            query_bundle.query_str,
            nodes,
            budget=self.budget,
            task_type=self.task_type,
            filters=self.filters,
        )
        return trimmed


class RagtrimRetriever(BaseRetriever):
    """A LlamaIndex retriever over a ragtrim index: trimmed passages as nodes."""

    def __init__(
        self,
        pipeline: PipelineSource = None,
        *,
        budget: int | None = None,
        task_type: str | None = None,
        filters: Mapping[str, Any] | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        self.pipeline = resolve_pipeline(pipeline)
        self.budget = budget
        self.task_type = task_type
        self.filters = dict(filters) if filters is not None else None
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        nodes, _ = retrieve_nodes(
            self.pipeline,
            query_bundle.query_str,
            budget=self.budget,
            task_type=self.task_type,
            filters=self.filters,
        )
        return nodes


__all__ = [
    "SUPPORTED",
    "RagtrimPostprocessor",
    "RagtrimRetriever",
    "retrieve_nodes",
    "trim_nodes",
    "to_sources",
]
