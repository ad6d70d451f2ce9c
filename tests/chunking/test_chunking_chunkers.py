"""Chunkers: the chunk contract on random text, and each packing rule on crafted documents."""

from __future__ import annotations

import json
import random

import pytest
from chunking_strategies import (
    assert_covers_non_whitespace,
    assert_valid_chunks,
    markdown_texts,
    unicode_texts,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtrim.chunking import (
    SentenceWindowChunker,
    StructureChunker,
    TokenChunker,
    split_on_tokens,
    split_sentences,
)
from ragtrim.errors import ConfigError
from ragtrim.stage import Stage
from ragtrim.tokens import TokenCounter, get_counter
from ragtrim.types import Chunk, Document

COUNTER = get_counter()


def words(n: int, word: str = "word") -> str:
    """A sentence of ``n`` words and a period: exactly n + 1 o200k tokens for "word"."""
    return " ".join([word] * n) + "."


def doc(text: str, **metadata: object) -> Document:
    return Document(id="doc-1", text=text, metadata=metadata)


def run(chunker: Stage, text: str) -> list[Chunk]:
    chunks = chunker.run(doc(text), COUNTER)  # type: ignore[attr-defined]
    return chunks


# --------------------------------------------------------------------------- contract


ANY_TEXT = st.one_of(unicode_texts(), markdown_texts(), st.text())


@settings(max_examples=150, deadline=None)
@given(ANY_TEXT, st.integers(4, 48), st.data())
def test_structure_chunker_contract(text: str, max_tokens: int, data: st.DataObject) -> None:
    min_tokens = data.draw(st.integers(1, max_tokens))
    target = data.draw(st.integers(min_tokens, max_tokens))
    chunker = StructureChunker(
        min_tokens=min_tokens,
        target_tokens=target,
        max_tokens=max_tokens,
        overlap_tokens=data.draw(st.integers(0, target - 1)),
        respect_sections=data.draw(st.booleans()),
    )
    chunks = run(chunker, text)
    assert_valid_chunks(chunks, text, "doc-1", max_tokens, COUNTER)
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
    assert run(chunker, text) == chunks, "deterministic"


@settings(max_examples=100, deadline=None)
@given(ANY_TEXT, st.integers(4, 48), st.data())
def test_token_chunker_contract(text: str, size: int, data: st.DataObject) -> None:
    chunker = TokenChunker(chunk_tokens=size, overlap_tokens=data.draw(st.integers(0, size - 1)))
    chunks = run(chunker, text)
    assert_valid_chunks(chunks, text, "doc-1", size, COUNTER)
    assert run(chunker, text) == chunks


@settings(max_examples=100, deadline=None)
@given(ANY_TEXT, st.integers(4, 48), st.integers(0, 3))
def test_sentence_window_chunker_contract(text: str, max_tokens: int, window: int) -> None:
    chunker = SentenceWindowChunker(window=window, max_tokens=max_tokens)
    chunks = run(chunker, text)
    assert_valid_chunks(chunks, text, "doc-1", max_tokens, COUNTER)
    assert run(chunker, text) == chunks


@settings(max_examples=60, deadline=None)
@given(st.one_of(unicode_texts(), markdown_texts()), st.integers(1, 40))
def test_split_on_tokens_contract(text: str, limit: int) -> None:
    limit = max(limit, 4)
    pieces = split_on_tokens(text, 0, len(text), limit, COUNTER)
    spans = [(a, b) for a, b, _ in pieces]
    for a, b, n in pieces:
        assert n == COUNTER.count(text[a:b]) <= limit
        assert text[a:b] == text[a:b].strip() != ""
    assert all(b <= a2 for (_, b), (a2, _) in zip(spans, spans[1:], strict=False))
    assert_covers_non_whitespace(text, spans)


@pytest.mark.parametrize(
    "chunker",
    [StructureChunker(), TokenChunker(), SentenceWindowChunker()],
    ids=["structure", "token", "sentence-window"],
)
@pytest.mark.parametrize("text", ["", " ", "\n\n\t \u3000\n"])
def test_empty_documents_give_no_chunks(chunker: Stage, text: str) -> None:
    assert run(chunker, text) == []


def test_single_chunk_document_is_exact() -> None:
    text = "# Title\n\nHello world. Second sentence here.\n"
    (chunk,) = StructureChunker().run(doc(text, source="unit", year=2024), COUNTER)
    assert chunk.text == "# Title\n\nHello world. Second sentence here."
    assert (chunk.start, chunk.end) == (0, 43)
    assert chunk.id == "doc-1#0-43"
    assert chunk.token_count == COUNTER.count(chunk.text)
    assert chunk.section == ("Title",)
    assert chunk.sentences == ((0, 7), (9, 21), (22, 43))
    assert chunk.metadata == {"source": "unit", "year": 2024}
    assert chunk.doc_id == "doc-1"


def test_chunks_accept_document_dicts() -> None:
    chunks = StructureChunker().run({"id": "d", "text": "Hi there.", "title": "T"}, COUNTER)  # type: ignore[arg-type]
    assert [c.id for c in chunks] == ["d#0-9"]
    assert chunks[0].title == "T"


# --------------------------------------------------------------------------- StructureChunker


def test_heading_sticks_to_what_follows() -> None:
    text = f"{words(20)}\n\n### H3\n\n{words(30)}"
    chunks = run(StructureChunker(min_tokens=10, target_tokens=30, max_tokens=40), text)
    assert [c.text for c in chunks] == [words(20), f"### H3\n\n{words(30)}"]
    assert chunks[1].section == ("H3",)
    assert chunks[0].section == ()


def test_section_break_starts_a_new_chunk() -> None:
    text = f"## A\n\n{words(20)}\n\n## B\n\n{words(20)}"
    respected = run(StructureChunker(min_tokens=10, target_tokens=100, max_tokens=200), text)
    assert [c.text[:4] for c in respected] == ["## A", "## B"]
    assert [c.section for c in respected] == [("A",), ("B",)]
    ignored = StructureChunker(
        min_tokens=10, target_tokens=100, max_tokens=200, respect_sections=False
    )
    assert [c.text for c in run(ignored, text)] == [text]


def test_section_break_waits_until_min_tokens() -> None:
    text = f"## A\n\n{words(20)}\n\n## B\n\n{words(20)}"
    chunks = run(StructureChunker(min_tokens=30, target_tokens=100, max_tokens=200), text)
    assert [c.text for c in chunks] == [text]


def test_level_three_heading_is_not_a_section_break() -> None:
    text = f"## A\n\n{words(20)}\n\n### B\n\n{words(20)}"
    chunks = run(StructureChunker(min_tokens=10, target_tokens=100, max_tokens=200), text)
    assert [c.text for c in chunks] == [text]


def test_packs_blocks_up_to_about_target() -> None:
    paragraphs = [words(9) for _ in range(12)]  # 10 tokens each
    text = "\n\n".join(paragraphs)
    chunks = run(StructureChunker(min_tokens=5, target_tokens=32, max_tokens=40), text)
    # 3 paragraphs = 30 tokens + 2 joins ~ 32 = target; each chunk is whole paragraphs
    assert [c.text for c in chunks] == ["\n\n".join(paragraphs[:3])] * 4
    assert [c.token_count for c in chunks] == [COUNTER.count("\n\n".join(paragraphs[:3]))] * 4


def test_oversized_paragraph_splits_on_sentences() -> None:
    sentences = [f"Sentence {i} " + words(8) for i in range(10)]
    text = " ".join(sentences)
    chunks = run(StructureChunker(min_tokens=5, target_tokens=30, max_tokens=40), text)
    assert len(chunks) > 1
    spans = split_sentences(text)
    sentence_starts = {a for a, _ in spans}
    sentence_ends = {b for _, b in spans}
    for chunk in chunks:
        assert chunk.start in sentence_starts and chunk.end in sentence_ends
        assert chunk.token_count <= 40
        assert all(
            chunk.text[a:b] in sentences or chunk.text[a:b].startswith("Sentence")
            for a, b in chunk.sentences
        )


def test_oversized_sentence_splits_on_words() -> None:
    rng = random.Random(7)
    vocabulary = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    text = " ".join(rng.choice(vocabulary) for _ in range(300))
    chunks = run(StructureChunker(min_tokens=4, target_tokens=12, max_tokens=16), text)
    assert len(chunks) >= 300 // 16
    for chunk in chunks:
        assert chunk.token_count <= 16
        assert chunk.start == 0 or text[chunk.start - 1] == " "
        assert chunk.end == len(text) or text[chunk.end] == " "
        # the one (clipped) sentence spans the whole chunk
        assert chunk.sentences == ((0, len(chunk.text)),)


def test_spaceless_text_splits_on_token_boundaries() -> None:
    rng = random.Random(11)
    text = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(20_000))
    chunks = run(StructureChunker(min_tokens=4, target_tokens=64, max_tokens=64), text)
    assert "".join(c.text for c in chunks) == text
    counts = [c.token_count for c in chunks]
    assert max(counts) <= 64
    assert sum(counts[:-1]) / len(counts[:-1]) >= 60, "cuts land on token boundaries"


