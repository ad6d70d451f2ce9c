"""The data that flows between stages.

``Document`` is validated (it comes from users); the rest are plain slotted dataclasses because
they are created by the thousand on the hot path and only ever built by ragtrim itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ragtrim.errors import InputError

Span = tuple[int, int]


class Document(BaseModel):
    """A source document. ``metadata`` is what filters match against; keys must be strings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata", mode="before")
    @classmethod
    def _string_keys(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            bad = [k for k in value if not isinstance(k, str)]
            if bad:
                raise ValueError(f"metadata keys must be strings, got {bad[0]!r}")
        return value

    @property
    def title(self) -> str:
        return str(self.metadata.get("title", ""))

    def fingerprint(self) -> str:
        """Content hash; an upsert re-chunks a document only when this changes."""
        digest = hashlib.sha256(self.text.encode("utf-8", "surrogatepass"))
        digest.update(repr(sorted(self.metadata.items())).encode("utf-8", "surrogatepass"))
        return digest.hexdigest()[:32]

    @classmethod
    def coerce(cls, item: Document | Mapping[str, Any], position: int | None = None) -> Document:
        """Accept a Document or a ``{id, text, metadata[, title]}`` dict, with a precise error."""
        if isinstance(item, Document):
            return item
        where = f"document #{position}" if position is not None else "document"
        if not isinstance(item, Mapping):
            raise InputError(f"{where}: expected a Document or a dict, got {type(item).__name__}")
        data = dict(item)
        for required in ("id", "text"):
            if required not in data:
                raise InputError(f"{where}: missing field '{required}'")
        if not isinstance(data["id"], str) or not data["id"]:
            raise InputError(f"{where}: field 'id' must be a non-empty string, got {data['id']!r}")
        if not isinstance(data["text"], str):
            raise InputError(
                f"{where} (id={data['id']!r}): field 'text' must be a string, "
                f"got {type(data['text']).__name__}"
            )
        raw_metadata = data.get("metadata")
        if raw_metadata is not None and not isinstance(raw_metadata, Mapping):
            raise InputError(
                f"{where} (id={data['id']!r}): field 'metadata' must be a mapping, "
                f"got {type(raw_metadata).__name__}"
            )
        metadata = dict(raw_metadata or {})
        if data.get("title") and "title" not in metadata:
            metadata["title"] = data["title"]
        try:
            return cls(id=data["id"], text=data["text"], metadata=metadata)
        except ValueError as exc:
            raise InputError(f"{where} (id={data['id']!r}): {exc}") from None


@dataclass(frozen=True, slots=True)
class Chunk:
    """A contiguous slice of one document: ``document.text[start:end] == text`` always.

    ``sentences`` are (start, end) spans relative to ``text``; ``section`` is the heading path.
    """

    id: str
    doc_id: str
    text: str
    start: int
    end: int
    token_count: int
    metadata: Mapping[str, Any] = field(default_factory=dict)
    section: tuple[str, ...] = ()
    sentences: tuple[Span, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["metadata"] = dict(self.metadata)
        data["section"] = list(self.section)
        data["sentences"] = [list(s) for s in self.sentences]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Chunk:
        return cls(
            id=data["id"],
            doc_id=data["doc_id"],
            text=data["text"],
            start=int(data["start"]),
            end=int(data["end"]),
            token_count=int(data["token_count"]),
            metadata=dict(data.get("metadata") or {}),
            section=tuple(data.get("section") or ()),
            sentences=tuple((int(a), int(b)) for a, b in data.get("sentences") or ()),
        )

    @property
    def title(self) -> str:
        return str(self.metadata.get("title", ""))


def chunk_id(doc_id: str, start: int, end: int) -> str:
    """Deterministic id: the same document text always yields the same chunk ids."""
    return f"{doc_id}#{start}-{end}"


@dataclass(slots=True)
class Candidate:
    """A chunk on its way through the query path, with one score per stage that scored it.

    ``scores`` keys: ``bm25``, ``dense``, ``fused``, ``rerank`` (whichever ran); ``score`` is
    the score the next stage should order by.
    """

    chunk: Chunk
    score: float
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.chunk.id

    def to_dict(self) -> dict[str, Any]:
        return {"chunk": self.chunk.to_dict(), "score": self.score, "scores": dict(self.scores)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Candidate:
        return cls(Chunk.from_dict(data["chunk"]), float(data["score"]), dict(data["scores"]))


class DropReason(str, Enum):
    FILTERED = "filtered"
    DUPLICATE = "duplicate"
    NEAR_DUPLICATE = "near_duplicate"
    SEMANTIC_DUPLICATE = "semantic_duplicate"
    OVERLAP_MERGED = "overlap_merged"
    DIVERSITY = "diversity"
    LOW_SCORE = "low_score"
    BELOW_CUTOFF = "below_cutoff"
    OVER_BUDGET = "over_budget"
    SENTENCES_PRUNED = "sentences_pruned"
    EMPTY = "empty"


@dataclass(frozen=True, slots=True)
class Drop:
    """Why a candidate (or part of it) did not reach the prompt."""

    chunk_id: str
    reason: DropReason
    stage: str
    tokens: int = 0
    kept_id: str | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["reason"] = self.reason.value
        return data


@dataclass(slots=True)
class StageReport:
    name: str
    type: str
    n_in: int
    n_out: int
    ms: float
    drops: list[Drop] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["drops"] = [d.to_dict() for d in self.drops]
        return data


@dataclass(frozen=True, slots=True)
class Passage:
    """One numbered source in the emitted context; ``spans`` are char offsets into the document."""

    number: int
    doc_id: str
    title: str
    text: str
    spans: tuple[Span, ...]
    score: float
    chunk_ids: tuple[str, ...]

    @property
    def start(self) -> int:
        return self.spans[0][0]

    @property
    def end(self) -> int:
        return self.spans[-1][1]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["spans"] = [list(s) for s in self.spans]
        data["chunk_ids"] = list(self.chunk_ids)
        return data


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Exact token counts in the configured encoding.

    ``naive`` is what concatenating every retrieved candidate would have cost;
    ``static_prefix`` is how many leading prompt tokens never change (prompt-cache friendly).
    """

    context: int
    prompt: int
    messages: int
    naive: int
    budget: int | None
    static_prefix: int

    @property
    def saved(self) -> int:
        return max(self.naive - self.context, 0)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["saved"] = self.saved
        return data


@dataclass(slots=True)
class Report:
    """What every stage did, in order, plus pipeline-level notes (profile used, cache hits)."""

    stages: list[StageReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    task_type: str | None = None
    profile: str = "default"
    cache: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)

    @property
    def drops(self) -> list[Drop]:
        return [d for s in self.stages for d in s.drops]

    def stage(self, name: str) -> StageReport:
        for report in self.stages:
            if report.name == name:
                return report
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stages": [s.to_dict() for s in self.stages],
            "notes": list(self.notes),
            "task_type": self.task_type,
            "profile": self.profile,
            "cache": dict(self.cache),
            "cost": dict(self.cost),
        }


@dataclass(slots=True)
class TrimResult:
    query: str
    prompt: str
    messages: list[dict[str, str]]
    context: str
    passages: list[Passage]
    tokens: TokenUsage
    report: Report

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "prompt": self.prompt,
            "messages": self.messages,
            "context": self.context,
            "passages": [p.to_dict() for p in self.passages],
            "tokens": self.tokens.to_dict(),
            "report": self.report.to_dict(),
        }
