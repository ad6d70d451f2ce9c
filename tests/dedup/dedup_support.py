"""Shared builders for the dedup tests: real chunks sliced from document text, real counter."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from ragtrim.query import QueryContext
from ragtrim.tokens import get_counter
from ragtrim.types import Candidate, Chunk, chunk_id

COUNTER = get_counter()
_SENTENCE = re.compile(r"[^.!?]+[.!?]+\s*")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Absolute spans of the sentences of ``text`` (trailing whitespace excluded)."""
    spans = []
    for match in _SENTENCE.finditer(text):
        end = match.start() + len(match.group().rstrip())
        spans.append((match.start(), end))
    return spans


def make_chunk(doc_id: str, doc_text: str, start: int, end: int, **fields) -> Chunk:
    """``doc_text[start:end]`` as a chunk whose sentences are the document's, clipped."""
    text = doc_text[start:end]
    sentences = tuple(
        (max(a, start) - start, min(b, end) - start)
        for a, b in sentence_spans(doc_text)
        if a < end and b > start
    )
    return Chunk(
        id=chunk_id(doc_id, start, end),
        doc_id=doc_id,
        text=text,
        start=start,
        end=end,
        token_count=COUNTER.count(text),
        sentences=sentences,
        **fields,
    )


def candidates(chunks: Sequence[Chunk], scores: Sequence[float] | None = None) -> list[Candidate]:
    """Best-first candidates with descending scores unless given."""
    if scores is None:
        scores = [1.0 - i / (len(chunks) + 1) for i in range(len(chunks))]
    return [Candidate(c, s, {"rerank": s}) for c, s in zip(chunks, scores, strict=True)]


class BagOfWordsEmbedder:
    """Deterministic test collaborator: words hashed into 64 dims, L2-normalised."""

    dims = 64

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        rows = np.zeros((len(texts), self.dims), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                bucket = hashlib.blake2b(word.encode(), digest_size=2).digest()
                rows[row, int.from_bytes(bucket, "little") % self.dims] += 1.0
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return rows / np.where(norms > 0, norms, 1.0)


def context(embedder: BagOfWordsEmbedder | None = None) -> QueryContext:
    return QueryContext(query="test query", counter=COUNTER, embedder=embedder)
