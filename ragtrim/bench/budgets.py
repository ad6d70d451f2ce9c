"""Quality at fixed context budgets: the best ragtrim configuration of a sweep that fits each
budget, next to naive hybrid top-k interpolated to the same number of tokens.

A token ratio at one quality level (the headline) says nothing about a user who has a fixed
context budget; these tables answer "at 250 context tokens, how much quality do I get?".
Budgets count context tokens only (budget scope ``context``): the prompt's fixed part is the
same for every system. A configuration fits a budget when its *mean* context tokens per query
are at most the budget. The naive curve is only interpolated, never extrapolated: outside the
measured top-k range the naive quality is ``None`` ("n/a").

Everything here is computed from the records and summaries ``ragtrim bench`` already has; no
query is run again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ragtrim.bench.engine import System, summarise

BUDGETS = (100, 150, 250, 400, 500, 750, 1000)
BUDGET_SCOPE = "context"
BASELINE_MODE = "hybrid"

Point = tuple[float, float]  # (mean context tokens, mean quality)


def interpolate(points: Mapping[str, Point], budget: float) -> tuple[float, list[str]] | None:
    """Quality of the naive curve at ``budget`` tokens, and the two points it lies between.

    Linear in tokens between the nearest point at or below the budget and the nearest at or
    above it; a budget equal to a point's tokens is that point's quality. ``None`` below the
    cheapest point or above the dearest one (no extrapolation) and with no points at all.
    """
    ordered = sorted(points.items(), key=lambda item: (item[1][0], item[0]))
    below = [(name, p) for name, p in ordered if p[0] <= budget]
    above = [(name, p) for name, p in ordered if p[0] >= budget]
    if not below or not above:
        return None
    (low_name, (low_tokens, low_quality)) = below[-1]
    (high_name, (high_tokens, high_quality)) = above[0]
    if high_tokens == low_tokens:  # the budget sits exactly on a point
        return low_quality, [low_name, high_name]
    share = (budget - low_tokens) / (high_tokens - low_tokens)
    return low_quality + share * (high_quality - low_quality), [low_name, high_name]


def best_under_budget(points: Mapping[str, Point], budget: float) -> tuple[str, Point] | None:
    """The system with the highest quality among those with mean tokens <= ``budget``.

    Ties in quality go to fewer tokens, then to the name (so the choice is reproducible).
    ``None`` when no system fits.
    """
    fitting = [(name, p) for name, p in points.items() if p[0] <= budget]
    if not fitting:
        return None
    return min(fitting, key=lambda item: (-item[1][1], item[1][0], item[0]))


def budget_metrics(primary: str, summary: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The primary metric, plus evidence recall wherever gold sentences exist (some system has
    an evidence recall): multi-hop answers can be found while half their evidence is lost."""
    metrics = [primary]
    if primary != "evidence_recall" and any("evidence_recall" in s for s in summary.values()):
        metrics.append("evidence_recall")
    return metrics


def _scope_report(
    summary: Mapping[str, Mapping[str, Any]],
    ragtrim: Sequence[str],
    naive: Sequence[str],
    metrics: Sequence[str],
    budgets: Sequence[int],
) -> dict[str, Any]:
    queries = max((s["queries"] for s in summary.values()), default=0)
    naive_tokens = sorted(summary[n]["context_tokens"] for n in naive if n in summary)
    report: dict[str, Any] = {
        "queries": queries,
        "naive_token_range": [naive_tokens[0], naive_tokens[-1]] if naive_tokens else None,
        "metrics": {},
    }
    for metric in metrics:
        ours = {
            n: (summary[n]["context_tokens"], summary[n][metric]["mean"])
            for n in ragtrim
            if n in summary and metric in summary[n]
        }
        if not ours:
            continue  # no query of this scope has the metric (e.g. unanswerable questions)
        theirs = {
            n: (summary[n]["context_tokens"], summary[n][metric]["mean"])
            for n in naive
            if n in summary and metric in summary[n]
        }
        rows = []
        for budget in budgets:
            row: dict[str, Any] = {"budget": budget}
            best = best_under_budget(ours, budget)
            if best is None:
                row.update(best_system=None, best_context_tokens=None, best_quality=None)
                row["best_ci95"] = None
            else:
                name, (tokens, quality) = best
                row.update(best_system=name, best_context_tokens=tokens, best_quality=quality)
                row["best_ci95"] = list(summary[name][metric]["ci95"])
            naive_point = interpolate(theirs, budget)
            row["naive_quality"] = None if naive_point is None else naive_point[0]
            row["naive_between"] = None if naive_point is None else naive_point[1]
            rows.append(row)
        n = max(summary[name][metric]["n"] for name in ours)
        report["metrics"][metric] = {"n": n, "rows": rows}
    return report


