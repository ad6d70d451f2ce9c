"""Chunkers: split a document into exact, token-bounded, sentence-annotated chunks.

Oversized chunks are the first source of wasted prompt tokens, so every chunker guarantees:
``document.text[start:end] == chunk.text`` (no leading/trailing whitespace), ``token_count``
is the exact count of ``chunk.text`` and never exceeds the chunker's maximum, ids are
deterministic, the chunks together cover every non-whitespace character, and ``sentences``
are the (clipped) sentence spans inside each chunk, relative to its text.

Work is linear in the document: pieces are counted once and summed while packing (joining
whitespace is estimated at one token), and each emitted chunk is counted exactly once and
split further in the rare case the exact count exceeds the maximum. Huge blocks are never
handed to the tokenizer whole (tiktoken is slow on long runs without whitespace); they are
cut into sentences, and sentences into token-bounded pieces, window by window.

Sentences of code blocks, tables and front matter are their lines; a heading is one sentence.
A chunk's ``section`` is the heading path of the block its first character belongs to (with
overlap, that is where the overlap starts); its ``metadata`` is a copy of the document's,
shared by the document's chunks.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import takewhile
from typing import Any, ClassVar

from pydantic import Field, model_validator

from ragtrim.chunking.markdown import Block, parse_blocks
from ragtrim.chunking.sentences import Span, split_lines, split_sentences
from ragtrim.errors import ConfigError, InputError
from ragtrim.stage import Stage, StageConfig
from ragtrim.tokens import TokenCounter
from ragtrim.types import Chunk, Document, chunk_id

logger = logging.getLogger(__name__)

#: one character is at most 4 tokens (one per UTF-8 byte), so no smaller maximum can hold it
MIN_CHUNK_TOKENS = 4
#: estimated token cost of the whitespace that joins two packed pieces
JOIN_TOKENS = 1
_HEAD_ROOM = JOIN_TOKENS + MIN_CHUNK_TOKENS
_COUNT_BATCH = 256
#: blocks longer than this many characters per allowed token are split before counting
_HUGE_CHARS_PER_TOKEN = 32
_HUGE_MIN_CHARS = 65_536
#: TokenChunker tokenizes the document in segments of about this many characters
_SEGMENT_CHARS = 1 << 18
_COMPACT_AFTER = 1 << 16

# unit grains, coarse to fine
_BLOCK, _SENTENCE, _PIECE = 0, 1, 2

# a (start, end, block index) sentence in absolute offsets
_Sentence = tuple[int, int, int]


def block_sentences(text: str, block: Block) -> list[Span]:
    """Sentence spans of one block: lines for code/tables/front matter, one for a heading."""
    if block.kind == "heading":
        return [(block.start, block.end)]
    if block.kind in ("code", "table", "front_matter"):
        return split_lines(text, block.start, block.end)
    return split_sentences(text, block.start, block.end)


def split_on_tokens(
    text: str, start: int, end: int, limit: int, counter: TokenCounter
) -> list[tuple[int, int, int]]:
    """Cut ``text[start:end]`` into stripped ``(start, end, tokens)`` pieces of <= ``limit``.

    Each cut goes at the token limit (exact token boundaries for tiktoken counters), moved
    back to the last whitespace when that keeps at least half of the piece; otherwise the text
    is cut between characters. Each piece is counted exactly and shrunk if it is still over.
    """
    if limit < 1:
        raise ValueError(f"split_on_tokens: limit must be >= 1, got {limit}")
    pieces: list[tuple[int, int, int]] = []
    pos = _lstrip(text, start, end)
    while pos < end:
        cut = _token_limit_cut(text, pos, end, limit, counter)
        if cut < end:
            cut = _prefer_word_boundary(text, pos, cut)
        piece_end = _rstrip(text, pos, cut)
        tokens = counter.count(text[pos:piece_end])
        while tokens > limit:
            if piece_end - pos <= 1:
                raise InputError(
                    f"character {text[pos]!r} at offset {pos} counts {tokens} tokens, more than "
                    f"the chunk limit of {limit} with tokenizer {counter.name!r}"
                )
            cut = pos + max(1, (piece_end - pos) * limit // (tokens + 1))
            piece_end = _rstrip(text, pos, cut)
            tokens = counter.count(text[pos:piece_end])
        pieces.append((pos, piece_end, tokens))
        pos = _lstrip(text, cut, end)
    return pieces


def _token_limit_cut(text: str, pos: int, end: int, limit: int, counter: TokenCounter) -> int:
    """A cut after at most ``limit`` tokens from ``pos``, tokenizing only a bounded window.

    ``TokenCounter.truncate`` finds the longest prefix within ``limit`` (exact token boundaries
    with tiktoken, a binary search otherwise); the window doubles until it holds more than
    ``limit`` tokens, so long spaceless runs are never tokenized whole.
    """
    window = limit * 4 + 16
    while True:
        stop = min(end, pos + window)
        prefix = counter.truncate(text[pos:stop], limit)
        if len(prefix) < stop - pos or stop == end:
            # an empty prefix means the first character alone is over: the caller reports it
            return pos + max(len(prefix), 1)
        window *= 2


def _prefer_word_boundary(text: str, pos: int, cut: int) -> int:
    if text[cut].isspace() or text[cut - 1].isspace():
        return cut
    space = max(text.rfind(" ", pos, cut), text.rfind("\n", pos, cut), text.rfind("\t", pos, cut))
    if space > pos and (space - pos) * 2 >= cut - pos:
        return space
    return cut


def _count_each(counter: TokenCounter, texts: list[str]) -> list[int]:
    """Exact counts, one call each: for chunk-sized texts this beats ``count_many``, whose
    thread pool costs more than it saves (measured: 0.26 s vs 0.36 s for 5.9k blocks)."""
    return [counter.count(t) for t in texts]


def _lstrip(text: str, start: int, end: int) -> int:
    while start < end and text[start].isspace():
        start += 1
    return start


def _rstrip(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1].isspace():
        end -= 1
    return end


def _iter_sentences(text: str, blocks: Iterable[Block]) -> Iterator[_Sentence]:
    for index, block in enumerate(blocks):
        for start, end in block_sentences(text, block):
            yield start, end, index


class _SentenceCursor:
    """Sentences overlapping successive spans whose starts never decrease (streaming)."""

    def __init__(self, sentences: Iterator[_Sentence]) -> None:
        self._source = sentences
        self._window: deque[_Sentence] = deque()
        self._exhausted = False

    def overlapping(self, start: int, end: int) -> list[_Sentence]:
        window = self._window
        while window and window[0][1] <= start:
            window.popleft()
        while not self._exhausted and (not window or window[-1][0] < end):
            sentence = next(self._source, None)
            if sentence is None:
                self._exhausted = True
            elif sentence[1] > start:
                window.append(sentence)
        return list(takewhile(lambda s: s[0] < end, window))


def _build_chunk(
    document: Document,
    metadata: Mapping[str, Any],
    blocks: list[Block],
    start: int,
    end: int,
    tokens: int,
    sentences: list[_Sentence],
) -> Chunk:
    return Chunk(
        id=chunk_id(document.id, start, end),
        doc_id=document.id,
        text=document.text[start:end],
        start=start,
        end=end,
        token_count=tokens,
        metadata=metadata,
        section=blocks[sentences[0][2]].heading_path if sentences else (),
        sentences=tuple((max(a, start) - start, min(b, end) - start) for a, b, _ in sentences),
    )


def _require_tiktoken(counter: TokenCounter, stage: str) -> None:
    if counter.encoding_name is None:
        raise ConfigError(
            f"{stage} cuts on token boundaries and needs a tiktoken encoding; "
            f"tokenizer {counter.name!r} has none (use StructureChunker instead)"
        )


# --------------------------------------------------------------------------- StructureChunker


@dataclass(slots=True)
class _Unit:
    """A piece of one block that the packer places whole; ``tokens`` is its exact count."""

    start: int
    end: int
    tokens: int
    block: int
    grain: int
    heading_level: int
    opens_block: bool


@dataclass(slots=True)
class _Draft:
    units: list[_Unit]
    tokens: int

    @property
    def start(self) -> int:
        return self.units[0].start

    @property
    def end(self) -> int:
        return self.units[-1].end

    def opens_section(self, respect_sections: bool) -> bool:
        first = self.units[0]
        return respect_sections and first.opens_block and 0 < first.heading_level <= 2


def _joined_tokens(units: list[_Unit]) -> int:
    return sum(u.tokens for u in units) + JOIN_TOKENS * (len(units) - 1)


class _Packer:
    """Greedy packing of unit groups into drafts of about ``target`` tokens (estimated)."""

    ADD, NEW, REFINE = "add", "new", "refine"

    def __init__(self, min_tokens: int, target: int, max_tokens: int, sections: bool) -> None:
        self.min_tokens = min_tokens
        self.target = target
        self.max_tokens = max_tokens
        self.sections = sections
        self.units: list[_Unit] = []
        self.tokens = 0
        self.ready: list[_Draft] = []

    def decide(self, group_tokens: int, opens_section: bool) -> str:
        if not self.units:
            return self.ADD
        if opens_section and self.sections and self.tokens >= self.min_tokens:
            return self.NEW
        total = self.tokens + JOIN_TOKENS + group_tokens
        if total <= self.max_tokens:
            if (
                total <= self.target
                or self.tokens < self.min_tokens
                or total - self.target <= self.target - self.tokens
            ):
                return self.ADD
            return self.NEW
        return self.REFINE if self.tokens < self.min_tokens else self.NEW

    def add(self, group: list[_Unit], group_tokens: int) -> None:
        if self.units:
            self.tokens += JOIN_TOKENS + group_tokens
        else:
            self.tokens = group_tokens
        self.units.extend(group)

    def flush(self) -> None:
        if self.units:
            self.ready.append(_Draft(self.units, self.tokens))
            self.units = []
            self.tokens = 0

    def take(self) -> list[_Draft]:
        ready, self.ready = self.ready, []
        return ready


class StructureChunker(Stage):
    """The default chunker: Markdown-aware packing of whole blocks into ~``target_tokens``.

    A heading sticks to what follows it; with ``respect_sections`` a level-1/2 heading starts a
    new chunk (unless the current one is below ``min_tokens``). Blocks over ``max_tokens`` are
    split on sentences (prose) or lines (code, tables), and single sentences over it on words,
    then characters. A chunk below ``min_tokens`` merges into the previous one when the result
    stays within ``max_tokens`` (never across a section break). With ``overlap_tokens`` a chunk
    starts earlier by whole sentences of the previous chunk totalling at most that many tokens
    (never into a chunk that opens a section).
    """

    kind: ClassVar[str] = "chunker"

    class Config(StageConfig):
        min_tokens: int = Field(48, ge=1)
        target_tokens: int = Field(192, ge=1)
        max_tokens: int = Field(256, ge=MIN_CHUNK_TOKENS)
        overlap_tokens: int = Field(0, ge=0)
        respect_sections: bool = True

        @model_validator(mode="after")
        def _ordered(self) -> StructureChunker.Config:
            if not self.min_tokens <= self.target_tokens <= self.max_tokens:
                raise ValueError(
                    "need min_tokens <= target_tokens <= max_tokens, got "
                    f"min_tokens={self.min_tokens}, target_tokens={self.target_tokens}, "
                    f"max_tokens={self.max_tokens}"
                )
            if self.overlap_tokens >= self.target_tokens:
                raise ValueError(
                    f"overlap_tokens ({self.overlap_tokens}) must be < target_tokens "
                    f"({self.target_tokens})"
                )
            return self

    config: Config

    def run(self, document: Document, counter: TokenCounter) -> list[Chunk]:
        document = Document.coerce(document)
        return list(_StructureRun(self.config, document, counter).chunks())


class _StructureRun:
    """One document through StructureChunker: units -> drafts -> exact chunks."""

    def __init__(self, config: StructureChunker.Config, document: Document, counter: TokenCounter):
        self.config = config
        self.document = document
        self.text = document.text
        self.counter = counter
        self.blocks = parse_blocks(self.text)
        self.max_tokens = config.max_tokens
        self.huge_chars = max(config.max_tokens * _HUGE_CHARS_PER_TOKEN, _HUGE_MIN_CHARS)

    def chunks(self) -> Iterator[Chunk]:
        if not self.blocks:
            return
        metadata = dict(self.document.metadata)
        cursor = _SentenceCursor(_iter_sentences(self.text, self.blocks))
        previous: list[_Sentence] = []
        previous_own_start = 0
        for draft in self._merged(self._verified(self._drafts())):
            start, tokens = self._overlap_start(draft, previous, previous_own_start)
            sentences = cursor.overlapping(start, draft.end)
            yield _build_chunk(
                self.document, metadata, self.blocks, start, draft.end, tokens, sentences
            )
            previous, previous_own_start = sentences, draft.start

    # units ------------------------------------------------------------------------------

    def _block_units(self) -> Iterator[_Unit]:
        text, blocks = self.text, self.blocks
        for batch_start in range(0, len(blocks), _COUNT_BATCH):
            batch = blocks[batch_start : batch_start + _COUNT_BATCH]
            small = [b for b in batch if b.end - b.start <= self.huge_chars]
            counts = iter(_count_each(self.counter, [text[b.start : b.end] for b in small]))
            for offset, block in enumerate(batch):
                index = batch_start + offset
                level = block.level if block.kind == "heading" else 0
                if block.end - block.start > self.huge_chars:
                    unit = _Unit(
                        block.start, block.end, self.max_tokens + 1, index, _BLOCK, level, True
                    )
                    yield from self._refine(unit, self.max_tokens, fill_only=False)
                    continue
                unit = _Unit(block.start, block.end, next(counts), index, _BLOCK, level, True)
                if unit.tokens > self.max_tokens:
                    yield from self._refine(unit, self.max_tokens, fill_only=False)
                else:
                    yield unit

    def _refine(self, unit: _Unit, limit: int, fill_only: bool) -> list[_Unit]:
        """Finer units covering ``unit``: sentences/lines, then token-bounded pieces.

        Returns [] when the unit cannot get finer (``fill_only`` allows sentences only).
        """
        text = self.text
        if unit.grain == _BLOCK:
            spans = block_sentences(text, self.blocks[unit.block])
            if len(spans) > 1:
                return self._sentence_units(unit, spans)
        if fill_only or unit.tokens <= 1:
            return []
        pieces = split_on_tokens(text, unit.start, unit.end, limit, self.counter)
        if len(pieces) <= 1:
            return []
        return [
            _Unit(a, b, n, unit.block, _PIECE, unit.heading_level, unit.opens_block and i == 0)
            for i, (a, b, n) in enumerate(pieces)
        ]

    def _sentence_units(self, unit: _Unit, spans: list[Span]) -> list[_Unit]:
        text, counter, max_tokens = self.text, self.counter, self.max_tokens
        units: list[_Unit] = []
        for batch_start in range(0, len(spans), _COUNT_BATCH):
            batch = spans[batch_start : batch_start + _COUNT_BATCH]
            small = [s for s in batch if s[1] - s[0] <= self.huge_chars]
            counts = iter(_count_each(counter, [text[a:b] for a, b in small]))
            for a, b in batch:
                tokens = next(counts) if b - a <= self.huge_chars else max_tokens + 1
                if tokens <= max_tokens:
                    units.append(
                        _Unit(a, b, tokens, unit.block, _SENTENCE, unit.heading_level, False)
                    )
                    continue
                units.extend(
                    _Unit(pa, pb, n, unit.block, _PIECE, unit.heading_level, False)
                    for pa, pb, n in split_on_tokens(text, a, b, max_tokens, counter)
                )
        units[0].opens_block = unit.opens_block
        return units

    # packing ----------------------------------------------------------------------------

    def _drafts(self) -> Iterator[_Draft]:
        config = self.config
        max_tokens = config.max_tokens
        packer = _Packer(
            config.min_tokens, config.target_tokens, max_tokens, config.respect_sections
        )
        source = self._block_units()
        pushback: list[_Unit] = []
        heads: list[_Unit] = []
        while True:
            unit = pushback.pop() if pushback else next(source, None)
            if unit is None:
                break
            if unit.heading_level:
                # headings wait for what follows, keeping room for at least one character
                if heads and _joined_tokens([*heads, unit]) + _HEAD_ROOM > max_tokens:
                    self._place(packer, heads, pushback)
                    heads = []
                if unit.tokens + _HEAD_ROOM > max_tokens:
                    self._place(packer, [unit], pushback)
                else:
                    heads.append(unit)
                yield from packer.take()
                continue
            group = [*heads, unit]
            group_tokens = _joined_tokens(group)
            if group_tokens > max_tokens:
                room = max_tokens - _joined_tokens(heads) - JOIN_TOKENS
                try:
                    finer = self._refine(unit, room, fill_only=False)
                except InputError:  # a character too long for the room left by the headings
                    finer = []
                if finer:
                    pushback.extend(reversed(finer))
                    continue
                self._place(packer, heads, pushback)
                heads = []
                group, group_tokens = [unit], unit.tokens
            if self._place(packer, group, pushback, group_tokens):
                heads = []
            yield from packer.take()
        self._place(packer, heads, pushback)
        packer.flush()
        yield from packer.take()

    def _place(
        self,
        packer: _Packer,
        group: list[_Unit],
        pushback: list[_Unit],
        group_tokens: int | None = None,
    ) -> bool:
        """Add ``group`` to the packer; False when its last unit was refined instead."""
        if not group:
            return True
        tokens = _joined_tokens(group) if group_tokens is None else group_tokens
        decision = packer.decide(tokens, group[0].opens_block and group[0].heading_level in (1, 2))
        if decision == packer.REFINE:
            finer = self._refine(group[-1], self.max_tokens, fill_only=True)
            if finer:
                pushback.extend(reversed(finer))
                return False
            decision = packer.NEW
        if decision == packer.NEW:
            packer.flush()
        packer.add(group, tokens)
        return True

    # exactness --------------------------------------------------------------------------

    def _verified(self, drafts: Iterable[_Draft]) -> Iterator[_Draft]:
        """Replace estimates by exact counts, splitting the rare draft that is over."""
        for draft in drafts:
            yield from self._verify(draft)

    def _verify(self, draft: _Draft) -> list[_Draft]:
        if len(draft.units) == 1 and draft.units[0].tokens <= self.max_tokens:
            draft.tokens = draft.units[0].tokens  # a unit's count is already exact
            return [draft]
        tokens = self.counter.count(self.text[draft.start : draft.end])
        if tokens <= self.max_tokens:
            draft.tokens = tokens
            return [draft]
        if len(draft.units) == 1:
            unit = draft.units[0]
            pieces = split_on_tokens(self.text, unit.start, unit.end, self.max_tokens, self.counter)
            return [
                _Draft([_Unit(a, b, n, unit.block, _PIECE, unit.heading_level, False)], n)
                for a, b, n in pieces
            ]
        half = _joined_tokens(draft.units) / 2
        running, cut = 0, 1
        for i, unit in enumerate(draft.units[:-1], start=1):
            running += unit.tokens + JOIN_TOKENS
            cut = i
            if running >= half:
                break
        left = _Draft(draft.units[:cut], 0)
        right = _Draft(draft.units[cut:], 0)
        return self._verify(left) + self._verify(right)

    def _merged(self, drafts: Iterable[_Draft]) -> Iterator[_Draft]:
        """Fold a draft below ``min_tokens`` into the previous one when that stays in bounds."""
        config = self.config
        previous: _Draft | None = None
        for draft in drafts:
            if (
                previous is not None
                and draft.tokens < config.min_tokens
                and not draft.opens_section(config.respect_sections)
            ):
                tokens = self.counter.count(self.text[previous.start : draft.end])
                if tokens <= config.max_tokens:
                    previous = _Draft(previous.units + draft.units, tokens)
                    continue
            if previous is not None:
                yield previous
            previous = draft
        if previous is not None:
            yield previous

    def _overlap_start(
        self, draft: _Draft, previous: list[_Sentence], previous_own_start: int
    ) -> tuple[int, int]:
        """Where the chunk starts with overlap, and its exact token count."""
        config = self.config
        if (
            config.overlap_tokens == 0
            or not previous
            or draft.opens_section(config.respect_sections)
        ):
            return draft.start, draft.tokens
        own = [s for s in previous if s[0] >= previous_own_start][1:]
        starts: list[int] = []
        total = 0
        for a, b, _ in reversed(own):
            total += self.counter.count(self.text[a:b])
            if total > config.overlap_tokens:
                break
            starts.append(a)
        while starts:
            tokens = self.counter.count(self.text[starts[-1] : draft.end])
            if tokens <= config.max_tokens:
                return starts[-1], tokens
            starts.pop()
        return draft.start, draft.tokens


# --------------------------------------------------------------------------- TokenChunker


class TokenChunker(Stage):
    """Fixed windows of ``chunk_tokens`` tokens stepping by ``chunk_tokens - overlap_tokens``.

    The structure-blind baseline for benchmarks. Windows are cut on token boundaries of the
    document's own tokenization; a window whose text re-tokenizes to more than
    ``chunk_tokens`` (it rarely happens at segment or multi-byte-character edges) ends a token
    earlier. Needs a tiktoken counter.
    """

    kind: ClassVar[str] = "chunker"

    class Config(StageConfig):
        chunk_tokens: int = Field(256, ge=MIN_CHUNK_TOKENS)
        overlap_tokens: int = Field(0, ge=0)

        @model_validator(mode="after")
        def _overlap_below_size(self) -> TokenChunker.Config:
            if self.overlap_tokens >= self.chunk_tokens:
                raise ValueError(
                    f"overlap_tokens ({self.overlap_tokens}) must be < chunk_tokens "
                    f"({self.chunk_tokens})"
                )
            return self

    config: Config

    def run(self, document: Document, counter: TokenCounter) -> list[Chunk]:
        document = Document.coerce(document)
        _require_tiktoken(counter, type(self).__name__)
        text = document.text
        blocks = parse_blocks(text)
        if not blocks:
            return []
        size = self.config.chunk_tokens
        overlap = self.config.overlap_tokens
        metadata = dict(document.metadata)
        cursor = _SentenceCursor(_iter_sentences(text, blocks))
        segments = _token_boundaries(text, counter)
        bounds: list[int] = []
        first = 0
        exhausted = False
        chunks: list[Chunk] = []
        # windows differing only in whitespace tokens strip to the same span: emit it once
        recent: deque[tuple[int, int]] = deque(maxlen=64)
        while True:
            while not exhausted and len(bounds) - first <= size:
                segment = next(segments, None)
                if segment is None:
                    exhausted = True
                else:
                    bounds.extend(segment)
            if len(bounds) - first < 2:
                break
            last = min(first + size, len(bounds) - 1)
            start, end, tokens = _window(text, bounds, first, last, counter)
            if tokens > size:
                last, (start, end, tokens) = _largest_window(
                    text, bounds, first, last, size, counter
                )
            if start < end and (start, end) not in recent:
                recent.append((start, end))
                sentences = cursor.overlapping(start, end)
                chunks.append(
                    _build_chunk(document, metadata, blocks, start, end, tokens, sentences)
                )
            if exhausted and last == len(bounds) - 1:
                break
            first = max(first + 1, last - overlap)
            if first > _COMPACT_AFTER:
                del bounds[:first]
                first = 0
        return chunks


def _window(
    text: str, bounds: list[int], first: int, last: int, counter: TokenCounter
) -> tuple[int, int, int]:
    """The stripped span between two boundaries and its exact token count."""
    start = _lstrip(text, bounds[first], bounds[last])
    end = _rstrip(text, start, bounds[last])
    return start, end, counter.count(text[start:end]) if start < end else 0


def _largest_window(
    text: str, bounds: list[int], first: int, last: int, size: int, counter: TokenCounter
) -> tuple[int, tuple[int, int, int]]:
    """Binary search for the last boundary whose window re-tokenizes to <= ``size``."""
    best = _window(text, bounds, first, first + 1, counter)
    if best[2] > size:
        raise InputError(
            f"the text at offset {bounds[first]} counts {best[2]} tokens on its own, "
            f"more than chunk_tokens={size}"
        )
    low, high = first + 1, last - 1
    found = first + 1
    while low <= high:
        middle = (low + high) // 2
        window = _window(text, bounds, first, middle, counter)
        if window[2] <= size:
            found, best, low = middle, window, middle + 1
        else:
            high = middle - 1
    return found, best


def _token_boundaries(text: str, counter: TokenCounter) -> Iterator[list[int]]:
    """Distinct token start offsets of ``text`` in increasing order, then ``len(text)``.

    The text is tokenized segment by segment, each cut before a space that precedes a letter
    (where tiktoken's pre-tokenizer splits anyway), so no long string is tokenized at once.
    """
    size = len(text)
    pos = 0
    previous = -1
    while pos < size:
        cut = _segment_cut(text, pos + _SEGMENT_CHARS)
        out: list[int] = []
        for offset in counter.token_starts(text[pos:cut]):
            absolute = pos + offset
            if absolute != previous:
                out.append(absolute)
                previous = absolute
        yield out
        pos = cut
    yield [size]


def _segment_cut(text: str, target: int) -> int:
    size = len(text)
    if target >= size:
        return size
    limit = min(size - 1, target + 4096)
    position = text.find(" ", target, limit)
    while position != -1:
        if not text[position - 1].isspace() and text[position + 1].isalpha():
            return position
        position = text.find(" ", position + 1, limit)
    return target


# --------------------------------------------------------------------------- SentenceWindowChunker


class SentenceWindowChunker(Stage):
    """One chunk per sentence, with ``window`` neighbouring sentences on each side.

    Chunks overlap by design (retrieval matches the sentence, the neighbours give context).
    Windows over ``max_tokens`` lose neighbours from the outside (the side with more left
    first, then the longer one); a sentence alone over ``max_tokens`` becomes several chunks
    cut on words, then characters.
    """

    kind: ClassVar[str] = "chunker"

    class Config(StageConfig):
        window: int = Field(1, ge=0)
        max_tokens: int = Field(256, ge=MIN_CHUNK_TOKENS)

    config: Config

    def run(self, document: Document, counter: TokenCounter) -> list[Chunk]:
        document = Document.coerce(document)
        text = document.text
        blocks = parse_blocks(text)
        if not blocks:
            return []
        width = self.config.window
        max_tokens = self.config.max_tokens
        metadata = dict(document.metadata)
        sentences = _counted_sentences(text, _iter_sentences(text, blocks), counter, max_tokens)
        behind: deque[tuple[int, int, int, int]] = deque(maxlen=width)
        ahead: deque[tuple[int, int, int, int]] = deque()
        recent: deque[tuple[int, int]] = deque(maxlen=2 * width + 2)
        chunks: list[Chunk] = []
        while True:
            while len(ahead) <= width:
                sentence = next(sentences, None)
                if sentence is None:
                    break
                ahead.append(sentence)
            if not ahead:
                break
            center = ahead.popleft()
            if center[3] > max_tokens:
                for a, b, tokens in split_on_tokens(
                    text, center[0], center[1], max_tokens, counter
                ):
                    chunks.append(
                        _build_chunk(document, metadata, blocks, a, b, tokens, [center[:3]])
                    )
            else:
                window = [*behind, center, *list(ahead)[:width]]
                low, high, tokens = _trim_window(text, window, len(behind), max_tokens, counter)
                span = (window[low][0], window[high][1])
                if span not in recent:
                    recent.append(span)
                    chosen = [s[:3] for s in window[low : high + 1]]
                    chunks.append(_build_chunk(document, metadata, blocks, *span, tokens, chosen))
            behind.append(center)
        return chunks


def _counted_sentences(
    text: str, sentences: Iterator[_Sentence], counter: TokenCounter, max_tokens: int
) -> Iterator[tuple[int, int, int, int]]:
    """``(start, end, block, tokens)``; huge sentences get ``max_tokens + 1`` uncounted."""
    huge = max(max_tokens * _HUGE_CHARS_PER_TOKEN, _HUGE_MIN_CHARS)
    while True:
        batch = [s for _, s in zip(range(_COUNT_BATCH), sentences, strict=False)]
        if not batch:
            return
        small = [s for s in batch if s[1] - s[0] <= huge]
        counts = iter(_count_each(counter, [text[a:b] for a, b, _ in small]))
        for a, b, block in batch:
            yield a, b, block, next(counts) if b - a <= huge else max_tokens + 1


def _trim_window(
    text: str,
    window: list[tuple[int, int, int, int]],
    center: int,
    max_tokens: int,
    counter: TokenCounter,
) -> tuple[int, int, int]:
    """Drop outer neighbours until the window fits; (first, last, exact tokens)."""
    low, high = 0, len(window) - 1

    def estimate() -> int:
        return sum(s[3] for s in window[low : high + 1]) + JOIN_TOKENS * (high - low)

    def drop_one() -> None:
        nonlocal low, high
        left, right = center - low, high - center
        if left > right or (left == right and window[low][3] >= window[high][3]):
            low += 1
        else:
            high -= 1

    while (low < center or high > center) and estimate() > max_tokens:
        drop_one()
    while True:
        tokens = counter.count(text[window[low][0] : window[high][1]])
        if tokens <= max_tokens or (low == center and high == center):
            return low, high, tokens
        drop_one()
