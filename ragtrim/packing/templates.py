"""Prompt templates: plain format strings, validated when the packer is built.

The default layout is prompt-cache friendly: the static instructions come first, then the
context, then the question, so providers' prefix caches hit on every call with the same
instructions. A template's slots are ``{instructions}``, ``{context}`` and ``{question}``;
``{context}`` and ``{question}`` are required.
"""

from __future__ import annotations

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
