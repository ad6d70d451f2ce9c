"""Markdown block structure, as far as chunking needs it.

Chunks that follow the document's own structure (a heading with its paragraphs, a whole list
item, an intact table or code block) are easier to retrieve and to read than fixed windows.
This is a single linear pass over the lines, not a full CommonMark parser: it recognises YAML
front matter, ATX headings, fenced code (``` and ~~~; an unclosed fence runs to the end),
pipe tables (rows starting with ``|``, or a header row followed by a ``---|---`` delimiter
row), list items (``-``, ``*``, ``+``, ``1.``, ``1)``; lazy continuation lines belong to the
item) and paragraphs separated by blank lines. Setext headings and indented code are read as
paragraphs.

Every block is stripped of surrounding whitespace, blocks are ordered and non-overlapping, and
together they cover every non-whitespace character of the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

BlockKind = Literal["heading", "paragraph", "list_item", "code", "table", "front_matter"]

_INDENT = re.compile(r"[^\S\n]*")
_FENCE = re.compile(r"(`{3,}|~{3,})")
_HEADING = re.compile(r"(#{1,6})(?=[^\S\n]|$)")
_LIST_MARKER = re.compile(r"(?:[-*+]|(\d{1,9})[.)])(?=[^\S\n]|$)")
_TABLE_DELIMITER = re.compile(r"[|:\-\s]+")
_FRONT_MATTER_OPEN = re.compile(r"---[^\S\n]*\n")
_FRONT_MATTER_CLOSE = re.compile(r"(?:---|\.\.\.)[^\S\n]*")
_MAX_BLOCK_INDENT = 3


@dataclass(frozen=True, slots=True)
class Block:
    """A structural block: ``text[start:end]``, its kind, and the headings above it.

    ``level`` is the heading level (1-6) for headings, the nesting depth (1 = top level) for
    list items, and 0 otherwise. ``heading_path`` includes a heading block's own title.
    """

    start: int
    end: int
    kind: BlockKind
    level: int
    heading_path: tuple[str, ...]


def parse_blocks(text: str) -> list[Block]:
    """Split Markdown (or plain text) into blocks in one linear pass over its lines."""
    return _BlockParser(text).parse()


class _BlockParser:
    """Line-at-a-time state machine; one open block at most."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.blocks: list[Block] = []
        self.headings: list[tuple[int, str]] = []
        self.path: tuple[str, ...] = ()
        self.open_kind: BlockKind | None = None
        self.open_start = 0
        self.open_end = 0
        self.open_level = 0
        self.fence: str | None = None

    def parse(self) -> list[Block]:
        text = self.text
        size = len(text)
        line_start = self._front_matter()
        while line_start < size:
            newline = text.find("\n", line_start)
            line_end = size if newline == -1 else newline
            self._line(line_start, line_end)
            line_start = line_end + 1
        self.fence = None  # an unclosed fence runs to the end of the text
        self._close()
        return self.blocks

    def _front_matter(self) -> int:
        """Emit a front-matter block if the text opens with a closed ``---`` fence."""
        text = self.text
        opening = _FRONT_MATTER_OPEN.match(text)
        if opening is None:
            return 0
        line_start = opening.end()
        while line_start <= len(text):
            newline = text.find("\n", line_start)
            line_end = len(text) if newline == -1 else newline
            if _FRONT_MATTER_CLOSE.fullmatch(text, line_start, line_end):
                self.blocks.append(Block(0, _rstrip(text, 0, line_end), "front_matter", 0, ()))
                return line_end + 1
            if newline == -1:
                return 0
            line_start = newline + 1
        return 0

    def _line(self, line_start: int, line_end: int) -> None:
        text = self.text
        first = _INDENT.match(text, line_start, line_end).end()  # type: ignore[union-attr]
        if self.fence is not None:
            self._code_line(first, line_end)
            return
        if first >= line_end:
            self._close()
            return
        last = _rstrip(text, first, line_end)
        indent = first - line_start
        char = text[first]
        if char in "`~" and indent <= _MAX_BLOCK_INDENT:
            fence = _FENCE.match(text, first, line_end)
            if fence is not None:
                self._close()
                self.fence = fence.group(1)
                self._open("code", first, last, 0)
                return
        if char == "#" and indent <= _MAX_BLOCK_INDENT:
            heading = _HEADING.match(text, first, line_end)
            if heading is not None:
                self._heading(len(heading.group(1)), heading.end(), first, last)
                return
        if self._table_line(first, last, line_end):
            return
        if char in "-*+0123456789":
            marker = _LIST_MARKER.match(text, first, line_end)
            # an ordered item interrupts a paragraph only when it starts at 1 (CommonMark)
            if marker is not None and not (
                self.open_kind == "paragraph"
                and marker.group(1) is not None
                and int(marker.group(1)) != 1
            ):
                self._close()
                self._open("list_item", first, last, indent // 2 + 1)
                return
        if self.open_kind in ("paragraph", "list_item"):
            self.open_end = last
            return
        self._close()
        self._open("paragraph", first, last, 0)

    def _code_line(self, first: int, line_end: int) -> None:
        text = self.text
        if first >= line_end:
            return
        fence = self.fence
        assert fence is not None
        last = _rstrip(text, first, line_end)
        self.open_end = last
        if (
            text.startswith(fence[0] * len(fence), first)
            and text.count(fence[0], first, last) == last - first
        ):
            self.fence = None
            self._close()

    def _heading(self, level: int, title_start: int, first: int, last: int) -> None:
        self._close()
        title = _strip_closing_hashes(self.text[title_start:last].strip())
        while self.headings and self.headings[-1][0] >= level:
            self.headings.pop()
        self.headings.append((level, title))
        self.path = tuple(t for _, t in self.headings)
        self.blocks.append(Block(first, last, "heading", level, self.path))

    def _table_line(self, first: int, last: int, line_end: int) -> bool:
        """Continue or start a table; True when the line was consumed as a table row."""
        text = self.text
        if text[first] == "|":
            if self.open_kind != "table":
                self._close()
                self._open("table", first, last, 0)
            else:
                self.open_end = last
            return True
        if text.find("|", first, last) == -1:
            return False
        if self.open_kind == "table":
            self.open_end = last
            return True
        # a header row without a leading pipe needs a delimiter row on the next line
        next_start = line_end + 1
        if next_start >= len(text):
            return False
        next_end = text.find("\n", next_start)
        if next_end == -1:
            next_end = len(text)
        delimiter = _TABLE_DELIMITER.fullmatch(text, next_start, next_end)
        if (
            delimiter is None
            or text.find("|", next_start, next_end) == -1
            or text.find("-", next_start, next_end) == -1
        ):
            return False
        self._close()
        self._open("table", first, last, 0)
        return True

    def _open(self, kind: BlockKind, start: int, end: int, level: int) -> None:
        self.open_kind = kind
        self.open_start = start
        self.open_end = end
        self.open_level = level

    def _close(self) -> None:
        if self.open_kind is None:
            return
        self.blocks.append(
            Block(self.open_start, self.open_end, self.open_kind, self.open_level, self.path)
        )
        self.open_kind = None


def _strip_closing_hashes(title: str) -> str:
    """``## Title ##`` -> ``Title`` (the closing run must follow a space, as in CommonMark)."""
    bare = title.rstrip("#")
    if bare == title or (bare and not bare[-1].isspace()):
        return title
    return bare.strip()


def _rstrip(text: str, start: int, end: int) -> int:
    """End offset of ``text[start:end]`` without trailing whitespace."""
    while end > start and text[end - 1].isspace():
        end -= 1
    return end
