"""What the framework adapters share: version gates, pipeline resolution, and the rules that
turn framework documents into ragtrim documents and packed passages back into citations.

Adapters stay thin: each extracts ``(id, text, metadata, score)`` from its framework's document
type, calls :func:`make_source` and :func:`trim_sources`, and builds framework documents from
the passages with :func:`citation_metadata`. Keeping the rules here makes all three frameworks
agree on ids, scores, duplicates and metadata.

Rules:

- **ids**: the framework's own document id; where a framework has none (LangChain documents
  often have ``id=None``), a deterministic id from the content, ``content-<sha256[:16]>``, so
  the same text always gets the same id and citations stay stable across calls.
- **one text per id**: two documents with the same id and the same text are one document (the
  first, best-ranked, is kept); the same id with different text is an error, because passage
  offsets would be ambiguous.
- **scores**: the retriever's scores are passed on only when every document has one (a finite
  number); otherwise ragtrim ranks by position (``1 / (rank + 1)``), as ``Pipeline.trim`` does.
- **metadata**: ragtrim sees a JSON-safe copy (dates become ISO-8601 strings, as in the index;
  sets, bytes and objects are an error naming the document and the key), used by filters and
  the passage title. Output documents carry the framework document's *original* metadata
  object values untouched, plus the ``ragtrim_*`` citation keys.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragtrim.errors import ConfigError, InputError, MissingDependencyError

if TYPE_CHECKING:
    from ragtrim.pipeline import Pipeline
    from ragtrim.types import Passage, TrimResult

CITATION_KEY = "ragtrim_citation"
SOURCE_ID_KEY = "ragtrim_source_id"
SPANS_KEY = "ragtrim_spans"
SCORE_KEY = "ragtrim_score"
RETRIEVER_SCORE_KEY = "ragtrim_retriever_score"
#: metadata keys ragtrim adds to every output document: ``[n]`` number, source document id,
#: ``[[start, end], ...]`` char offsets into the source text, packer score, and (trim direction,
#: when the framework gave one) the upstream retriever's score
CITATION_KEYS = (CITATION_KEY, SOURCE_ID_KEY, SPANS_KEY, SCORE_KEY, RETRIEVER_SCORE_KEY)

PipelineSource = Any
"""A ``Pipeline``, a config mapping, a config file (``.yaml``/``.json``), a saved index
directory, or ``None`` for ``Pipeline.default()``."""


# --------------------------------------------------------------------------- versions
@dataclass(frozen=True)
class VersionRange:
    """The releases of one framework distribution an adapter is written and tested for."""

    distribution: str
    extra: str
    minimum: tuple[int, ...]
    below: tuple[int, ...]

    def describe(self) -> str:
        return f"{self.distribution}>={_dotted(self.minimum)},<{_dotted(self.below)}"


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


_RELEASE = re.compile(r"\s*v?(\d+(?:\.\d+)*)")


def release_tuple(version: str) -> tuple[int, ...]:
    """The numeric release segment: ``"0.14.25"`` -> ``(0, 14, 25)``, ``"3.0rc1"`` -> ``(3, 0)``."""
    match = _RELEASE.match(version)
    if not match:
        raise ConfigError(f"cannot read the version number {version!r}")
    return tuple(int(part) for part in match.group(1).split("."))


def check_version(supported: VersionRange, installed: str | None) -> str:
    """Return ``installed`` if it lies in ``supported``; else the error naming the range."""
    if installed is None:
        raise MissingDependencyError(
            f"{supported.distribution} is not installed; install it with: "
            f"pip install 'ragtrim[{supported.extra}]' (supported: {supported.describe()})"
        )
    release = release_tuple(installed)
    if not supported.minimum <= release < supported.below:
        raise ConfigError(
            f"{supported.distribution} {installed} is not supported by ragtrim's "
            f"{supported.extra} adapter; supported versions: {supported.describe()} "
            f"(pip install 'ragtrim[{supported.extra}]' installs one)"
        )
    return installed


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def require(supported: VersionRange) -> str:
    """Gate an adapter module on the installed framework version (call before importing it)."""
    return check_version(supported, installed_version(supported.distribution))


# --------------------------------------------------------------------------- pipelines
def resolve_pipeline(source: PipelineSource) -> Pipeline:
    """A ready ``Pipeline`` from any of the accepted forms (see :data:`PipelineSource`)."""
    from ragtrim.pipeline import Pipeline

    if source is None:
        return Pipeline.default()
    if isinstance(source, Pipeline):
        return source
    if isinstance(source, Mapping):
        return Pipeline(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return Pipeline.load(path)
        if path.is_file():
            return Pipeline.from_config(path)
        raise ConfigError(f"pipeline {str(source)!r}: no such saved index directory or config file")
    raise ConfigError(
        "pipeline: expected a ragtrim Pipeline, a config mapping, a config file or a saved index "
        f"directory, got {type(source).__name__}"
    )


def serialisable_source(source: PipelineSource, *, needs_index: bool, owner: str) -> Any:
    """The form of ``source`` that survives a framework's to_dict/from_dict round trip.

    A config mapping or a path is kept as given. A ``Pipeline`` object becomes its config when
    only its stages matter (trimming); when its index matters, an in-memory index cannot be
    serialised, so that is an error telling the user to save it and pass the directory.
    """
    from ragtrim.pipeline import Pipeline

    if isinstance(source, os.PathLike):
        return os.fspath(source)
    if not isinstance(source, Pipeline):
        return source
    if needs_index:
        raise ConfigError(
            f"{owner}: a Pipeline object's index cannot be serialised; save it with "
            "pipeline.save(directory) and pass pipeline=directory"
        )
    return source.to_config()


def check_source(source: PipelineSource, owner: str) -> None:
    """Validate a pipeline source without building it (cheap, for lazily built components)."""
    from ragtrim.config import load_config
    from ragtrim.pipeline import Pipeline

    if source is None or isinstance(source, Pipeline):
        return
    if isinstance(source, Mapping):
        load_config(source)
        return
    if isinstance(source, (str, os.PathLike)):
        if not Path(source).exists():
            raise ConfigError(
                f"{owner}: pipeline {os.fspath(source)!r}: "
                "no such saved index directory or config file"
            )
        return
    raise ConfigError(
        f"{owner}: pipeline must be a ragtrim Pipeline, a config mapping, a config file or a saved "
        f"index directory, got {type(source).__name__}"
    )


# --------------------------------------------------------------------------- documents in
@dataclass(frozen=True)
class Source:
    """One framework document, as ragtrim sees it; ``original`` is the framework object."""

    position: int
    id: str
    text: str
    metadata: dict[str, Any]
    score: float | None
    original: Any

    def as_document(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "metadata": self.metadata}


def content_id(text: str) -> str:
    """The id of a document that has none: stable for the same text, across runs."""
    return "content-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def make_source(
    framework: str,
    position: int,
    raw_id: Any,
    text: Any,
    metadata: Mapping[str, Any] | None,
    score: Any,
    original: Any,
) -> Source:
    """Validate one framework document; every error names the framework, position and id."""
    from ragtrim.index.store import json_safe_metadata

    where = f"{framework} document #{position}"
    if raw_id is not None and raw_id != "":
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
            raise InputError(f"{where}: id must be a string, got {type(raw_id).__name__}")
        raw_id = str(raw_id)
        where = f"{where} (id={raw_id!r})"
    else:
        raw_id = None
    if not isinstance(text, str):
        raise InputError(f"{where}: content must be a string, got {type(text).__name__}")
    doc_id = raw_id if raw_id is not None else content_id(text)
    if metadata is not None and not isinstance(metadata, Mapping):
        raise InputError(f"{where}: metadata must be a mapping, got {type(metadata).__name__}")
    bad_keys = [key for key in metadata or {} if not isinstance(key, str)]
    if bad_keys:
        raise InputError(f"{where}: metadata has a non-string key {bad_keys[0]!r}")
    try:
        safe = json_safe_metadata(doc_id, metadata or {})
    except InputError as exc:
        raise InputError(f"{framework} document #{position}: {exc}") from None
    return Source(position, doc_id, text, safe, _score(where, score), original)


def _score(where: str, score: Any) -> float | None:
    if score is None:
        return None
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        try:
            score = float(score)  # numpy scalars
        except (TypeError, ValueError):
            raise InputError(
                f"{where}: score must be a number, got {type(score).__name__}"
            ) from None
    if not math.isfinite(score):
        raise InputError(f"{where}: score is {score!r}; give a finite number or no score")
    return float(score)


def unique_sources(sources: Sequence[Source], framework: str) -> list[Source]:
    """Collapse repeats of one document (keep the best-ranked); reject one id with two texts."""
    kept: dict[str, Source] = {}
    for source in sources:
        first = kept.get(source.id)
        if first is None:
            kept[source.id] = source
        elif first.text != source.text:
            raise InputError(
                f"{framework} documents #{first.position} and #{source.position} share the id "
                f"{source.id!r} but have different text; ids must identify one text"
            )
    return list(kept.values())


def trim_sources(
    pipeline: Pipeline,
    query: str,
    sources: Sequence[Source],
    framework: str,
    *,
    budget: int | None = None,
    task_type: str | None = None,
    filters: Mapping[str, Any] | None = None,
) -> tuple[list[tuple[Passage, Source]], TrimResult]:
    """``Pipeline.trim`` over framework documents; each passage paired with its source."""
    unique = unique_sources(sources, framework)
    scores = [s.score for s in unique if s.score is not None]
    result = pipeline.trim(
        query,
        [s.as_document() for s in unique],
        scores=scores if len(scores) == len(unique) else None,
        budget=budget,
        task_type=task_type,
        filters=filters,
    )
    by_id = {s.id: s for s in unique}
    return [(p, by_id[p.doc_id]) for p in result.passages], result


# --------------------------------------------------------------------------- passages out
def citation_metadata(passage: Passage, retriever_score: float | None = None) -> dict[str, Any]:
    """The ``ragtrim_*`` keys of one output document (plain JSON values)."""
    metadata: dict[str, Any] = {
        CITATION_KEY: passage.number,
        SOURCE_ID_KEY: passage.doc_id,
        SPANS_KEY: [[int(a), int(b)] for a, b in passage.spans],
        SCORE_KEY: float(passage.score),
    }
    if retriever_score is not None:
        metadata[RETRIEVER_SCORE_KEY] = retriever_score
    return metadata


def output_metadata(
    original: Mapping[str, Any] | None, passage: Passage, retriever_score: float | None = None
) -> dict[str, Any]:
    """The source's own metadata plus the citation keys (which win on a name clash)."""
    return {**(original or {}), **citation_metadata(passage, retriever_score)}


def indexed_metadata(pipeline: Pipeline, passage: Passage) -> dict[str, Any]:
    """Metadata of the ingested document a passage of ``Pipeline.run`` came from."""
    for chunk_id in passage.chunk_ids:
        chunk = pipeline.index.get_chunk(chunk_id)
        if chunk is not None:
            return dict(chunk.metadata)
    return {}


def run_pipeline(
    pipeline: Pipeline,
    query: str,
    *,
    budget: int | None = None,
    task_type: str | None = None,
    filters: Mapping[str, Any] | None = None,
) -> tuple[list[tuple[Passage, dict[str, Any]]], TrimResult]:
    """``Pipeline.run``; each passage paired with its output metadata."""
    result = pipeline.run(query, budget=budget, task_type=task_type, filters=filters)
    pairs = [(p, output_metadata(indexed_metadata(pipeline, p), p)) for p in result.passages]
    return pairs, result
