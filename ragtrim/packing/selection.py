"""Choosing which units (sentences or chunks) enter the context: pure functions.

``value[i]`` is a unit's relevance, ``cost[i]`` its token cost, ``similarity[i, j]`` how much
two units say the same thing. The selectors return unit indices in the order chosen
(``sequential_select`` also why it stopped).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def adaptive_cutoff(
    values: np.ndarray, relative_threshold: float, gap: float | None = None
) -> np.ndarray:
    """Indices of the units worth considering at all, best first.

    A unit survives when its value is at least ``relative_threshold`` x the best value; with
    ``gap`` set, the ranking is also cut at the first drop larger than ``gap`` x the best
    value (the "elbow": the answer-bearing units usually stand clear of the rest).
    """
    if values.size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-values, kind="stable")
    best = float(values[order[0]])
    if best <= 0:
        return order[:1]
    keep = order[values[order] >= relative_threshold * best]
    if gap is not None and len(keep) > 1:
        drops = -np.diff(values[keep])
        big = np.flatnonzero(drops > gap * best)
        if big.size:
            keep = keep[: big[0] + 1]
    return keep


def greedy_select(
    values: np.ndarray,
    costs: np.ndarray,
    capacity: int,
    similarity: np.ndarray | Callable[[int], np.ndarray] | None = None,
    redundancy_penalty: float = 0.0,
    min_marginal: float = 0.0,
    cost_exponent: float = 1.0,
) -> list[int]:
    """Greedy by marginal value per token**cost_exponent, with a redundancy penalty.

    The marginal value of a unit is ``value x (1 - penalty x max similarity to anything
    already chosen)``; units whose marginal value falls below ``min_marginal`` are never
    chosen, so near-repeats of chosen text stop costing tokens. Units that do not fit in the
    remaining capacity are skipped, smaller ones may still fit. ``similarity`` is a matrix or
    a function returning one row (so only the rows of chosen units are ever computed).
    """
    n = len(values)
    chosen: list[int] = []
    remaining = capacity
    max_sim = np.zeros(n)
    available = np.ones(n, dtype=bool)
    costs = np.maximum(np.asarray(costs, dtype=np.float64), 1.0)
    while available.any():
        marginal = values * (1.0 - redundancy_penalty * max_sim)
        fits = available & (marginal >= min_marginal) & (costs <= remaining)
        ratio = np.where(fits, marginal / costs**cost_exponent, -np.inf)
        best = int(np.argmax(ratio))
        if not np.isfinite(ratio[best]):
            break
        chosen.append(best)
        available[best] = False
        remaining -= int(costs[best])
        if similarity is not None:
            row = similarity(best) if callable(similarity) else similarity[best]
            max_sim = np.maximum(max_sim, row)
    return chosen


def knapsack_select(
    values: np.ndarray, costs: np.ndarray, capacity: int, max_cells: int = 2_000_000
) -> list[int]:
    """Exact 0/1 knapsack by dynamic programming over token costs.

    When ``n x capacity`` exceeds ``max_cells`` the costs are coarsened (divided by a common
    factor and rounded *up*), so the result still never exceeds ``capacity``; it is then
    optimal for the coarsened costs only.
    """
    n = len(values)
    if n == 0 or capacity <= 0:
        return []
    costs = np.maximum(np.asarray(costs, dtype=np.int64), 1)
    scale = max(1, math.ceil(n * capacity / max_cells))
    weights = -(-costs // scale)
    cap = capacity // scale
    best = np.zeros(cap + 1)
    taken = np.zeros((n, cap + 1), dtype=bool)
    for i in range(n):
        w = int(weights[i])
        if w > cap:
            continue
        candidate = best[: cap + 1 - w] + values[i]
        improve = candidate > best[w:]
        taken[i, w:] = improve
        best[w:] = np.where(improve, candidate, best[w:])
    chosen = []
    c = cap
    for i in range(n - 1, -1, -1):
        if taken[i, c]:
            chosen.append(i)
            c -= int(weights[i])
    chosen.reverse()
    return sorted(chosen, key=lambda i: -values[i])


def sequential_select(
    probabilities: Callable[[], np.ndarray],
    choose: Callable[[int], None],
    costs: np.ndarray,
    capacity: int,
    selectable: np.ndarray,
    min_probability: float,
    max_units: int | None = None,
    cost_exponent: float = 0.0,
) -> tuple[list[int], str]:
    """Greedy by calibrated probability, re-scored after every choice; returns the chosen
    units and why selection stopped.

    ``probabilities()`` gives every unit's current P(evidence | what is chosen so far);
    ``choose(i)`` records a choice (so the next call re-scores against it). Selection stops
    when the best remaining unit is unlikely to be needed (``"sufficient"``: below
    ``min_probability``), when nothing left fits (``"budget"``), when every unit is chosen
    (``"exhausted"``) or at ``max_units``. The first unit is always taken if it fits: the
    packer never answers with an empty context while a candidate fits the budget. With
    ``cost_exponent`` the choice is by probability / tokens**exponent.
    """
    costs = np.maximum(np.asarray(costs, dtype=np.int64), 1)
    available = np.asarray(selectable, dtype=bool).copy()
    remaining = capacity
    chosen: list[int] = []
    while True:
        if max_units is not None and len(chosen) >= max_units:
            return chosen, "max_units"
        if not available.any():
            return chosen, "exhausted"
        fits = available & (costs <= remaining)
        if not fits.any():
            return chosen, "budget"
        current = np.where(fits, probabilities(), -np.inf)
        if chosen:
            likely = current >= min_probability
            if not likely.any():
                return chosen, "sufficient"
            current = np.where(likely, current, -np.inf)
        worth = current if not cost_exponent else current / costs**cost_exponent
        best = int(np.argmax(worth))
        chosen.append(best)
        available[best] = False
        remaining -= int(costs[best])
        choose(best)
