"""Regenerate the headline tables of benchmarks/README.md from the committed results files.

    python benchmarks/summarize.py

Rewrites the text between the ``<!-- headline:start -->`` / ``<!-- headline:end -->``,
``<!-- budgets:start -->`` / ``<!-- budgets:end -->`` and ``<!-- tuning:start -->`` /
``<!-- tuning:end -->`` markers, so every number there comes from a results file that one
documented command produced.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATASETS = ["kestrel", "squad2-dev-half", "covid-qa", "pubmedqa-l", "scifact", "hotpotqa-dev-300"]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _headline_rows() -> list[str]:
    header = [
        "data set",
        "queries",
        "quality metric",
        "naive hybrid top-5: tokens / quality",
        "ragtrim default: tokens / quality",
        "cheapest ragtrim at >= top-5 quality",
        "token ratio",
        "evidence recall: top-5 / default",
    ]
    rows = [_row(header), "|" + "---|" * len(header)]
    for name in DATASETS:
        path = RESULTS / name / "results.json"
        if not path.exists():
            rows.append(_row([name, "not run"] + [""] * (len(header) - 2)))
            continue
        result = json.loads(path.read_text(encoding="utf-8"))
        metric, summary, head = result["metric"], result["summary"], result["headline"]
        base, default = summary["naive-hybrid-top5"], summary["ragtrim"]
        if head.get("reached"):
            cheapest = f"{head['system']}: {head['context_tokens']:.0f} / {head['quality']:.3f}"
            ratio = f"**{head['token_ratio']:.2f}x**"
            if head["token_ratio"] < 1:
                ratio += f" ({1 / head['token_ratio']:.2f}x more tokens)"
        else:
            cheapest = f"not reached (best {head.get('best_ragtrim_quality', float('nan')):.3f})"
            ratio = "—"
        rows.append(
            _row(
                [
                    f"[{name}](results/{name}/results.md)",
                    str(result["dataset"]["queries"]),
                    metric.replace("_", " "),
                    f"{base['context_tokens']:.0f} / {base[metric]['mean']:.3f}",
                    f"{default['context_tokens']:.0f} / {default[metric]['mean']:.3f}",
                    cheapest,
                    ratio,
                    _evidence(metric, base, default),
                ]
            )
        )
    return rows


def _evidence(metric: str, base: dict, default: dict) -> str:
    """Evidence recall beside another quality metric, where the data set has gold sentences."""
    if metric == "evidence_recall" or "evidence_recall" not in default:
        return "—"
    return f"{base['evidence_recall']['mean']:.3f} / {default['evidence_recall']['mean']:.3f}"


def _budget_cell(row: dict) -> str:
    ours = "none fits" if row["best_quality"] is None else f"{row['best_quality']:.3f}"
    naive = "n/a" if row["naive_quality"] is None else f"{row['naive_quality']:.3f}"
    return f"{ours} / {naive}"


def _budget_rows() -> list[str]:
    """Quality at context budgets: per data set, over all queries and per task type, the best
    ragtrim configuration under each budget / naive hybrid top-k interpolated there. The
    budgets are the ones the results files carry (all must carry the same)."""
    reports = {}
    for name in DATASETS:
        path = RESULTS / name / "results.json"
        if path.exists():
            reports[name] = json.loads(path.read_text(encoding="utf-8")).get("quality_at_budget")
    budgets = next((r["budgets"] for r in reports.values() if r), None)
    if budgets is None:
        return ["No results file carries a quality-at-budget report yet."]
    header = ["data set", "queries", "quality", *(f"{b:,}" for b in budgets)]
    rows = [_row(header), "|" + "---|" * len(header)]
    for name in DATASETS:
        report = reports.get(name)
        if report is None:
            why = "results predate this report" if name in reports else "not run"
            rows.append(_row([name, why] + [""] * (len(header) - 2)))
            continue
        if report["budgets"] != budgets:
            raise SystemExit(f"{name}: budgets {report['budgets']} are not {budgets}")
        scopes = [(f"all ({report['all']['queries']})", report["all"])]
        if len(report["task_types"]) > 1:
            scopes += [(f"{t} ({s['queries']})", s) for t, s in report["task_types"].items()]
        for label, scope in scopes:
            for metric, entry in scope["metrics"].items():
                cells = [_budget_cell(row) for row in entry["rows"]]
                rows.append(_row([name, label, metric.replace("_", " "), *cells]))
    return rows


def _tuning_rows() -> list[str]:
    header = [
        "data set",
        "half",
        "default: prompt (context) tokens / quality",
        "tuned: prompt (context) tokens / quality",
        "prompt token reduction",
        "context token reduction",
        "quality ratio",
    ]
    rows = [_row(header), "|" + "---|" * len(header)]
    for path in sorted((RESULTS / "tuning").glob("*.report.json")):
        report = json.loads(path.read_text(encoding="utf-8"))
        metric = report["metric"]
        for half in ("tune_half", "test_half"):
            r = report[half]
            default, tuned = r["default"], r["tuned"]
            rows.append(
                _row(
                    [
                        report["dataset"],
                        half.split("_")[0],
                        f"{default['prompt_tokens']:.0f} ({default['context_tokens']:.0f}) / "
                        f"{default[metric]:.3f}",
                        f"{tuned['prompt_tokens']:.0f} ({tuned['context_tokens']:.0f}) / "
                        f"{tuned[metric]:.3f}",
                        f"{r['token_reduction']:.2f}x",
                        f"{r['context_token_reduction']:.2f}x",
                        f"{r['quality_ratio']:.3f}",
                    ]
                )
            )
    return rows


def _replace(text: str, marker: str, rows: list[str]) -> str:
    pattern = re.compile(rf"(<!-- {marker}:start -->\n).*?(<!-- {marker}:end -->)", re.S)
    return pattern.sub(lambda m: m.group(1) + "\n".join(rows) + "\n" + m.group(2), text)


def main() -> None:
    readme = HERE / "README.md"
    text = readme.read_text(encoding="utf-8")
    text = _replace(text, "headline", _headline_rows())
    text = _replace(text, "budgets", _budget_rows())
    text = _replace(text, "tuning", _tuning_rows())
    readme.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
