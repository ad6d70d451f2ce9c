"""Rule-based sentence segmentation with exact character spans.

The packer keeps only the query-relevant sentences of a chunk, so a wrong boundary either cuts
a sentence in half (meaning lost) or glues two together (tokens wasted). The rules below are
deterministic, need no model, and run in linear time: one regex pass finds candidate
terminators, and each candidate is decided by looking at a bounded neighbourhood.

Rules, in order of precedence:

* A blank line always ends a sentence.
* ``。！？｡．`` (CJK terminators) always end a sentence, with any closing quotes/brackets.
* ``.``, ``!``, ``?``, ``…`` (and runs such as ``?!`` or ``...``) end a sentence only when
  followed, after optional closing quotes/brackets/emphasis, by whitespace or the end of the
  text: ``3.14``, ``v3.4.1``, ``1,000.5``, URLs, e-mails and file names never split.
* ``!``/``?``: split, except after a closing quote followed by a lowercase word
  (``"Why?" she asked``).
* An ellipsis splits only before an uppercase letter.
* A single ``.`` splits unless the word before it is an abbreviation: titles and reference
  words (``Dr.``, ``e.g.``, ``vs.``, ``Fig.``, ...) never split; ``No.``/``p.``/months do not
  split before a number; ``etc.``, ``a.m.``, ``Inc.``, ``et al.`` split only before an
  uppercase letter; initials (``J. R. R. Tolkien``) and dotted acronyms (``U.S.``) split only
  before a common sentence-opening word (``The``, ``It``, ``However``, ...); a list marker at
  the start of a line (``1.``, ``a.``, ``iv.``) never splits. After a closing quote, ``.``
  splits unless a lowercase word follows.
* Heading, table-row and code-fence lines are one sentence each (never split inside).
* A single newline ends a sentence when the next line starts a Markdown block (list item,
  heading, table row, code fence, block quote), when the current line is a heading, table row
  or fence, or when the current line ends in a letter, digit or closing bracket/quote (no
  terminal or continuation punctuation such as ``,;:-(``) and the next line starts with an
  uppercase letter or a digit. Hard-wrapped prose that breaks before a capitalised word is
  therefore split there: a deliberate trade-off for titles, author lines and bullet-less lists.
* A paragraph (text between blank lines) with no terminal punctuation at all is one sentence
  per line.

Only ``\\n`` is a line break (``\\r\\n`` works; other separators count as plain whitespace).
"""

from __future__ import annotations

import re

from ragtrim.errors import InputError

Span = tuple[int, int]

_CJK_TERMINATORS = frozenset("。！？｡．")
_STRONG_TERMINATORS = frozenset("!?‼⁇⁈⁉！？")
_TERMINATOR_CLASS = r".!?…。！？｡．‼⁇⁈⁉"
_CLOSER_CLASS = r"\"'”’»›)\]}」』）】〉》〕*_"
_OPENERS = "\"'“‘([{«¿¡*_"

_CANDIDATE = re.compile(rf"(?P<term>[{_TERMINATOR_CLASS}]+)(?P<close>[{_CLOSER_CLASS}]*)")
_ANY_TERMINATOR = re.compile(rf"[{_TERMINATOR_CLASS}]")
_BLANK_LINES = re.compile(r"\n[^\S\n]*\n(?:[^\S\n]*\n)*")
_NEXT_WORD = re.compile(r"\s*(\S{1,40})")
_INDENT = re.compile(r"[^\S\n]*")
# a line that begins a Markdown block: the newline before it always ends a sentence
_BLOCK_START = re.compile(
    r"[^\S\n]*(?:[-*+](?:\s|$)|\d{1,9}[.)](?:\s|$)|#{1,6}(?:\s|$)|\||```|~~~|>)"
)
# a line that is a sentence on its own: heading, table row, code fence
_WHOLE_LINE = re.compile(r"[^\S\n]{0,3}(?:#{1,6}(?:\s|$)|```|~~~)|[^\S\n]*\|")
_LIST_MARKER = re.compile(r"\d{1,3}|[A-Za-z]|[ivxlcIVXLC]{1,5}")
_DOTTED = re.compile(r"(?:[^\W\d_]{1,2}\.)+[^\W\d_]{1,2}")
_LIST_MARKER_MAX_PREFIX = 12
_PREV_WORD_MAX = 40

_CONTINUATION_ENDINGS = frozenset(",;:-–—/\\&+=([{")


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


