"""Markdown block parsing: kinds, extents, heading paths, and coverage on generated text."""

from __future__ import annotations

import time

from chunking_strategies import (
    assert_covers_non_whitespace,
    assert_stripped_ordered_spans,
    markdown_texts,
    unicode_texts,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtrim.chunking.markdown import Block, parse_blocks


def shape(text: str) -> list[tuple[str, int, tuple[str, ...], str]]:
    return [(b.kind, b.level, b.heading_path, text[b.start : b.end]) for b in parse_blocks(text)]


DOCUMENT = """---
title: x
---
# Intro
Some text here.
More text.

## Part A ##
- item 1
  continued
- item 2
1. one

```python
x = 1
# not a heading

y = 2
```
| a | b |
|---|---|
| 1 | 2 |

h1 | h2
---|---
c | d
Not a row

### Sub
para
## Part B
~~~
unclosed
"""


def test_full_document() -> None:
    assert shape(DOCUMENT) == [
        ("front_matter", 0, (), "---\ntitle: x\n---"),
        ("heading", 1, ("Intro",), "# Intro"),
        ("paragraph", 0, ("Intro",), "Some text here.\nMore text."),
        ("heading", 2, ("Intro", "Part A"), "## Part A ##"),
        ("list_item", 1, ("Intro", "Part A"), "- item 1\n  continued"),
        ("list_item", 1, ("Intro", "Part A"), "- item 2"),
        ("list_item", 1, ("Intro", "Part A"), "1. one"),
        ("code", 0, ("Intro", "Part A"), "```python\nx = 1\n# not a heading\n\ny = 2\n```"),
        ("table", 0, ("Intro", "Part A"), "| a | b |\n|---|---|\n| 1 | 2 |"),
        ("table", 0, ("Intro", "Part A"), "h1 | h2\n---|---\nc | d"),
        ("paragraph", 0, ("Intro", "Part A"), "Not a row"),
        ("heading", 3, ("Intro", "Part A", "Sub"), "### Sub"),
        ("paragraph", 0, ("Intro", "Part A", "Sub"), "para"),
        ("heading", 2, ("Intro", "Part B"), "## Part B"),
        ("code", 0, ("Intro", "Part B"), "~~~\nunclosed"),
    ]


def test_block_is_a_frozen_record() -> None:
    block = parse_blocks("# T")[0]
    assert block == Block(0, 3, "heading", 1, ("T",))


def test_heading_rules() -> None:
    text = "#hashtag\n####### seven\n   ### Three spaces\n    # four spaces\n#\n## Closed ##\n## C#"
    assert [(k, lvl, t) for k, lvl, _, t in shape(text)] == [
        ("paragraph", 0, "#hashtag\n####### seven"),
        ("heading", 3, "### Three spaces"),
        ("paragraph", 0, "# four spaces"),
        ("heading", 1, "#"),
        ("heading", 2, "## Closed ##"),
        ("heading", 2, "## C#"),
    ]
    paths = [b.heading_path for b in parse_blocks(text) if b.kind == "heading"]
    assert paths == [("Three spaces",), ("",), ("", "Closed"), ("", "C#")]


def test_heading_path_pops_to_the_right_level() -> None:
    text = "# A\n## B\n### C\ntext\n## D\ntext\n# E\ntext"
    paths = [b.heading_path for b in parse_blocks(text) if b.kind == "paragraph"]
    assert paths == [("A", "B", "C"), ("A", "D"), ("E",)]


def test_front_matter_only_at_the_very_start_and_closed() -> None:
    assert shape("---\na: 1\n...\nbody")[0][0] == "front_matter"
    assert [k for k, *_ in shape("\n---\na: 1\n---\nbody")] == ["paragraph"]
    assert [k for k, *_ in shape("---\na: 1\nno closing")] == ["paragraph"]


def test_fences() -> None:
    text = "````\n```\nstill code\n````\nafter\n~~~ info\n```\n~~~~\n"
    assert shape(text) == [
        ("code", 0, (), "````\n```\nstill code\n````"),
        ("paragraph", 0, (), "after"),
        ("code", 0, (), "~~~ info\n```\n~~~~"),
    ]


def test_lists() -> None:
    text = "- a\n* b\n+ c\n1. d\n2) e\n  - nested\nlazy line\n\n-not a list\n+1 vote"
    assert [(k, lvl, t) for k, lvl, _, t in shape(text)] == [
        ("list_item", 1, "- a"),
        ("list_item", 1, "* b"),
        ("list_item", 1, "+ c"),
        ("list_item", 1, "1. d"),
        ("list_item", 1, "2) e"),
        ("list_item", 2, "- nested\nlazy line"),
        ("paragraph", 0, "-not a list\n+1 vote"),
    ]


def test_ordered_item_other_than_one_does_not_interrupt_a_paragraph() -> None:
    text = "Revenue grew in\n2020. Then it fell.\n1. but this is a list"
    assert [k for k, *_ in shape(text)] == ["paragraph", "list_item"]


def test_table_rows_need_a_leading_pipe_or_a_delimiter_row() -> None:
    assert [k for k, *_ in shape("a | b\nc | d")] == ["paragraph"]
    assert [k for k, *_ in shape("a | b\n:--|--:\nc | d")] == ["table"]


def test_empty_and_whitespace() -> None:
    assert parse_blocks("") == []
    assert parse_blocks(" \n\t\n  ") == []


@settings(max_examples=200, deadline=None)
@given(st.one_of(markdown_texts(), unicode_texts(), st.text()))
def test_blocks_are_stripped_ordered_and_cover_everything(text: str) -> None:
    blocks = parse_blocks(text)
    spans = [(b.start, b.end) for b in blocks]
    assert_stripped_ordered_spans(text, spans)
    assert_covers_non_whitespace(text, spans)
    for block in blocks:
        if block.kind == "heading":
            assert 1 <= block.level <= 6
            assert block.heading_path, "a heading is in its own path"
        assert len(block.heading_path) <= 6


def test_linear_time_on_a_large_document() -> None:
    unit = "# Title\n\nSome text. More text.\n- item\n| a | b |\n```\ncode\n```\n\n"
    text = unit * 20_000  # ~1.3 MB, 180k lines
    began = time.perf_counter()
    blocks = parse_blocks(text)
    assert time.perf_counter() - began < 10.0
    assert len(blocks) == 5 * 20_000
