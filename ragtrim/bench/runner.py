"""``ragtrim bench``: baselines and ragtrim systems on one data set, written to files.

Outputs in ``--out``: ``results.json`` (every aggregate and per-query record, the config, the
data set fingerprint, package versions, machine; ``quality_at_budget``, see
:mod:`ragtrim.bench.budgets`), ``results.md`` (tables, the headline token ratio and the quality
at context budgets 100..1,000 per task type), ``tokens_vs_quality.png`` (one curve per system
family, Pareto frontier marked).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from ragtrim.bench.budgets import budget_metrics, markdown_section, quality_at_budget
from ragtrim.bench.datasets import Dataset
from ragtrim.bench.engine import (
    BASELINE_KS,
    BASELINE_MODES,
    Progress,
    System,
    baseline_systems,
    evaluate,
    grid_systems,
    pareto_front,
    prepared,
    primary_metric,
    summarise,
)
from ragtrim.errors import ConfigError
from ragtrim.packing.pricing import price_per_token

METRICS = (
    "answer_recall",
    "evidence_recall",
    "evidence_all",
    "doc_recall",
    "ndcg@10",
    "retriever_ndcg@10",
    "recall@100",
)
#: without a sweep file: the configured pipeline plus a spread of cutoffs, for a curve
DEFAULT_GRID = {"packer.min_probability": [0.2, 0.1, 0.06, 0.04, 0.03, 0.02, 0.01, 0.005]}
HEADLINE_BASELINE = "naive-hybrid-top5"


def load_sweep(path: Path | None) -> tuple[list[System], list[str], list[int]]:
    """Systems, baseline modes and ks from a sweep file (or the defaults)."""
    if path is None:
        return (
            [System("ragtrim", "ragtrim"), *grid_systems(DEFAULT_GRID)],
            list(BASELINE_MODES),
            list(BASELINE_KS),
        )
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read sweep file: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{path}: expected a mapping with systems, grid, baselines and/or k at the top "
            f"level, got {type(data).__name__}"
        )
    unknown = set(data) - {"systems", "grid", "baselines", "k"}
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {sorted(unknown)}; valid: systems, grid, baselines, k"
        )
    systems = [System("ragtrim", "ragtrim")]
    for i, entry in enumerate(_listed(data, "systems", [], path)):
        if not isinstance(entry, Mapping) or "name" not in entry:
            raise ConfigError(f"{path}: systems[{i}] needs a 'name' and optional 'overrides'")
        overrides = entry.get("overrides") or {}
        if not isinstance(overrides, Mapping) or not all(
            isinstance(p, Mapping) for p in overrides.values()
        ):
            raise ConfigError(
                f"{path}: systems[{i}].overrides: expected a mapping of stage slot to "
                "parameters, e.g. {packer: {budget: 512}}"
            )
        systems.append(System(str(entry["name"]), "ragtrim", overrides=overrides))
    if data.get("grid"):
        if not isinstance(data["grid"], Mapping):
            raise ConfigError(f"{path}: grid: expected a mapping of 'slot.parameter' to values")
        try:
            systems.extend(grid_systems(data["grid"]))
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    modes = _listed(data, "baselines", BASELINE_MODES, path)
    bad = set(modes) - set(BASELINE_MODES)
    if bad:
        raise ConfigError(
            f"{path}: baselines {sorted(bad)} unknown; valid: {', '.join(BASELINE_MODES)}"
        )
    ks = _listed(data, "k", BASELINE_KS, path)
    if not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in ks):
        raise ConfigError(f"{path}: k: expected a list of positive integers, got {ks!r}")
    return systems, modes, ks


def _listed(data: Mapping[str, Any], key: str, default: Any, path: Path) -> list[Any]:
    """``data[key]`` as a list (``default`` when absent); a scalar is an error, not iterated."""
    value = data.get(key, default)
    if value is None:
        return list(default)
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{path}: {key}: expected a list, got {value!r}")
    return list(value)


def _environment() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for package in (
        "ragtrim",
        "numpy",
        "faiss-cpu",
        "sentence-transformers",
        "torch",
        "tiktoken",
        "rank-bm25",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "packages": versions,
    }


def headline(
    summary: Mapping[str, Mapping[str, Any]], metric: str, baseline: str = HEADLINE_BASELINE
) -> dict:
    """Token ratio of the baseline to the cheapest ragtrim system at equal or better quality."""
    if baseline not in summary or metric not in summary[baseline]:
        return {}
    target = summary[baseline][metric]["mean"]
    base_tokens = summary[baseline]["context_tokens"]
    eligible = [
        (s["context_tokens"], name)
        for name, s in summary.items()
        if name.startswith("ragtrim") and metric in s and s[metric]["mean"] >= target
    ]
    result: dict[str, Any] = {
        "baseline": baseline,
        "metric": metric,
        "baseline_quality": target,
        "baseline_context_tokens": base_tokens,
    }
    if not eligible:
        best = max(
            (s[metric]["mean"], n)
            for n, s in summary.items()
            if n.startswith("ragtrim") and metric in s
        )
        result.update(reached=False, best_ragtrim=best[1], best_ragtrim_quality=best[0])
        return result
    tokens, name = min(eligible)
    result.update(
        reached=True,
        system=name,
        quality=summary[name][metric]["mean"],
        context_tokens=tokens,
        # None rather than inf: results.json must stay valid JSON
        token_ratio=base_tokens / tokens if tokens else None,
    )
    return result


def _ratio_words(ratio: float | None) -> str:
    if ratio is None:
        return "no context tokens at all"
    if ratio >= 1:
        return f"{ratio:.2f}x fewer tokens"
    return f"{1 / ratio:.2f}x more tokens"


def _markdown(
    dataset: Dataset,
    summary,
    metric: str,
    head: dict,
    front: list[str],
    info: dict,
    price: float,
    model: str,
    answerable_only: bool = False,
    budgets: Mapping[str, Any] | None = None,
    half: str | None = None,
) -> str:
    which = (
        f" (the {half} half of `ragtrim tune`'s split"
        + ("; the shipped unit scorer was fitted on tune halves only)" if half else ")")
        if half
        else ""
    )
    lines = [
        f"# {dataset.name}: tokens vs {metric.replace('_', ' ')}",
        "",
        f"{len(dataset.queries)} queries{' with a span answer' if answerable_only else ''}"
        f"{which}, "
        f"{len(dataset.documents)} documents, data set fingerprint "
        f"`{dataset.fingerprint}`. Context tokens are exact ({info.get('encoding')}); cost is for "
        f"{model} input at ${price * 1e6:.2f} per million tokens.",
        "",
    ]
    if head:
        if head.get("reached"):
            lines.append(
                f"**Headline:** {head['system']} reaches {metric} {head['quality']:.3f} "
                f"(naive hybrid top-5: {head['baseline_quality']:.3f}) with "
                f"{head['context_tokens']:.0f} context tokens instead of "
                f"{head['baseline_context_tokens']:.0f}: **{_ratio_words(head['token_ratio'])}**."
            )
        else:
            lines.append(
                f"**Headline:** no ragtrim system reached naive hybrid top-5's {metric} "
                f"{head['baseline_quality']:.3f}; best ragtrim: {head['best_ragtrim']} "
                f"({head['best_ragtrim_quality']:.3f})."
            )
        lines.append("")
    # evidence recall beside the primary metric wherever gold sentences exist: an answer can
    # be in the context while the evidence chain that supports it is not
    evidence = metric != "evidence_recall" and any("evidence_recall" in s for s in summary.values())
    columns = [
        "system",
        "context tok",
        "prompt tok",
        metric,
        "95% CI",
        *(["evidence recall"] if evidence else []),
        "doc recall",
        "p50 ms",
        "p95 ms",
        "$ / 1k queries",
        "pareto",
    ]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for name, s in sorted(summary.items(), key=lambda kv: kv[1]["context_tokens"]):
        quality = s.get(metric, {})
        docs = s.get("doc_recall", {})
        lines.append(
            "| "
            + " | ".join(
                [
                    name,
                    f"{s['context_tokens']:.0f}",
                    f"{s['prompt_tokens']:.0f}",
                    f"{quality.get('mean', float('nan')):.3f}",
                    f"{quality['ci95'][0]:.3f}–{quality['ci95'][1]:.3f}" if quality else "",
                    *([_mean(s, "evidence_recall")] if evidence else []),
                    f"{docs.get('mean', float('nan')):.3f}" if docs else "",
                    f"{s['latency_ms']['p50']:.1f}",
                    f"{s['latency_ms']['p95']:.1f}",
                    f"{s['prompt_tokens'] * price * 1000:.4f}",
                    "●" if name in front else "",
                ]
            )
            + " |"
        )
    if budgets is not None:
        lines += ["", *markdown_section(budgets)]
    return "\n".join(lines).rstrip("\n") + "\n"


def _mean(entry: Mapping[str, Any], metric: str) -> str:
    return f"{entry[metric]['mean']:.3f}" if metric in entry else ""


def compact_records(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-query records column-wise: query ids once, then one array per field per system
    (floats to 4 decimals). The same content in a fraction of the bytes of a list of dicts."""

    def cell(value: Any) -> Any:
        if isinstance(value, float):
            return round(value, 4)
        if isinstance(value, dict):
            return {k: cell(v) for k, v in value.items()}
        return value

    query_ids = list(dict.fromkeys(r["query_id"] for r in records))
    position = {q: i for i, q in enumerate(query_ids)}
    task_types = {r["query_id"]: r["task_type"] for r in records}
    systems: dict[str, dict[str, list[Any]]] = {}
    for record in records:
        columns = systems.setdefault(record["system"], {})
        for key, value in record.items():
            if key not in ("system", "query_id", "task_type"):
                column = columns.setdefault(key, [None] * len(query_ids))
                column[position[record["query_id"]]] = cell(value)
    return {
        "query_ids": query_ids,
        "task_types": [task_types[q] for q in query_ids],
        "systems": systems,
    }


