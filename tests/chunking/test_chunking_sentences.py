"""Sentence segmentation: hand-checked hard cases and span invariants on random text."""

from __future__ import annotations

import time

import pytest
from chunking_strategies import (
    assert_covers_non_whitespace,
    assert_stripped_ordered_spans,
    markdown_texts,
    unicode_texts,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtrim.chunking.sentences import split_lines, split_sentences
from ragtrim.errors import InputError


def sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in split_sentences(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # abbreviations
        (
            "Dr. Smith went to Washington. He arrived at 5 p.m. Then he left.",
            ["Dr. Smith went to Washington.", "He arrived at 5 p.m.", "Then he left."],
        ),
        (
            "The meeting is at 10 a.m. tomorrow. Fine.",
            ["The meeting is at 10 a.m. tomorrow.", "Fine."],
        ),
        (
            "Mr. and Mrs. Smith came. Prof. J. Smith, Ph.D. was there.",
            ["Mr. and Mrs. Smith came.", "Prof. J. Smith, Ph.D. was there."],
        ),
        (
            "See Fig. 3 and No. 5, e.g. this, i.e. that. Cats vs. dogs.",
            ["See Fig. 3 and No. 5, e.g. this, i.e. that.", "Cats vs. dogs."],
        ),
        ("e.g. The Beatles. i.e. the band.", ["e.g. The Beatles.", "i.e. the band."]),
        (
            "Apples, pears, etc. are fruit. We bought apples, pears, etc. Then we left.",
            ["Apples, pears, etc. are fruit.", "We bought apples, pears, etc.", "Then we left."],
        ),
        (
            "Smith et al. showed this. As in Smith et al. The end.",
            ["Smith et al. showed this.", "As in Smith et al.", "The end."],
        ),
        (
            "The answer is no. Then pp. 10-12 on Dec. 25.",
            ["The answer is no.", "Then pp. 10-12 on Dec. 25."],
        ),
        # initials and dotted acronyms
        ("J. R. R. Tolkien wrote books. He died.", ["J. R. R. Tolkien wrote books.", "He died."]),
        ("John F. Kennedy spoke. It rained.", ["John F. Kennedy spoke.", "It rained."]),
        (
            "The U.S. Army is big. In the U.S. The end.",
            ["The U.S. Army is big.", "In the U.S.", "The end."],
        ),
        ("She lives in the U.S. and works.", ["She lives in the U.S. and works."]),
        # numbers, versions, URLs, e-mails
        (
            "Pi is 3.14 and v3.4.1 is out. It costs $1,000.50. Done.",
            ["Pi is 3.14 and v3.4.1 is out.", "It costs $1,000.50.", "Done."],
        ),
        (
            "Visit https://example.com/a.b?x=1. Mail a.b@c.org now! Read file.txt please.",
            ["Visit https://example.com/a.b?x=1.", "Mail a.b@c.org now!", "Read file.txt please."],
        ),
        ("In 2020. The year ended.", ["In 2020.", "The year ended."]),
        # ellipsis, ?! runs
        ("Wait... what? Really?! Yes.", ["Wait... what?", "Really?!", "Yes."]),
        ("Version 2.0 is out… Maybe not.", ["Version 2.0 is out…", "Maybe not."]),
        ("Wait...and then. OK", ["Wait...and then.", "OK"]),
        # closing quotes and brackets
        ('He said "stop." Then he left.', ['He said "stop."', "Then he left."]),
        ('"Stop." he said. Next one.', ['"Stop." he said.', "Next one."]),
        ('"Why?" She left. "Why?" she asked.', ['"Why?"', "She left.", '"Why?" she asked.']),
        ("(See above.) Next point.", ["(See above.)", "Next point."]),
        ("**Note.** Then more.", ["**Note.**", "Then more."]),
        # CJK
        ("你好。世界！好吗？ok", ["你好。", "世界！", "好吗？", "ok"]),
        ("「こんにちは。」と言った。", ["「こんにちは。」", "と言った。"]),
        # line structure
        ("x.\n\ny", ["x.", "y"]),
        ("one\n\n\ntwo three", ["one", "two three"]),
        (
            "This line is hard-wrapped and\ncontinues here. Values:\n1. one\n2. two",
            ["This line is hard-wrapped and\ncontinues here.", "Values:", "1. one", "2. two"],
        ),
        (
            "Title line\nFirst sentence here. Second.\n- item one\n- item two\n# Heading\ntext",
            [
                "Title line",
                "First sentence here.",
                "Second.",
                "- item one",
                "- item two",
                "# Heading",
                "text",
            ],
        ),
        ("# 1. Intro. Part two\nBody text.", ["# 1. Intro. Part two", "Body text."]),
        (
            "Rows below.\n| a. b | c |\n|---|---|\n```\ncode. more\n```",
            ["Rows below.", "| a. b | c |", "|---|---|", "```", "code.", "more", "```"],
        ),
        ("Authors: Smith, J.,\nJones, K. et al.", ["Authors: Smith, J.,\nJones, K. et al."]),
        (
            "Roger, Michel\n2009-10-07\nDOI:10.1371/x.y\nLicense:cc-by",
            [
                "Roger, Michel",
                "2009-10-07",
                "DOI:10.1371/x.y",
                "License:cc-by",
            ],
        ),
        # no punctuation at all
        (
            "no punctuation here\nsecond line\nthird",
            ["no punctuation here", "second line", "third"],
        ),
        ("just some words without any end", ["just some words without any end"]),
        ("1. First item\n2. Second item", ["1. First item", "2. Second item"]),
        ("  padded sentence.  \r\n", ["padded sentence."]),
    ],
)
def test_hard_cases(text: str, expected: list[str]) -> None:
    assert sentences(text) == expected


