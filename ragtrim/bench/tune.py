"""``ragtrim tune``: the cheapest profile per task type that keeps answer quality.

Queries are split into tune and test halves (seeded, stratified by task type). On the tune
half, every candidate profile is evaluated per task type; the cheapest (mean prompt tokens)
whose quality is at least ``target`` x the best quality observed for that task type wins.
Both halves are reported; the test-half numbers are the honest ones. The winning profiles are
written into a pipeline config that ``Pipeline.run(query, task_type=...)`` applies.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ragtrim.bench.datasets import Dataset
from ragtrim.bench.engine import (
    Progress,
    System,
    evaluate,
    grid_systems,
    prepared,
    primary_metric,
)
from ragtrim.config import check_config_shape, dump_config
from ragtrim.errors import ConfigError

#: what tuning searches: budget caps, how deep to retrieve, how strict the cutoff, unit size
DEFAULT_SEARCH = {
    "packer.budget": [160, 320, 640, 1024],
    "packer.min_probability": [0.01, 0.02, 0.04, 0.08, 0.15],
    "packer.span_fill": [0, 2],
    "retriever.top_k": [10, 30],
}


#: shrinkage of per-task-type quality towards the all-types quality (see choose_profiles). On
#: the bundled corpus, 3 seeds, test half: quality ratio 0.926/0.956/0.955 without it,
#: 0.956/0.971/1.030 with 5, for 2-9% fewer tokens saved.
PRIOR_QUERIES = 5.0


def check_tune_arguments(target: Any, prior_queries: Any, limit: Any = None) -> None:
    """Reject arguments that could only fail (or mislead) after the whole evaluation ran."""
    if (
        isinstance(target, bool)
        or not isinstance(target, (int, float))
        or not math.isfinite(target)
        or not 0 < target <= 1
    ):
        raise ConfigError(
            f"target: expected a number in (0, 1] (a share of the best observed quality), "
            f"got {target!r}"
        )
    if (
        isinstance(prior_queries, bool)
        or not isinstance(prior_queries, (int, float))
        or not math.isfinite(prior_queries)
        or prior_queries < 0
    ):
        raise ConfigError(f"prior_queries: expected a finite number >= 0, got {prior_queries!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit: expected a whole number >= 1, got {limit!r}")


def load_search(path: str | Path) -> dict[str, list[Any]]:
    """A search grid from YAML: ``{"slot.param": [values], ...}``."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read search grid: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: search grid nested too deeply to parse") from None
    check_config_shape(data, str(path))
    if not isinstance(data, dict) or not all(isinstance(v, list) and v for v in data.values()):
        raise ConfigError(
            f"{path}: expected a mapping of 'slot.parameter' to non-empty lists of values"
        )
    return data


