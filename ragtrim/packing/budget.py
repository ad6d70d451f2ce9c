"""Fitting the rendered context to the exact token budget.

Selection works with estimated unit costs; the emitted prompt is counted with the real
tokenizer and, while it is over budget, the least valuable units are removed, as many at a
time as their estimated costs say are needed. This check runs on every call, so the budget can
never be exceeded whatever the estimates were.
"""

from __future__ import annotations

from collections.abc import Callable

from ragtrim.packing.units import Unit
from ragtrim.types import Passage

Render = Callable[[list[int]], tuple[str, list[Passage]]]


def fit_to_budget(
    units: list[Unit], chosen: list[int], render: Render, excess: Callable[[str], int]
) -> tuple[list[int], str, list[Passage]]:
    """The chosen units that fit, in their chosen order, with their rendered context.

    ``excess(context)`` is the number of tokens over the budget (<= 0: fits); keeping nothing
    must always fit (the template alone is checked against the budget before packing).
    """
    by_value = sorted(chosen, key=lambda i: (-units[i].value, i))
    position = {i: rank for rank, i in enumerate(chosen)}
    keep = len(by_value)
    while True:
        kept = sorted(by_value[:keep], key=position.__getitem__)
        context, passages = render(kept)
        over = excess(context)
        if over <= 0 or keep == 0:
            return kept, context, passages
        removed = 0
        while keep > 0 and (removed < over or removed == 0):
            keep -= 1
            removed += units[by_value[keep]].cost