def quality_at_budget(
    records: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Mapping[str, Any]],
    systems: Sequence[System],
    metrics: Sequence[str],
    budgets: Sequence[int] = BUDGETS,
    seed: int = 0,
) -> dict[str, Any]:
    """Per budget and metric, over all queries (from ``summary``) and per task type (the same
    records summarised per task type): the best ragtrim system of the sweep that fits and the
    interpolated naive hybrid top-k quality. See the module docstring for the rules."""
    ragtrim = [s.name for s in systems if s.kind == "ragtrim"]
    naive = [s.name for s in systems if s.kind == "naive" and s.mode == BASELINE_MODE]
    task_types = sorted({r["task_type"] for r in records})
    by_type: dict[str, Any] = {}
    for task_type in task_types:
        rows = [r for r in records if r["task_type"] == task_type]
        typed = summarise(rows, metrics, seed)
        by_type[task_type] = _scope_report(typed, ragtrim, naive, metrics, budgets)
    return {
        "budget_scope": BUDGET_SCOPE,
        "budgets": list(budgets),
        "baseline": f"naive-{BASELINE_MODE}-top<k>",
        "baseline_systems": naive,
        "metrics": list(metrics),
        "all": _scope_report(summary, ragtrim, naive, metrics, budgets),
        "task_types": by_type,
    }


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _scope_table(scope: Mapping[str, Any], budgets: Sequence[int]) -> list[str]:
    metrics = list(scope["metrics"])
    header = ["context budget"]
    for metric in metrics:
        label = metric.replace("_", " ")
        header += [f"{label}: best ragtrim (context tok)", label, "naive hybrid top-k"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, budget in enumerate(budgets):
        cells = [f"{budget:,}"]
        for metric in metrics:
            row = scope["metrics"][metric]["rows"][i]
            if row["best_system"] is None:
                cells += ["none fits", "n/a"]
            else:
                cells += [
                    f"{row['best_system']} ({row['best_context_tokens']:.0f})",
                    _cell(row["best_quality"]),
                ]
            cells.append(_cell(row["naive_quality"]))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown_section(report: Mapping[str, Any]) -> list[str]:
    """The "Quality at context budgets" section of ``results.md``."""
    budgets = report["budgets"]
    lines = [
        "## Quality at context budgets",
        "",
        "Budget scope `context`: a ragtrim configuration of this sweep fits a budget when its "
        "mean context tokens per query are at most the budget; the table shows the best fitting "
        'one ("none fits" when none does). Naive hybrid top-k is interpolated linearly in mean '
        'context tokens between the two nearest top-k points, "n/a" outside the measured range.',
        "",
    ]
    scopes = [("all queries", report["all"])]
    types = report["task_types"]
    if len(types) > 1:
        scopes += [(f"task type `{name}`", scope) for name, scope in types.items()]
    for title, scope in scopes:
        lines.append(f"### {title} ({scope['queries']})")
        lines.append("")
        if not scope["metrics"]:
            lines += ["No query of this scope has a quality measure.", ""]
            continue
        span = scope["naive_token_range"]
        measured = [f"{m.replace('_', ' ')} {s['n']}" for m, s in scope["metrics"].items()]
        lines.append(
            f"Queries with a quality measure: {', '.join(measured)}. "
            + (
                f"Naive hybrid top-k measured from {span[0]:.1f} to {span[1]:.1f} context tokens."
                if span
                else "No naive hybrid top-k baseline in this sweep."
            )
        )
        lines.append("")
        lines += [*_scope_table(scope, budgets), ""]
    if len(types) == 1:
        lines += [f"One task type (`{next(iter(types))}`): the table above is its table.", ""]
    return lines
