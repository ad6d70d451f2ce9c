"""Haystack components: trim retrieved documents, or retrieve from a ragtrim index.

- :class:`RagtrimTrimmer` takes ``query`` + ``documents`` (from any retriever) and outputs the
  trimmed ``documents``, the ``prompt`` string and chat ``messages`` (for a chat generator).
- :class:`RagtrimRetriever` takes ``query`` and answers from a saved ragtrim index.

Both serialise with Haystack's ``to_dict``/``from_dict`` and so work in YAML pipelines. Init
parameters: ``pipeline`` (a config mapping, a config file, a saved index directory, or None for
the default pipeline; a ``Pipeline`` object also works but serialises as its config), ``budget``,
``task_type`` and ``filters`` (ragtrim's filter language, not Haystack's). The pipeline is built
in ``warm_up()``, which Haystack calls before the first run.

Haystack 3 loads only allow-listed modules from YAML: load with
``Pipeline.loads(yaml, allowed_modules=["ragtrim.integrations.haystack"])`` (or set
``HAYSTACK_DESERIALIZATION_ALLOWLIST``). Output documents keep the source id and ``meta`` and add
``ragtrim_citation``, ``ragtrim_source_id``, ``ragtrim_spans`` (char offsets into the source
``content``), ``ragtrim_score`` and, when the retriever scored it, ``ragtrim_retriever_score``;
their ``score`` is the packer's. Requires ``haystack-ai`` (extra ``haystack``); supported
versions: :data:`SUPPORTED`.
"""

# Haystack reads the run() annotations at class creation: no postponed annotations here.
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ragtrim.integrations._common import (
    PipelineSource,
    Source,
    VersionRange,
    check_source,
    make_source,
    output_metadata,
    require,
    resolve_pipeline,
    run_pipeline,
    serialisable_source,
    trim_sources,
)

SUPPORTED = VersionRange("haystack-ai", "haystack", (3, 0), (4,))
require(SUPPORTED)

from haystack import Document, component, default_from_dict, default_to_dict  # noqa: E402
from haystack.dataclasses import ChatMessage  # noqa: E402

from ragtrim.errors import ConfigError, InputError  # noqa: E402
from ragtrim.types import TrimResult  # noqa: E402

FRAMEWORK = "Haystack"


def to_sources(documents: Sequence[Any]) -> list[Source]:
    """Haystack documents -> ragtrim sources (validated; errors name the document)."""
    sources = []
    for position, doc in enumerate(documents):
        if not isinstance(doc, Document):
            raise InputError(
                f"{FRAMEWORK} document #{position}: expected a haystack Document, "
                f"got {type(doc).__name__}"
            )
        if doc.content is None:
            what = "a blob" if doc.blob is not None else "no content"
            raise InputError(
                f"{FRAMEWORK} document #{position} (id={doc.id!r}) has {what}; "
                "only text documents can be trimmed"
            )
        sources.append(
            make_source(FRAMEWORK, position, doc.id, doc.content, doc.meta, doc.score, doc)
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
) -> tuple[list[Document], TrimResult]:
    """Trim Haystack documents: one output document per cited source, in citation order."""
    pairs, result = trim_sources(
        pipeline,
        query,
        to_sources(documents),
        FRAMEWORK,
        budget=budget,
        task_type=task_type,
        filters=filters,
    )
    out = [
        Document(
            id=source.original.id,
            content=passage.text,
            score=float(passage.score),
            meta=output_metadata(source.original.meta, passage, source.score),
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
    docs = [
        Document(id=p.doc_id, content=p.text, score=float(p.score), meta=metadata)
        for p, metadata in pairs
    ]
    return docs, result


def _messages(result: TrimResult) -> list[ChatMessage]:
    return [
        ChatMessage.from_system(m["content"])
        if m["role"] == "system"
        else ChatMessage.from_user(m["content"])
        for m in result.messages
    ]


class _Base:
    """Shared init parameters, lazy pipeline and serialisation."""

    _needs_index = False

    def __init__(
        self,
        pipeline: PipelineSource = None,
        budget: int | None = None,
        task_type: str | None = None,
        filters: dict[str, Any] | None = None,
    ) -> None:
        owner = type(self).__name__
        check_source(pipeline, owner)
        if budget is not None and (
            isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0
        ):
            raise ConfigError(f"{owner}: budget must be a positive integer, got {budget!r}")
        self.pipeline = os.fspath(pipeline) if isinstance(pipeline, os.PathLike) else pipeline
        self.budget = budget
        self.task_type = task_type
        self.filters = filters
        self._pipeline: Any = None

    def warm_up(self) -> None:
        if self._pipeline is None:
            pipeline = resolve_pipeline(self.pipeline)
            pipeline.warm_up()
            self._pipeline = pipeline

    def _ready(self) -> Any:
        self.warm_up()
        return self._pipeline

    def _options(self, filters: dict[str, Any] | None, budget: int | None) -> dict[str, Any]:
        return {
            "budget": self.budget if budget is None else budget,
            "task_type": self.task_type,
            "filters": self.filters if filters is None else filters,
        }

    def to_dict(self) -> dict[str, Any]:
        source = serialisable_source(
            self.pipeline, needs_index=self._needs_index, owner=type(self).__name__
        )
        return default_to_dict(
            self,
            pipeline=source,
            budget=self.budget,
            task_type=self.task_type,
            filters=self.filters,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        return default_from_dict(cls, data)


@component
class RagtrimTrimmer(_Base):
    """Trim the documents of any Haystack retriever to the minimum useful context."""

    @component.output_types(documents=list[Document], prompt=str, messages=list[ChatMessage])
    def run(
        self,
        query: str,
        documents: list[Document],
        filters: dict[str, Any] | None = None,
        budget: int | None = None,
    ) -> dict[str, Any]:
        """``filters``/``budget`` override the init parameters for this call."""
        trimmed, result = trim_documents(
            self._ready(), query, documents, **self._options(filters, budget)
        )
        return {"documents": trimmed, "prompt": result.prompt, "messages": _messages(result)}


@component
class RagtrimRetriever(_Base):
    """Retrieve from a ragtrim index: trimmed passages as Haystack documents.

    ``pipeline`` must carry an index: a saved index directory (serialisable) or a ``Pipeline``
    object (not serialisable).
    """

    _needs_index = True

    def __init__(
        self,
        pipeline: PipelineSource = None,
        budget: int | None = None,
        task_type: str | None = None,
        filters: dict[str, Any] | None = None,
    ) -> None:
        if (
            isinstance(pipeline, Mapping)
            or (isinstance(pipeline, (str, os.PathLike)) and Path(pipeline).is_file())
            or pipeline is None
        ):
            raise ConfigError(
                "RagtrimRetriever needs an index: pass a saved index directory "
                "(Pipeline.save) or a Pipeline object, not a config"
            )
        # @component rebuilds the class, so zero-argument super() cannot find it
        _Base.__init__(self, pipeline, budget, task_type, filters)

    @component.output_types(documents=list[Document], prompt=str, messages=list[ChatMessage])
    def run(
        self, query: str, filters: dict[str, Any] | None = None, budget: int | None = None
    ) -> dict[str, Any]:
        """``filters``/``budget`` override the init parameters for this call."""
        docs, result = retrieve_documents(self._ready(), query, **self._options(filters, budget))
        return {"documents": docs, "prompt": result.prompt, "messages": _messages(result)}


__all__ = [
    "SUPPORTED",
    "RagtrimRetriever",
    "RagtrimTrimmer",
    "retrieve_documents",
    "trim_documents",
    "to_sources",
]
