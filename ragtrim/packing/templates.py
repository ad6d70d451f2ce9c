"""Prompt templates: plain format strings, validated when the packer is built.

The default layout is prompt-cache friendly: the static instructions come first, then the
context, then the question, so providers' prefix caches hit on every call with the same
instructions. A template's slots are ``{instructions}``, ``{context}`` and ``{question}``;
``{context}`` and ``{question}`` are required.
"""

from __future__ import annotations

import functools
import re
import string
from dataclasses import dataclass

from ragtrim.errors import ConfigError

DEFAULT_INSTRUCTIONS = (
    "Answer the question using only the numbered context passages. Cite the passages you use "
    "as [n]. If the passages do not contain the answer, say that you do not know."
)
DEFAULT_PROMPT = "{instructions}\n\nContext:\n{context}\n\nQuestion: {question}\nAnswer:"
DEFAULT_USER_MESSAGE = "Context:\n{context}\n\nQuestion: {question}"
#: the chat system message carries the (configurable) instructions
DEFAULT_SYSTEM_MESSAGE = "{instructions}"
DEFAULT_PASSAGE_HEADER = "[{n}] {source}"
SLOTS = {"instructions", "context", "question"}
PASSAGE_SLOTS = {"n", "source", "title", "doc_id"}
#: OpenAI chat accounting: each message costs 3 tokens of framing, each reply 3 more
MESSAGE_OVERHEAD = 3
REPLY_OVERHEAD = 3


