"""Quality at context budgets: interpolation of the naive curve, the best configuration that
fits a budget, per task type, and the results.md section. Expected values are computed by hand
in the comments."""

from __future__ import annotations

from typing import Any

import pytest

from ragtrim.bench.budgets import (
    BUDGETS,
    best_under_budget,
    budget_metrics,
    interpolate,
    markdown_section,
    quality_at_budget,
)
from ragtrim.bench.engine import System, baseline_systems, summarise

NAIVE = {
    "naive-hybrid-top3": (400.0, 0.8),  # out of order on purpose
    "naive-hybrid-top1": (100.0, 0.5),
    "naive-hybrid-top2": (200.0, 0.7),
}


@pytest.mark.parametrize(
    ("budget", "expected", "between"),
    [
        (100, 0.5, ["naive-hybrid-top1", "naive-hybrid-top1"]),  # on a point: that point
        (150, 0.6, ["naive-hybrid-top1", "naive-hybrid-top2"]),  # 0.5 + 50/100 * 0.2
        (250, 0.725, ["naive-hybrid-top2", "naive-hybrid-top3"]),  # 0.7 + 50/200 * 0.1
        (400, 0.8, ["naive-hybrid-top3", "naive-hybrid-top3"]),
    ],
)
def test_interpolate_is_linear_between_the_two_nearest_points(budget, expected, between):
    quality, names = interpolate(NAIVE, budget)
    assert quality == pytest.approx(expected) and names == between


def test_interpolate_does_not_extrapolate():
    assert interpolate(NAIVE, 99.9) is None
    assert interpolate(NAIVE, 400.1) is None
    assert interpolate({}, 100) is None


def test_interpolate_follows_tokens_not_k_when_quality_is_not_monotone():
    # a fourth point between top2 and top3 with lower quality: 250 lies between 200 and 300
    points = {**NAIVE, "naive-hybrid-top4": (300.0, 0.6)}
    quality, names = interpolate(points, 250)
    assert quality == pytest.approx(0.65)  # 0.7 + 50/100 * (0.6 - 0.7)
    assert names == ["naive-hybrid-top2", "naive-hybrid-top4"]


def test_best_under_budget_takes_the_best_quality_that_fits():
    points = {
        "cheap": (90.0, 0.6),
        "middle": (140.0, 0.7),
        "good": (240.0, 0.9),
        "good-cheaper": (230.0, 0.9),  # same quality, fewer tokens: wins the tie
        "dear": (600.0, 0.95),
    }
    assert best_under_budget(points, 80) is None  # no configuration fits
    assert best_under_budget(points, 90) == ("cheap", (90.0, 0.6))  # "at most", inclusive
    assert best_under_budget(points, 150) == ("middle", (140.0, 0.7))
    assert best_under_budget(points, 235) == ("good-cheaper", (230.0, 0.9))
    assert best_under_budget(points, 250) == ("good-cheaper", (230.0, 0.9))
    assert best_under_budget(points, 1000) == ("dear", (600.0, 0.95))
    twins = {"b": (10.0, 0.5), "a": (10.0, 0.5)}
    assert best_under_budget(twins, 10) == ("a", (10.0, 0.5))


def test_budget_metrics_add_evidence_recall_where_gold_sentences_exist():
    with_evidence = {"s": {"answer_recall": {}, "evidence_recall": {}}}
    assert budget_metrics("answer_recall", with_evidence) == ["answer_recall", "evidence_recall"]
    assert budget_metrics("answer_recall", {"s": {"answer_recall": {}}}) == ["answer_recall"]
    assert budget_metrics("evidence_recall", with_evidence) == ["evidence_recall"]


# Three queries: q1, q2 of task type "a" (answers and evidence), q3 of "b" (evidence only).
# system: per query (context tokens, answer recall, evidence recall)
PER_QUERY: dict[str, list[tuple[int, float | None, float]]] = {
    "naive-hybrid-top1": [(100, 0.0, 0.0), (100, 1.0, 0.5), (200, None, 1.0)],
    "naive-hybrid-top2": [(300, 1.0, 1.0), (300, 1.0, 1.0), (400, None, 1.0)],
    # not the hybrid curve: were it used, 100 tokens would interpolate from its 10
    "naive-bm25-top1": [(10, 1.0, 1.0), (10, 1.0, 1.0), (10, None, 1.0)],
    "ragtrim": [(50, 1.0, 0.5), (50, 0.0, 0.5), (350, None, 1.0)],
    "ragtrim[x]": [(150, 1.0, 1.0), (150, 1.0, 0.0), (150, None, 0.0)],
}
SYSTEMS = [
    *baseline_systems(("hybrid",), (1, 2)),
    *baseline_systems(("bm25",), (1,)),
    System("ragtrim", "ragtrim"),
    System("ragtrim[x]", "ragtrim", overrides={"packer": {"relative_threshold": 0.5}}),
]
METRICS = ["answer_recall", "evidence_recall"]


def _records() -> list[dict[str, Any]]:
    records = []
    for system, rows in PER_QUERY.items():
        for i, (tokens, answer, evidence) in enumerate(rows):
            records.append(
                {
                    "system": system,
                    "query_id": f"q{i + 1}",
                    "task_type": "a" if i < 2 else "b",
                    "context_tokens": tokens,
                    "prompt_tokens": tokens + 50,
                    "latency_ms": 1.0,
                    "answer_recall": answer,
                    "evidence_recall": evidence,
                }
            )
    return records


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    records = _records()
    return quality_at_budget(
        records, summarise(records, METRICS), SYSTEMS, METRICS, budgets=(100, 150, 250)
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 9)


