"""How much of a ``ragtrim tune`` result is the luck of one split: ten seeds, test half each.

Run from the repository root: ``python benchmarks/bench_tuning_seeds.py``. Uses
``ragtrim.bench.tune.split_spread`` with the tuner's defaults (``DEFAULT_SEARCH``, target
0.95) on the bundled corpus and, when ``../shared`` is there, on SQuAD's answerable questions
(600, as in the committed tuning run) and 300 PubMedQA questions (as in the bench run). Writes
``benchmarks/results/tuning/seeds.json`` and ``.md``: per seed the test half's default vs tuned
prompt and context tokens and quality ratio at the default ``--prior-queries``, the median and
range over seeds, and the same medians for other ``--prior-queries`` settings (more shrinkage
keeps quality, saves fewer tokens).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from _provenance import environment, footer, write_results  # noqa: E402

from ragtrim.bench.tune import PRIOR_QUERIES, split_spread  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
SEEDS = tuple(range(10))
PRIORS = (0.0, PRIOR_QUERIES, 10.0, 20.0, 40.0)
TARGET = 0.95
DATA_SETS = {
    "bundled corpus (kestrel)": {"path": REPO / "corpora" / "kestrel"},
    "SQuAD 2.0 dev, answerable (600)": {
        "path": SHARED / "squad2-dev-half",
        "answerable_only": True,
        "limit": 600,
    },
    # yes/no/maybe labels: quality is gold-document recall, as in the bench results
    "PubMedQA (300, document recall)": {"path": SHARED / "pubmedqa-l", "limit": 300},
}


def main() -> int:
    result: dict[str, Any] = {
        "seeds": list(SEEDS),
        "target": TARGET,
        "prior_queries": PRIOR_QUERIES,
        "priors_compared": list(PRIORS),
        "data_sets": {},
        "skipped": {},
        "environment": environment(numpy=np.__version__),
    }
    for name, spec in DATA_SETS.items():
        path = spec["path"]
        if not path.exists():
            result["skipped"][name] = f"{path} not found"
            print(f"skipping {name}: {path} not found")
            continue
        options = {k: v for k, v in spec.items() if k != "path"}
        all_rows = split_spread(path, SEEDS, target=TARGET, prior_queries=PRIORS, **options)
        by_prior = {p: [r for r in all_rows if r["prior_queries"] == p] for p in PRIORS}
        result["data_sets"][name] = {
            "rows": by_prior[PRIOR_QUERIES],
            "summary": _summary(by_prior[PRIOR_QUERIES]),
            "by_prior_queries": [{"prior_queries": p, **_summary(by_prior[p])} for p in PRIORS],
        }
        print(name, _summary(by_prior[PRIOR_QUERIES]))
    markdown = write_results(REPO / "benchmarks" / "results" / "tuning", "seeds", result, render)
    print(f"wrote {markdown}")
    return 0


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def spread(key: str) -> dict[str, float]:
        values = np.array([row["test_half"][key] for row in rows], dtype=float)
        return {
            "median": float(np.median(values)),
            "min": float(values.min()),
            "max": float(values.max()),
        }

    halved = [
        row["test_half"]["context_token_reduction"] >= 2
        and row["test_half"]["quality_ratio"] >= TARGET
        for row in rows
    ]
    return {
        "prompt_token_reduction": spread("token_reduction"),
        "context_token_reduction": spread("context_token_reduction"),
        "quality_ratio": spread("quality_ratio"),
        "seeds_with_context_halved_at_target": int(sum(halved)),
    }


def render(r: dict[str, Any]) -> str:
    lines = [
        "# `ragtrim tune` over ten splits (test halves)",
        "",
        "Command: `python benchmarks/bench_tuning_seeds.py`. For each seed the queries are split "
        "into tune and test halves (stratified by task type), profiles are chosen on the tune "
        f"half (target {r['target']} x the best quality per task type, prior "
        f"{r['prior_queries']:g} queries unless said otherwise, the default search grid) and "
        "the test half compares "
        "the tuned profiles with the untuned default. A seed's row is what "
        "`ragtrim tune --seed S` reports as its test half.",
        "",
    ]
    for name, data in r["data_sets"].items():
        s = data["summary"]
        metric = data["rows"][0]["metric"]

        def shown(key: str, summary=s) -> str:
            v = summary[key]
            return f"{v['median']:.2f} ({v['min']:.2f}–{v['max']:.2f})"

        lines += [
            f"## {name}",
            "",
            f"Median (range) over {len(data['rows'])} seeds: prompt tokens "
            f"{shown('prompt_token_reduction')}x fewer, context tokens "
            f"{shown('context_token_reduction')}x fewer, {metric} ratio "
            f"{shown('quality_ratio')}. Seeds with context tokens at least halved and quality "
            f">= {r['target']} x the default's: {s['seeds_with_context_halved_at_target']} of "
            f"{len(data['rows'])}.",
            "",
            "| seed | default prompt / context tokens | tuned prompt / context tokens | "
            f"default {metric} | tuned {metric} | prompt x | context x | quality ratio |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in data["rows"]:
            t = row["test_half"]
            d, u = t["default"], t["tuned"]
            lines.append(
                f"| {row['seed']} | {d['prompt_tokens']:.0f} / {d['context_tokens']:.0f} | "
                f"{u['prompt_tokens']:.0f} / {u['context_tokens']:.0f} | {d[metric]:.3f} | "
                f"{u[metric]:.3f} | {t['token_reduction']:.2f} | "
                f"{t['context_token_reduction']:.2f} | {t['quality_ratio']:.3f} |"
            )
        lines += [
            "",
            "Other `--prior-queries` settings, same splits (median over seeds):",
            "",
            "| prior queries | context x | prompt x | quality ratio | seeds halved at target |",
            "|---|---|---|---|---|",
        ]
        for p in data["by_prior_queries"]:
            lines.append(
                f"| {p['prior_queries']:g} | {p['context_token_reduction']['median']:.2f} | "
                f"{p['prompt_token_reduction']['median']:.2f} | "
                f"{p['quality_ratio']['median']:.3f} | "
                f"{p['seeds_with_context_halved_at_target']} of {len(data['rows'])} |"
            )
        lines.append("")
    for name, reason in r["skipped"].items():
        lines += [f"Skipped {name}: {reason}.", ""]
    return "\n".join(lines + footer(r["environment"], "numpy"))


if __name__ == "__main__":
    raise SystemExit(main())