def test_empty_and_whitespace_only() -> None:
    assert split_sentences("") == []
    assert split_sentences(" \n\t\u3000\n\n ") == []


def test_sub_range_gives_absolute_offsets() -> None:
    text = "Skip this. Keep one. Keep two. Skip too."
    start = text.index("Keep")
    end = text.index("Skip too")
    spans = split_sentences(text, start, end)
    assert [text[a:b] for a, b in spans] == ["Keep one.", "Keep two."]
    assert spans[0] == (11, 20)


@pytest.mark.parametrize(("start", "end"), [(-1, 3), (2, 1), (0, 99)])
def test_invalid_range_is_an_input_error(start: int, end: int) -> None:
    with pytest.raises(InputError, match="outside the text"):
        split_sentences("some text", start, end)


def test_split_lines() -> None:
    text = "  a = 1  \n\n\tb = 2\n   \nc"
    assert [text[a:b] for a, b in split_lines(text)] == ["a = 1", "b = 2", "c"]


@settings(max_examples=200, deadline=None)
@given(st.one_of(unicode_texts(), markdown_texts(), st.text()))
def test_spans_are_stripped_ordered_and_cover_everything(text: str) -> None:
    spans = split_sentences(text)
    assert_stripped_ordered_spans(text, spans)
    assert_covers_non_whitespace(text, spans)


@settings(max_examples=100, deadline=None)
@given(unicode_texts(), st.data())
def test_sub_range_spans_stay_inside(text: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    spans = split_sentences(text, start, end)
    assert all(start <= a < b <= end for a, b in spans)
    assert_stripped_ordered_spans(text, spans)
    assert_covers_non_whitespace(text[start:end], [(a - start, b - start) for a, b in spans])


def test_linear_time_on_large_inputs() -> None:
    """Pathological shapes finish fast: many terminators, long words, long whitespace."""
    shapes = [
        "a. " * 100_000,
        "x" * 300_000 + ". Next.",
        "Dr." + " " * 300_000 + "Smith.",
        "a.b." * 75_000,
        "word\n" * 60_000,
    ]
    for text in shapes:
        began = time.perf_counter()
        spans = split_sentences(text)
        assert time.perf_counter() - began < 5.0
        assert_covers_non_whitespace(text, spans)
