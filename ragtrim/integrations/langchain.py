"""LangChain adapters: a retriever, a document compressor and an LCEL prompt runnable.

- :class:`RagtrimRetriever` answers from a ragtrim index (``Pipeline.run``) and returns one
  ``Document`` per cited source.
- :class:`RagtrimCompressor` trims what any LangChain retriever returned:
  ``ContextualCompressionRetriever(base_retriever=yours, base_compressor=RagtrimCompressor(...))``.
- :class:`RagtrimPrompt` turns ``{"question": ..., "context": [Document, ...]}`` (or a bare
  question, answered from the index) into the budgeted chat messages, ready to pipe into a
  chat model:
  ``{"context": retriever, "question": RunnablePassthrough()} | RagtrimPrompt(...) | llm``.

Output documents keep the source document's metadata and id and add ``ragtrim_citation``,
``ragtrim_source_id``, ``ragtrim_spans`` (char offsets into the source ``page_content``),
``ragtrim_score`` and, when given, ``ragtrim_retriever_score``. A source without ``id`` gets
``content-<hash>`` (see ``_common``) unless ``id_key`` names a metadata key that holds its id.
Requires ``langchain-core`` (extra ``langchain``); supported versions: :data:`SUPPORTED`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ragtrim.integrations._common import (
    PipelineSource,
    Source,
    VersionRange,
    make_source,
    output_metadata,
    require,
    resolve_pipeline,
    run_pipeline,
    trim_sources,
)

SUPPORTED = VersionRange("langchain-core", "langchain", (0, 3), (2,))
require(SUPPORTED)

from langchain_core.callbacks import CallbackManagerForRetrieverRun, Callbacks  # noqa: E402
from langchain_core.documents import BaseDocumentCompressor, Document  # noqa: E402
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage  # noqa: E402
from langchain_core.prompt_values import ChatPromptValue, PromptValue, StringPromptValue  # noqa: E402
from langchain_core.retrievers import BaseRetriever  # noqa: E402
from langchain_core.runnables import RunnableConfig, RunnableSerializable  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, field_validator  # noqa: E402

from ragtrim.errors import InputError  # noqa: E402
from ragtrim.types import TrimResult  # noqa: E402

FRAMEWORK = "LangChain"


class _Settings(BaseModel):
    """What every adapter needs: the pipeline and the per-call query options."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    pipeline: Any = Field(default=None, validate_default=True)
    """A ``Pipeline``, a config mapping or file, a saved index directory, or None (default)."""
    budget: int | None = None
    """Token budget; None uses the pipeline's packer budget."""
    task_type: str | None = None
    filters: dict[str, Any] | None = None
    """ragtrim metadata filter (see the README), applied before packing."""

    @field_validator("pipeline", mode="before")
    @classmethod
    def _resolve(cls, value: PipelineSource) -> Any:
        return resolve_pipeline(value)


class _DocumentOptions(BaseModel):
    id_key: str | None = None
    """Metadata key holding the id of documents whose ``id`` is None."""
    score_key: str | None = None
    """Metadata key holding the upstream retriever's score (LangChain documents have no field)."""


def to_sources(
    documents: Sequence[Any], id_key: str | None = None, score_key: str | None = None
) -> list[Source]:
    """LangChain documents -> ragtrim sources (validated; errors name the document)."""
    sources = []
    for position, doc in enumerate(documents):
        if not isinstance(doc, Document):
            raise InputError(
                f"{FRAMEWORK} document #{position}: expected a langchain_core Document, "
                f"got {type(doc).__name__}"
            )
        metadata = doc.metadata or {}
        raw_id = doc.id
        if not raw_id and id_key is not None:
            if id_key not in metadata:
                raise InputError(
                    f"{FRAMEWORK} document #{position} has no id and no metadata "
                    f"key {id_key!r} (id_key)"
                )
            raw_id = metadata[id_key]
        score = None
        if score_key is not None:
            if score_key not in metadata:
                raise InputError(
                    f"{FRAMEWORK} document #{position} has no metadata key "
                    f"{score_key!r} (score_key)"
                )
            score = metadata[score_key]
        sources.append(
            make_source(FRAMEWORK, position, raw_id, doc.page_content, metadata, score, doc)
        )
    return sources


