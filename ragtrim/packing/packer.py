"""The token-budgeted context packer: the smallest context that still carries the answer.

1. Units (:mod:`units`): every sentence of every candidate (``granularity="sentence"``) or
   every candidate chunk (``"chunk"``); text repeated verbatim elsewhere is one unit. Headings
   and code-fence lines are labels: never selected on their own.
2. Scoring (:mod:`features`, :mod:`scorer`): the learned scorer (default) turns each unit's
   features into a calibrated P(evidence) and re-scores the rest after every choice against
   what the chosen evidence already covers and introduces (the bridge of a multi-hop
   question). ``scorer="hand"`` is the earlier hand-set mix of dense similarity, lexical
   coverage and chunk score, with a cutoff relative to the best unit.
3. Selection (:mod:`selection`): learned, one unit at a time by probability until the best
   remaining unit is unlikely to be needed (``min_probability``: the sufficiency stop) or
   nothing fits; hand, greedy by value with a redundancy penalty, or an exact knapsack. Short
   gaps between chosen sentences of one chunk are filled (``span_fill``), so a run of evidence
   is sent as one verbatim span.
4. Rendering (:mod:`render`): per document, chosen spans in document order, gaps marked with
   an ellipsis; one ``[n]`` passage per document.
5. Exactness (:mod:`budget`): the emitted prompt is counted with the real tokenizer; while it
   exceeds the budget the least valuable unit is removed. The budget can never be exceeded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ragtrim.errors import BudgetError
from ragtrim.packing.budget import fit_to_budget
from ragtrim.packing.features import HAND_WEIGHTS, EvidenceState, Features, base_features
from ragtrim.packing.render import ELLIPSIS, header, render_naive, render_passages
from ragtrim.packing.scorer import load_scorer
from ragtrim.packing.selection import (
    adaptive_cutoff,
    greedy_select,
    knapsack_select,
    sequential_select,
)
from ragtrim.packing.templates import (
    DEFAULT_INSTRUCTIONS,
    DEFAULT_PASSAGE_HEADER,
    DEFAULT_PROMPT,
    DEFAULT_SYSTEM_MESSAGE,
    DEFAULT_USER_MESSAGE,
    MESSAGE_OVERHEAD,
    REPLY_OVERHEAD,
    Rendered,
    ReservedLines,
    Templates,
    reserved_lines,
    validate_passage_header,
    validate_prompt_template,
    validate_system_message,
)
from ragtrim.packing.units import Unit, UnitSet, build_units
from ragtrim.query import QueryContext
from ragtrim.stage import Stage, StageConfig
from ragtrim.types import Candidate, Drop, DropReason, Passage

__all__ = ["ELLIPSIS", "ContextPacker", "PackResult"]


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
        #: "learned": the fitted unit scorer (``scorer_path``, default the shipped file);
        #: "hand": the hand-set dense / lexical / chunk mix with a relative cutoff
        scorer: Literal["learned", "hand"] = "learned"
        scorer_path: str | None = None
        #: learned scorer: stop when no remaining unit's P(needed) reaches this
        min_probability: float = Field(0.02, ge=0, le=1)
        #: learned scorer: re-score the rest against the chosen evidence after each choice
        #: (``False`` freezes the conditional features at their empty-state values: use it with
        #: a scorer fitted without them, ``fit_unit_scorer.py --no-conditional``)
        conditional: bool = True
        #: fill gaps of at most this many sentences between chosen sentences of one chunk
        #: (default: 1 with the learned scorer, 0 with the hand mix)
        span_fill: int | None = Field(None, ge=0)
        #: send the whole chunk when its chosen sentences already cost at least this share of
        #: its tokens (relevance spread over most of it); ``None``: never
        chunk_fill: float | None = Field(None, gt=0, le=1)
        #: hand mix only (the learned scorer stops by ``min_probability`` and ranks by
        #: probability): selection, relative cutoff, score gap, redundancy penalty, weights
        selection: Literal["greedy", "knapsack"] = "greedy"
        relative_threshold: float = Field(0.45, ge=0, le=1)
        score_gap: float | None = Field(None, gt=0, le=1)
        #: at most this many units: chosen (learned), or considered after the cutoff (hand)
        max_units: int | None = Field(None, ge=1)
        redundancy_penalty: float = Field(0.5, ge=0, le=1)
        #: selection order is value / tokens**exponent: 1 is classic value-per-token, 0 is pure
        #: value. Learned scorer at a 250-token cap, test halves, 0.25 vs 0 ("learned, by
        #: probability only" in benchmarks/results/evidence.md): bundled 0.907 vs 0.893, HotpotQA
        #: 0.800 vs 0.787, SQuAD 0.967 vs 0.977. With the hand mix 0.5 lost 3.6 (SQuAD) and 2.0
        #: (bundled) points at 260 tokens. Default: 0.25 learned, 0 hand.
        token_cost_exponent: float | None = Field(None, ge=0, le=1)
        dense_weight: float = Field(HAND_WEIGHTS[0], ge=0)
        lexical_weight: float = Field(HAND_WEIGHTS[1], ge=0)
        chunk_weight: float = Field(HAND_WEIGHTS[2], ge=0)
        #: hand mix: share of a unit's lexical score that also counts query terms in its title
        #: and section headings (a sentence under "Default ports" answers "which port"); the
        #: learned scorer has both coverages as features
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
        def _learned_units(self):
            if self.scorer == "learned" and self.granularity == "chunk":
                raise ValueError(
                    "the learned scorer is fitted on sentence units: use granularity "
                    "'sentence' with it, or scorer 'hand' for whole chunks"
                )
            return self

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

    def __init__(self, **params) -> None:
        super().__init__(**params)
        # read once per packer (a bad parameter file fails here, not mid-query); a packer
        # built after a refit rewrote the file reads the new one
        self._scorer = (
            load_scorer(self.config.scorer_path) if self.config.scorer == "learned" else None
        )

    #: defaults that differ by scorer: (learned, hand); the hand mix keeps the old packer's
    _PER_SCORER: ClassVar[dict[str, tuple[float, float]]] = {
        "token_cost_exponent": (0.25, 0.0),
        "span_fill": (1, 0),
    }

    def _per_scorer(self, name: str):
        value = getattr(self.config, name)
        if value is not None:
            return value
        learned, hand = self._PER_SCORER[name]
        return learned if self.config.scorer == "learned" else hand

    @property
    def cost_exponent(self) -> float:
        return float(self._per_scorer("token_cost_exponent"))

    @property
    def gap_fill(self) -> int:
        return int(self._per_scorer("span_fill"))

    @property
    def reserved(self) -> ReservedLines:
        """The line starts this packer's templates reserve (see ``templates.reserved_lines``)."""
        cfg = self.config
        return reserved_lines(cfg.passage_header, (cfg.prompt_template, cfg.user_message))

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

    def _measure(
        self, ctx: QueryContext, context: str, count=None
    ) -> tuple[Rendered, int, int, int]:
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

        learned = cfg.scorer == "learned"
        unitset = build_units(
            ctx,
            usable,
            cfg.granularity,
            with_vectors=learned or cfg.dense_weight > 0,
            with_terms=learned or cfg.lexical_weight > 0,
        )
        units = unitset.units
        features = base_features(
            ctx,
            unitset,
            usable,
            cfg.granularity,
            cfg.heading_weight,
            with_dense=learned or cfg.dense_weight > 0,
            with_lexical=learned or cfg.lexical_weight > 0,
        )
        capacity = None if budget is None else budget - fixed
        if learned:
            chosen, eligible, stop = self._select_learned(ctx, unitset, usable, features, capacity)
        else:
            chosen, eligible, stop = self._select_hand(unitset, features, capacity)
        selected = len(chosen)
        chosen = self._with_extras(units, chosen)

        counted: dict[str, int] = {}

        def count(text: str) -> int:
            if text not in counted:
                counted[text] = ctx.counter.count(text)
            return counted[text]

        def fit(picked: list[int]) -> tuple[list[int], str, list[Passage]]:
            return fit_to_budget(
                units,
                picked,
                lambda kept: render_passages(
                    units, kept, usable, cfg.passage_header, cfg.ordering, self.reserved
                ),
                lambda context: self._over_budget(ctx, budget, context, count),
            )

        kept, context, passages = fit(chosen)
        if not kept and eligible.size and capacity is not None and cfg.overlong == "truncate":
            truncated = self._truncate_best(ctx, units, int(eligible[0]), capacity)
            if truncated:
                kept, context, passages = fit(truncated)
                if kept:
                    notes.append(
                        "the best unit alone exceeded the budget and was truncated on a token "
                        "boundary"
                    )
        if len(set(kept) & set(chosen[:selected])) < selected:
            stop = "budget"
        rendered, context_tokens, prompt_tokens, messages_tokens = self._measure(
            ctx, context, count
        )
        drops.extend(self._drops(units, unitset.coverage, kept, eligible, usable))
        return PackResult(
            prompt=rendered.prompt,
            messages=rendered.messages,
            context=context,
            passages=passages,
            context_tokens=context_tokens,
            prompt_tokens=prompt_tokens,
            messages_tokens=messages_tokens,
            static_prefix_tokens=ctx.counter.count(rendered.static_prefix),
            budget=budget,
            drops=drops,
            notes=notes,
            stats={
                "units": len(units),
                "eligible": int(eligible.size),
                "chosen": len(kept),
                "selected": selected,
                "stop": stop,
                "pack_ms": (time.perf_counter() - started) * 1000,
            },
        )

    # ------------------------------------------------------------------ selection
    def _select_learned(
        self,
        ctx: QueryContext,
        unitset: UnitSet,
        candidates: list[Candidate],
        features: Features,
        capacity: int | None,
    ) -> tuple[list[int], np.ndarray, str]:
        cfg = self.config
        units = unitset.units
        if not units:
            return [], np.zeros(0, dtype=np.int64), "exhausted"
        scorer = self._scorer
        assert scorer is not None  # built with the learned scorer
        state = EvidenceState(ctx, unitset, candidates)
        costs = np.array([u.cost for u in units], dtype=np.int64)
        selectable = ~np.array([u.label for u in units], dtype=bool)
        current = np.zeros(len(units))
        base_logits = scorer.partial_logits(features.matrix, 0) + scorer.bias
        first_conditional = features.matrix.shape[1]

        def probabilities() -> np.ndarray:
            current[:] = scorer.sigmoid(
                base_logits + scorer.partial_logits(state.features, first_conditional)
            )
            return current

        at_choice: dict[int, float] = {}

        def choose(i: int) -> None:
            at_choice[i] = float(current[i])
            if cfg.conditional:
                state.add(i)

        first = probabilities().copy()
        cap = capacity if capacity is not None else int(costs.sum()) + 1
        chosen, stop = sequential_select(
            probabilities,
            choose,
            costs,
            cap,
            selectable,
            cfg.min_probability,
            cfg.max_units,
            self.cost_exponent,
        )
        final = probabilities() if chosen else first
        for i, unit in enumerate(units):
            unit.value = at_choice.get(i, float(final[i]))
        order = np.argsort(-np.where(selectable, first, -np.inf), kind="stable")
        # the best unit stays eligible (for truncation) even when nothing was likely enough
        eligible = np.array(
            [
                i
                for rank, i in enumerate(order)
                if selectable[i]
                and (i in at_choice or final[i] >= cfg.min_probability or rank == 0)
            ],
            dtype=np.int64,
        )
        return chosen, eligible, stop

    def _select_hand(
        self, unitset: UnitSet, features: Features, capacity: int | None
    ) -> tuple[list[int], np.ndarray, str]:
        cfg = self.config
        units = unitset.units
        if not units:
            return [], np.zeros(0, dtype=np.int64), "exhausted"
        total = cfg.dense_weight + cfg.lexical_weight + cfg.chunk_weight or 1.0
        values = (
            cfg.dense_weight * features.dense
            + cfg.lexical_weight * features.lexical
            + cfg.chunk_weight * features.chunk_prior
        ) / total
        for unit, value in zip(units, values, strict=True):
            unit.value = float(value)
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
            vectors = unitset.vectors if cfg.granularity == "sentence" else None
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
                cost_exponent=self.cost_exponent,
            )
        stop = "cutoff" if len(picked) == len(eligible) else "budget"
        return [int(eligible[i]) for i in picked], eligible, stop

    def _truncate_best(
        self, ctx: QueryContext, units: list[Unit], best: int, capacity: int
    ) -> list[int]:
        unit = units[best]
        head = ctx.counter.count(header(self.config.passage_header, 1, unit.doc_id, unit.title))
        room = capacity - head - 3
        if room <= 0:
            return []
        text = ctx.counter.truncate(unit.text, room).rstrip()
        if not text:
            return []
        unit.text, unit.end, unit.truncated = text + "…", unit.start + len(text), True
        return [best]

    def _with_extras(self, units: list[Unit], chosen: list[int]) -> list[int]:
        """Gap-filling, neighbour, chunk-first and chunk-filling sentences: appended last, so
        the exact-budget loop removes them first (they carry the lowest priority)."""
        cfg = self.config
        if cfg.granularity != "sentence" or not chosen:
            return chosen
        fill = self.gap_fill
        if not (cfg.neighbours or cfg.keep_first_sentence or fill or cfg.chunk_fill):
            return chosen
        by_candidate: dict[int, list[int]] = {}
        for i, unit in enumerate(units):
            by_candidate.setdefault(unit.candidate, []).append(i)
        picked = set(chosen)
        floor = min(units[k].value for k in chosen)
        extra: list[int] = []

        def add(j: int, below: float = floor) -> None:
            if j not in picked:
                picked.add(j)
                extra.append(j)
                units[j].value = min(units[j].value, below) - 1e-6

        if fill:
            for siblings in by_candidate.values():
                marks = [k for k, i in enumerate(siblings) if i in picked]
                for a, b in zip(marks, marks[1:], strict=False):
                    # the gap in the chunk's own sentences (some may be owned elsewhere)
                    gap = units[siblings[b]].position - units[siblings[a]].position - 1
                    if 0 < gap <= fill and b - a - 1 == gap:
                        for k in range(a + 1, b):
                            add(siblings[k])
        for i in chosen:
            siblings = by_candidate[units[i].candidate]
            position = siblings.index(i)
            wanted = [siblings[0]] if cfg.keep_first_sentence else []
            wanted += siblings[max(0, position - cfg.neighbours) : position + cfg.neighbours + 1]
            for j in wanted:
                add(j)
        if cfg.chunk_fill:
            # below every other extra: the budget loop gives up whole chunks first
            lowest = min(units[k].value for k in picked)
            for siblings in by_candidate.values():
                chosen_cost = sum(units[i].cost for i in siblings if i in picked)
                if chosen_cost and chosen_cost >= cfg.chunk_fill * sum(
                    units[i].cost for i in siblings
                ):
                    for i in siblings:
                        add(i, lowest)
        return chosen + extra

    # ------------------------------------------------------------------ rendering
    def render_naive(self, candidates: list[Candidate]) -> str:
        """Whole chunks, one passage each, in rank order: what plain top-k concatenation sends."""
        return render_naive(candidates, self.config.passage_header, self.reserved)

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