def template_slots(template: str, field_name: str) -> set[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(
            f"{field_name}: malformed template ({exc}); escape literal braces as {{{{ }}}}"
        ) from None
    slots = set()
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name == "" or name.isdigit():
            raise ConfigError(
                f"{field_name}: positional slot '{{{name}}}' is not allowed; use named slots"
            )
        if spec or conversion:
            raise ConfigError(
                f"{field_name}: slot '{{{name}}}' must not have a format spec or conversion"
            )
        slots.add(name)
    return slots


def validate_prompt_template(template: str, field_name: str) -> str:
    slots = template_slots(template, field_name)
    unknown = slots - SLOTS
    if unknown:
        raise ConfigError(
            f"{field_name}: unknown slot(s) {sorted(unknown)}; valid slots: {sorted(SLOTS)}"
        )
    missing = {"context", "question"} - slots
    if missing:
        needed = ", ".join("{" + m + "}" for m in sorted(missing))
        raise ConfigError(f"{field_name}: template must contain {needed}")
    return template


def validate_system_message(template: str, field_name: str) -> str:
    """Any of the prompt slots may appear (none is required): an empty message is omitted."""
    unknown = template_slots(template, field_name) - SLOTS
    if unknown:
        raise ConfigError(
            f"{field_name}: unknown slot(s) {sorted(unknown)}; valid slots: {sorted(SLOTS)}"
        )
    return template


def validate_passage_header(template: str, field_name: str) -> str:
    slots = template_slots(template, field_name)
    unknown = slots - PASSAGE_SLOTS
    if unknown:
        raise ConfigError(
            f"{field_name}: unknown slot(s) {sorted(unknown)}; valid: {sorted(PASSAGE_SLOTS)}"
        )
    if "n" not in slots:
        raise ConfigError(
            f"{field_name}: the passage header must contain {{n}} so answers can cite it"
        )
    return template


# ---------------------------------------------------------------------- prompt structure
# Document titles, ids and text, and the question, are data: they must not be able to start a
# line that the template reserves (a ``[n]`` passage header, ``Question:``, ``Answer:``,
# ``Context:``...), or a document could forge passages or a question for the model.

#: every character ``str.splitlines`` breaks on: what a model may read as a new line
_LINE_BREAKS = re.compile(r"[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
#: other control characters (not tab), also blanked in a header
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x9f]")
#: what starts a neutralised line: Markdown's quote marker, read as "quoted document text"
QUOTE_PREFIX = "> "


def header_field(value: str) -> str:
    """``value`` on one line, for a passage header: line breaks and control characters become
    spaces and runs of whitespace collapse, so a title cannot end the header line."""
    flat = _CONTROLS.sub(" ", _LINE_BREAKS.sub(" ", value))
    return " ".join(flat.split())


@dataclass(frozen=True)
class ReservedLines:
    """What the template reserves at the start of a line: passage headers (the header
    template's text up to and including ``{n}``, with any number) and the literal text that
    starts a line of the prompt or user template (``Question:``, ``Answer:``, ``Context:``)."""

    header: re.Pattern[str]
    markers: tuple[str, ...]

    def matches(self, line: str) -> bool:
        bare = line.lstrip()
        if not bare:
            return False
        if self.header.match(bare):
            return True
        folded = bare.casefold()
        return any(folded.startswith(marker) for marker in self.markers)


def _line_starts(template: str) -> list[str]:
    """The literal text at the start of each line of ``template`` (before its first slot)."""
    starts = []
    for line in template.splitlines():
        literal = []
        for text, name, _, _ in string.Formatter().parse(line):
            literal.append(text)
            if name is not None:
                break
        start = "".join(literal).strip()
        if start:
            starts.append(start)
    return starts


@functools.lru_cache(maxsize=64)
def reserved_lines(
    passage_header: str = DEFAULT_PASSAGE_HEADER,
    templates: tuple[str, ...] = (DEFAULT_PROMPT, DEFAULT_USER_MESSAGE),
) -> ReservedLines:
    """The reserved line starts of a packer's templates (computed once per set of templates)."""
    before, after, seen_n = "", "", False
    line = next((line for line in passage_header.splitlines() if "{n}" in line), passage_header)
    for text, name, _, _ in string.Formatter().parse(line):
        if seen_n:
            after = text
            break
        before += text
        seen_n = name == "n"
    pattern = re.escape(before.lstrip()) + r"\d+" + re.escape(after.rstrip())
    header = re.compile(pattern if before.strip() or after.strip() else r"\d+\b")
    markers = {start.casefold() for template in templates for start in _line_starts(template)}
    # the default markers always count: a custom template does not make them harmless
    markers |= {"question:", "answer:", "context:"}
    return ReservedLines(header, tuple(sorted(markers)))


def neutralise_lines(text: str, reserved: ReservedLines | None = None) -> str:
    """``text`` with every line that would start like a reserved line prefixed by
    :data:`QUOTE_PREFIX`; every other character is kept as it is.

    Only the rendered prompt changes: source maps (``Passage.text``, ``spans``) stay the
    document's verbatim text at its offsets.
    """
    reserved = reserved or reserved_lines()
    lines = text.splitlines(keepends=True)
    if not any(reserved.matches(line) for line in lines):
        return text
    return "".join(QUOTE_PREFIX + line if reserved.matches(line) else line for line in lines)


@dataclass(frozen=True)
class Rendered:
    prompt: str
    messages: list[dict[str, str]]
    static_prefix: str


@dataclass(frozen=True)
class Templates:
    prompt: str = DEFAULT_PROMPT
    system: str = DEFAULT_SYSTEM_MESSAGE
    user: str = DEFAULT_USER_MESSAGE
    instructions: str = DEFAULT_INSTRUCTIONS

    def render(self, context: str, question: str) -> Rendered:
        """The prompt and messages. A question line that would start a reserved line (an
        ``Answer:`` the user typed after a newline) is neutralised like passage text."""
        question = neutralise_lines(question, reserved_lines(templates=(self.prompt, self.user)))
        values = {"instructions": self.instructions, "context": context, "question": question}
        prompt = self.prompt.format(**values)
        messages = [
            {"role": "system", "content": self.system.format(**values) if self.system else ""},
            {"role": "user", "content": self.user.format(**values)},
        ]
        if not self.system:
            messages = messages[1:]
        return Rendered(prompt, messages, self.static_prefix())

    def static_prefix(self) -> str:
        """The part of the prompt before anything query-dependent: what prefix caches reuse."""
        sentinel = "\x00"
        probe = self.prompt.format(
            instructions=self.instructions, context=sentinel, question=sentinel
        )
        return probe[: probe.index(sentinel)]