def split_halves(dataset: Dataset, seed: int) -> tuple[Dataset, Dataset]:
    """Stratified by task type: each type's queries, ordered by a seeded hash of their id,
    are cut in half. Hashing ids rather than shuffling positions keeps a split stable as a data
    set grows: adding a query moves at most one existing query per task type across halves,
    so tuning results before and after are comparable."""
    by_type: dict[str, list[int]] = {}
    for i, query in enumerate(dataset.queries):
        by_type.setdefault(query.task_type, []).append(i)
    tune_ids: set[int] = set()
    for positions in by_type.values():
        ranked = sorted(positions, key=lambda i: _seeded_hash(seed, dataset.queries[i].id))
        tune_ids.update(ranked[: (len(ranked) + 1) // 2])
    tune = [q for i, q in enumerate(dataset.queries) if i in tune_ids]
    test = [q for i, q in enumerate(dataset.queries) if i not in tune_ids]
    return replace(dataset, queries=tune), replace(dataset, queries=test)


def _seeded_hash(seed: int, query_id: str) -> bytes:
    return hashlib.blake2b(f"{seed}\0{query_id}".encode(), digest_size=8).digest()


def _table(
    records: Sequence[Mapping[str, Any]], metric: str
) -> dict[tuple[str, str], dict[str, float]]:
    """(system, task type) -> mean prompt tokens and mean quality (None-quality queries count
    for tokens only: unanswerable questions cost tokens but have no answer to find)."""
    cells: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in records:
        cells.setdefault((r["system"], r["task_type"]), []).append(r)
    table = {}
    for key, rows in cells.items():
        quality = [r[metric] for r in rows if r.get(metric) is not None]
        table[key] = {
            "tokens": float(np.mean([r["prompt_tokens"] for r in rows])),
            "quality": float(np.mean(quality)) if quality else float("nan"),
            "n": len(rows),
            "n_quality": len(quality),
        }
    return table


def choose_profiles(
    table: Mapping[tuple[str, str], Mapping[str, float]],
    systems: Sequence[System],
    target: float,
    prior_queries: float = 0.0,
) -> dict[str, System]:
    """Per task type, the cheapest system whose quality is >= ``target`` x the best.

    With ``prior_queries`` > 0 each task type's quality is shrunk towards the system's quality
    over all task types, as if ``prior_queries`` more queries had scored that average: a task
    type with a dozen queries then cannot pick a profile that only looks good by luck on those
    few (the winner's curse of taking the cheapest of many noisy candidates).
    """
    pooled: dict[str, float] = {}
    for system in systems:
        cells = [
            c
            for (name, _), c in table.items()
            if name == system.name and c.get("n_quality", 0) and not np.isnan(c["quality"])
        ]
        weight = sum(c["n_quality"] for c in cells)
        if weight:
            pooled[system.name] = sum(c["quality"] * c["n_quality"] for c in cells) / weight

    def quality(cell: Mapping[str, float], name: str) -> float:
        if prior_queries <= 0 or name not in pooled:
            return cell["quality"]
        n = cell.get("n_quality", cell["n"])
        return (cell["quality"] * n + pooled[name] * prior_queries) / (n + prior_queries)

    chosen = {}
    for task_type in sorted({t for _, t in table}):
        rows = [
            (table[(s.name, task_type)], quality(table[(s.name, task_type)], s.name), s)
            for s in systems
            if (s.name, task_type) in table
        ]
        qualities = [q for _, q, _ in rows if not np.isnan(q)]
        if qualities:
            floor = target * max(qualities)
            eligible = [(r["tokens"], -q, s.name, s) for r, q, s in rows if q >= floor]
        else:  # nothing to find (unanswerable): the cheapest context is the right one
            eligible = [(r["tokens"], 0.0, s.name, s) for r, _, s in rows]
        chosen[task_type] = min(eligible)[3]
    return chosen


def _compare(
    records, metric: str, default_name: str, profiles: Mapping[str, System]
) -> dict[str, Any]:
    """Default vs tuned on one half: the tuned system for each query is its task type's profile."""
    by_key = {(r["system"], r["query_id"]): r for r in records}
    query_ids = sorted({(r["query_id"], r["task_type"]) for r in records})
    default = [by_key[(default_name, q)] for q, _ in query_ids]
    tuned = [by_key[(profiles[t].name, q)] for q, t in query_ids]

    def mean(values):  # None, not NaN, for an empty half: the report stays valid JSON
        return float(np.mean(values)) if values else None

    def stats(rows):
        return {
            "prompt_tokens": mean([r["prompt_tokens"] for r in rows]),
            "context_tokens": mean([r["context_tokens"] for r in rows]),
            metric: mean([r[metric] for r in rows if r.get(metric) is not None]),
            "queries": len(rows),
        }

    d, t = stats(default), stats(tuned)
    ratio = None if not d[metric] else (t[metric] or 0.0) / d[metric]
    return {
        "default": d,
        "tuned": t,
        "token_reduction": d["prompt_tokens"] / t["prompt_tokens"] if query_ids else None,
        # what the packer controls (the template and question are the same for both)
        "context_token_reduction": (
            d["context_tokens"] / t["context_tokens"] if query_ids and t["context_tokens"] else None
        ),
        "quality_ratio": ratio,
    }


def _prepared(dataset_path, config, answerable_only, limit, seed, search, progress):
    dataset, pipe, _ = prepared(dataset_path, config, answerable_only, limit, seed, progress)
    default = System("default", "ragtrim")
    systems = [default, *grid_systems(search or DEFAULT_SEARCH, prefix="profile")]
    return dataset, pipe, primary_metric(dataset), default, systems


def split_spread(
    dataset_path: str | Path,
    seeds: Sequence[int],
    *,
    config: str | Path | Mapping[str, Any] | None = None,
    target: float = 0.95,
    search: Mapping[str, Sequence[Any]] | None = None,
    limit: int | None = None,
    answerable_only: bool = False,
    prior_queries: Sequence[float] = (PRIOR_QUERIES,),
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """The test-half comparison of ``tune_profiles`` for each seed's split (and each
    ``prior_queries`` setting).

    One split's test half is a few dozen questions per task type, so one seed can be lucky;
    this shows the spread. Every profile is evaluated on every query once and each seed's
    choice is replayed from those records, which gives what ``tune_profiles`` gives for that
    seed (packing is deterministic). With ``limit``, every seed splits the same subset (drawn
    with the first seed).
    """
    dataset, pipe, metric, default, systems = _prepared(
        dataset_path, config, answerable_only, limit, seeds[0], search, progress
    )
    records = evaluate(pipe, dataset, systems, progress)
    results = []
    for seed in seeds:
        tune_half, _ = split_halves(dataset, seed)
        tune_ids = {q.id for q in tune_half.queries}
        table = _table([r for r in records if r["query_id"] in tune_ids], metric)
        test_records = [r for r in records if r["query_id"] not in tune_ids]
        for prior in prior_queries:
            profiles = choose_profiles(table, systems, target, prior)
            results.append(
                {
                    "seed": seed,
                    "prior_queries": prior,
                    "metric": metric,
                    "profiles": {t: s.name for t, s in profiles.items()},
                    "test_half": _compare(test_records, metric, default.name, profiles),
                }
            )
    return results


def tune_profiles(
    dataset_path: str | Path,
    out: str | Path,
    *,
    config: str | Path | Mapping[str, Any] | None = None,
    target: float = 0.95,
    search: Mapping[str, Sequence[Any]] | None = None,
    limit: int | None = None,
    seed: int = 0,
    answerable_only: bool = False,
    prior_queries: float = PRIOR_QUERIES,
    refit_scorer: bool = False,
    progress: Progress | None = None,
) -> str:
    check_tune_arguments(target, prior_queries, limit)
    dataset, pipe, metric, default, systems = _prepared(
        dataset_path, config, answerable_only, limit, seed, search, progress
    )
    tune_half, test_half = split_halves(dataset, seed)
    refit = None
    if refit_scorer:
        refit = _refit_scorer(pipe, tune_half, test_half, metric, Path(out), progress)
        pipe.stages["packer"] = pipe.stages["packer"].with_params(  # type: ignore[union-attr]
            scorer_path=refit["path"]
        )
        packer_spec = pipe.config.stages["packer"]
        assert packer_spec is not None
        stages = dict(pipe.config.stages)
        stages["packer"] = packer_spec.model_copy(
            update={
                "init_parameters": {**packer_spec.init_parameters, "scorer_path": refit["path"]}
            }
        )
        pipe.config = pipe.config.model_copy(update={"stages": stages})
    tune_records = evaluate(pipe, tune_half, systems, progress)
    profiles = choose_profiles(_table(tune_records, metric), systems, target, prior_queries)
    test_records = evaluate(
        pipe, test_half, [default, *{s.name: s for s in profiles.values()}.values()], progress
    )

    config_out = pipe.config.model_copy(
        update={
            "profiles": {
                t: {slot: dict(p) for slot, p in s.overrides.items()} for t, s in profiles.items()
            }
        }
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    dump_config(config_out, out)
    report = {
        "dataset": dataset.name,
        "fingerprint": dataset.fingerprint,
        "metric": metric,
        "target": target,
        "prior_queries": prior_queries,
        "seed": seed,
        "profiles": {t: s.to_dict() for t, s in profiles.items()},
        "tune_half": _compare(tune_records, metric, default.name, profiles),
        "test_half": _compare(test_records, metric, default.name, profiles),
        "refit_scorer": refit,
    }
    out.with_suffix(".report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    lines = [
        f"tuned profiles written to {out} ({metric}, target {target})",
        "",
        "| task type | profile |",
        "|---|---|",
    ]
    lines += [f"| {t} | {s.name} |" for t, s in profiles.items()]
    if refit is not None:
        before, after = refit["test_half"]["shipped"], refit["test_half"]["refit"]
        lines.append(
            f"\nunit scorer refitted on the tune half ({refit['path']}); test half, default "
            f"profile: {metric} {_shown(before[metric])} -> {_shown(after[metric])} at "
            f"{before['context_tokens']:.0f} -> {after['context_tokens']:.0f} context tokens"
        )
    for half in ("tune_half", "test_half"):
        r = report[half]
        if not r["default"]["queries"]:
            lines.append(f"\n{half.replace('_', ' ')}: no queries")
            continue
        lines.append(
            f"\n{half.replace('_', ' ')}: default "
            f"{r['default']['prompt_tokens']:.0f} prompt tokens, "
            f"{metric} {_shown(r['default'][metric])}; "
            f"tuned {r['tuned']['prompt_tokens']:.0f} tokens, "
            f"{metric} {_shown(r['tuned'][metric])}; "
            f"{r['token_reduction']:.2f}x fewer prompt tokens "
            f"({_shown(r['context_token_reduction'], 'x')} fewer context tokens), "
            f"quality ratio {_shown(r['quality_ratio'])}"
        )
    return "\n".join(lines)


def _refit_scorer(
    pipe, tune_half: Dataset, test_half: Dataset, metric: str, out: Path, progress
) -> dict[str, Any]:
    """Fit the packer's unit scorer on the tune half's labels (gold sentences, span answers),
    write it beside the tuned config, and measure the default profile on the test half with
    the shipped and the refitted scorer."""
    from ragtrim.bench.engine import query_candidates
    from ragtrim.packing.training import LabelledQuery, fit_unit_scorer

    labelled = []
    for query in tune_half.queries:
        if not (query.span_answers or query.gold_sentences):
            continue
        ctx, candidates, _, _ = query_candidates(pipe, pipe.stages, query)
        labelled.append(
            LabelledQuery(ctx, candidates, query.span_answers, query.gold_sentences, "tune")
        )
    if not labelled:
        raise ConfigError(
            f"--refit-scorer: the tune half of {tune_half.name} has no question with gold "
            "sentences or span answers to learn from"
        )
    try:
        scorer = fit_unit_scorer(
            labelled,
            training={
                "datasets": [tune_half.name],
                "split": "ragtrim tune's split_halves: the tune half",
                "command": f"ragtrim tune --refit-scorer --dataset {tune_half.name}",
            },
        )
    except ValueError as exc:
        raise ConfigError(f"--refit-scorer: {exc}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.with_suffix(".scorer.json").resolve()
    scorer.save(path)
    systems = [
        System(
            "shipped", "ragtrim", overrides={"packer": {"scorer": "learned", "scorer_path": None}}
        ),
        System(
            "refit",
            "ragtrim",
            overrides={"packer": {"scorer": "learned", "scorer_path": str(path)}},
        ),
    ]
    records = evaluate(pipe, test_half, systems, progress)

    def stats(name: str) -> dict[str, Any]:
        rows = [r for r in records if r["system"] == name]
        values = [r[metric] for r in rows if r.get(metric) is not None]
        return {
            "context_tokens": float(np.mean([r["context_tokens"] for r in rows])) if rows else 0.0,
            metric: float(np.mean(values)) if values else None,
            "queries": len(rows),
        }

    return {
        "path": str(path),
        "questions": len(labelled),
        "test_half": {"shipped": stats("shipped"), "refit": stats("refit")},
    }


def _shown(value: float | None, unit: str = "") -> str:
    """A number for the summary; ``n/a`` when the half has nothing to measure it on."""
    if value is None:
        return "n/a"
    return f"{value:.2f}{unit}" if unit else f"{value:.3f}"
