"""Fitting the unit scorer on labelled questions (``ragtrim tune --refit-scorer`` and
``benchmarks/fit_unit_scorer.py``).

A unit is *needed* when it overlaps a gold sentence, or holds a gold answer that the chosen
evidence does not hold yet: the scorer learns P(needed | the evidence chosen so far), which is
what the sufficiency stop compares with ``min_probability``. The conditional features depend
on what was chosen, so training examples come from the states the packer itself reaches
(DAgger-style): fit on the empty state, then roll the fitted scorer out for a few choices per
question, add those states' units, refit; every feature is computed by the packer's own code.

The fit is an L2-regularised logistic regression (scipy's L-BFGS) on standardised features,
deterministic for the same examples. Each data set's examples weigh the same in total, so the
scorer is not fitted to whichever data set has the most sentences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ragtrim.bench.metrics import answer_recall
from ragtrim.packing.features import BASE_FEATURES, FEATURES, EvidenceState, base_features
from ragtrim.packing.scorer import UnitScorer
from ragtrim.packing.units import UnitSet, build_units
from ragtrim.query import QueryContext
from ragtrim.types import Candidate


@dataclass
class LabelledQuery:
    """One question with its candidates and labels; ``group`` names its data set."""

    ctx: QueryContext
    candidates: list[Candidate]
    answers: Sequence[str] = ()
    gold_sentences: Sequence[str] = ()
    group: str = ""


@dataclass
class _Prepared:
    query: LabelledQuery
    unitset: UnitSet
    base: np.ndarray
    gold: np.ndarray
    answer: np.ndarray
    selectable: np.ndarray
    costs: np.ndarray
    examples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)


def _squash(text: str) -> str:
    return " ".join(text.split())


def _labels(unitset: UnitSet, query: LabelledQuery) -> tuple[np.ndarray, np.ndarray]:
    golds = [g for g in (_squash(s) for s in query.gold_sentences) if g]
    gold, answer = [], []
    for unit in unitset.units:
        text = _squash(unit.text)
        gold.append(bool(text) and any(text in g or g in text for g in golds))
        answer.append(bool(query.answers) and answer_recall(unit.text, query.answers) == 1.0)
    return np.array(gold, dtype=bool), np.array(answer, dtype=bool)


def _prepare(query: LabelledQuery) -> _Prepared | None:
    # the candidates the packer itself scores: it drops empty ones and non-finite scores
    candidates = [c for c in query.candidates if c.chunk.text.strip() and np.isfinite(c.score)]
    query = replace(query, candidates=candidates)
    unitset = build_units(query.ctx, candidates, "sentence", True, True)
    if not unitset.units:
        return None
    features = base_features(query.ctx, unitset, candidates, "sentence", 0.5)
    gold, answer = _labels(unitset, query)
    selectable = ~np.array([u.label for u in unitset.units], dtype=bool)
    costs = np.array([max(u.cost, 1) for u in unitset.units], dtype=np.float64)
    return _Prepared(query, unitset, features.matrix, gold, answer, selectable, costs)


def _rollout(
    item: _Prepared,
    scorer: UnitScorer | None,
    steps: int,
    negative_share: float,
    cost_exponent: float,
    rng: np.random.Generator,
) -> None:
    """Examples from the empty state and, with a scorer, from the states its greedy choices
    reach: every needed unit not yet chosen, and a seeded sample of ``negative_share`` of the
    others, weighted up by its inverse so probabilities stay calibrated."""
    state = EvidenceState(item.query.ctx, item.unitset, item.query.candidates)
    available = item.selectable.copy()
    answered = False
    for step in range(steps + 1):
        rows = np.flatnonzero(available)
        if not rows.size:
            return
        needed = item.gold[rows] | (item.answer[rows] & (not answered))
        matrix = np.hstack([item.base, state.features])
        sampled = needed | (rng.random(len(rows)) < negative_share)
        weight = np.where(needed, 1.0, 1.0 / negative_share)[sampled]
        item.examples.append((matrix[rows[sampled]], needed[sampled], weight))
        if scorer is None or step == steps:
            return
        worth = scorer.probabilities(matrix[rows]) / item.costs[rows] ** cost_exponent
        best = int(rows[np.argmax(worth)])
        available[best] = False
        answered = answered or bool(item.answer[best])
        state.add(best)


def fit_unit_scorer(
    queries: Sequence[LabelledQuery],
    l2: float = 1.0,
    rounds: int = 2,
    steps: int = 4,
    conditional: bool = True,
    negative_share: float = 0.25,
    cost_exponent: float = 0.25,
    seed: int = 0,
    training: dict[str, Any] | None = None,
) -> UnitScorer:
    """``rounds`` roll-outs of ``steps`` choices after the first fit (chosen as the packer
    chooses: probability / tokens**``cost_exponent``); every round's examples are kept, as in
    DAgger. ``conditional=False`` fits on the empty state only and holds the conditional
    features' weights at zero."""
    if not 0 < negative_share <= 1:
        raise ValueError(f"negative_share must be in (0, 1], got {negative_share}")
    prepared = [p for p in (_prepare(q) for q in queries) if p is not None]
    if not prepared:
        raise ValueError("no labelled question has a candidate with text to learn from")
    trainable = np.array([conditional or name in BASE_FEATURES for name in FEATURES])
    scorer: UnitScorer | None = None
    rng = np.random.default_rng(seed)
    for _ in range((rounds if conditional else 0) + 1):
        for item in prepared:
            _rollout(item, scorer, steps, negative_share, cost_exponent, rng)
        scorer = _fit(prepared, l2, trainable, {**(training or {}), "cost_exponent": cost_exponent})
    assert scorer is not None
    return scorer


def _fit(
    prepared: list[_Prepared], l2: float, trainable: np.ndarray, training: dict[str, Any]
) -> UnitScorer:
    from scipy.optimize import minimize

    matrices, labels, weights = [], [], []
    groups = [p.query.group for p in prepared]
    sizes = {g: 0.0 for g in groups}
    for item in prepared:
        sizes[item.query.group] += sum(float(w.sum()) for _, _, w in item.examples)
    for item in prepared:
        for matrix, needed, weight in item.examples:
            matrices.append(matrix)
            labels.append(needed)
            weights.append(weight / sizes[item.query.group])
    x = np.vstack(matrices)
    y = np.concatenate(labels).astype(np.float64)
    if y.min() == y.max():
        raise ValueError("the labelled questions have no needed unit (or only needed units)")
    w = np.concatenate(weights)
    w *= len(w) / w.sum()
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = (x - mean) / scale * trainable

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        logits = z @ theta[:-1] + theta[-1]
        p = 1.0 / (1.0 + np.exp(-np.clip(logits, -30, 30)))
        nll = np.sum(w * (np.logaddexp(0.0, logits) - y * logits))
        residual = w * (p - y)
        grad = np.append(z.T @ residual + l2 * theta[:-1], residual.sum())
        return float(nll + 0.5 * l2 * theta[:-1] @ theta[:-1]), grad

    result = minimize(loss, np.zeros(z.shape[1] + 1), jac=True, method="L-BFGS-B")
    theta = result.x
    info = dict(training)
    info.update(
        examples=int(len(y)),
        needed=int(y.sum()),
        questions=len(prepared),
        groups=sorted(sizes),
        l2=l2,
        conditional=bool(trainable.all()),
    )
    return UnitScorer(tuple(FEATURES), mean, scale, theta[:-1], float(theta[-1]), info)