def run_benchmark(
    dataset_path: str | Path,
    out: str | Path,
    *,
    config: str | Path | Mapping[str, Any] | None = None,
    sweep: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
    answerable_only: bool = False,
    half: str | None = None,
    progress: Progress | None = None,
) -> str:
    """``half`` = ``"tune"`` / ``"test"`` evaluates one half of ``ragtrim tune``'s split (seed
    ``seed``): the shipped unit scorer is fitted on the tune halves of the labelled data sets,
    so its held-apart figures are the test half's."""
    started = time.perf_counter()
    dataset, pipe, index_info = prepared(
        dataset_path, config, answerable_only, limit, seed, progress
    )
    if half is not None:
        from ragtrim.bench.tune import split_halves

        tune_half, test_half = split_halves(dataset, seed)
        dataset = tune_half if half == "tune" else test_half
    ragtrim_systems, modes, ks = load_sweep(Path(sweep) if sweep else None)
    systems = [*baseline_systems(modes, ks), *ragtrim_systems]
    records = evaluate(pipe, dataset, systems, progress)
    metric = primary_metric(dataset)
    summary = summarise(records, METRICS, seed)
    points = {
        n: (s["context_tokens"], s[metric]["mean"]) for n, s in summary.items() if metric in s
    }
    front = pareto_front(points)
    head = headline(summary, metric)
    budgets = quality_at_budget(
        records, summary, systems, budget_metrics(metric, summary), seed=seed
    )
    pricing = pipe.config.pricing
    price = price_per_token(pricing.model, pricing.prices)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    info = {"encoding": pipe.counter.name, **index_info}
    result = {
        "dataset": {
            "name": dataset.name,
            "path": str(dataset.path),
            "fingerprint": dataset.fingerprint,
            "queries": len(dataset.queries),
            "documents": len(dataset.documents),
            "task_types": dataset.task_types(),
        },
        "metric": metric,
        "headline": head,
        "quality_at_budget": budgets,
        "pareto_front": front,
        "systems": {s.name: s.to_dict() for s in systems},
        "summary": summary,
        "config": pipe.to_config(),
        "index": info,
        "pricing": {"model": pricing.model, "usd_per_million_input": price * 1e6},
        "environment": _environment(),
        "seed": seed,
        "limit": limit,
        "answerable_only": answerable_only,
        "half": half,
        "seconds": round(time.perf_counter() - started, 1),
        "records": compact_records(records),
    }
    (out / "results.json").write_text(json.dumps(result, separators=(",", ":")), encoding="utf-8")
    markdown = _markdown(
        dataset,
        summary,
        metric,
        head,
        front,
        info,
        price,
        pricing.model,
        answerable_only,
        budgets,
        half,
    )
    (out / "results.md").write_text(markdown, encoding="utf-8")
    from ragtrim.bench.plots import plot_tokens_vs_quality

    plot_tokens_vs_quality(
        summary, metric, front, out / "tokens_vs_quality.png", title=dataset.name
    )
    return markdown