def test_code_block_splits_on_lines() -> None:
    body = "\n".join(f"value_{i} = compute({i}, {i * 7})" for i in range(60))
    text = f"```python\n{body}\n```"
    chunks = run(StructureChunker(min_tokens=5, target_tokens=40, max_tokens=50), text)
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.start == 0 or text[chunk.start - 1] == "\n"
        assert chunk.end == len(text) or text[chunk.end] == "\n"
        assert chunk.sentences == tuple((i, j) for i, j in _line_spans(chunk.text)), (
            "code sentences are lines"
        )


def _line_spans(text: str) -> list[tuple[int, int]]:
    spans, position = [], 0
    for line in text.split("\n"):
        spans.append((position, position + len(line)))
        position += len(line) + 1
    return spans


def test_table_splits_on_rows() -> None:
    rows = "\n".join(f"| row {i} | value {i * 3} | note |" for i in range(40))
    text = f"| a | b | c |\n|---|---|---|\n{rows}"
    chunks = run(StructureChunker(min_tokens=5, target_tokens=40, max_tokens=50), text)
    assert len(chunks) > 1
    assert all(c.text.startswith("|") and c.text.endswith("|") for c in chunks)


def test_small_trailing_piece_merges_into_previous_chunk() -> None:
    text = f"{words(30)}\n\n{words(3)}"
    merged = run(StructureChunker(min_tokens=10, target_tokens=30, max_tokens=40), text)
    assert [c.text for c in merged] == [text]
    kept_apart = run(StructureChunker(min_tokens=10, target_tokens=30, max_tokens=34), text)
    assert [c.text for c in kept_apart] == [words(30), words(3)]


