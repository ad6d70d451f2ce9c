"""Every stored sentence as the set of its terms, tokenised once at ingestion.

The packer and the embedding reranker score sentences by which query terms they contain.
Tokenising a sentence (NFKC, casefold, split, stop words, stemming) costs about 15 us, so 50
fresh candidates of ~250 sentences spent 4 ms of every pack on it: more than everything else
the packer does. Stored here as term ids (a vocabulary plus two offset arrays, plain ``.npy``
and JSON), a sentence's terms at query time are an array slice, matched against the query's
term ids with numpy.

The terms come from :func:`ragtrim.scoring.default_tokenizer`, the tokenizer scoring uses, not
from the BM25 tokenizer (whose settings are configurable): a stored set must equal what
scoring would compute from the text. A sentence is a chunk's sentence span, or the whole chunk
when it has none, as the packer's units are.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ragtrim.errors import IndexStoreError
from ragtrim.types import Chunk

FOLDER = "sentence_terms"


def _tokenizer_key() -> dict:
    from ragtrim.scoring import default_tokenizer

    tokenizer = default_tokenizer()
    return {
        "lowercase": tokenizer.lowercase,
        "stopwords": tokenizer.stopwords,
        "stemmer": tokenizer.stemmer,
        "min_token_length": tokenizer.min_token_length,
    }


class SentenceTerms:
    def __init__(self) -> None:
        self.vocabulary: list[str] = []
        self._term_id: dict[str, int] = {}
        self.ids = np.zeros(0, dtype=np.int32)
        #: sentence i's term ids are ids[sentence_offsets[i]:sentence_offsets[i + 1]]
        self.sentence_offsets = np.zeros(1, dtype=np.int64)
        #: chunk row r's sentences are chunk_offsets[r] .. chunk_offsets[r + 1] - 1
        self.chunk_offsets = np.zeros(1, dtype=np.int64)

    def __len__(self) -> int:
        """Number of chunk rows."""
        return len(self.chunk_offsets) - 1

    def append(self, chunks: Sequence[Chunk]) -> None:
        from ragtrim.scoring import sentence_terms

        ids: list[int] = []
        sentence_ends: list[int] = []
        sentence_counts: list[int] = []
        start = len(self.ids)
        for chunk in chunks:
            spans = chunk.sentences or ((0, len(chunk.text)),)
            for a, b in spans:
                for term in sorted(sentence_terms(chunk.text[a:b])):
                    term_id = self._term_id.get(term)
                    if term_id is None:
                        term_id = self._term_id[term] = len(self.vocabulary)
                        self.vocabulary.append(term)
                    ids.append(term_id)
                sentence_ends.append(start + len(ids))
            sentence_counts.append(len(spans))
        self.ids = np.concatenate([self.ids, np.asarray(ids, dtype=np.int32)])
        self.sentence_offsets = np.concatenate(
            [self.sentence_offsets, np.asarray(sentence_ends, dtype=np.int64)]
        )
        self.chunk_offsets = np.concatenate(
            [
                self.chunk_offsets,
                self.chunk_offsets[-1] + np.cumsum(sentence_counts, dtype=np.int64),
            ]
        )

    def take(self, rows: np.ndarray) -> None:
        """Keep only these chunk rows, in this order (index compaction)."""
        sentences = [np.arange(self.chunk_offsets[r], self.chunk_offsets[r + 1]) for r in rows]
        order = np.concatenate(sentences) if sentences else np.zeros(0, dtype=np.int64)
        lengths = np.diff(self.sentence_offsets)[order]
        pieces = [self.ids[self.sentence_offsets[s] : self.sentence_offsets[s + 1]] for s in order]
        self.ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
        self.sentence_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        counts = np.asarray([len(s) for s in sentences], dtype=np.int64)
        self.chunk_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def term_id(self, term: str) -> int | None:
        return self._term_id.get(term)

    def of_row(self, row: int) -> list[np.ndarray]:
        """The term ids of each sentence of chunk row ``row`` (views, sorted, distinct)."""
        ids, offsets = self.ids, self.sentence_offsets
        first, last = int(self.chunk_offsets[row]), int(self.chunk_offsets[row + 1])
        bounds = offsets[first : last + 1].tolist()
        return [ids[bounds[i] : bounds[i + 1]] for i in range(last - first)]

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path) -> None:
        folder = directory / FOLDER
        folder.mkdir()
        params = {"tokenizer": _tokenizer_key(), "vocabulary": self.vocabulary}
        (folder / "terms.json").write_text(json.dumps(params, ensure_ascii=False), "utf-8")
        np.save(folder / "ids.npy", self.ids, allow_pickle=False)
        np.save(folder / "sentence_offsets.npy", self.sentence_offsets, allow_pickle=False)
        np.save(folder / "chunk_offsets.npy", self.chunk_offsets, allow_pickle=False)

    @classmethod
    def load(cls, directory: Path, chunks: Sequence[Chunk]) -> SentenceTerms:
        """The stored terms; rebuilt from the chunks when the index predates them or was
        written with another scoring tokenizer. Inconsistent arrays are an error."""
        folder = directory / FOLDER
        terms = cls()
        if not folder.is_dir():
            terms.append(chunks)
            return terms
        try:
            params = json.loads((folder / "terms.json").read_text("utf-8"))
            if params.get("tokenizer") != _tokenizer_key():
                terms.append(chunks)
                return terms
            terms.vocabulary = list(params["vocabulary"])
            terms.ids = np.load(folder / "ids.npy", allow_pickle=False)
            terms.sentence_offsets = np.load(folder / "sentence_offsets.npy", allow_pickle=False)
            terms.chunk_offsets = np.load(folder / "chunk_offsets.npy", allow_pickle=False)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IndexStoreError(f"{folder}: cannot read sentence terms: {exc}") from None
        terms._term_id = {term: i for i, term in enumerate(terms.vocabulary)}
        terms._check(folder, chunks)
        return terms

    def _check(self, folder: Path, chunks: Sequence[Chunk]) -> None:
        sentences, offsets = self.chunk_offsets, self.sentence_offsets
        expected = [len(c.sentences) or 1 for c in chunks]
        if (
            len(sentences) != len(chunks) + 1
            or np.any(np.diff(sentences) != expected)
            or len(offsets) != sentences[-1] + 1
            or offsets[0] != 0
            or np.any(np.diff(offsets) < 0)
            or offsets[-1] != len(self.ids)
            or (len(self.ids) and (self.ids.min() < 0 or self.ids.max() >= len(self.vocabulary)))
        ):
            raise IndexStoreError(f"{folder}: sentence terms do not match chunks.jsonl")
