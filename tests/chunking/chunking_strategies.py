"""Hypothesis strategies and invariant checks shared by the chunking tests."""

from __future__ import annotations

from hypothesis import strategies as st

from ragtrim.tokens import TokenCounter
from ragtrim.types import Chunk

_WORDS = [
    "the",
    "Dr.",
    "Smith",
    "e.g.",
    "3.14",
    "v3.4.1",
    "1,000.5",
    "U.S.",
    "p.m.",
    "etc.",
    "J.",
    "https://example.com/a.b?x=1",
    "a.b@c.org",
    "Fig.",
    "No.",
    "said",
    '"stop."',
    "(see",
    "above.)",
    "Then",
    "The",
    "它",
    "中文句子。",
    "日本語！",
    "なに？",
    "😀",
    "👩‍👩‍👧",
    "é",
    "naïve",
    "…",
    "...",
    "?!",
    "!",
    "?",
    ".",
    "ß",
    "İ",
    "\u0301",
]
_SPACES = [" ", " ", " ", "\n", "\n\n", "\t", "\r\n", "  \n  ", "\u3000", "\xa0", "\n \n"]


@st.composite
def unicode_texts(draw: st.DrawFn) -> str:
    """Prose-ish text with hard cases, CJK, emoji, odd whitespace and long spaceless runs."""
    parts: list[str] = []
    for _ in range(draw(st.integers(0, 60))):
        kind = draw(st.integers(0, 9))
        if kind <= 5:
            parts.append(draw(st.sampled_from(_WORDS)))
        elif kind == 6:
            parts.append(draw(st.text(min_size=1, max_size=12)))
        elif kind == 7:
            unit = draw(st.sampled_from(["x", "ab", "中", "😀", "é", "-", "  "]))
            parts.append(unit * draw(st.integers(50, 600)))
        else:
            parts.append(draw(st.sampled_from(_SPACES)))
        parts.append(draw(st.sampled_from(_SPACES)))
    return "".join(parts)


_SENTENCE = st.lists(st.sampled_from(_WORDS[:20]), min_size=1, max_size=25).map(" ".join)


@st.composite
def markdown_texts(draw: st.DrawFn) -> str:
    """Generated Markdown: headings, paragraphs, lists, fenced code, tables, front matter."""
    blocks: list[str] = []
    if draw(st.booleans()):
        blocks.append("---\ntitle: generated\ntags: [a, b]\n---")
    for _ in range(draw(st.integers(0, 14))):
        kind = draw(st.sampled_from(["heading", "para", "list", "code", "table", "raw"]))
        if kind == "heading":
            level = draw(st.integers(1, 6))
            blocks.append("#" * level + " " + draw(_SENTENCE))
        elif kind == "para":
            blocks.append("\n".join(draw(st.lists(_SENTENCE, min_size=1, max_size=6))))
        elif kind == "list":
            marker = draw(st.sampled_from(["-", "*", "+", "1."]))
            items = draw(st.lists(_SENTENCE, min_size=1, max_size=6))
            blocks.append("\n".join(f"{marker} {item}" for item in items))
        elif kind == "code":
            fence = draw(st.sampled_from(["```", "~~~"]))
            body = "\n".join(draw(st.lists(_SENTENCE, max_size=6)))
            closed = draw(st.booleans())
            blocks.append(f"{fence}python\n{body}" + (f"\n{fence}" if closed else ""))
        elif kind == "table":
            rows = draw(st.lists(st.lists(_SENTENCE, min_size=2, max_size=2), max_size=5))
            lines = ["| a | b |", "|---|---|", *(f"| {x} | {y} |" for x, y in rows)]
            blocks.append("\n".join(lines))
        else:
            blocks.append(draw(unicode_texts()))
        separator = draw(st.sampled_from(["\n\n", "\n", "\n\n\n"]))
        blocks.append(separator)
    return "".join(blocks)


def covered_mask(text: str, spans: list[tuple[int, int]]) -> bytearray:
    mask = bytearray(len(text))
    for start, end in spans:
        mask[start:end] = b"\x01" * (end - start)
    return mask


def assert_covers_non_whitespace(text: str, spans: list[tuple[int, int]]) -> None:
    mask = covered_mask(text, spans)
    missing = [i for i, ch in enumerate(text) if not ch.isspace() and not mask[i]]
    assert not missing, f"uncovered non-whitespace at {missing[:5]}: {text[missing[0]]!r}"


def assert_stripped_ordered_spans(text: str, spans: list[tuple[int, int]]) -> None:
    previous_end = 0
    for start, end in spans:
        assert previous_end <= start < end <= len(text), (previous_end, start, end)
        piece = text[start:end]
        assert piece == piece.strip(), repr(piece)
        previous_end = end


def assert_valid_chunks(
    chunks: list[Chunk], text: str, doc_id: str, max_tokens: int, counter: TokenCounter
) -> None:
    """The contract every chunker keeps, checked exhaustively."""
    for chunk in chunks:
        assert chunk.doc_id == doc_id
        assert chunk.id == f"{doc_id}#{chunk.start}-{chunk.end}"
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.text and chunk.text == chunk.text.strip()
        assert chunk.token_count == counter.count(chunk.text)
        assert chunk.token_count <= max_tokens
        assert chunk.sentences, "every chunk has at least one sentence"
        previous_end = 0
        for start, end in chunk.sentences:
            assert previous_end <= start < end <= len(chunk.text), chunk.sentences
            piece = chunk.text[start:end]
            assert piece == piece.strip()
            previous_end = end
        assert_covers_non_whitespace(chunk.text, list(chunk.sentences))
    assert len({c.id for c in chunks}) == len(chunks), "chunk ids are unique"
    assert_covers_non_whitespace(text, [(c.start, c.end) for c in chunks])