def test_small_section_tail_does_not_merge_across_a_section_break() -> None:
    text = f"## A\n\n{words(30)}\n\n## B\n\n{words(2)}"
    chunks = run(StructureChunker(min_tokens=10, target_tokens=30, max_tokens=60), text)
    assert [c.section for c in chunks] == [("A",), ("B",)]


def test_overlap_reuses_whole_sentences_of_the_previous_chunk() -> None:
    sentences = [f"Point {i} " + words(5 + i % 4) for i in range(40)]
    text = " ".join(sentences)
    chunker = StructureChunker(min_tokens=5, target_tokens=40, max_tokens=60, overlap_tokens=20)
    chunks = run(chunker, text)
    plain = run(StructureChunker(min_tokens=5, target_tokens=40, max_tokens=60), text)
    assert [c.end for c in chunks] == [c.end for c in plain], "overlap only moves starts"
    assert chunks[0].start == plain[0].start
    sentence_starts = {a for a, _ in split_sentences(text)}
    for previous, chunk, own in zip(chunks[:-1], chunks[1:], plain[1:], strict=True):
        assert previous.start < chunk.start < own.start < previous.end + 2
        assert chunk.start in sentence_starts
        overlap = [text[a:b] for a, b in split_sentences(text, chunk.start, own.start)]
        assert len(overlap) >= 1 and sum(COUNTER.count(s) for s in overlap) <= 20
        assert chunk.token_count <= 60


def test_no_overlap_into_a_chunk_that_opens_a_section() -> None:
    text = f"## A\n\n{words(10)} {words(10)}\n\n## B\n\n{words(10)}"
    chunker = StructureChunker(min_tokens=5, target_tokens=30, max_tokens=60, overlap_tokens=15)
    chunks = run(chunker, text)
    assert [c.text[:4] for c in chunks] == ["## A", "## B"]