def _cells(report: dict[str, Any], scope: str, metric: str) -> list[tuple]:
    """(budget, best system, its quality, naive quality) per row, rounded to 9 decimals."""
    where = report["all"] if scope == "all" else report["task_types"][scope]
    return [
        (r["budget"], r["best_system"], _round(r["best_quality"]), _round(r["naive_quality"]))
        for r in where["metrics"][metric]["rows"]
    ]


def test_quality_at_budget_over_all_queries(report):
    # hybrid top1: 133.3 tokens, top2: 333.3 (means over all three queries); answer recall
    # over q1, q2 only: top1 0.5, top2 1.0; ragtrim 150 tok / 0.5, ragtrim[x] 150 tok / 1.0
    assert report["budget_scope"] == "context" and report["budgets"] == [100, 150, 250]
    assert report["baseline_systems"] == ["naive-hybrid-top1", "naive-hybrid-top2"]
    assert report["all"]["queries"] == 3
    assert report["all"]["naive_token_range"] == [pytest.approx(400 / 3), pytest.approx(1000 / 3)]
    assert _cells(report, "all", "answer_recall") == [
        (100, None, None, None),  # nothing fits, and 100 < 133.3 is outside the naive range
        (150, "ragtrim[x]", 1.0, _round(0.5 + (150 - 400 / 3) / 200 * 0.5)),  # 0.5417
        (250, "ragtrim[x]", 1.0, _round(0.5 + (250 - 400 / 3) / 200 * 0.5)),  # 0.7917
    ]
    # evidence: ragtrim 2/3 beats ragtrim[x] 1/3 at the same 150 tokens; naive 0.5 -> 1.0
    assert _cells(report, "all", "evidence_recall") == [
        (100, None, None, None),
        (150, "ragtrim", _round(2 / 3), _round(0.5 + (150 - 400 / 3) / 200 * 0.5)),
        (250, "ragtrim", _round(2 / 3), _round(0.5 + (250 - 400 / 3) / 200 * 0.5)),
    ]
    row = report["all"]["metrics"]["answer_recall"]["rows"][1]
    assert row["best_context_tokens"] == 150.0
    assert row["naive_between"] == ["naive-hybrid-top1", "naive-hybrid-top2"]
    assert report["all"]["metrics"]["answer_recall"]["n"] == 2


def test_quality_at_budget_per_task_type(report):
    # "a": top1 100 tok / 0.5, top2 300 / 1.0; ragtrim 50 / 0.5, ragtrim[x] 150 / 1.0
    assert report["task_types"]["a"]["queries"] == 2
    assert _cells(report, "a", "answer_recall") == [
        (100, "ragtrim", 0.5, 0.5),  # 100 is top1's own point
        (150, "ragtrim[x]", 1.0, _round(0.625)),  # 0.5 + 50/200 * 0.5
        (250, "ragtrim[x]", 1.0, _round(0.875)),  # 0.5 + 150/200 * 0.5
    ]
    # "b" has no answer recall at all: the metric is left out, not reported as 0
    assert list(report["task_types"]["b"]["metrics"]) == ["evidence_recall"]
    # "b": top1 200 tok / 1.0, top2 400 / 1.0; ragtrim 350 / 1.0, ragtrim[x] 150 / 0.0
    assert _cells(report, "b", "evidence_recall") == [
        (100, None, None, None),
        (150, "ragtrim[x]", 0.0, None),  # fits, and 150 < 200 is below the naive range
        (250, "ragtrim[x]", 0.0, 1.0),
    ]


def test_markdown_section_renders_every_scope_with_none_fits_and_na(report):
    text = "\n".join(markdown_section(report))
    assert "## Quality at context budgets" in text
    assert "### all queries (3)" in text
    assert "### task type `a` (2)" in text and "### task type `b` (1)" in text
    assert "| 100 | none fits | n/a | n/a | none fits | n/a | n/a |" in text
    assert "| 150 | ragtrim[x] (150) | 1.000 | 0.542 | ragtrim (150) | 0.667 | 0.542 |" in text
    # "b" has only evidence recall: three columns fewer
    assert "| 250 | ragtrim[x] (150) | 0.000 | 1.000 |" in text
    assert "Naive hybrid top-k measured from 133.3 to 333.3 context tokens." in text


def test_markdown_section_of_the_default_budgets_formats_thousands():
    records = _records()
    summary = summarise(records, METRICS)
    text = "\n".join(markdown_section(quality_at_budget(records, summary, SYSTEMS, METRICS)))
    assert [int(b) for b in BUDGETS] == [100, 150, 250, 400, 500, 750, 1000]
    assert "| 1,000 | ragtrim[x] (150) | 1.000 | n/a |" in text  # above top2's 333 tokens


def test_markdown_section_with_one_task_type_has_no_per_type_tables():
    records = [r for r in _records() if r["task_type"] == "a"]
    summary = summarise(records, METRICS)
    report = quality_at_budget(records, summary, SYSTEMS, METRICS, budgets=(100,))
    assert list(report["task_types"]) == ["a"]
    assert report["task_types"]["a"]["metrics"] == report["all"]["metrics"]
    text = "\n".join(markdown_section(report))
    assert "### all queries (2)" in text and "### task type" not in text
    assert "One task type (`a`): the table above is its table." in text
    # top1 is 100 tokens / 0.5 for "a": on the point, so not n/a
    assert "| 100 | ragtrim (50) | 0.500 | 0.500 | ragtrim (50) | 0.500 | 0.250 |" in text
