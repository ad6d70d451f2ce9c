"""The token-budgeted context packer: the smallest context that still carries the answer.

1. Units: every sentence of every candidate (``granularity="sentence"``) or every candidate
   chunk (``"chunk"``); text repeated verbatim elsewhere is one unit. A sentence's value mixes
   its dense similarity to the query, its lexical coverage of the query terms (partly counting
   its title and section headings), and its chunk's (reranked) score. Headings and code-fence
   lines are labels: never selected on their own.
2. Adaptive cutoff: only units worth at least ``relative_threshold`` x the best unit (and, with
   ``score_gap``, above the largest drop) are considered, so easy questions stay short and the
   budget is an upper bound, not a target.
3. Selection: greedy by marginal value per token with a redundancy penalty (default), or an
   exact 0/1 knapsack.
4. Rendering: per document, selected spans in document order, gaps marked with an ellipsis,
   overlapping or touching spans merged (no text twice); one ``[n]`` passage per document.
5. Exactness: the emitted prompt is counted with the real tokenizer; while it exceeds the
   budget the least valuable unit is removed. The budget can never be exceeded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ragtrim.errors import BudgetError
from ragtrim.packing.selection import adaptive_cutoff, greedy_select, knapsack_select
from ragtrim.packing.templates import (
    DEFAULT_INSTRUCTIONS,
    DEFAULT_PASSAGE_HEADER,
    DEFAULT_PROMPT,
    DEFAULT_SYSTEM_MESSAGE,
    DEFAULT_USER_MESSAGE,
    MESSAGE_OVERHEAD,
    REPLY_OVERHEAD,
    Templates,
    header_field,
    neutralise_lines,
    reserved_lines,
    validate_passage_header,
    validate_prompt_template,
    validate_system_message,
)
from ragtrim.query import QueryContext
from ragtrim.scoring import cosine_to_query, lexical_coverage, minmax
from ragtrim.stage import Stage, StageConfig
from ragtrim.types import Candidate, Drop, DropReason, Passage, Span

ELLIPSIS = " … "
#: Markdown heading and code-fence lines: labels that carry no content of their own
_LABEL_PREFIXES = ("#", "```", "~~~")


@dataclass(slots=True)
class _Unit:
    candidate: int
    doc_id: str
    title: str
    start: int
    end: int
    text: str
    value: float = 0.0
    cost: int = 0
    truncated: bool = False
    #: a Markdown heading or code-fence line: a label, never worth selecting on its own
    label: bool = False
    #: the document's whitespace just before this unit (rejoins adjacent units verbatim)
    lead: str = ""


@dataclass
class PackResult:
    prompt: str
    messages: list[dict[str, str]]
    context: str
    passages: list[Passage]
    context_tokens: int
    prompt_tokens: int
    messages_tokens: int
    static_prefix_tokens: int
    budget: int | None
    drops: list[Drop] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


class ContextPacker(Stage):
    kind = "packer"

    class Config(StageConfig):
        budget: int | None = Field(1024, gt=0)
        budget_scope: Literal["prompt", "context"] = "prompt"
        context_window: int | None = Field(None, gt=0)
        reserved_output_tokens: int = Field(0, ge=0)
        granularity: Literal["sentence", "chunk"] = "sentence"
        selection: Literal["greedy", "knapsack"] = "greedy"
        relative_threshold: float = Field(0.45, ge=0, le=1)
        score_gap: float | None = Field(None, gt=0, le=1)
        max_units: int | None = Field(None, ge=1)
        redundancy_penalty: float = Field(0.5, ge=0, le=1)
        #: greedy order is value / tokens**exponent: 1 is classic value-per-token, 0 is pure
        #: value. Per-token favours short fragments over the answer sentence; on SQuAD and the
        #: bundled corpus exponent 0.5 lost 3.6 and 2.0 points of answer recall at 260 tokens.
        token_cost_exponent: float = Field(0.0, ge=0, le=1)
        dense_weight: float = Field(0.35, ge=0)
        lexical_weight: float = Field(0.35, ge=0)
        chunk_weight: float = Field(0.3, ge=0)
        #: share of a unit's lexical score that also counts query terms in its document title
        #: and section headings (a sentence under "Default ports" answers "which port")
        heading_weight: float = Field(0.5, ge=0, le=1)
        neighbours: int = Field(0, ge=0)
        keep_first_sentence: bool = False
        ordering: Literal["score", "document", "edges"] = "score"
        overlong: Literal["truncate", "drop"] = "truncate"
        prompt_template: str = DEFAULT_PROMPT
        system_message: str = DEFAULT_SYSTEM_MESSAGE
        user_message: str = DEFAULT_USER_MESSAGE
        instructions: str = DEFAULT_INSTRUCTIONS
        passage_header: str = DEFAULT_PASSAGE_HEADER

        @field_validator("prompt_template", "user_message")
        @classmethod
        def _template(cls, value: str, info) -> str:
            return validate_prompt_template(value, info.field_name)

        @field_validator("system_message")
        @classmethod
        def _system(cls, value: str) -> str:
            return validate_system_message(value, "system_message")

        @field_validator("passage_header")
        @classmethod
        def _header(cls, value: str) -> str:
            return validate_passage_header(value, "passage_header")

        @model_validator(mode="after")
        def _window(self):
            window, budget = self.context_window, self.budget
            if (
                window is not None
                and budget is not None
                and budget + self.reserved_output_tokens > window
            ):
                raise ValueError(
                    f"budget {budget} + reserved_output_tokens "
                    f"{self.reserved_output_tokens} exceeds context_window {window}"
                )
            return self

    @property
    def templates(self) -> Templates:
        cfg = self.config
        return Templates(
            cfg.prompt_template, cfg.system_message, cfg.user_message, cfg.instructions
        )

    # ------------------------------------------------------------------ budget
    def effective_budget(self, override: int | None = None) -> int | None:
        cfg = self.config
        budget = cfg.budget if override is None else override
        if override is not None and (isinstance(override, bool) or not isinstance(override, int)):
            raise BudgetError(f"budget must be a whole number of tokens, got {override!r}")
        if override is not None and override <= 0:
            raise BudgetError(f"budget must be a positive number of tokens, got {override}")
        if cfg.context_window is not None:
            room = cfg.context_window - cfg.reserved_output_tokens
            if budget is None:
                return room
            if budget > room:
                raise BudgetError(
                    f"budget {budget} does not fit the model window: context_window "
                    f"{cfg.context_window} - reserved_output_tokens "
                    f"{cfg.reserved_output_tokens} = {room}"
                )
        return budget

    def _measure(self, ctx: QueryContext, context: str, count=None) -> tuple[object, int, int, int]:
        count = count or ctx.counter.count
        rendered = self.templates.render(context, ctx.query)
        prompt_tokens = count(rendered.prompt)
        messages_tokens = (
            sum(count(m["content"]) + MESSAGE_OVERHEAD for m in rendered.messages) + REPLY_OVERHEAD
        )
        return rendered, count(context), prompt_tokens, messages_tokens

    def _over_budget(self, ctx: QueryContext, budget: int | None, context: str, count) -> int:
        """Tokens over the budget (<= 0: fits), counting only what the budget scope needs."""
        if budget is None:
            return 0
        if self.config.budget_scope == "context":
            return count(context) - budget
        rendered = self.templates.render(context, ctx.query)
        messages = sum(count(m["content"]) + MESSAGE_OVERHEAD for m in rendered.messages)
        return max(count(rendered.prompt), messages + REPLY_OVERHEAD) - budget

    # ------------------------------------------------------------------ run
    def run(
        self, ctx: QueryContext, candidates: list[Candidate], budget: int | None = None
    ) -> PackResult:
        started = time.perf_counter()
        cfg = self.config
        budget = self.effective_budget(budget)
        drops: list[Drop] = []
        notes: list[str] = []

        _, _, fixed_prompt, fixed_messages = self._measure(ctx, "")
        fixed = 0 if cfg.budget_scope == "context" else max(fixed_prompt, fixed_messages)
        if budget is not None and fixed > budget:
            raise BudgetError(
                f"budget {budget} is smaller than the prompt template plus the question "
                f"({fixed} tokens with an empty context)"
            )

        usable: list[Candidate] = []
        for candidate in candidates:
            if not candidate.chunk.text.strip():
                drops.append(Drop(candidate.id, DropReason.EMPTY, "packer"))
            elif not np.isfinite(candidate.score):
                drops.append(
                    Drop(
                        candidate.id,
                        DropReason.LOW_SCORE,
                        "packer",
                        candidate.chunk.token_count,
                        detail="non-finite score",
                    )
                )
            else:
                usable.append(candidate)

        units, vectors, coverage = self._units(ctx, usable)
        capacity = None if budget is None else budget - fixed
        chosen, eligible = self._select(units, vectors, capacity)
        chosen = self._with_extras(units, chosen, usable)
        fitted = self._fit_exactly(ctx, budget, units, chosen, usable)
        if not fitted[0] and eligible.size and capacity is not None and cfg.overlong == "truncate":
            truncated = self._truncate_best(ctx, units, int(eligible[0]), capacity)
            if truncated:
                fitted = self._fit_exactly(ctx, budget, units, truncated, usable)
                if fitted[0]:
                    notes.append(
                        "the best unit alone exceeded the budget and was truncated on a token "
                        "boundary"
                    )
        chosen, context, passages, rendered, context_tokens, prompt_tokens, messages_tokens = fitted

        drops.extend(self._drops(units, coverage, chosen, eligible, usable))
        static_tokens = ctx.counter.count(rendered.static_prefix)  # type: ignore[attr-defined]
        return PackResult(
            prompt=rendered.prompt,  # type: ignore[attr-defined]
            messages=rendered.messages,  # type: ignore[attr-defined]
            context=context,
            passages=passages,
            context_tokens=context_tokens,
            prompt_tokens=prompt_tokens,
            messages_tokens=messages_tokens,
            static_prefix_tokens=static_tokens,
            budget=budget,
            drops=drops,
            notes=notes,
            stats={
                "units": len(units),
                "eligible": int(eligible.size),
                "chosen": len(chosen),
                "pack_ms": (time.perf_counter() - started) * 1000,
            },
        )

    def _fit_exactly(
        self,
        ctx: QueryContext,
        budget: int | None,
        units: list[_Unit],
        chosen: list[int],
        candidates: list[Candidate],
    ) -> tuple[list[int], str, list[Passage], object, int, int, int]:
        """Exact accounting: the emitted prompt is counted with the real tokenizer and, while it
        is over budget, the least valuable units are removed, as many at a time as their
        estimated costs say are needed (selection costs are estimates, so this check runs on
        every call). Returns the kept units, the context, passages and exact counts."""
        counted: dict[str, int] = {}

        def count(text: str) -> int:
            if text not in counted:
                counted[text] = ctx.counter.count(text)
            return counted[text]

        by_value = sorted(chosen, key=lambda i: (-units[i].value, i))
        position = {i: rank for rank, i in enumerate(chosen)}
        keep = len(by_value)
        while True:
            kept = sorted(by_value[:keep], key=position.__getitem__)
            context, passages = self._render(units, kept, candidates)
            excess = self._over_budget(ctx, budget, context, count)
            # keeping nothing always fits: the template alone was checked against the budget
            if excess <= 0 or keep == 0:
                break
            removed = 0
            while keep > 0 and (removed < excess or removed == 0):
                keep -= 1
                removed += units[by_value[keep]].cost
        rendered, context_tokens, prompt_tokens, messages_tokens = self._measure(
            ctx, context, count
        )
        return kept, context, passages, rendered, context_tokens, prompt_tokens, messages_tokens

    # ------------------------------------------------------------------ units
    def _units(
        self, ctx: QueryContext, candidates: list[Candidate]
    ) -> tuple[list[_Unit], np.ndarray | None, list[list[int]]]:
        """Units, their sentence vectors, and per candidate the units that cover its text (a
        sentence shared by overlapping candidates, or repeated verbatim elsewhere, is one unit,
        owned by the first)."""
        cfg = self.config
        if not candidates:
            return [], None, []
        chunk_score = minmax(np.array([c.score for c in candidates]))
        units: list[_Unit] = []
        seen: dict[tuple[str, int, int], int] = {}
        #: identical text in another place (a sentence repeated across versions or pages) is
        #: one unit: sending it twice adds tokens and no information
        same_text: dict[str, int] = {}
        coverage: list[list[int]] = []
        unit_vectors: list[np.ndarray] = []
        term_ids: list[np.ndarray | None] = []
        vocabulary = None
        stored_terms = cfg.granularity == "sentence" and cfg.lexical_weight > 0
        for ci, candidate in enumerate(candidates):
            chunk = candidate.chunk
            if cfg.granularity == "chunk":
                spans: tuple[Span, ...] = ((0, len(chunk.text)),)
            else:
                spans = chunk.sentences or ((0, len(chunk.text)),)
            vectors = None
            if cfg.granularity == "sentence" and cfg.dense_weight > 0:
                vectors = (
                    ctx.sentence_vectors(chunk) if chunk.sentences else ctx.chunk_vectors([chunk])
                )
            # selection only needs costs roughly (pro rata from the chunk's stored exact count):
            # the rendered prompt is counted exactly afterwards and trimmed until it fits
            tokens_per_char = chunk.token_count / max(len(chunk.text), 1)
            title, prior = chunk.title, float(chunk_score[ci])
            stored = ctx.sentence_term_ids(chunk) if stored_terms else None
            if stored is not None:
                vocabulary = stored[0]
            kept, covering = [], []
            for si, (a, b) in enumerate(spans):
                key = (chunk.doc_id, chunk.start + a, chunk.start + b)
                text = chunk.text[a:b]
                known = seen.get(key, same_text.get(text))
                if known is not None:
                    covering.append(known)
                    continue
                seen[key] = same_text[text] = len(units)
                covering.append(len(units))
                before = chunk.text[max(0, a - 16) : a]
                lead = before[len(before.rstrip()) :]
                label = cfg.granularity == "sentence" and text.startswith(_LABEL_PREFIXES)
                cost = max(1, round(tokens_per_char * (b - a))) + 1
                units.append(
                    _Unit(
                        ci,
                        chunk.doc_id,
                        title,
                        key[1],
                        key[2],
                        text,
                        prior,
                        cost,
                        label=label,
                        lead=lead,
                    )
                )
                kept.append(si)
                term_ids.append(stored[1][si] if stored is not None else None)
            coverage.append(covering)
            if vectors is not None and kept:
                unit_vectors.append(vectors[kept])
        texts = [u.text for u in units]
        dense = np.zeros(len(units))
        if cfg.granularity == "sentence" and cfg.dense_weight > 0 and unit_vectors:
            dense = cosine_to_query(ctx.query_vector(), np.concatenate(unit_vectors))
        elif cfg.granularity == "chunk" and cfg.dense_weight > 0:
            dense = cosine_to_query(
                ctx.query_vector(), ctx.chunk_vectors([c.chunk for c in candidates])
            )
        lexical = (
            lexical_coverage(
                ctx.query,
                texts,
                stored=None if vocabulary is None else (vocabulary, term_ids),
                headings=_headings(units, candidates, cfg.heading_weight),
            )
            if cfg.lexical_weight > 0
            else np.zeros(len(units))
        )
        total = cfg.dense_weight + cfg.lexical_weight + cfg.chunk_weight or 1.0
        for i, unit in enumerate(units):
            unit.value = (
                cfg.dense_weight * dense[i]
                + cfg.lexical_weight * lexical[i]
                + cfg.chunk_weight * unit.value
            ) / total
        vectors = (
            np.concatenate(unit_vectors) if unit_vectors and cfg.granularity == "sentence" else None
        )
        return units, vectors, coverage

    def _select(
        self, units: list[_Unit], vectors: np.ndarray | None, capacity: int | None
    ) -> tuple[list[int], np.ndarray]:
        cfg = self.config
        if not units:
            return [], np.zeros(0, dtype=np.int64)
        values = np.array([u.value for u in units])
        ranked = np.where([u.label for u in units], -np.inf, values)
        eligible = adaptive_cutoff(ranked, cfg.relative_threshold, cfg.score_gap)
        eligible = eligible[np.isfinite(ranked[eligible])]
        if cfg.max_units is not None:
            eligible = eligible[: cfg.max_units]
        cap = capacity if capacity is not None else int(sum(units[i].cost for i in eligible)) + 1
        costs = np.array([units[i].cost for i in eligible])
        if cfg.selection == "knapsack":
            picked = knapsack_select(values[eligible], costs, cap)
        else:
            similarity = None
            if vectors is not None and cfg.redundancy_penalty > 0:
                pool = vectors[eligible]

                def similarity(j: int) -> np.ndarray:
                    return np.clip(pool @ pool[j], 0.0, 1.0)

            best = float(values[eligible[0]]) if eligible.size else 0.0
            picked = greedy_select(
                values[eligible],
                costs,
                cap,
                similarity,
                cfg.redundancy_penalty,
                min_marginal=cfg.relative_threshold * best,
                cost_exponent=cfg.token_cost_exponent,
            )
        return [int(eligible[i]) for i in picked], eligible

    def _truncate_best(
        self, ctx: QueryContext, units: list[_Unit], best: int, capacity: int
    ) -> list[int]:
        unit = units[best]
        header = ctx.counter.count(self._header(1, unit)) + 2
        room = capacity - header - 1
        if room <= 0:
            return []
        text = ctx.counter.truncate(unit.text, room).rstrip()
        if not text:
            return []
        unit.text, unit.end, unit.truncated = text + "…", unit.start + len(text), True
        return [best]

    def _with_extras(
        self, units: list[_Unit], chosen: list[int], candidates: list[Candidate]
    ) -> list[int]:
        """Neighbour sentences and chunk-first sentences: appended last, so the exact-budget
        loop removes them first (they carry the lowest priority)."""
        cfg = self.config
        if (
            cfg.granularity != "sentence"
            or not chosen
            or not (cfg.neighbours or cfg.keep_first_sentence)
        ):
            return chosen
        by_candidate: dict[int, list[int]] = {}
        for i, unit in enumerate(units):
            by_candidate.setdefault(unit.candidate, []).append(i)
        extra: list[int] = []
        picked = set(chosen)
        for i in chosen:
            siblings = by_candidate[units[i].candidate]
            position = siblings.index(i)
            wanted = []
            if cfg.keep_first_sentence:
                wanted.append(siblings[0])
            wanted += siblings[max(0, position - cfg.neighbours) : position + cfg.neighbours + 1]
            for j in wanted:
                if j not in picked:
                    picked.add(j)
                    extra.append(j)
                    units[j].value = min(units[j].value, min(units[k].value for k in chosen)) - 1e-6
        return chosen + extra

    # ------------------------------------------------------------------ rendering
    def _header(self, number: int, unit: _Unit) -> str:
        title, doc_id = header_field(unit.title), header_field(unit.doc_id)  # one line each
        return self.config.passage_header.format(
            n=number, source=title or doc_id, title=title, doc_id=doc_id
        )

    def _render(
        self, units: list[_Unit], chosen: list[int], candidates: list[Candidate]
    ) -> tuple[str, list[Passage]]:
        groups: dict[str, list[_Unit]] = {}
        for i in chosen:
            groups.setdefault(units[i].doc_id, []).append(units[i])
        ranked = sorted(groups.values(), key=lambda g: -max(u.value for u in g))
        if self.config.ordering == "document":
            ranked = sorted(ranked, key=lambda g: (g[0].doc_id, min(u.start for u in g)))
        elif self.config.ordering == "edges":
            ranked = ranked[0::2] + ranked[1::2][::-1]
        blocks, passages = [], []
        for number, group in enumerate(ranked, start=1):
            text, spans = _join_spans(sorted(group, key=lambda u: (u.start, -u.end)))
            head = self._header(number, group[0])
            blocks.append(f"{head}\n{text}")
            chunk_ids = tuple(dict.fromkeys(candidates[u.candidate].id for u in group))
            passages.append(
                Passage(
                    number,
                    group[0].doc_id,
                    group[0].title,
                    text,
                    tuple(spans),
                    max(u.value for u in group),
                    chunk_ids,
                )
            )
        return "\n\n".join(blocks), passages

    def render_naive(self, candidates: list[Candidate]) -> str:
        """Whole chunks, one passage each, in rank order: what plain top-k concatenation sends."""
        blocks = []
        cfg = self.config
        reserved = reserved_lines(cfg.passage_header, (cfg.prompt_template, cfg.user_message))
        for number, candidate in enumerate(candidates, start=1):
            unit = _Unit(0, candidate.chunk.doc_id, candidate.chunk.title, 0, 0, "")
            text = neutralise_lines(candidate.chunk.text, reserved)
            blocks.append(f"{self._header(number, unit)}\n{text}")
        return "\n\n".join(blocks)

    def _drops(self, units, coverage, chosen, eligible, candidates) -> list[Drop]:
        chosen_set, eligible_set = set(chosen), set(int(i) for i in eligible)
        drops = []
        for candidate, members in zip(candidates, coverage, strict=True):
            kept = [i for i in members if i in chosen_set]
            tokens = candidate.chunk.token_count
            if kept and all(units[i].doc_id != candidate.chunk.doc_id for i in kept):
                drops.append(
                    Drop(
                        candidate.id,
                        DropReason.DUPLICATE,
                        "packer",
                        tokens,
                        detail="its chosen sentences are already in the context from "
                        + ", ".join(sorted({units[i].doc_id for i in kept})),
                    )
                )
            elif not kept:
                skipped = any(i in eligible_set for i in members)
                reason = DropReason.OVER_BUDGET if skipped else DropReason.BELOW_CUTOFF
                drops.append(Drop(candidate.id, reason, "packer", tokens))
            elif len(kept) < len(members) or any(units[i].truncated for i in kept):
                kept_tokens = sum(units[i].cost for i in kept)
                drops.append(
                    Drop(
                        candidate.id,
                        DropReason.SENTENCES_PRUNED,
                        "packer",
                        max(tokens - kept_tokens, 0),
                        detail=f"kept {len(kept)} of {len(members)} units",
                    )
                )
        return drops


def _headings(
    units: list[_Unit], candidates: list[Candidate], weight: float
) -> tuple[list[str], list[int], float] | None:
    """Each unit's title and section path, as ``lexical_coverage`` takes them."""
    if not weight:
        return None
    texts: dict[str, int] = {}
    of_candidate = []
    for candidate in candidates:
        chunk = candidate.chunk
        heading = " ".join([chunk.title or "", *chunk.section])
        of_candidate.append(texts.setdefault(heading, len(texts)))
    return list(texts), [of_candidate[u.candidate] for u in units], weight


def _join_spans(units: list[_Unit]) -> tuple[str, list[Span]]:
    """Document-ordered text of one document's units: contained units vanish, overlapping
    units and units separated only by whitespace merge (with the document's own whitespace,
    so every span is verbatim document text); real gaps get an ellipsis."""
    parts: list[str] = []
    spans: list[list[int]] = []
    for unit in units:
        if spans and unit.end <= spans[-1][1]:
            continue
        gap = unit.start - spans[-1][1] if spans else None
        if gap is not None and (gap <= 0 or gap == len(unit.lead)):
            parts.append(unit.text[-gap:] if gap < 0 else unit.lead + unit.text)
            spans[-1][1] = unit.end
            continue
        if parts:
            parts.append(ELLIPSIS)
        parts.append(unit.text)
        spans.append([unit.start, unit.end])
    return "".join(parts), [(a, b) for a, b in spans]