def test_ids_are_deterministic_and_metadata_is_inherited() -> None:
    text = "\n\n".join(f"## S{i}\n\n{words(30)}" for i in range(5))
    document = doc(text, lang="en")
    first = StructureChunker().run(document, COUNTER)
    second = StructureChunker().run(document, COUNTER)
    assert [c.id for c in first] == [c.id for c in second]
    assert [c.id for c in first] == [f"doc-1#{c.start}-{c.end}" for c in first]
    assert all(c.metadata == {"lang": "en"} for c in first)


def test_custom_counter_without_token_offsets() -> None:
    characters = TokenCounter(counter=len, name="characters")
    text = "# T\n\n" + "x" * 500 + " " + "Short sentence. " * 20
    chunks = StructureChunker(min_tokens=10, target_tokens=50, max_tokens=64).run(
        doc(text), characters
    )
    assert_valid_chunks(chunks, text, "doc-1", 64, characters)
    with pytest.raises(ConfigError, match="tiktoken"):
        TokenChunker().run(doc(text), characters)


# --------------------------------------------------------------------------- TokenChunker


def test_token_windows_are_exact_and_step_by_size_minus_overlap() -> None:
    rng = random.Random(3)
    vocabulary = ["river", "stone", "light", "quiet", "north", "paper", "glass", "field"]
    text = " ".join(rng.choice(vocabulary) for _ in range(2_000))
    starts = COUNTER.token_starts(text)
    chunks = run(TokenChunker(chunk_tokens=50, overlap_tokens=10), text)
    expected_starts = [starts[i] for i in range(0, len(starts), 40)]
    expected_starts = expected_starts[: len(chunks)]
    assert [c.start for c in chunks] == [s + (text[s] == " ") for s in expected_starts]
    assert all(c.token_count == 50 for c in chunks[:-1])
    assert chunks[-1].end == len(text)


def test_token_chunker_without_overlap_partitions_the_text() -> None:
    text = " ".join(f"token{i}" for i in range(1_000))
    chunks = run(TokenChunker(chunk_tokens=64), text)
    assert all(a.end < b.start for a, b in zip(chunks, chunks[1:], strict=False))
    assert sum(c.token_count for c in chunks) == COUNTER.count(text)


# --------------------------------------------------------------------------- SentenceWindowChunker


def test_sentence_windows() -> None:
    text = "One a. Two b. Three c. Four d."
    chunks = run(SentenceWindowChunker(window=1), text)
    assert [c.text for c in chunks] == [
        "One a. Two b.",
        "One a. Two b. Three c.",
        "Two b. Three c. Four d.",
        "Three c. Four d.",
    ]
    assert chunks[1].sentences == ((0, 6), (7, 13), (14, 22))
    alone = run(SentenceWindowChunker(window=0), text)
    assert [c.text for c in alone] == ["One a.", "Two b.", "Three c.", "Four d."]


def test_sentence_window_trims_the_longer_outer_neighbour() -> None:
    long_sentence = "Long " + words(30)
    text = f"Short one. Center here. {long_sentence}"
    limit = COUNTER.count("Short one. Center here.") + 1
    chunks = run(SentenceWindowChunker(window=1, max_tokens=limit), text)
    # "Center here." keeps its short neighbour and drops the long one: the same span as the
    # window of "Short one.", emitted once; the long sentence alone is cut into pieces
    assert chunks[0].text == "Short one. Center here."
    assert chunks[1].text.startswith("Long word")
    assert all(not c.text.startswith("Center") for c in chunks)


def test_sentence_window_trims_the_side_with_more_neighbours_first() -> None:
    text = "Aa one. Bb two. Cc three. Dd four five."
    limit = COUNTER.count("Bb two. Cc three. Dd four five.")
    chunks = run(SentenceWindowChunker(window=2, max_tokens=limit), text)
    texts = [c.text for c in chunks]
    assert "Bb two. Cc three. Dd four five." in texts  # center Cc dropped Aa (2 left, 1 right)
    assert text not in texts


