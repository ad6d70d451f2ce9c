import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtrim.packing.selection import adaptive_cutoff, greedy_select, knapsack_select


def test_adaptive_cutoff_relative_threshold():
    values = np.array([0.2, 0.9, 0.5, 0.85])
    assert list(adaptive_cutoff(values, 0.5)) == [1, 3, 2]


def test_adaptive_cutoff_gap_cuts_at_the_elbow():
    values = np.array([0.9, 0.88, 0.4, 0.38])
    # drop of 0.48 > 0.3 * 0.9 after the second unit
    assert list(adaptive_cutoff(values, 0.0, gap=0.3)) == [0, 1]


def test_greedy_prefers_value_per_token_and_respects_capacity():
    values = np.array([1.0, 0.9, 0.8])
    costs = np.array([100, 10, 10])
    assert greedy_select(values, costs, capacity=25) == [1, 2]


def test_greedy_redundancy_penalty_skips_near_repeats():
    values = np.array([1.0, 0.99, 0.7])
    costs = np.array([10, 10, 10])
    similarity = np.array([[0, 1.0, 0], [1.0, 0, 0], [0, 0, 0]])
    chosen = greedy_select(values, costs, 100, similarity, redundancy_penalty=1.0, min_marginal=0.5)
    assert chosen == [0, 2]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 1), st.integers(1, 40)), min_size=0, max_size=9),
    st.integers(0, 120),
)
def test_knapsack_is_optimal_and_within_capacity(items, capacity):
    values = np.array([v for v, _ in items])
    costs = np.array([c for _, c in items])
    chosen = knapsack_select(values, costs, capacity)
    assert sum(costs[i] for i in chosen) <= capacity
    best = 0.0
    for r in range(len(items) + 1):
        for subset in itertools.combinations(range(len(items)), r):
            if sum(costs[i] for i in subset) <= capacity:
                best = max(best, sum(values[i] for i in subset))
    assert sum(values[i] for i in chosen) >= best - 1e-9


def test_knapsack_coarsening_never_exceeds_capacity():
    rng = np.random.default_rng(0)
    values, costs = rng.random(400), rng.integers(1, 300, 400)
    chosen = knapsack_select(values, costs, 20_000, max_cells=100_000)
    assert sum(costs[i] for i in chosen) <= 20_000