# never end a sentence: they introduce what follows
_NEVER_FINAL = _wordset(
    "mr mrs ms mx dr prof rev hon gen col capt cmdr lt sgt maj gov sen rep pres supt st mt "
    "messrs mme mlle vs cf viz e.g i.e approx ca fig figs eq eqs ref refs vol vols sec secs "
    "ch chap pp art dept univ eds resp"
)
# do not end a sentence before a number ("No. 5", "Jan. 12", "p. 4")
_NUMBER_PREFIX = _wordset(
    "no nos p tab suppl para ex jan feb mar apr jun jul aug sep sept oct nov dec"
)
# often end a sentence: split only before an uppercase word
_MAYBE_FINAL = _wordset(
    "etc a.m p.m inc ltd co corp jr sr al bros llc plc esq ph.d m.d b.a m.a b.sc m.sc"
)
# after an initial or a dotted acronym, only these words signal a new sentence
_SENTENCE_STARTERS = _wordset(
    "The This That These Those It Its He She We They I You In On At For But And Or So If When "
    "While After Before However Therefore Thus Also A An There Here As Although Because Since "
    "Then Our My His Her Their What Why How Who Where Which Some Many Most All Each Not To From "
    "By With Yes Such Both Further Moreover In Finally First Second Third"
)


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Sentence spans over ``text[start:end]`` as absolute ``(start, end)`` offsets.

    Spans are stripped of surrounding whitespace, non-empty, ordered, non-overlapping, and
    together cover every non-whitespace character of the range.
    """
    stop = len(text) if end is None else end
    if not 0 <= start <= stop <= len(text):
        raise InputError(
            f"split_sentences: range [{start}, {end}) is outside the text (length {len(text)})"
        )
    spans: list[Span] = []
    segment_start = start
    for blank in _BLANK_LINES.finditer(text, start, stop):
        _split_paragraph(text, segment_start, blank.start(), spans)
        segment_start = blank.end()
    _split_paragraph(text, segment_start, stop, spans)
    return spans


def split_lines(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """One stripped span per non-blank line of ``text[start:end]`` (code and table rows)."""
    stop = len(text) if end is None else end
    spans: list[Span] = []
    line_start = start
    while line_start < stop:
        newline = text.find("\n", line_start, stop)
        line_end = stop if newline == -1 else newline
        _append_stripped(text, line_start, line_end, spans)
        line_start = line_end + 1
    return spans


def _split_paragraph(text: str, start: int, end: int, spans: list[Span]) -> None:
    """Split text between blank lines: terminators within lines, then the newline rules."""
    if start >= end:
        return
    has_terminator = _ANY_TERMINATOR.search(text, start, end) is not None
    sentence_start = start
    line_start = start
    while True:
        newline = text.find("\n", line_start, end)
        line_end = end if newline == -1 else newline
        whole_line = _WHOLE_LINE.match(text, line_start, line_end) is not None
        if not whole_line:
            for match in _CANDIDATE.finditer(text, line_start, line_end):
                if _ends_sentence(text, match, line_start, end):
                    _append_stripped(text, sentence_start, match.end(), spans)
                    sentence_start = match.end()
        if newline == -1:
            break
        next_start = newline + 1
        if not has_terminator or _newline_ends_sentence(
            text, line_start, line_end, next_start, end, whole_line
        ):
            _append_stripped(text, sentence_start, newline, spans)
            sentence_start = next_start
        line_start = next_start
    _append_stripped(text, sentence_start, end, spans)


def _append_stripped(text: str, start: int, end: int, spans: list[Span]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end:
        spans.append((start, end))


def _newline_ends_sentence(
    text: str, line_start: int, line_end: int, next_start: int, end: int, whole_line: bool
) -> bool:
    if whole_line:
        return True
    next_line_end = text.find("\n", next_start, end)
    if next_line_end == -1:
        next_line_end = end
    if _BLOCK_START.match(text, next_start, next_line_end):
        return True
    last = line_end - 1
    while last >= line_start and text[last].isspace():
        last -= 1
    first = _INDENT.match(text, next_start, next_line_end).end()  # type: ignore[union-attr]
    if last < line_start or first >= next_line_end:
        return False
    ending = text[last]
    if ending in _CONTINUATION_ENDINGS or _ANY_TERMINATOR.match(ending):
        return False
    opening = text[first]
    return opening.isupper() or opening.isdigit()


def _ends_sentence(text: str, match: re.Match[str], line_start: int, end: int) -> bool:
    """Decide one terminator candidate (``match``) inside the paragraph ending at ``end``."""
    term = match.group("term")
    if any(ch in _CJK_TERMINATORS for ch in term):
        return True
    after = match.end()
    if after < end and not text[after].isspace():
        return False
    next_match = _NEXT_WORD.match(text, after, end)
    if next_match is None:
        return True
    next_word = next_match.group(1).lstrip(_OPENERS)
    if not next_word:
        return True
    first = next_word[0]
    closed = match.end("close") > match.end("term")
    if any(ch in _STRONG_TERMINATORS for ch in term):
        return not (closed and first.islower())
    if "…" in term or len(term) >= 3:
        return first.isupper()
    if closed:
        return not first.islower()
    term_start = match.start()
    if term_start - line_start <= _LIST_MARKER_MAX_PREFIX:
        prefix = text[line_start:term_start].strip()
        if _LIST_MARKER.fullmatch(prefix):
            return False
    return _period_ends_sentence(_word_before(text, term_start, line_start), next_word)


def _word_before(text: str, position: int, line_start: int) -> str:
    """The word ending at ``position`` (bounded: abbreviations are short)."""
    begin = position
    limit = max(line_start, position - _PREV_WORD_MAX)
    while begin > limit and not text[begin - 1].isspace() and text[begin - 1] not in _OPENERS:
        begin -= 1
    if begin == limit and begin > line_start and not text[begin - 1].isspace():
        return ""
    return text[begin:position]


def _period_ends_sentence(word: str, next_word: str) -> bool:
    if not word:
        return True
    key = word.lower()
    first = next_word[0]
    if key in _NEVER_FINAL:
        return False
    if key in _NUMBER_PREFIX:
        return not first.isdigit()
    if key in _MAYBE_FINAL:
        return first.isupper()
    is_initial = len(word) == 1 and word.isalpha()
    if is_initial or _DOTTED.fullmatch(word):
        if word[0].isupper():
            return next_word.rstrip(",;:") in _SENTENCE_STARTERS
        return first.isupper()
    return True
