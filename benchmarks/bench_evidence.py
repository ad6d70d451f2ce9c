"""Evidence selection on held-apart questions: quality at context budgets, per data set and
task type, for the packer's scorers and ablations against naive hybrid top-k.

Run from the repository root: ``python benchmarks/bench_evidence.py`` (after
``python benchmarks/fit_unit_scorer.py`` and the ablation fits listed in ``SCORERS``). Writes
``benchmarks/results/evidence.{json,md}``.

Every figure is on the test half of ``ragtrim tune``'s split (seed 0), which the shipped
scorer never saw; "leave-one-out" rows use a scorer fitted without the data set at all.
Budgets are context tokens (``budget_scope: context``). "Quality at B" is the best quality of
any packer setting (budget cap x stop threshold) whose mean context tokens stay at or under B;
naive hybrid top-k (whole chunks, k = 1..10, the retriever's ranking) is interpolated linearly
in tokens between its two nearest k, and is n/a outside the range it covers. "current" is the
packer of the commit this work started from: ``scorer: hand, span_fill: 0,
token_cost_exponent: 0`` packs identically
(checked per question by ``bench_packer_ab.py``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from _candidates import candidates_per_query, dataset_halves  # noqa: E402
from _provenance import environment, footer, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
RESULTS = REPO / "benchmarks" / "results"
SCORERS = RESULTS / "scorers"
DATASETS = {
    "kestrel": (REPO / "corpora" / "kestrel", False, None),
    "squad2-dev-half": (SHARED / "squad2-dev-half", True, 600),
    "hotpotqa-dev-300": (SHARED / "hotpotqa-dev-300", False, None),
    "covid-qa": (SHARED / "covid-qa", False, 400),
    "pubmedqa-l": (SHARED / "pubmedqa-l", False, 300),
    "scifact": (SHARED / "scifact", False, None),
}
BUDGETS = (100, 150, 250, 400, 500, 750, 1000)
CAPS = (100, 150, 250, 400, 500, 750, 1000, 2048)
#: variant -> (packer parameters, the stop-threshold parameter and its sweep)
VARIANTS: dict[str, tuple[dict[str, Any], str, tuple[float, ...]]] = {
    "current": (
        {"scorer": "hand", "span_fill": 0, "token_cost_exponent": 0.0},
        "relative_threshold",
        (0.3, 0.45, 0.6),
    ),
    "learned": ({}, "min_probability", (0.01, 0.02, 0.04, 0.08)),
    "learned, no spans": ({"span_fill": 0}, "min_probability", (0.01, 0.02, 0.04, 0.08)),
    "learned, no conditional": (
        {"conditional": False, "scorer_path": str(SCORERS / "no-conditional.json")},
        "min_probability",
        (0.01, 0.02, 0.04, 0.08),
    ),
    "learned, by probability only": (
        {"token_cost_exponent": 0.0},
        "min_probability",
        (0.01, 0.02, 0.04, 0.08),
    ),
    "hand + spans": (
        {"scorer": "hand", "token_cost_exponent": 0.0},
        "relative_threshold",
        (0.3, 0.45, 0.6),
    ),
}
ABLATION_CAPS = (150, 250, 500, 1000)
SEED = 0


def _metric(dataset) -> str:
    from ragtrim.bench.engine import primary_metric

    return primary_metric(dataset)


def _quality(query, context: str, doc_ids: list[str], metric: str) -> float | None:
    from ragtrim.bench.metrics import answer_recall, doc_recall, evidence_recall

    if metric == "answer_recall":
        return answer_recall(context, query.span_answers)
    if metric == "evidence_recall":
        found = evidence_recall(context, query.gold_sentences)
        return None if found is None else found[0]
    return doc_recall(doc_ids, query.gold_doc_ids)


def _evidence(query, context: str) -> float | None:
    from ragtrim.bench.metrics import evidence_recall

    found = evidence_recall(context, query.gold_sentences)
    return None if found is None else found[0]


def _halves(name: str):
    """The data set and its (tune, test) questions with their candidates and retrieval."""
    path, answerable_only, limit = DATASETS[name]
    dataset, _, test = dataset_halves(path, answerable_only, limit, SEED)
    work = candidates_per_query(path, answerable_only, limit, with_retrieved=True)
    wanted = {q.id for q in test.queries}
    return (
        dataset,
        [w for w in work if w[0].id not in wanted],
        [w for w in work if w[0].id in wanted],
    )


#: the default stop is chosen on the tune halves: these settings at the default budget
DEFAULT_STOPS = (0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.06)


def stop_choice(tune_work: list, metric: str) -> dict[str, dict]:
    """Mean context tokens and quality per ``min_probability`` at the default budget, on the
    tune half (how the default was chosen; never on test questions)."""
    from ragtrim.packing.packer import ContextPacker
    from ragtrim.types import Candidate

    out = {}
    for value in DEFAULT_STOPS:
        packer = ContextPacker(min_probability=value)
        rows = []
        for query, ctx, candidates, _ in tune_work:
            result = packer.run(
                ctx, [Candidate(c.chunk, c.score, dict(c.scores)) for c in candidates]
            )
            rows.append(
                {
                    "tokens": result.context_tokens,
                    "quality": _quality(
                        query, result.context, [p.doc_id for p in result.passages], metric
                    ),
                    "evidence": None,
                }
            )
        out[str(value)] = _points(rows)
    return out


def _points(rows: list[dict]) -> dict[str, Any]:
    def mean(key: str) -> float | None:
        values = [r[key] for r in rows if r[key] is not None]
        return float(np.mean(values)) if values else None

    return {
        "tokens": float(np.mean([r["tokens"] for r in rows])),
        "quality": mean("quality"),
        "evidence_recall": mean("evidence"),
        "n": len(rows),
    }


def quality_at(points: list[dict], budget: float) -> dict | None:
    """The best-quality point whose mean tokens stay at or under ``budget``."""
    fitting = [p for p in points if p["tokens"] <= budget and p["quality"] is not None]
    return max(fitting, key=lambda p: (p["quality"], -p["tokens"])) if fitting else None


def interpolate(naive: list[dict], budget: float, key: str = "quality") -> float | None:
    """Naive top-k quality at ``budget`` tokens, linear between the nearest k; None outside."""
    ordered = sorted((p["tokens"], p[key]) for p in naive if p[key] is not None)
    if not ordered or budget < ordered[0][0] or budget > ordered[-1][0]:
        return None
    tokens = np.array([t for t, _ in ordered])
    values = np.array([q for _, q in ordered])
    return float(np.interp(budget, tokens, values))


def tokens_at_quality(naive: list[dict], quality: float) -> float | None:
    """Naive top-k tokens needed for ``quality`` (its quality is monotone enough in k to
    interpolate on the running maximum); None beyond its best."""
    ordered = sorted((p["tokens"], p["quality"]) for p in naive if p["quality"] is not None)
    best, curve = -1.0, []
    for tokens, value in ordered:
        if value > best:
            best = value
            curve.append((tokens, value))
    if not curve or quality > curve[-1][1]:
        return None
    if quality <= curve[0][1]:
        return curve[0][0]
    return float(np.interp(quality, [q for _, q in curve], [t for t, _ in curve]))


def evaluate_dataset(name: str) -> dict[str, Any]:
    from ragtrim.packing.packer import ContextPacker
    from ragtrim.types import Candidate

    dataset, tune_work, work = _halves(name)
    metric = _metric(dataset)
    counter = work[0][1].counter
    task_types = sorted({w[0].task_type for w in work})

    def grouped(rows: list[dict]) -> dict[str, dict]:
        out = {"all": _points(rows)}
        for task_type in task_types:
            picked = [r for r in rows if r["task_type"] == task_type]
            if picked:
                out[task_type] = _points(picked)
        return out

    naive: dict[int, dict] = {}
    renderer = ContextPacker(scorer="hand")
    for k in range(1, 11):
        rows = []
        for query, _, _, retrieved in work:
            top = retrieved[:k]
            context = renderer.render_naive(top)
            rows.append(
                {
                    "task_type": query.task_type,
                    "tokens": counter.count(context),
                    "quality": _quality(query, context, [c.chunk.doc_id for c in top], metric),
                    "evidence": _evidence(query, context),
                }
            )
        naive[k] = grouped(rows)

    scorer_files = {"learned, leave-one-out": SCORERS / f"without-{name}.json"}
    variants = dict(VARIANTS)
    for label, path in scorer_files.items():
        if path.exists():
            variants[label] = (
                {"scorer_path": str(path)},
                "min_probability",
                (0.01, 0.02, 0.04, 0.08),
            )
    systems: dict[str, list[dict]] = {}
    pack_ms: list[float] = []
    stops: dict[str, int] = {}
    for label, (params, knob, values) in variants.items():
        caps = CAPS if label in ("current", "learned") else ABLATION_CAPS
        if label != "learned" and not Path(params.get("scorer_path", REPO)).exists():
            continue
        for cap in caps:
            for value in values:
                packer = ContextPacker(
                    budget_scope="context", budget=cap, **params, **{knob: value}
                )
                rows = []
                for query, ctx, candidates, _ in work:
                    result = packer.run(
                        ctx, [Candidate(c.chunk, c.score, dict(c.scores)) for c in candidates]
                    )
                    if label == "learned":
                        pack_ms.append(result.stats["pack_ms"])
                        stops[result.stats["stop"]] = stops.get(result.stats["stop"], 0) + 1
                    rows.append(
                        {
                            "task_type": query.task_type,
                            "tokens": result.context_tokens,
                            "quality": _quality(
                                query, result.context, [p.doc_id for p in result.passages], metric
                            ),
                            "evidence": _evidence(query, result.context),
                        }
                    )
                systems.setdefault(label, []).append(
                    {"cap": cap, knob: value, **{"by_task": grouped(rows)}}
                )
    default_rows = []
    default_packer = ContextPacker(budget_scope="context")
    for query, ctx, candidates, _ in work:
        result = default_packer.run(
            ctx, [Candidate(c.chunk, c.score, dict(c.scores)) for c in candidates]
        )
        default_rows.append(
            {
                "task_type": query.task_type,
                "tokens": result.context_tokens,
                "quality": _quality(
                    query, result.context, [p.doc_id for p in result.passages], metric
                ),
                "evidence": _evidence(query, result.context),
            }
        )
    default = grouped(default_rows)

    table: dict[str, Any] = {}
    for group in ["all", *task_types]:
        naive_points = [naive[k][group] for k in naive if group in naive[k]]
        cells: dict[str, Any] = {}
        for budget in BUDGETS:
            cell: dict[str, Any] = {
                "naive": interpolate(naive_points, budget),
                "naive_at_3x": interpolate(naive_points, 3 * budget),
            }
            for label, points in systems.items():
                best = quality_at(
                    [p["by_task"][group] for p in points if group in p["by_task"]], budget
                )
                cell[label] = None if best is None else best["quality"]
                if label == "learned" and best is not None:
                    cell["learned_evidence_recall"] = best["evidence_recall"]
                    cell["learned_tokens"] = best["tokens"]
            cells[str(budget)] = cell
        table[group] = cells
    default_all = default["all"]
    naive_tokens = (
        tokens_at_quality([naive[k]["all"] for k in naive], default_all["quality"])
        if default_all["quality"] is not None
        else None
    )
    return {
        "metric": metric,
        "test_questions": len(work),
        "task_types": task_types,
        "naive": {str(k): v for k, v in naive.items()},
        "systems": systems,
        "default": default,
        "default_token_ratio": None
        if naive_tokens is None
        else naive_tokens / default_all["tokens"],
        "naive_tokens_at_default_quality": naive_tokens,
        "quality_at_budget": table,
        "pack_ms": {
            "p50": float(np.percentile(pack_ms, 50)) if pack_ms else None,
            "p95": float(np.percentile(pack_ms, 95)) if pack_ms else None,
            "note": "timed inside the sweep; see bench_packer_ab.py --retrieved 50",
        },
        "stops": stops,
        "tune_half_default_stop": stop_choice(tune_work, metric),
    }


def unanswerable_cost(limit: int = 300) -> dict[str, Any] | None:
    """Mean context tokens on SQuAD 2.0's unanswerable questions (test half, a seeded sample):
    what a question the candidates cannot answer costs with each packer."""
    from dataclasses import replace

    from ragtrim.bench.engine import prepared, query_candidates
    from ragtrim.bench.tune import split_halves
    from ragtrim.packing.packer import ContextPacker

    path = DATASETS["squad2-dev-half"][0]
    if not path.exists():
        return None
    dataset, pipe, _ = prepared(path, None, False, None, SEED)
    unanswerable = replace(dataset, queries=[q for q in dataset.queries if not q.span_answers])
    _, test = split_halves(unanswerable.subset(limit, SEED), SEED)
    packers = {
        "current": ContextPacker(scorer="hand", span_fill=0, token_cost_exponent=0.0),
        "learned (default)": ContextPacker(),
    }
    tokens: dict[str, list[int]] = {name: [] for name in packers}
    for query in test.queries:
        ctx, candidates, _, _ = query_candidates(pipe, pipe.stages, query)
        for name, packer in packers.items():
            tokens[name].append(packer.run(ctx, list(candidates)).context_tokens)
    return {
        "questions": len(test.queries),
        "context_tokens": {name: float(np.mean(t)) for name, t in tokens.items()},
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def render(result: dict[str, Any]) -> str:
    lines = ["# Evidence selection at context budgets (held-apart questions)", ""]
    lines += [__doc__.split("\n\n", 1)[1].strip(), ""]
    lines += [
        "## Quality at a 250-token context cap",
        "",
        "| data set | metric | test questions | naive top-k at 250 | naive top-k at 750 "
        "| current at 250 | learned at 250 | learned: evidence recall | target met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, data in result["datasets"].items():
        cell = data["quality_at_budget"]["all"]["250"]
        learned, naive3, current = cell.get("learned"), cell["naive_at_3x"], cell.get("current")
        met = (
            learned is not None
            and (naive3 is None or learned >= naive3)
            and (current is None or learned >= current)
        )
        lines.append(
            f"| {name} | {data['metric'].replace('_', ' ')} | {data['test_questions']} | "
            f"{_fmt(cell['naive'])} | {_fmt(naive3)} | {_fmt(current)} | {_fmt(learned)} | "
            f"{_fmt(cell.get('learned_evidence_recall'))} | {'yes' if met else 'no'} |"
        )
    cost = result.get("unanswerable")
    if cost:
        lines += [
            "",
            f"Unanswerable questions (SQuAD 2.0, {cost['questions']} of the test half): mean "
            "context tokens "
            + ", ".join(f"{name} {value:.0f}" for name, value in cost["context_tokens"].items())
            + " (default budget and stop).",
        ]
    lines += ["", "## The default packer", ""]
    lines += [
        "The default stop (`min_probability`) was chosen on the tune halves; mean context "
        "tokens / quality at the default budget per setting:",
        "",
        "| data set | " + " | ".join(str(v) for v in DEFAULT_STOPS) + " |",
        "|---" * (len(DEFAULT_STOPS) + 1) + "|",
    ]
    for name, data in result["datasets"].items():
        cells = data["tune_half_default_stop"]
        lines.append(
            f"| {name} | "
            + " | ".join(
                f"{cells[str(v)]['tokens']:.0f} / {_fmt(cells[str(v)]['quality'])}"
                for v in DEFAULT_STOPS
            )
            + " |"
        )
    lines.append("")
    lines += [
        "| data set | default: tokens / quality | naive top-k tokens at that quality "
        "| token ratio |",
        "|---|---|---|---|",
    ]
    for name, data in result["datasets"].items():
        d = data["default"]["all"]
        ratio = data["default_token_ratio"]
        naive_tokens = data["naive_tokens_at_default_quality"]
        lines.append(
            f"| {name} | {d['tokens']:.0f} / {_fmt(d['quality'])} | "
            f"{'n/a' if naive_tokens is None else round(naive_tokens)} | "
            f"{'n/a (above naive top-10)' if ratio is None else f'{ratio:.2f}x'} |"
        )
    ablations = [
        "current",
        "hand + spans",
        "learned",
        "learned, no spans",
        "learned, by probability only",
        "learned, no conditional",
        "learned, leave-one-out",
    ]
    for name, data in result["datasets"].items():
        lines += ["", f"## {name} ({data['metric'].replace('_', ' ')})", ""]
        present = [a for a in ablations if a in data["systems"]]
        for group, cells in data["quality_at_budget"].items():
            lines += [f"**{group}**", ""]
            lines += ["| budget | naive top-k | " + " | ".join(present) + " |"]
            lines += ["|---" * (len(present) + 2) + "|"]
            for budget, cell in cells.items():
                lines.append(
                    f"| {budget} | {_fmt(cell['naive'])} | "
                    + " | ".join(_fmt(cell.get(a)) for a in present)
                    + " |"
                )
            lines.append("")
        lines.append(f"Why packing stopped (learned, all settings): {data['stops']}")
    lines += ["", *footer(result["environment"])]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", action="append", choices=sorted(DATASETS))
    args = parser.parse_args()
    names = args.dataset or list(DATASETS)
    started = time.perf_counter()
    datasets = {}
    for name in names:
        if not DATASETS[name][0].exists():
            print(f"bench_evidence: {name} not found beside the project; skipped")
            continue
        datasets[name] = evaluate_dataset(name)
        print(f"{name}: done at {time.perf_counter() - started:.0f} s", flush=True)
    result = {
        "environment": environment(),
        "datasets": datasets,
        "unanswerable": unanswerable_cost() if args.dataset is None else None,
    }
    path = write_results(RESULTS, "evidence", result, render)
    print(render(result))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