def test_sentence_window_splits_a_sentence_over_the_limit() -> None:
    text = "Tiny. " + words(100) + " Tail."
    chunks = run(SentenceWindowChunker(window=1, max_tokens=20), text)
    assert_valid_chunks(chunks, text, "doc-1", 20, COUNTER)
    assert len(chunks) >= 101 // 20 + 2


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"min_tokens": 0}, "min_tokens"),
        ({"min_tokens": 300}, "min_tokens=300, target_tokens=192"),
        ({"target_tokens": 300}, "target_tokens=300, max_tokens=256"),
        ({"overlap_tokens": 192}, r"overlap_tokens \(192\) must be < target_tokens \(192\)"),
        ({"overlap_tokens": -1}, "overlap_tokens"),
        ({"max_tokens": 3, "target_tokens": 3, "min_tokens": 1}, "max_tokens"),
        ({"max_tokenz": 100}, "unknown parameter; valid parameters: max_tokens, min_tokens"),
        ({"max_tokens": "lots"}, "max_tokens"),
    ],
)
def test_structure_config_errors_name_the_fields(params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        StructureChunker(**params)


@pytest.mark.parametrize(
    ("cls", "params", "message"),
    [
        (TokenChunker, {"chunk_tokens": 3}, "chunk_tokens"),
        (TokenChunker, {"overlap_tokens": 256}, r"overlap_tokens \(256\) must be < chunk_tokens"),
        (SentenceWindowChunker, {"window": -1}, "window"),
        (SentenceWindowChunker, {"max_tokens": 2}, "max_tokens"),
    ],
)
def test_other_config_errors(cls: type[Stage], params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cls(**params)


@pytest.mark.parametrize(
    "chunker",
    [
        StructureChunker(min_tokens=10, target_tokens=90, max_tokens=120, overlap_tokens=5),
        TokenChunker(chunk_tokens=64, overlap_tokens=8),
        SentenceWindowChunker(window=2, max_tokens=100),
    ],
    ids=["structure", "token", "sentence-window"],
)
def test_stage_round_trip(chunker: Stage) -> None:
    data = json.loads(json.dumps(chunker.to_dict()))
    rebuilt = Stage.from_dict(data)
    assert rebuilt == chunker
    assert type(rebuilt).kind == "chunker"


def test_chunk_round_trip() -> None:
    text = "# T\n\n" + " ".join(f"Sentence {i} is here." for i in range(80))
    for chunk in run(StructureChunker(), text):
        data = json.loads(json.dumps(chunk.to_dict()))
        assert Chunk.from_dict(data) == chunk


# --------------------------------------------------------------------------- slow


@pytest.mark.slow
@settings(max_examples=1500, deadline=None)
@given(ANY_TEXT, st.integers(4, 300), st.data())
def test_all_chunkers_contract_large_run(text: str, max_tokens: int, data: st.DataObject) -> None:
    min_tokens = data.draw(st.integers(1, max_tokens))
    target = data.draw(st.integers(min_tokens, max_tokens))
    structure = StructureChunker(
        min_tokens=min_tokens,
        target_tokens=target,
        max_tokens=max_tokens,
        overlap_tokens=data.draw(st.integers(0, target - 1)),
        respect_sections=data.draw(st.booleans()),
    )
    assert_valid_chunks(run(structure, text), text, "doc-1", max_tokens, COUNTER)
    token = TokenChunker(
        chunk_tokens=max_tokens, overlap_tokens=data.draw(st.integers(0, max_tokens - 1))
    )
    assert_valid_chunks(run(token, text), text, "doc-1", max_tokens, COUNTER)
    window = SentenceWindowChunker(window=data.draw(st.integers(0, 3)), max_tokens=max_tokens)
    assert_valid_chunks(run(window, text), text, "doc-1", max_tokens, COUNTER)


@pytest.mark.slow
def test_large_documents_keep_the_contract() -> None:
    rng = random.Random(5)
    spaceless = "".join(rng.choice("abcdefghij中😀") for _ in range(1_000_000))
    sections = []
    for i in range(3_000):
        sections.append(
            f"## Section {i}\n\n" + " ".join(f"Sentence {j} " + words(12) for j in range(8))
        )
        sections.append("```\n" + "\n".join(f"x = {j}" for j in range(20)) + "\n```")
    markdown = "\n\n".join(sections)
    for text in (spaceless, markdown):
        for chunker in (StructureChunker(), TokenChunker(), SentenceWindowChunker()):
            chunks = run(chunker, text)
            assert_valid_chunks(chunks, text, "doc-1", 256, COUNTER)
