"""The tokens-vs-quality plot: one curve per system family, the Pareto frontier marked."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ragtrim.errors import missing_extra


def _family(name: str) -> str:
    """Curves: each naive retriever over k, and ragtrim over its cutoff sweep; any other named
    system is its own family (a single marker)."""
    match = re.match(r"naive-(\w+)-top\d+", name)
    if match:
        return f"naive {match.group(1)} top-k"
    return "ragtrim (cutoff sweep)" if name == "ragtrim" or name.startswith("ragtrim[") else name


def plot_tokens_vs_quality(
    summary: Mapping[str, Mapping[str, Any]],
    metric: str,
    front: Sequence[str],
    path: Path,
    title: str = "",
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise missing_extra("matplotlib", "plot") from None
    families: dict[str, list[tuple[float, float, str]]] = {}
    for name, s in summary.items():
        if metric in s:
            families.setdefault(_family(name), []).append(
                (s["context_tokens"], s[metric]["mean"], name)
            )
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    for family, points in sorted(families.items()):
        points.sort()
        style = (
            "o-"
            if family.startswith("naive")
            else ("s--" if family.startswith("ragtrim (") else "D")
        )
        ax.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            style,
            label=family,
            alpha=0.85,
            markersize=5,
        )
    front_points = sorted((summary[n]["context_tokens"], summary[n][metric]["mean"]) for n in front)
    if front_points:
        xs, ys = zip(*front_points, strict=True)
        ax.plot(xs, ys, color="black", linewidth=1, alpha=0.4, zorder=0)
        ax.scatter(
            xs,
            ys,
            facecolors="none",
            edgecolors="black",
            s=120,
            label="Pareto frontier",
        )
    ax.set_xscale("log")
    ax.set_xlabel("context tokens per query (mean, log scale)")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(f"{title}: tokens vs {metric.replace('_', ' ')}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
