"""Packing time of this tree's packer against the packer of an earlier commit, side by side.

Run from the repository root: ``python benchmarks/bench_packer_ab.py [--against REV]`` (default
``HEAD~1``). Writes ``benchmarks/results/packer_ab.json`` and ``.md``.

Absolute latencies on a shared 2-core machine drift by 20-40% between runs, so a packer change
is judged by this comparison instead: both packers run in one process on the same candidates
(the default pipeline's query stages on every bundled-corpus question), interleaved query by
query and alternating which goes first, four rounds. The earlier packer is
``ragtrim/packing/packer.py`` at ``REV`` loaded beside the current library, so it needs the
current library's interfaces (true for commits of the same release line). The outputs are
compared too: how many contexts are identical, and each packer's mean context tokens and answer
recall (answerable questions).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from _candidates import candidates_per_query  # noqa: E402
from _provenance import environment, footer, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "corpora" / "kestrel"
RESULTS = REPO / "benchmarks" / "results"
ROUNDS = 4


def packer_at(revision: str):
    """The ``ContextPacker`` class of ``revision``, imported as a separate module."""
    source = subprocess.run(
        ["git", "show", f"{revision}:ragtrim/packing/packer.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    commit = subprocess.run(
        ["git", "rev-parse", revision], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    path = Path(tempfile.mkdtemp()) / "packer_before.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("packer_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["packer_before"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module.ContextPacker, commit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="HEAD~1", help="git revision of the other packer")
    parser.add_argument("--dataset", type=Path, default=CORPUS, help="data set folder")
    parser.add_argument(
        "--retrieved",
        type=int,
        default=None,
        help="pack exactly the retriever's first N candidates (before rerank and dedup)",
    )
    args = parser.parse_args()

    from ragtrim.bench.metrics import answer_recall
    from ragtrim.packing.packer import ContextPacker
    from ragtrim.types import Candidate

    # candidates first: loading the earlier packer registers its class under the same name
    rows = candidates_per_query(args.dataset, with_retrieved=True)
    work = [
        (q, c, retrieved[: args.retrieved] if args.retrieved else cs)
        for q, c, cs, retrieved in rows
    ]
    before_class, commit = packer_at(args.against)
    packers = {
        "current": ContextPacker(),
        "current, hand mix": ContextPacker(scorer="hand", span_fill=0, token_cost_exponent=0.0),
        "before": before_class(),
    }
    # one untimed pass: sentence vectors and term ids are read once, for all alike
    packed = {name: [p.run(c, list(cs)) for _, c, cs in work] for name, p in packers.items()}
    contexts = {name: [r.context for r in results] for name, results in packed.items()}
    quality = {
        name: {
            "context_tokens": float(np.mean([r.context_tokens for r in results])),
            "answer_recall": float(
                np.mean(
                    [
                        answer_recall(r.context, q.span_answers)
                        for (q, _, _), r in zip(work, results, strict=True)
                        if q.span_answers
                    ]
                    or [np.nan]
                )
            ),
        }
        for name, results in packed.items()
    }
    times: dict[str, list[float]] = {name: [] for name in packers}
    for round_number in range(ROUNDS):
        order = list(packers) if round_number % 2 == 0 else list(packers)[::-1]
        for _, ctx, candidates in work:
            for name in order:
                fresh = [Candidate(c.chunk, c.score, dict(c.scores)) for c in candidates]
                started = time.perf_counter()
                packers[name].run(ctx, fresh)
                times[name].append((time.perf_counter() - started) * 1000)
    summary = {
        name: {
            "p50_ms": float(np.percentile(t, 50)),
            "p95_ms": float(np.percentile(t, 95)),
            "packs": len(t),
        }
        for name, t in times.items()
    }
    identical = sum(
        a == b for a, b in zip(contexts["current, hand mix"], contexts["before"], strict=True)
    )
    result = {
        "against": args.against,
        "against_commit": commit,
        "dataset": args.dataset.name,
        "retrieved": args.retrieved,
        "queries": len(work),
        "mean_candidates": float(np.mean([len(cs) for _, _, cs in work])),
        "rounds": ROUNDS,
        "summary": summary,
        "p50_ratio_current_over_before": summary["current"]["p50_ms"] / summary["before"]["p50_ms"],
        "identical_contexts_hand_mix_vs_before": identical,
        "quality": quality,
        "environment": environment(numpy=np.__version__),
    }
    stem = "packer_ab" + (f"_{args.dataset.name}" if args.dataset != CORPUS else "")
    stem += f"_top{args.retrieved}" if args.retrieved else ""
    path = write_results(RESULTS, stem, result, render)
    print(render(result))
    print(f"wrote {path}")


def render(result: dict) -> str:
    s, q = result["summary"], result["quality"]
    what = (
        f"exactly the retriever's first {result['retrieved']} candidates"
        if result["retrieved"]
        else "the default pipeline's candidates"
    )
    lines = [
        "# Packing time: this packer vs an earlier commit's, side by side",
        "",
        f"{result['dataset']}, {result['queries']} questions, {what} (mean "
        f"{result['mean_candidates']:.1f}); the packers in one process, interleaved, "
        f"{result['rounds']} rounds. Generated by `python benchmarks/bench_packer_ab.py "
        f"--against {result['against']}"
        + (f" --dataset {result['dataset']}" if result["dataset"] != "kestrel" else "")
        + (f" --retrieved {result['retrieved']}" if result["retrieved"] else "")
        + f'` (commit {result["against_commit"][:12]}). "current, hand mix" is this '
        "commit's packer with `scorer: hand, span_fill: 0, token_cost_exponent: 0`.",
        "",
        "| packer | p50 ms | p95 ms | packs | mean context tokens | answer recall |",
        "|---|---|---|---|---|---|",
    ]
    for name in s:
        lines.append(
            f"| {name} | {s[name]['p50_ms']:.2f} | {s[name]['p95_ms']:.2f} | {s[name]['packs']} "
            f"| {q[name]['context_tokens']:.1f} | {q[name]['answer_recall']:.4f} |"
        )
    lines += [
        "",
        f"p50 ratio current / before: {result['p50_ratio_current_over_before']:.3f}. "
        "Identical contexts, hand mix vs before: "
        f"{result['identical_contexts_hand_mix_vs_before']} of {result['queries']}.",
        "",
        *footer(result["environment"], "numpy"),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