def trim_documents(
    pipeline: Any,
    query: str,
    documents: Sequence[Any],
    *,
    budget: int | None = None,
    task_type: str | None = None,
    filters: Mapping[str, Any] | None = None,
    id_key: str | None = None,
    score_key: str | None = None,
) -> tuple[list[Document], TrimResult]:
    """Trim LangChain documents: one output document per cited source, in citation order."""
    pairs, result = trim_sources(
        pipeline,
        query,
        to_sources(documents, id_key, score_key),
        FRAMEWORK,
        budget=budget,
        task_type=task_type,
        filters=filters,
    )
    out = [
        Document(
            page_content=passage.text,
            id=source.original.id,
            metadata=output_metadata(source.original.metadata, passage, source.score),
        )
        for passage, source in pairs
    ]
    return out, result


def retrieve_documents(
    pipeline: Any,
    query: str,
    *,
    budget: int | None = None,
    task_type: str | None = None,
    filters: Mapping[str, Any] | None = None,
) -> tuple[list[Document], TrimResult]:
    """Answer from the pipeline's index: one document per cited source (id = source id)."""
    pairs, result = run_pipeline(
        pipeline, query, budget=budget, task_type=task_type, filters=filters
    )
    docs = [Document(page_content=p.text, id=p.doc_id, metadata=metadata) for p, metadata in pairs]
    return docs, result


class RagtrimRetriever(_Settings, BaseRetriever):
    """A LangChain retriever over a ragtrim index: trimmed passages as ``Document``s."""

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        docs, _ = retrieve_documents(
            self.pipeline, query, budget=self.budget, task_type=self.task_type, filters=self.filters
        )
        return docs


class RagtrimCompressor(_Settings, _DocumentOptions, BaseDocumentCompressor):
    """Trim the documents of any LangChain retriever to the minimum useful context."""

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        docs, _ = trim_documents(
            self.pipeline,
            query,
            documents,
            budget=self.budget,
            task_type=self.task_type,
            filters=self.filters,
            id_key=self.id_key,
            score_key=self.score_key,
        )
        return docs


class RagtrimPrompt(_Settings, _DocumentOptions, RunnableSerializable[Any, PromptValue]):
    """LCEL step: question (+ retrieved documents) -> the budgeted prompt for a model.

    Input: a question string (answered from the pipeline's index), or a mapping with
    ``question_key`` and, optionally, ``documents_key`` holding LangChain documents to trim.
    Output: ``ChatPromptValue`` of ragtrim's system + user messages (``output="messages"``) or
    a ``StringPromptValue`` of the single prompt (``output="prompt"``); both pipe into chat
    models and LLMs. :meth:`trim` returns the whole ``TrimResult`` (passages, tokens, report).
    """

    question_key: str = "question"
    documents_key: str = "context"
    output: Literal["messages", "prompt"] = "messages"

    def trim(self, value: Any) -> TrimResult:
        question, documents = self._parse(value)
        if documents is None:
            return retrieve_documents(
                self.pipeline,
                question,
                budget=self.budget,
                task_type=self.task_type,
                filters=self.filters,
            )[1]
        return trim_documents(
            self.pipeline,
            question,
            documents,
            budget=self.budget,
            task_type=self.task_type,
            filters=self.filters,
            id_key=self.id_key,
            score_key=self.score_key,
        )[1]

    def _parse(self, value: Any) -> tuple[Any, Sequence[Any] | None]:
        if isinstance(value, str):
            return value, None
        if not isinstance(value, Mapping):
            raise InputError(
                f"RagtrimPrompt: input must be a question string or a mapping with "
                f"{self.question_key!r}, got {type(value).__name__}"
            )
        if self.question_key not in value:
            raise InputError(
                f"RagtrimPrompt: input has no {self.question_key!r} key "
                f"(keys: {sorted(map(str, value))})"
            )
        documents = value.get(self.documents_key)
        if documents is not None and (
            isinstance(documents, (str, bytes, Mapping)) or not isinstance(documents, Sequence)
        ):
            raise InputError(
                f"RagtrimPrompt: {self.documents_key!r} must be a list of "
                f"Documents, got {type(documents).__name__}"
            )
        return value[self.question_key], documents

    def _render(self, value: Any) -> PromptValue:
        result = self.trim(value)
        if self.output == "prompt":
            return StringPromptValue(text=result.prompt)
        return ChatPromptValue(messages=[_message(m) for m in result.messages])

    def invoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> PromptValue:
        return self._call_with_config(self._render, input, config)


def _message(message: Mapping[str, str]) -> BaseMessage:
    if message["role"] == "system":
        return SystemMessage(content=message["content"])
    return HumanMessage(content=message["content"])


__all__ = [
    "SUPPORTED",
    "RagtrimCompressor",
    "RagtrimPrompt",
    "RagtrimRetriever",
    "retrieve_documents",
    "trim_documents",
    "to_sources",
]
